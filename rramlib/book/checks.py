"""Checks on executed notebooks (no machine-specific text in outputs, glue keys) and on the HTML (offline)."""
from __future__ import annotations

import json
import os
import re
import socket
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

from rramlib.book.execute import ANSI, REPO_ROOT
from rramlib.book.parameters import cells

__all__ = ["FORBIDDEN_IN_OUTPUTS", "forbidden_strings", "scan_outputs", "check_offline", "glued_keys",
           "glue_references", "unresolved_glue", "warn_unglued"]

#: Strings that must never appear in an executed notebook's outputs (the host name is added).
FORBIDDEN_IN_OUTPUTS = ("/work/", "/home/", "/tmp/")

_TEXT_MIME = re.compile(r"^(text/|application/(json|javascript|x-latex|vnd\.)|image/svg)")


def _output_texts(nb) -> Iterable[tuple[int, str]]:
    for index, cell in enumerate(cells(nb)):
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
        text = ANSI.sub("", text)
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
    code = "\n".join(_join(c["source"]) for c in cells(nb) if c["cell_type"] == "code")
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


def unresolved_glue(doc: str, text: str, glued: Mapping[str, tuple[object, list[re.Pattern]]]) -> list[str]:
    """Glue references in the markdown ``text`` of page ``doc`` that no code cell glues.

    ``glued``: ``{"notebooks/<stem>": (notebook, glued_keys(notebook))}``."""
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


def warn_unglued(notebooks: list[Path], book_dir: Path, log: Callable[..., None]) -> None:
    """Early warning for glue references that no code cell glues (Sphinx would fail on them later)."""
    import nbformat

    glued, problems = {}, []
    for path in notebooks:
        nb = nbformat.read(path, as_version=4)
        glued[f"notebooks/{path.stem}"] = (nb, glued_keys(nb, path.stem))
    for doc, (nb, _) in glued.items():
        for cell in nb.cells:
            if cell.cell_type == "markdown":
                problems += unresolved_glue(doc, cell.source, glued)
    for page in sorted(Path(book_dir).glob("*.md")):
        problems += unresolved_glue(page.stem, page.read_text(encoding="utf-8"), glued)
    for p in problems:
        log(f"warning: {p}")
