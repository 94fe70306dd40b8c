"""A content-addressed store for trained models and sweep results.

An entry's key is the SHA-256 of the canonical JSON of its configuration, the
package version and a digest of the package's own source files
(:func:`source_digest`), so a changed parameter, a new rramlib or any edit of its
code never reads a stale result. Each entry is one file, ``<kind>/<key>.pt``, holding a header line with
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
from rramlib.core.files import atomic_write

__all__ = ["Cache", "config_hash", "default_cache_dir", "module_closure", "source_digest"]

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


#: Source paths (relative to the package) that only present results; they do not enter the source digest.
PRESENTATION_ONLY = ("book/", "present/")


def _presentation_only(relative: Path) -> bool:
    name = relative.as_posix()
    return any(name == p or (p.endswith("/") and name.startswith(p)) for p in PRESENTATION_ONLY)


def _module_path(root: Path, dotted: str) -> Path | None:
    """The file of package module ``dotted`` (relative to the package, e.g. ``"compensation.lora"``)."""
    base = root.joinpath(*dotted.split(".")) if dotted else root
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _imported_modules(root: Path, path: Path) -> set[str]:
    """The package modules that ``path`` imports (``from rramlib.x import y``, ``import rramlib.x``, relative forms)."""
    package = path.relative_to(root).with_suffix("").parts
    package = package[:-1]  # the module's package (for __init__.py, the package itself)
    found = set()
    for node in ast.walk(ast.parse(path.read_bytes())):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
            found.update(t.split(".", 1)[1] for t in targets if t.startswith(root.name + ".")
                         and _module_path(root, t.split(".", 1)[1]) is not None)
            continue
        if not isinstance(node, ast.ImportFrom):
            continue
        if node.level == 0:
            if node.module is None or not (node.module == root.name or node.module.startswith(root.name + ".")):
                continue
            target = node.module[len(root.name) + 1:]
        else:
            anchor = package[: len(package) - (node.level - 1)] if node.level > 1 else package
            target = ".".join([*anchor, *(node.module.split(".") if node.module else [])])
        candidates = [target] if target else []
        candidates += [".".join(filter(None, (target, alias.name))) for alias in node.names]
        found.update(c for c in candidates if _module_path(root, c) is not None)
    return found


@functools.lru_cache(maxsize=None)
def module_closure(modules: tuple[str, ...], root: str | os.PathLike = Path(__file__).resolve().parents[1]) -> tuple[str, ...]:
    """``modules`` and every package module they import, transitively, by relative imports (sorted).

    Module names are relative to the package (``"train"``, ``"compensation.lora"``); the package's
    ``__init__`` (its version) is always included.
    """
    root = Path(root)
    todo, seen = ["", *modules], set()
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        path = _module_path(root, name)
        if path is None:
            raise ValueError(f"no module {name!r} in package {root}")
        seen.add(name)
        todo.extend(_imported_modules(root, path) - seen)
    return tuple(sorted(seen))


@functools.lru_cache(maxsize=None)
def source_digest(root: str | os.PathLike = Path(__file__).resolve().parents[1], modules: tuple[str, ...] | None = None) -> str:
    """SHA-256 (hex) over the package's source and data files (``*.py``, ``*.csv``), paths included.

    Computed once per process (about 50 small files); any edit of rramlib's code changes it, except the
    presentation layer (:data:`PRESENTATION_ONLY`: the book builder, the figure style, the results report),
    which computes nothing that is cached, so restyling the book never throws away trained models and sweeps.
    With ``modules`` (package-relative names), only the files of :func:`module_closure` of them count: the
    key of a result that depends on those modules alone (the trained base model: data, models, training),
    which then survives edits elsewhere in the package.
    """
    root = Path(root)
    if modules is None:
        paths = [p for ext in ("*.py", "*.csv") for p in root.rglob(ext)
                 if "__pycache__" not in p.parts and not _presentation_only(p.relative_to(root))]
    else:
        paths = [_module_path(root, name) for name in module_closure(tuple(modules), root)]
    digest = hashlib.sha256()
    for path in sorted(paths):
        digest.update(path.relative_to(root).as_posix().encode() + b"\0")
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()


def config_hash(config: dict, *, version: str = __version__, sources: str | None = None) -> str:
    """SHA-256 (hex) of a configuration dict together with the package version and source digest."""
    sources = source_digest() if sources is None else sources
    text = json.dumps({"config": _canonical(config), "version": version, "sources": sources}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()


def default_cache_dir() -> Path:
    """``$RRAMLIB_CACHE`` if set, else ``.rramlib_cache`` in the working directory."""
    return Path(os.environ.get("RRAMLIB_CACHE", ".rramlib_cache"))


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
            data = path.read_bytes()
        except FileNotFoundError:
            return None
        try:
            header, payload = data.split(b"\n", 1)
            if not header.startswith(_MAGIC) or header[len(_MAGIC):].decode() != hashlib.sha256(payload).hexdigest():
                raise ValueError("checksum mismatch")
            return torch.load(io.BytesIO(payload), weights_only=True)
        except Exception as exc:  # a damaged entry is never used
            log.warning("discarding damaged cache entry %s (%s)", path, exc)
            path.unlink(missing_ok=True)
            return None

    def save(self, kind: str, key: str, obj: Any) -> None:
        """Store ``obj`` atomically (temporary file, fsync, rename)."""
        if self.root is None:
            return
        buffer = io.BytesIO()
        torch.save(obj, buffer)
        payload = buffer.getvalue()
        header = _MAGIC + hashlib.sha256(payload).hexdigest().encode() + b"\n"
        atomic_write(self.path(kind, key), header + payload)

    def get_or_compute(self, kind: str, config: dict, compute: Callable[[], Any], *, sources: str | None = None) -> Any:
        """Return the cached result for ``config`` or compute, store and return it.

        ``sources``: the code digest to key by (default: all of the package's, :func:`source_digest`).
        """
        key = config_hash(config, sources=sources)
        obj = self.load(kind, key)
        if obj is not None:
            self.hits += 1
            return obj
        self.misses += 1
        obj = compute()
        self.save(kind, key, obj)
        return obj
