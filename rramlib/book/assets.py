"""Staging the book's source tree: static chapters, CSS, citation files, and a local MathJax 3."""
from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

from rramlib.core.files import atomic_write
from rramlib.book.citation import citation_bibtex
from rramlib.book.errors import BookError
from rramlib.book.execute import REPO_ROOT

__all__ = ["ASSETS", "write_if_changed", "stage_static", "mathjax_dir"]

#: Static folder of the staged book (``html_static_path``); not ``_static``, which Jupyter Book 1.x
#: scans to add every ``.js`` file in it to every page (MathJax has hundreds).
ASSETS = "_assets"


def write_if_changed(path: Path, data: bytes) -> bool:
    """Write ``data`` atomically unless the file already holds it (an unchanged file keeps its time stamp,
    so Sphinx does not read it again); returns whether it wrote."""
    if path.exists() and path.read_bytes() == data:
        return False
    atomic_write(path, data)
    return True


def sync_tree(source: Path, target: Path, skip: Callable[[Path], bool] = lambda p: False) -> None:
    """Copy files that differ (unchanged files keep their time stamps, so Sphinx does not re-read them)."""
    for path in sorted(source.rglob("*")):
        rel = path.relative_to(source)
        if path.is_file() and not skip(rel) and "__pycache__" not in rel.parts and ".ipynb_checkpoints" \
                not in rel.parts:
            dest = target / rel
            if not dest.exists() or dest.read_bytes() != path.read_bytes():
                dest.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(path, dest)


def mathjax_dir() -> Path:
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
    es5 = mathjax_dir()
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


#: Reference wall times per profile (``{profile: build_times.json of a cold build}``) that order a first build
#: (:func:`rramlib.book.builder.expected_seconds`); builder input, not a page.
EXPECTED_TIMES = "_expected_times.json"


def stage_static(book_dir: Path, src: Path) -> None:
    """Copy ``book/`` (less its toc and config, which the builder writes) into ``src``, with CITATION.cff,
    its BibTeX and MathJax; drop staged files whose source is gone."""
    if not (book_dir / "_config.yml").exists():
        raise BookError(f"no book configuration {book_dir / '_config.yml'}: the book is built from a checkout "
                        "of the rramlib repository (installed in editable mode: pip install -e '.[book]')")
    sync_tree(book_dir, src, skip=lambda rel: rel.as_posix() in ("_toc.yml", "_config.yml", EXPECTED_TIMES))
    # static files removed from book/ must not linger in the staged tree
    managed = {"notebooks", "results", "_build", ASSETS, "_toc.yml", "CITATION.cff", "citation.bib"}
    for path in src.iterdir():
        if path.name not in managed and not (book_dir / path.name).exists() and not path.name.startswith("."):
            shutil.rmtree(path) if path.is_dir() else path.unlink()
    cff_path = REPO_ROOT / "CITATION.cff"
    if cff_path.exists():
        write_if_changed(src / "CITATION.cff", cff_path.read_bytes())
        write_if_changed(src / "citation.bib", citation_bibtex(cff_path.read_text()).encode())
    if (book_dir / "_static").exists():
        raise BookError("book/_static is not supported: Jupyter Book 1.x would add every script in it to every "
                        f"page; put static files in book/{ASSETS}/ and list CSS in html_css_files")
    _stage_mathjax(src / ASSETS / "mathjax")
