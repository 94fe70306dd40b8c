"""The table of contents: ``book/_toc.yml`` limited to the notebooks that exist.

Chapters are added to the book by listing them in ``book/_toc.yml`` (``- file: notebooks/NN_name`` or
``- file: page`` for a static page in ``book/``). A notebook the toc does not list still appears, in a
last part :data:`EXTRA_PART`; a listed notebook that does not exist yet is left out.
"""
from __future__ import annotations

import json
import re
from collections.abc import Iterable
from pathlib import Path

__all__ = ["NOTEBOOK_RE", "EXTRA_PART", "notebook_paths", "make_toc", "missing_notebooks"]

NOTEBOOK_RE = re.compile(r"^\d\d_[A-Za-z0-9_\-]+\.ipynb$")
#: Part of the table of contents that takes notebooks the static ``book/_toc.yml`` does not list.
EXTRA_PART = "More notebooks"


def notebook_paths(notebooks_dir: Path) -> list[Path]:
    """The book's notebooks, ``NN_name.ipynb``, in name order."""
    return sorted(p for p in Path(notebooks_dir).glob("*.ipynb") if NOTEBOOK_RE.match(p.name))


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


def missing_notebooks(toc: dict, notebooks: Iterable[str]) -> list[str]:
    """Stems of the notebooks the static toc lists that do not exist."""
    listed = re.findall(r"notebooks/(\d\d_[A-Za-z0-9_\-]+)", json.dumps(toc))
    present = set(notebooks)
    return [stem for stem in dict.fromkeys(listed) if stem not in present]
