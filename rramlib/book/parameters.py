"""Notebook parameters: ``-p NAME VALUE`` as the builder reads it, and what a notebook declares.

A notebook declares its parameters in its one cell tagged ``parameters`` (papermill's convention), one
assignment per name, with a comment that says what it means::

    preset = "ibm_cmo_reram"     # drift model (see rramlib.device.drift)
"""
from __future__ import annotations

import ast
import io
import tokenize
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from rramlib.core.errors import RramlibError
from rramlib.core.params import check_name, parse_value

__all__ = ["RESERVED_PARAMETERS", "PLACEMENT_PARAMETERS", "Declared", "parse_parameter", "declared_parameters",
           "parameter_cell", "cells"]

#: Parameters every notebook receives from the builder; ``-p`` cannot set them.
RESERVED_PARAMETERS = ("profile", "out_dir")
#: Parameters that say where a notebook computes, not what (``scheduler``: the Dask cluster of its sweeps). The
#: results do not depend on them, so they stay out of the build key (a page computed on a cluster stays cached
#: for a build without one, and the other way round) and out of the page.
PLACEMENT_PARAMETERS = ("scheduler",)


def parse_parameter(name: str, value: str) -> tuple[str, object]:
    """``-p NAME VALUE``: the value read by :func:`rramlib.core.params.parse_value` (as papermill reads ``-p``,
    plus YAML lists and mappings); a string naming an existing file or folder (relative to the current
    directory) becomes an absolute path, since the notebooks run in the build folder."""
    check_name(name)
    if name in RESERVED_PARAMETERS:
        hint = "use --profile" if name == "profile" else "it is set by the builder"
        raise RramlibError(f"parameter {name!r} cannot be given with -p ({hint})")
    try:
        parsed = parse_value(value)
    except RramlibError as exc:
        raise RramlibError(f"parameter {name}: {exc}") from None
    if isinstance(parsed, str) and ("/" in value or "." in value) and Path(value).exists():
        return name, str(Path(value).resolve())
    return name, parsed


def cells(nb) -> list:
    """The cells of a notebook node or of the dict of an ``.ipynb``."""
    return nb["cells"] if isinstance(nb, Mapping) else nb.cells


def _source(cell) -> str:
    text = cell["source"]
    return "".join(text) if isinstance(text, list) else str(text)


def parameter_cell(nb):
    """The notebook's cell tagged ``parameters``, or None."""
    for cell in cells(nb):
        if "parameters" in cell.get("metadata", {}).get("tags", []):
            return cell
    return None


@dataclass(frozen=True)
class Declared:
    """One declared parameter: its name, its default as written, and the comment on its line(s)."""

    name: str
    default: str
    meaning: str


def declared_parameters(nb, details: bool = False) -> list:
    """Names assigned in the notebook's ``parameters`` cell, in order (empty if it has none or it does
    not parse); with ``details``, :class:`Declared` records instead of names."""
    cell = parameter_cell(nb)
    if cell is None:
        return []
    source = _source(cell)
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return []
    comments: dict[int, str] = {}
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type == tokenize.COMMENT:
            comments[tok.start[0]] = tok.string.lstrip("#").strip()
    found = []
    for node in tree.body:
        targets = node.targets if isinstance(node, ast.Assign) else \
            [node.target] if isinstance(node, ast.AnnAssign) else []
        for target in targets:
            if isinstance(target, ast.Name):
                default = ast.get_source_segment(source, node.value) if node.value is not None else ""
                meaning = " ".join(comments[line] for line in range(node.lineno, node.end_lineno + 1)
                                   if line in comments)
                found.append(Declared(target.id, default or "", meaning))
    return found if details else [d.name for d in found]
