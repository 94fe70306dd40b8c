"""Build the companion Jupyter Book: stage, execute the notebooks (papermill, cached), check, build HTML.

``rramlib book --profile smoke|quick|paper`` (and ``make book PROFILE=...``) runs :func:`build`:

1. the profile and the extra parameters are checked before anything else runs;
2. a source tree is staged in ``<out>/src`` (default ``_build/book/<profile>/src``): the static
   chapters of ``book/``, ``CITATION.cff`` (and a BibTeX file made from it), a local copy of
   MathJax 3, and a ``_toc.yml`` that lists only the notebooks that exist;
3. every ``notebooks/NN_*.ipynb`` is executed in name order with papermill into
   ``src/notebooks/``, with the parameters ``profile`` and ``out_dir="../results"`` and the
   kernel's working directory ``src/notebooks``, so results land in ``src/results/`` and outputs
   hold relative paths only. All kernels share one results cache (``$RRAMLIB_CACHE``, default
   ``.rramlib_cache`` of this checkout) and import this checkout's rramlib.
   Extra parameters (``-p NAME VALUE``) go to the notebooks that declare them in their
   ``parameters`` cell; a name no notebook declares is refused;
4. a notebook is not executed again when its *build key* (:func:`build_key`: notebook source,
   parameters, every rramlib source file but this builder, the rramlib version, and for a notebook
   that reads other notebooks' results, their keys) equals the one stored in the executed copy and
   its results JSON exists (``--force`` executes everything);
5. every executed notebook is scanned for absolute paths and the host name in its outputs
   (:func:`scan_outputs`);
6. ``src/results/build_times.json`` records the wall time of each notebook;
7. Jupyter Book 1.x builds the HTML with warnings as errors and without the network
   (:func:`check_offline` checks that no page loads anything from another host).

A notebook that fails stops the build. If it failed on bad input (an :class:`RramlibError` in the
kernel), the build fails exactly as the command line does for the same input: ``error: <message>``
and exit code 2.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from . import __version__
from .errors import RramlibError

__all__ = [
    "BookError", "NotebookError", "build", "build_key", "execute_notebook", "scan_outputs", "check_offline",
    "glued_keys", "glue_references", "source_files", "parse_parameter", "declared_parameters", "notebook_paths",
    "make_toc",
]

PACKAGE_DIR = Path(__file__).resolve().parent
REPO_ROOT = PACKAGE_DIR.parent
BOOK_DIR = REPO_ROOT / "book"
NOTEBOOK_DIR = REPO_ROOT / "notebooks"
KERNEL_NAME = "python3"
#: Parameters every notebook receives; ``out_dir`` is relative to the kernel's working directory.
OUT_DIR_PARAM = "../results"
RESERVED_PARAMETERS = ("profile", "out_dir")
NOTEBOOK_RE = re.compile(r"^\d\d_[A-Za-z0-9_\-]+\.ipynb$")
#: Strings that must never appear in an executed notebook's outputs (the host name is added).
FORBIDDEN_IN_OUTPUTS = ("/work/", "/home/", "/tmp/")
#: Static folder of the staged book (``html_static_path``); not ``_static``, which Jupyter Book 1.x
#: scans to add every ``.js`` file in it to every page (MathJax has hundreds).
ASSETS = "_assets"
#: Part of the table of contents that takes notebooks the static ``book/_toc.yml`` does not list.
EXTRA_PART = "More notebooks"
#: Bump when the builder changes how notebooks execute (kernel environment, parameters, cwd).
KEY_VERSION = b"rramlib-book-key-v1"
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


class BookError(Exception):
    """The book could not be built (not bad user input: that is :class:`RramlibError`)."""

    exit_code = 1

    @property
    def message(self) -> str:
        return f"error: {self}"


class NotebookError(BookError):
    """A notebook raised while executing. ``exit_code`` is 2 (and the message is the command
    line's ``error: ...``) when the notebook raised :class:`RramlibError`, i.e. for bad input."""

    def __init__(self, notebook: str, ename: str, evalue: str, cell: int | None = None,
                 traceback: str = "", executed: Path | None = None):
        self.notebook, self.ename, self.evalue, self.cell = notebook, ename, evalue, cell
        self.traceback, self.executed = traceback, executed
        super().__init__(f"notebook {notebook} failed" + (f" at In [{cell}]" if cell is not None else "")
                         + f": {ename}: {evalue}")

    @property
    def bad_input(self) -> bool:
        return self.ename.split(".")[-1] == "RramlibError"

    @property
    def exit_code(self) -> int:  # type: ignore[override]
        return 2 if self.bad_input else 1

    @property
    def message(self) -> str:
        if self.bad_input:
            return f"error: {self.evalue}"
        lines = [f"error: {self}"]
        tail = [line for line in self.traceback.splitlines() if line.strip()][-12:]
        if tail:
            lines += ["  traceback (last lines):"] + [f"    {line}" for line in tail]
        if self.executed is not None:
            lines.append(f"  the executed notebook with the full traceback: {self.executed}")
        return "\n".join(lines)


# --------------------------------------------------------------------------------------------------
# parameters and build keys

def parse_parameter(name: str, value: str) -> tuple[str, object]:
    """``-p NAME VALUE`` as papermill reads it: int, float, bool, None, else the string.

    Two additions: a value in brackets or braces is read as YAML (``-p ranks "[4, 8]"`` gives a list), and
    a string naming an existing file or folder (relative to the current directory) is passed as an
    absolute path, since the notebooks run in the build folder.
    """
    if not re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", name):
        raise RramlibError(f"parameter name {name!r} is not a Python identifier")
    if name in RESERVED_PARAMETERS:
        hint = "use --profile" if name == "profile" else "it is set by the builder"
        raise RramlibError(f"parameter {name!r} cannot be given with -p ({hint})")
    for convert in (int, float):
        try:
            return name, convert(value)
        except ValueError:
            pass
    lowered = value.lower()
    if lowered in ("true", "false"):
        return name, lowered == "true"
    if lowered in ("none", "null"):
        return name, None
    if value.strip()[:1] in ("[", "{"):
        import yaml

        try:
            return name, yaml.safe_load(value)
        except yaml.YAMLError as exc:
            raise RramlibError(f"parameter {name}: cannot read {value!r} as a list or mapping ({exc})") from None
    if ("/" in value or "." in value) and Path(value).exists():
        return name, str(Path(value).resolve())
    return name, value


def declared_parameters(nb) -> list[str]:
    """Names assigned in a notebook's cell tagged ``parameters`` (empty if it has none)."""
    import ast

    for cell in nb["cells"] if isinstance(nb, Mapping) else nb.cells:
        if "parameters" in cell.get("metadata", {}).get("tags", []):
            try:
                tree = ast.parse(_join(cell["source"]))
            except SyntaxError:
                return []
            names = []
            for node in tree.body:
                targets = node.targets if isinstance(node, ast.Assign) else \
                    [node.target] if isinstance(node, ast.AnnAssign) else []
                names += [t.id for t in targets if isinstance(t, ast.Name)]
            return names
    return []


def source_files(package_dir: Path = PACKAGE_DIR) -> dict[str, bytes]:
    """Every rramlib source file (``*.py`` in all subpackages, and the bundled data tables), by path.

    The builder itself (``book.py``) is left out, so that working on it does not re-execute every
    notebook; what it changes in the notebooks' execution is versioned by :data:`KEY_VERSION`.
    """
    files = {}
    for path in sorted(package_dir.rglob("*")):
        if path.is_file() and path.suffix in (".py", ".csv") and "__pycache__" not in path.parts \
                and path != Path(__file__).resolve():
            files[path.relative_to(package_dir).as_posix()] = path.read_bytes()
    return files


def build_key(notebook_source: bytes, parameters: Mapping[str, object], sources: Mapping[str, bytes],
              version: str = __version__, upstream: Mapping[str, str] | None = None) -> str:
    """SHA-256 of everything an executed notebook depends on.

    ``notebook_source``: the notebook file's bytes; ``parameters``: what papermill injects;
    ``sources``: :func:`source_files`; ``upstream``: build keys of the notebooks whose results this
    one reads (empty for most). Every field is length-prefixed, so no two inputs collide by
    concatenation.
    """
    h = hashlib.sha256()

    def feed(data: bytes) -> None:
        h.update(len(data).to_bytes(8, "little"))
        h.update(data)

    feed(KEY_VERSION)
    feed(notebook_source)
    feed(json.dumps(dict(parameters), sort_keys=True, default=repr).encode())
    feed(str(len(sources)).encode())
    for name in sorted(sources):
        feed(name.encode())
        feed(sources[name])
    feed(version.encode())
    feed(json.dumps(dict(upstream or {}), sort_keys=True).encode())
    return h.hexdigest()


def reads_other_results(notebook_source: bytes) -> bool:
    """Does the notebook read other notebooks' results (``load_results`` or ``build_times.json``)?"""
    return b"load_results" in notebook_source or b"build_times" in notebook_source


# --------------------------------------------------------------------------------------------------
# executing one notebook

def _kernel_env(cache_dir: Path) -> dict[str, str]:
    """Environment of the kernels: shared results cache, this checkout first on the path."""
    env = {"RRAMLIB_CACHE": str(cache_dir)}
    path = os.environ.get("PYTHONPATH")
    env["PYTHONPATH"] = str(REPO_ROOT) + (os.pathsep + path if path else "")
    # tqdm.auto warns (with the absolute path of the importing file) when ipywidgets is missing
    warnings = os.environ.get("PYTHONWARNINGS")
    env["PYTHONWARNINGS"] = "ignore:IProgress not found" + ("," + warnings if warnings else "")
    # the kernelspec of this environment first (a user-level "python3" could be another Python)
    jupyter_path = os.environ.get("JUPYTER_PATH")
    env["JUPYTER_PATH"] = str(Path(sys.prefix) / "share" / "jupyter") + (os.pathsep + jupyter_path if jupyter_path
                                                                         else "")
    env["PYDEVD_DISABLE_FILE_VALIDATION"] = "1"  # debugger notice on stderr, irrelevant here
    return env


@contextlib.contextmanager
def _environment(updates: Mapping[str, str], remove: Iterable[str] = ()):
    """Set environment variables for the kernels started inside the block, then restore them."""
    saved = {k: os.environ.get(k) for k in [*updates, *remove]}
    try:
        os.environ.update(updates)
        for k in remove:
            os.environ.pop(k, None)
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def execute_notebook(source: Path, output: Path, parameters: Mapping[str, object], *,
                     cwd: Path | None = None, cache_dir: Path | None = None,
                     metadata: Mapping[str, object] | None = None, timeout: float | None = None) -> float:
    """Execute ``source`` with papermill into ``output``; returns the wall seconds.

    The kernel (``python3``) runs in ``cwd`` (default: the output's folder) with the shared results
    cache and this checkout's rramlib. ``metadata`` is stored under ``metadata.rramlib`` of the
    executed notebook. Raises :class:`NotebookError` when a cell raises.
    """
    import nbformat
    import papermill
    from papermill.exceptions import PapermillExecutionError

    source, output = Path(source).resolve(), Path(output).resolve()
    cwd = Path(cwd).resolve() if cwd is not None else output.parent
    cwd.mkdir(parents=True, exist_ok=True)
    output.parent.mkdir(parents=True, exist_ok=True)
    cache_dir = Path(cache_dir or os.environ.get("RRAMLIB_CACHE") or REPO_ROOT / ".rramlib_cache").resolve()
    name = source.stem
    # MPLBACKEND=Agg in the environment would make every figure vanish from the book
    start = time.perf_counter()
    try:
        with _environment(_kernel_env(cache_dir), remove=("MPLBACKEND",)):
            papermill.execute_notebook(
                str(source), str(output), parameters=dict(parameters), kernel_name=KERNEL_NAME,
                cwd=str(cwd), progress_bar=False, log_output=False, report_mode=False,
                execution_timeout=timeout, extra_arguments=["--IPKernelApp.log_level=CRITICAL"],
            )
    except PapermillExecutionError as exc:
        raise NotebookError(name, exc.ename, exc.evalue, exc.exec_count,
                            _ANSI.sub("", "\n".join(exc.traceback or [])), output) from None
    except Exception as exc:  # kernel died, notebook unreadable, ...
        raise BookError(f"notebook {name} could not be executed: {type(exc).__name__}: {exc}") from None
    seconds = time.perf_counter() - start
    nb = nbformat.read(output, as_version=4)
    pm = nb.metadata.get("papermill", {})
    # papermill stores the absolute paths it was given
    inside = source.is_relative_to(REPO_ROOT)
    pm["input_path"] = source.relative_to(REPO_ROOT).as_posix() if inside else source.name
    pm["output_path"] = output.name
    nb.metadata["rramlib"] = {**(metadata or {}), "seconds": round(seconds, 3)}
    _write_notebook(nb, output)
    return seconds


def _write_notebook(nb, path: Path) -> None:
    import nbformat

    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        nbformat.write(nb, f)
    os.replace(tmp, path)


# --------------------------------------------------------------------------------------------------
# checks on executed notebooks and on the HTML

_TEXT_MIME = re.compile(r"^(text/|application/(json|javascript|x-latex|vnd\.)|image/svg)")


def _output_texts(nb) -> Iterable[tuple[int, str]]:
    cells = nb["cells"] if isinstance(nb, Mapping) else nb.cells
    for index, cell in enumerate(cells):
        for out in cell.get("outputs", []) or []:
            kind = out.get("output_type")
            if kind == "stream":
                yield index, _join(out.get("text", ""))
            elif kind == "error":
                yield index, "\n".join([out.get("ename", ""), out.get("evalue", ""), *out.get("traceback", [])])
            else:
                for mime, data in (out.get("data") or {}).items():
                    if _TEXT_MIME.match(mime):
                        yield index, data if isinstance(data, str) else _join(data) if isinstance(data, list) \
                            else json.dumps(data)


def _join(text) -> str:
    return "".join(text) if isinstance(text, list) else str(text)


def forbidden_strings() -> list[str]:
    """What :func:`scan_outputs` looks for: absolute paths of this machine, and its host name."""
    items = list(FORBIDDEN_IN_OUTPUTS)
    for path in (REPO_ROOT, Path.home()):
        text = str(path)
        if len(text) > 1 and not any(text.startswith(f.rstrip("/")) for f in items):
            items.append(text)
    return items


def scan_outputs(nb, forbidden: Iterable[str] | None = None, hostname: str | None = None,
                 allowed: Iterable[str] = ()) -> list[str]:
    """Absolute paths and the host name found in a notebook's outputs, as readable findings.

    ``nb`` is a notebook node (or the dict of an ``.ipynb``). Binary outputs (PNG, PDF) are skipped;
    the host name counts only as a whole word (it may be short, e.g. ``vm``). ``allowed``: strings
    removed before scanning (the values the user passed with ``-p``, e.g. a data folder).
    """
    allowed = sorted((a for a in allowed if a), key=len, reverse=True)
    forbidden = list(forbidden_strings() if forbidden is None else forbidden)
    hostname = socket.gethostname() if hostname is None else hostname
    host_re = (re.compile(r"(?<![A-Za-z0-9_\-.])" + re.escape(hostname) + r"(?![A-Za-z0-9_\-])")
               if hostname else None)
    findings = []
    for cell, text in _output_texts(nb):
        text = _ANSI.sub("", text)
        for a in allowed:
            text = text.replace(a, "<parameter>")
        for needle in forbidden:
            pos = text.find(needle)
            if pos >= 0:
                findings.append(f"cell {cell}: {needle!r} in output: {_context(text, pos)}")
        if host_re is not None:
            match = host_re.search(text)
            if match:
                findings.append(f"cell {cell}: host name {hostname!r} in output: {_context(text, match.start())}")
    return findings


def _context(text: str, pos: int, width: int = 60) -> str:
    return repr(text[max(0, pos - width // 2): pos + width].replace("\n", " "))


_EXTERNAL_LOAD = re.compile(
    r"""<script[^>]+src=["'](?:https?:)?//|<link[^>]+href=["'](?:https?:)?//[^"']+\.(?:css|js)|"""
    r"""@import\s+url\(["']?(?:https?:)?//|cdn\.jsdelivr|cdnjs\.cloudflare|unpkg\.com|fonts\.googleapis""",
    re.IGNORECASE)


def check_offline(html_dir: Path) -> list[str]:
    """Pages of the built book that load a script, stylesheet or font from another host."""
    html_dir = Path(html_dir)
    problems = []
    for page in sorted(html_dir.rglob("*.html")):
        text = page.read_text(encoding="utf-8", errors="replace")
        for match in _EXTERNAL_LOAD.finditer(text):
            problems.append(f"{page.relative_to(html_dir)}: {_context(text, match.start(), 100)}")
    if not (html_dir / "_static" / "mathjax" / "tex-chtml.js").exists():
        problems.append("_static/mathjax/tex-chtml.js is missing: MathJax is not served locally")
    index = html_dir / "index.html"
    if index.exists():
        scripts = re.findall(r"<script[^>]+src=[\"']([^\"']+)", index.read_text(encoding="utf-8", errors="replace"))
        mathjax = [s for s in scripts if "mathjax" in s.lower()]
        if len(mathjax) > 1:
            problems.append(f"index.html loads {len(mathjax)} MathJax scripts (expected one): {mathjax[:3]}")
    return problems


# --------------------------------------------------------------------------------------------------
# glue keys (static scan; used by the tests and as an early warning by the builder)

_GLUE_CALL = re.compile(r"""(?:\.(?:number|table)|\bglue)\(\s*(f?)(["'])(.*?)\2""")
_REPORT_NAME = re.compile(r"""\bReport\(\s*(f?)(["'])(.*?)\2""")
_GLUE_ROLE = re.compile(r"""\{glue(?::(\w*))?\}`([^`]+)`""")
_GLUE_DIRECTIVE = re.compile(r"""^\s*(?:`{3,}|:{3,})\s*\{glue(?::(\w*))?\}\s+(\S+)""", re.MULTILINE)


def _key_pattern(is_f: str, text: str) -> re.Pattern:
    if not is_f:
        return re.compile(re.escape(text) + r"\Z")
    parts = re.split(r"\{[^{}]*\}", text)  # f"acc_{name}" matches any acc_...
    return re.compile(".+".join(re.escape(p) for p in parts) + r"\Z")


def glued_keys(nb, name: str | None = None) -> list[re.Pattern]:
    """Patterns of the keys a notebook's code cells glue: ``report.number("k"``, ``report.table("k"``,
    ``glue("k"`` (f-strings become wildcards), plus ``<report>_runtime_s`` / ``_peak_rss_mb`` when
    ``.finish()`` is called (the report's name, else the notebook's)."""
    cells = nb["cells"] if isinstance(nb, Mapping) else nb.cells
    code = "\n".join(_join(c["source"]) for c in cells if c["cell_type"] == "code")
    patterns = [_key_pattern(f, key) for f, _, key in _GLUE_CALL.findall(code)]
    if ".finish(" in code:
        names = [_key_pattern(f, key) for f, _, key in _REPORT_NAME.findall(code)]
        stems = [p.pattern[:-2].replace("\\", "") for p in names] or ([name] if name else [])
        for stem in stems:
            for suffix in ("_runtime_s", "_peak_rss_mb"):
                patterns.append(re.compile(re.escape(stem + suffix) + r"\Z"))
    return patterns


def glue_references(markdown: str) -> list[tuple[str | None, str, str]]:
    """``(document, key, kind)`` for every glue role or directive in MyST markdown.

    ``document`` is the path before ``::`` (another page's notebook) or None (this page)."""
    refs = []
    for kind, content in _GLUE_ROLE.findall(markdown):
        refs.append((*_split_ref(content, kind), kind or "any"))
    for kind, content in _GLUE_DIRECTIVE.findall(markdown):
        refs.append((*_split_ref(content, ""), kind or "any"))
    return refs


def _split_ref(content: str, kind: str) -> tuple[str | None, str]:
    doc, key = (content.split("::", 1) if "::" in content else (None, content))
    if kind == "text":
        key = key.split(":", 1)[0]  # key:format_spec
    return doc, key.strip()


# --------------------------------------------------------------------------------------------------
# staging

def notebook_paths(notebooks_dir: Path = NOTEBOOK_DIR) -> list[Path]:
    """The book's notebooks, ``NN_name.ipynb``, in name order."""
    return sorted(p for p in Path(notebooks_dir).glob("*.ipynb") if NOTEBOOK_RE.match(p.name))


def _write_if_changed(path: Path, data: bytes) -> bool:
    if path.exists() and path.read_bytes() == data:
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.replace(tmp, path)
    return True


def _sync_tree(source: Path, target: Path, skip: Callable[[Path], bool] = lambda p: False) -> None:
    """Copy files that differ (unchanged files keep their time stamps, so Sphinx does not re-read them)."""
    for path in sorted(source.rglob("*")):
        rel = path.relative_to(source)
        if path.is_file() and not skip(rel) and "__pycache__" not in rel.parts and ".ipynb_checkpoints" \
                not in rel.parts:
            dest = target / rel
            if not dest.exists() or dest.read_bytes() != path.read_bytes():
                dest.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(path, dest)


def make_toc(toc: dict, notebooks: Iterable[str]) -> tuple[dict, list[str]]:
    """The static table of contents limited to the notebooks that exist.

    ``notebooks``: stems (``01_drift_models``). Entries ``notebooks/<stem>`` of missing notebooks are
    dropped (and parts left empty); notebooks the toc does not list are appended in a part
    :data:`EXTRA_PART`. Returns the toc and the stems that were appended.
    """
    present = {f"notebooks/{stem}" for stem in notebooks}
    listed: set[str] = set()

    def keep(entry: dict) -> dict | None:
        entry = dict(entry)
        file = entry.get("file")
        if file is not None:
            file = re.sub(r"\.(ipynb|md)$", "", file)
            if file.startswith("notebooks/"):
                if file not in present:
                    return None
                listed.add(file)
        for key in ("sections", "chapters"):
            if key in entry:
                entry[key] = [e for e in (keep(x) for x in entry[key]) if e is not None]
                if not entry[key]:
                    del entry[key]
                    if file is None and "glob" not in entry and "url" not in entry:
                        return None
        return entry

    out = {k: v for k, v in toc.items() if k not in ("parts", "chapters")}
    if "parts" in toc:
        out["parts"] = [p for p in (keep(part) for part in toc["parts"]) if p is not None]
    if "chapters" in toc:
        out["chapters"] = [c for c in (keep(ch) for ch in toc["chapters"]) if c is not None]
    extra = sorted(present - listed)
    if extra:
        chapters = [{"file": f} for f in extra]
        if "parts" in out:
            out["parts"].append({"caption": EXTRA_PART, "chapters": chapters})
        else:
            out.setdefault("chapters", []).extend(chapters)
    return out, [f.split("/", 1)[1] for f in extra]


def _missing_notebooks(toc: dict, notebooks: Iterable[str]) -> list[str]:
    """Stems of the notebooks the static toc lists that do not exist."""
    listed = re.findall(r"notebooks/(\d\d_[A-Za-z0-9_\-]+)", json.dumps(toc))
    present = set(notebooks)
    return [stem for stem in dict.fromkeys(listed) if stem not in present]


def citation_bibtex(cff: dict) -> str:
    """BibTeX entries for the software and the studies listed in a CITATION.cff mapping."""
    def authors(items) -> str:
        names = []
        for a in items or []:
            if "family-names" in a:
                names.append(f"{a['family-names']}, {a.get('given-names', '')}".strip(", "))
            elif "name" in a:
                names.append("{" + a["name"] + "}")
        return " and ".join(names)

    def key(item, fallback) -> str:
        first = (item.get("authors") or [{}])[0]
        family = re.sub(r"\W", "", str(first.get("family-names", first.get("name", fallback)))).lower()
        word = re.sub(r"\W", "", str(item.get("title", "")).split(":")[0].split()[0]).lower()
        return f"{family}{item.get('year', '')}{word}"

    def year(item):
        return item.get("year") or str(item.get("date-released", ""))[:4] or None

    entries = []
    software = {"title": cff.get("title"), "author": authors(cff.get("authors")), "version": cff.get("version"),
                "year": year(cff), "license": cff.get("license"), "url": cff.get("repository-code") or cff.get("url")}
    entries.append(("software", "rramlib", software))
    for ref in cff.get("references") or []:
        fields = {"title": ref.get("title"), "author": authors(ref.get("authors")), "year": year(ref),
                  "journal": ref.get("journal"), "doi": ref.get("doi"), "url": ref.get("url")}
        kind = "article" if ref.get("journal") else "misc"
        entries.append((kind, key(ref, "anon"), fields))
    lines = []
    for kind, k, fields in entries:
        lines.append(f"@{kind}{{{k},")
        lines += [f"  {name} = {{{value}}}," for name, value in fields.items() if value]
        lines.append("}\n")
    return "\n".join(lines)


def _mathjax_dir() -> Path:
    """MathJax 3 (``es5`` build) from the ``django-static-mathjax`` wheel (no Django needed)."""
    import importlib.util

    spec = importlib.util.find_spec("mathjax")
    roots = [Path(p) for p in (spec.submodule_search_locations or [])] if spec else []
    for root in roots:
        es5 = root / "static" / "mathjax" / "es5"
        if (es5 / "tex-chtml.js").exists():
            return es5
    raise BookError("MathJax 3 not found; install the book dependencies: pip install -e '.[book]' "
                    "(MathJax comes from the django-static-mathjax package)")


#: MathJax parts the book needs: TeX input (extensions load on demand), CommonHTML output with its
#: fonts, the menu and its accessibility tools.
_MATHJAX_PARTS = ("tex-chtml.js", "input", "output/chtml", "output/chtml.js", "ui", "a11y", "sre", "adaptors")


def _stage_mathjax(target: Path) -> None:
    es5 = _mathjax_dir()
    stamp = target / ".rramlib-mathjax"
    version = json.loads((es5.parent / "package.json").read_text()).get("version", "?")
    if stamp.exists() and stamp.read_text() == version:
        return
    if target.exists():
        shutil.rmtree(target)
    for part in _MATHJAX_PARTS:
        src = es5 / part
        if src.is_dir():
            shutil.copytree(src, target / part)
        elif src.exists():
            (target / part).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, target / part)
    stamp.write_text(version)


def _stage_static(book_dir: Path, src: Path) -> None:
    import yaml

    if not (book_dir / "_config.yml").exists():
        raise BookError(f"no book configuration {book_dir / '_config.yml'}: the book is built from a checkout "
                        "of the rramlib repository (installed in editable mode: pip install -e '.[book]')")
    _sync_tree(book_dir, src, skip=lambda rel: rel.as_posix() in ("_toc.yml", "_config.yml"))
    # static files removed from book/ must not linger in the staged tree
    managed = {"notebooks", "results", "_build", ASSETS, "_toc.yml", "CITATION.cff", "citation.bib"}
    for path in src.iterdir():
        if path.name not in managed and not (book_dir / path.name).exists() and not path.name.startswith("."):
            shutil.rmtree(path) if path.is_dir() else path.unlink()
    cff_path = REPO_ROOT / "CITATION.cff"
    if cff_path.exists():
        _write_if_changed(src / "CITATION.cff", cff_path.read_bytes())
        _write_if_changed(src / "citation.bib", citation_bibtex(yaml.safe_load(cff_path.read_text())).encode())
    if (book_dir / "_static").exists():
        raise BookError("book/_static is not supported: Jupyter Book 1.x would add every script in it to every "
                        f"page; put static files in book/{ASSETS}/ and list CSS in html_css_files")
    _stage_mathjax(src / ASSETS / "mathjax")


# --------------------------------------------------------------------------------------------------
# the build

@dataclass
class NotebookRun:
    name: str
    seconds: float
    cached: bool
    key: str
    executed_seconds: float | None = None


@dataclass
class BuildResult:
    profile: str
    out: Path
    runs: list[NotebookRun] = field(default_factory=list)
    html: Path | None = None
    seconds: float = 0.0


def _check_profile(profile: str) -> None:
    from .errors import check_choice
    from .experiments import PROFILES

    check_choice("profile", profile, PROFILES)


def _check_tools(html: bool) -> None:
    import importlib.util

    needed = ["papermill", "nbformat"] + (["jupyter_book"] if html else [])
    missing = [m for m in needed if importlib.util.find_spec(m) is None]
    if missing:
        raise BookError(f"missing {', '.join(missing)}; install the book dependencies: pip install -e '.[book]'")


def _cached_run(executed: Path, key: str, results: Path) -> float | None:
    """The last execution time when ``executed`` holds ``key`` and the results file exists, else None."""
    if not executed.exists() or not results.exists():
        return None
    try:
        meta = json.loads(executed.read_text(encoding="utf-8")).get("metadata", {}).get("rramlib", {})
    except (OSError, ValueError):
        return None
    return meta.get("seconds", 0.0) if meta.get("build_key") == key else None


def _write_times(path: Path, profile: str, runs: list[NotebookRun], extra: dict | None = None) -> None:
    payload = {"profile": profile, "rramlib_version": __version__, "notebooks": {
        r.name: {"seconds": round(r.seconds, 3), "cached": r.cached, "executed_seconds":
                 None if r.executed_seconds is None else round(r.executed_seconds, 3)} for r in runs}}
    payload.update(extra or {})
    _write_if_changed(path, (json.dumps(payload, indent=1) + "\n").encode())


def _warn_unglued(notebooks: list[Path], book_dir: Path, log: Callable[..., None]) -> None:
    """Early warning for glue references that no code cell glues (Sphinx would fail on them later)."""
    import nbformat

    glued, problems = {}, []
    for path in notebooks:
        nb = nbformat.read(path, as_version=4)
        glued[f"notebooks/{path.stem}"] = (nb, glued_keys(nb, path.stem))
    for doc, (nb, patterns) in glued.items():
        for cell in nb.cells:
            if cell.cell_type == "markdown":
                problems += _unresolved(doc, cell.source, glued)
    for page in sorted(book_dir.glob("*.md")):
        problems += _unresolved(page.stem, page.read_text(encoding="utf-8"), glued)
    for p in problems:
        log(f"warning: {p}")


def _unresolved(doc: str, text: str, glued: dict) -> list[str]:
    out = []
    for ref_doc, key, kind in glue_references(text):
        target = doc if ref_doc is None else os.path.normpath(
            os.path.join(os.path.dirname(doc), ref_doc.lstrip("/")) if not ref_doc.startswith("/")
            else ref_doc.lstrip("/"))
        target = re.sub(r"\.ipynb$", "", target)
        if target not in glued:
            out.append(f"{doc}: glue {key!r} refers to {target!r}, which is not a notebook of the book")
        elif not any(p.match(key) for p in glued[target][1]):
            out.append(f"{doc}: glue key {key!r} is not glued by any code cell of {target}")
    return out


def _print(message: str, end: str = "\n") -> None:
    print(message, end=end, flush=True)


def build(profile: str = "quick", out: str | os.PathLike | None = None, *, force: bool = False,
          parameters: Mapping[str, object] | None = None, html: bool = True,
          notebooks_dir: Path = NOTEBOOK_DIR, book_dir: Path = BOOK_DIR, log: Callable[..., None] = _print,
          ) -> BuildResult:
    """Stage, execute (cached) and build the book; see the module docstring. Returns what was done."""
    start = time.perf_counter()
    _check_profile(profile)
    extra = dict(parameters or {})
    for name in extra:
        parse_parameter(name, "x")  # name checks (reserved names, identifiers)
    _check_tools(html)
    import nbformat
    import yaml

    notebooks = notebook_paths(notebooks_dir)
    declared = {p.stem: set(declared_parameters(nbformat.read(p, as_version=4))) for p in notebooks}
    unknown = sorted(set(extra) - set().union(*declared.values()))
    if unknown:
        known = sorted(set().union(*declared.values()) - set(RESERVED_PARAMETERS))
        raise RramlibError(f"no notebook has the parameter(s) {', '.join(unknown)}; "
                           f"the notebooks' parameters: {', '.join(known)}")
    out = Path(out) if out is not None else REPO_ROOT / "_build" / "book" / profile
    out = out.resolve()
    src = out / "src"
    nb_out, results = src / "notebooks", src / "results"
    for d in (nb_out, results / "figures"):
        d.mkdir(parents=True, exist_ok=True)

    _stage_static(Path(book_dir), src)
    stems = [p.stem for p in notebooks]
    for stale in nb_out.glob("*.ipynb"):
        if stale.stem not in stems:
            stale.unlink()
    toc, appended = make_toc(yaml.safe_load((Path(book_dir) / "_toc.yml").read_text()), stems)
    if appended:
        log(f"note: notebooks not listed in book/_toc.yml, added under '{EXTRA_PART}': {', '.join(appended)}")
    _write_if_changed(src / "_toc.yml", yaml.safe_dump(toc, sort_keys=False).encode())
    missing = _missing_notebooks(yaml.safe_load((Path(book_dir) / "_toc.yml").read_text()), stems)
    config = yaml.safe_load((Path(book_dir) / "_config.yml").read_text())
    if missing:
        # links to chapters not written yet cannot resolve; every other warning still fails the build
        log(f"note: {len(missing)} notebook(s) of book/_toc.yml missing ({', '.join(missing)}): left out, "
            "and links to them are not checked")
        sphinx_config = config.setdefault("sphinx", {}).setdefault("config", {})
        sphinx_config["suppress_warnings"] = sorted({*sphinx_config.get("suppress_warnings", ["myst.domains"]),
                                                     "myst.xref_missing", "ref.doc", "myst.domains"})
    _write_if_changed(src / "_config.yml", yaml.safe_dump(config, sort_keys=False).encode())
    _warn_unglued(notebooks, Path(book_dir), log)

    cache_dir = Path(os.environ.get("RRAMLIB_CACHE") or REPO_ROOT / ".rramlib_cache").resolve()
    cache_dir.mkdir(parents=True, exist_ok=True)
    sources = source_files()
    result = BuildResult(profile=profile, out=out)
    times_path = results / "build_times.json"
    keys: dict[str, str] = {}
    log(f"book ({profile}): {len(notebooks)} notebook(s), results cache {cache_dir}")
    for i, path in enumerate(notebooks, 1):
        raw = path.read_bytes()
        # a notebook gets (and its key depends on) only the extra parameters it declares
        params = {"profile": profile, "out_dir": OUT_DIR_PARAM,
                  **{k: v for k, v in extra.items() if k in declared[path.stem]}}
        upstream = dict(keys) if reads_other_results(raw) else {}
        key = build_key(raw, params, sources, __version__, upstream)
        keys[path.stem] = key
        executed = nb_out / path.name
        label = f"  [{i}/{len(notebooks)}] {path.stem:<28}"
        t0 = time.perf_counter()
        previous = None if force else _cached_run(executed, key, results / f"{path.stem}.json")
        if previous is not None:
            run = NotebookRun(path.stem, time.perf_counter() - t0, True, key, previous)
            log(f"{label} {run.seconds:7.1f} s  cached (last run {previous:.1f} s)")
        else:
            log(label, end="")
            try:
                seconds = execute_notebook(path, executed, params, cwd=nb_out, cache_dir=cache_dir,
                                           metadata={"build_key": key, "profile": profile,
                                                     "parameters": params, "rramlib_version": __version__})
            except BookError:
                log(" failed")
                _write_times(times_path, profile, result.runs)
                raise
            run = NotebookRun(path.stem, seconds, False, key, seconds)
            log(f" {seconds:7.1f} s")
            if not (results / f"{path.stem}.json").exists():
                raise BookError(f"notebook {path.stem} wrote no results/{path.stem}.json: create its report "
                                f"as Report({path.stem!r}, params, out_dir) and call report.finish() last")
        findings = scan_outputs(nbformat.read(executed, as_version=4),
                                allowed=[str(v) for v in extra.values() if isinstance(v, str)])
        if findings:
            raise BookError(f"notebook {path.stem} shows machine-specific text in its outputs "
                            f"({executed}):\n  " + "\n  ".join(findings[:10]))
        result.runs.append(run)
        _write_times(times_path, profile, result.runs)
    notebooks_s = time.perf_counter() - start
    if html:
        t0 = time.perf_counter()
        result.html = build_html(src, log=log)
        _write_times(times_path, profile, result.runs,
                     {"notebooks_total_s": round(notebooks_s, 3), "html_s": round(time.perf_counter() - t0, 3)})
    result.seconds = time.perf_counter() - start
    return result


def build_html(src: Path, log: Callable[..., None] = _print) -> Path:
    """Jupyter Book 1.x HTML of the staged tree, warnings as errors, then the offline check."""
    build_dir = src / "_build"
    html_dir = build_dir / "html"
    ok_stamp = build_dir / ".rramlib-html-ok"
    # after a failed build Sphinx's saved environment would not repeat the warnings: start afresh
    fresh = not ok_stamp.exists()
    ok_stamp.unlink(missing_ok=True)
    cmd = [sys.executable, "-c", "import sys; from jupyter_book.cli.main import main; sys.exit(main())",
           "build", str(src), "--builder", "html", "-W", "--keep-going"] + (["--all"] if fresh else [])
    log_path = src.parent / "jupyter-book.log"
    t0 = time.perf_counter()
    env = {k: v for k, v in os.environ.items() if k != "MPLBACKEND"}
    with open(log_path, "w") as f:
        proc = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, env=env, cwd=src)
    text = _ANSI.sub("", log_path.read_text(errors="replace"))
    if proc.returncode != 0:
        issues = [line for line in text.splitlines() if re.search(r"WARNING|ERROR|Error|error:", line)]
        shown = "\n  ".join(issues[-40:]) or "\n  ".join(text.splitlines()[-30:])
        raise BookError(f"Jupyter Book failed (warnings are errors); full log: {log_path}\n  {shown}")
    problems = check_offline(html_dir)
    if problems:
        raise BookError("the book would need the network:\n  " + "\n  ".join(problems[:20]))
    ok_stamp.write_text("ok\n")
    index = html_dir / "index.html"
    log(f"  html {time.perf_counter() - t0:35.1f} s")
    log(f"book: {_display(index)}")
    return index


def _display(path: Path) -> str:
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)
