"""A content-addressed store for trained models, fits and sweep results.

An entry's key (:func:`config_hash`) is the SHA-256 of the canonical JSON of its configuration, the package
version, the identity of the code that computes its kind, and the numeric environment. Each kind of entry
(:data:`KINDS`) names the module that computes it; its code is that module's import closure
(:func:`module_closure`: every package module it imports, transitively), hashed file by file under the modules'
dotted names (:func:`source_digest`). So an edit of the code that computes a kind never reads back a stale
result, while an edit anywhere else -- the book, the figures, the notebook helpers, another kind's code -- keeps
it; a move of a module outside the closure changes nothing. The numeric environment
(:func:`rramlib.core.numerics.numeric_environment`: torch version, torch threads, instruction cap) enters every
key: the same code and configuration may sum in another order under another one.

Each entry is one file, ``<kind>/<key>.pt``, holding a header line with
the SHA-256 of the payload followed by the payload (``torch.save`` bytes). Files
are written to a temporary name in the same folder and renamed into place
(atomic on POSIX), so an interrupted run leaves no entry at all; an entry whose
checksum does not match (truncated, corrupted) is discarded and recomputed.
"""
from __future__ import annotations

import ast
import functools
import hashlib
import io
import json
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from rramlib import __version__
from rramlib.core.errors import RramlibError
from rramlib.core.files import atomic_write
from rramlib.core.numerics import numeric_environment

__all__ = ["KINDS", "Cache", "code_files", "config_hash", "default_cache_dir", "imported_modules", "kind_modules",
           "load_checked", "module_closure", "save_checked", "source_digest"]

log = logging.getLogger(__name__)
_MAGIC = b"rramlib-cache-v1 "


def _canonical(obj: Any) -> Any:
    """JSON-ready form of a config: tuples become lists, paths strings, floats exact."""
    if isinstance(obj, dict):
        return {str(k): _canonical(v) for k, v in sorted(obj.items(), key=lambda kv: str(kv[0]))}
    if isinstance(obj, (list, tuple)):
        return [_canonical(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, float):
        return float.hex(obj)  # exact and stable across platforms
    if obj is None or isinstance(obj, (bool, int, str)):
        return obj
    raise TypeError(f"cannot hash config value of type {type(obj).__name__}: {obj!r}")


#: The package whose modules key the entries, and its import name.
PACKAGE_DIR = Path(__file__).resolve().parents[1]
_PACKAGE = __name__.split(".", 1)[0]

#: What computes each kind of entry: the package modules (names relative to the package) whose import closure
#: (:func:`module_closure`) keys it; :meth:`Cache.get_or_compute` refuses a kind not listed here. An entry
#: computed from another entry (a fit from the trained model) holds that entry's key in its configuration.
KINDS: dict[str, tuple[str, ...]] = {
    "data": ("nn.data",),  # decoded image files
    "model": ("study.base_model",),  # the trained base model: data, network, training
    "fit": ("study.experiments",),  # a fitted method
    "fit_level": ("study.experiments",),  # one drift level of a per-level method
    "sweep": ("study.experiments",),  # one evaluation chip's accuracies
    "tuning": ("study.tuning",),  # one candidate's validation accuracies
    "hfn": ("study.hidden_fold",),  # a trained HFN and its dense twin
    "text_data": ("nn.text",),  # a tokenised text dataset (the tokenizer trained on its training split)
    "text_model": ("study.text",),  # a trained (or fine-tuned) text classifier
}
#: Data files that belong to a package (beside its ``__init__.py``) and enter its code identity.
DATA_SUFFIXES = (".csv",)


def _module_path(root: Path, dotted: str) -> Path | None:
    """The file of package module ``dotted`` (relative to the package, e.g. ``"methods.compensation.lora"``)."""
    base = root.joinpath(*dotted.split(".")) if dotted else root
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _type_checking_only(node: ast.AST) -> bool:
    """``if TYPE_CHECKING:`` (or ``typing.TYPE_CHECKING``): imports that never run."""
    test = getattr(node, "test", None)
    return isinstance(node, ast.If) and (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING"
                                         or isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _import_nodes(node: ast.AST):
    """The import statements in ``node`` that may run (those of an ``if TYPE_CHECKING:`` block never do)."""
    if isinstance(node, (ast.Import, ast.ImportFrom)):
        yield node
    elif _type_checking_only(node):
        for stmt in node.orelse:
            yield from _import_nodes(stmt)
    else:
        for child in ast.iter_child_nodes(node):
            yield from _import_nodes(child)


def _imports(root: Path, tree: ast.AST, package: tuple[str, ...]) -> set[str]:
    """The package modules the code ``tree`` of a module in ``package`` imports (``from rramlib.x import y``,
    ``import rramlib.x``, relative forms), at module level or inside functions."""
    found = set()
    for node in _import_nodes(tree):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
            found.update(t.split(".", 1)[1] for t in targets if t.startswith(_PACKAGE + ".")
                         and _module_path(root, t.split(".", 1)[1]) is not None)
            continue
        if node.level == 0:
            if node.module is None or not (node.module == _PACKAGE or node.module.startswith(_PACKAGE + ".")):
                continue
            target = node.module[len(_PACKAGE) + 1:]
        else:
            anchor = package[: len(package) - (node.level - 1)] if node.level > 1 else package
            target = ".".join([*anchor, *(node.module.split(".") if node.module else [])])
        candidates = [target] if target else []
        candidates += [".".join(filter(None, (target, alias.name))) for alias in node.names]
        found.update(c for c in candidates if _module_path(root, c) is not None)
    return found


def _imported_modules(root: Path, path: Path) -> set[str]:
    """The package modules that the module file ``path`` imports."""
    package = path.relative_to(root).with_suffix("").parts[:-1]  # for __init__.py, the package itself
    return _imports(root, ast.parse(path.read_bytes()), package)


def imported_modules(code: str, root: str | os.PathLike = PACKAGE_DIR) -> set[str]:
    """The package modules that top-level ``code`` (a script, a notebook's code cell) imports; IPython lines
    (``%magic``, ``!command``) are skipped."""
    lines = [line for line in code.splitlines() if not line.lstrip().startswith(("%", "!"))]
    return _imports(Path(root), ast.parse("\n".join(lines)), ())


def _parents(dotted: str) -> list[str]:
    """The packages whose ``__init__`` importing ``dotted`` runs first: ``"a.b.c"`` -> ``["a.b", "a", ""]``."""
    parts = dotted.split(".") if dotted else []
    return [".".join(parts[:i]) for i in range(len(parts) - 1, -1, -1)]


@functools.lru_cache(maxsize=None)
def module_closure(modules: tuple[str, ...], root: str | os.PathLike = PACKAGE_DIR) -> tuple[str, ...]:
    """``modules`` and every package module they import, transitively, with the packages above each (sorted).

    Module names are relative to the package (``"nn.train"``, ``"methods.compensation.lora"``, ``""`` for the
    package itself); importing ``rramlib.core.x`` runs ``rramlib/__init__.py`` and ``rramlib/core/__init__.py``
    first, so they belong to the closure. Imports inside functions count (they run when the function does);
    those under ``if TYPE_CHECKING:`` do not.
    """
    root = Path(root)
    todo, seen = list(modules), set()
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        path = _module_path(root, name)
        if path is None:
            raise ValueError(f"no module {name!r} in package {root}")
        seen.add(name)
        todo.extend((_imported_modules(root, path) | set(_parents(name))) - seen)
    return tuple(sorted(seen))


def code_files(modules: tuple[str, ...], root: str | os.PathLike = PACKAGE_DIR) -> dict[str, str]:
    """SHA-256 (hex) of the contents of every file of :func:`module_closure` ``(modules)``, by dotted module name
    (a package's data files, :data:`DATA_SUFFIXES` beside its ``__init__.py``, as ``"package/file"``).

    Names, not paths: moving a module that no closure holds changes nothing, and the same code in another
    checkout has the same identity."""
    root = Path(root)
    files = {}
    for name in module_closure(tuple(modules), root):
        path = _module_path(root, name)
        files[name] = hashlib.sha256(path.read_bytes()).hexdigest()
        if path.name == "__init__.py":
            for data in sorted(p for p in path.parent.iterdir() if p.suffix in DATA_SUFFIXES and p.is_file()):
                files[f"{name}/{data.name}"] = hashlib.sha256(data.read_bytes()).hexdigest()
    return files


@functools.lru_cache(maxsize=None)
def source_digest(modules: tuple[str, ...], root: str | os.PathLike = PACKAGE_DIR) -> str:
    """SHA-256 (hex) over :func:`code_files` ``(modules)``: the identity of the code that ``modules`` run.

    Computed once per process and closure; any edit of a file of the closure changes it, an edit anywhere
    else (the book, the figure style, the notebook helpers) does not."""
    digest = hashlib.sha256()
    for name, sha in sorted(code_files(tuple(modules), root).items()):
        digest.update(name.encode() + b"\0" + bytes.fromhex(sha))
    return digest.hexdigest()


def kind_modules(kind: str) -> tuple[str, ...]:
    """The modules that compute entries of ``kind`` (:data:`KINDS`); a RramlibError for an unknown kind."""
    if kind not in KINDS:
        raise RramlibError(f"unknown cache kind {kind!r}; known: {', '.join(sorted(KINDS))}")
    return KINDS[kind]


def config_hash(config: dict, kind: str, *, version: str = __version__, root: str | os.PathLike = PACKAGE_DIR) -> str:
    """SHA-256 (hex) of an entry of ``kind``: its configuration, the package version, the code that computes
    the kind (:func:`source_digest` of :data:`KINDS` ``[kind]``) and the numeric environment
    (:func:`rramlib.core.numerics.numeric_environment`: torch version, threads, instruction cap)."""
    text = json.dumps({"config": _canonical(config), "version": version,
                       "code": source_digest(kind_modules(kind), root), "numerics": numeric_environment()},
                      sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()


def default_cache_dir() -> Path:
    """``$RRAMLIB_CACHE`` if set, else ``.rramlib_cache`` in the working directory."""
    return Path(os.environ.get("RRAMLIB_CACHE", ".rramlib_cache"))


def save_checked(path: str | os.PathLike, obj: Any, magic: bytes) -> None:
    """``torch.save`` ``obj`` to ``path`` atomically, behind a header line ``magic`` + the payload's SHA-256 (the
    results cache's entries, the training's checkpoints)."""
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    payload = buffer.getvalue()
    atomic_write(path, magic + hashlib.sha256(payload).hexdigest().encode() + b"\n" + payload)


def load_checked(path: str | os.PathLike, magic: bytes, map_location=None) -> Any | None:
    """What :func:`save_checked` stored at ``path``; None when the file is absent. Raises ValueError when its
    header is not ``magic`` or its checksum does not match (truncated, corrupted), or torch's error when unreadable."""
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        return None
    header, payload = data.split(b"\n", 1) if b"\n" in data else (data, b"")
    if not header.startswith(magic) or header[len(magic):].decode() != hashlib.sha256(payload).hexdigest():
        raise ValueError("checksum mismatch")
    return torch.load(io.BytesIO(payload), map_location=map_location, weights_only=True)


class Cache:
    """Content-addressed results store. ``Cache(None)`` disables caching (always computes)."""

    def __init__(self, root: str | os.PathLike | None = None):
        self.root = None if root is None else Path(root)
        self.hits = 0
        self.misses = 0

    def path(self, kind: str, key: str) -> Path:
        return self.root / kind / f"{key}.pt"

    def load(self, kind: str, key: str) -> Any | None:
        """The stored object, or None when absent or unreadable (an unreadable file is removed)."""
        if self.root is None:
            return None
        path = self.path(kind, key)
        try:
            return load_checked(path, _MAGIC)
        except Exception as exc:  # a damaged entry is never used
            log.warning("discarding damaged cache entry %s (%s)", path, exc)
            path.unlink(missing_ok=True)
            return None

    def save(self, kind: str, key: str, obj: Any) -> None:
        """Store ``obj`` atomically (temporary file, fsync, rename)."""
        if self.root is None:
            return
        save_checked(self.path(kind, key), obj, _MAGIC)

    def get_or_compute(self, kind: str, config: dict, compute: Callable[[], Any]) -> Any:
        """Return the cached result of ``kind`` for ``config`` (:func:`config_hash`) or compute, store and return it."""
        key = config_hash(config, kind)
        obj = self.load(kind, key)
        if obj is not None:
            self.hits += 1
            return obj
        self.misses += 1
        obj = compute()
        self.save(kind, key, obj)
        return obj
