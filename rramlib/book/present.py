"""How an executed notebook is shown in the book: results first, code on demand, one build box.

:func:`present` turns the executed notebook (the cache, never edited by hand) into the page the book
shows. It changes no output; it only adds Jupyter Book cell tags and one markdown cell:

* the two raw parameter cells (the notebook's ``parameters`` cell and papermill's
  ``injected-parameters`` cell) are removed (``remove-cell``);
* every other code cell shows its outputs with its code collapsed behind a toggle (``hide-input``),
  unless the notebook already tags it with a ``remove-*`` or ``hide-*`` tag;
* after the page's first markdown cell comes one collapsed box, :func:`build_box`: the parameters of
  this build (value, default, meaning from the comment in the ``parameters`` cell) and the command that
  reruns the page, with its wall time and peak memory.
"""
from __future__ import annotations

import ast
import copy
import json
import shlex
from collections.abc import Mapping
from pathlib import Path

from rramlib.book.parameters import Declared, declared_parameters

__all__ = ["present", "build_box", "rerun_command", "book_command", "BOX_CLASS"]

#: CSS class of the build box (``book/_assets/rramlib.css``).
BOX_CLASS = "rramlib-build"
_PARAMETER_TAGS = {"parameters", "injected-parameters"}
_AUTHOR_TAGS = {"remove-cell", "remove-input", "remove-output", "hide-cell", "hide-input", "hide-output"}
#: Parameters the builder sets for its own folders: not shown and not part of the rerun command.
_INTERNAL = ("out_dir",)


def _shell_value(value: object) -> str:
    """A value as papermill's ``-p`` reads it back (lists and mappings as JSON text)."""
    if isinstance(value, (list, tuple, dict)):
        text = json.dumps(list(value) if isinstance(value, tuple) else value)
    elif isinstance(value, str):
        path = Path(value)
        text = path.relative_to(Path.cwd()).as_posix() if path.is_absolute() and path.is_relative_to(Path.cwd()) \
            else value
    else:
        text = str(value)
    return shlex.quote(text)


def rerun_command(notebook: str, parameters: Mapping[str, object]) -> str:
    """The papermill command, run from the repository root, that executes one page as this build did."""
    args = " ".join(f"-p {k} {_shell_value(v)}" for k, v in parameters.items() if k not in _INTERNAL)
    return f"papermill notebooks/{notebook}.ipynb {notebook}.ipynb {args}".rstrip()


def book_command(profile: str, extra: Mapping[str, object]) -> str:
    """The ``rramlib book`` command that builds the whole book as this build did."""
    args = "".join(f" -p {k} {_shell_value(v)}" for k, v in extra.items())
    return f"rramlib book --profile {profile}{args}"


def _cell_text(text: str) -> str:
    """Text for a markdown table cell: pipes escaped, line breaks removed."""
    return " ".join(str(text).split()).replace("|", "\\|")


def _code(text: str) -> str:
    text = _cell_text(text)
    return f"``{text}``" if "`" in text else f"`{text}`"


def _is_default(value: object, default: str) -> bool:
    """Is ``value`` what the notebook's default (source text) evaluates to? (tuples and lists alike)"""
    try:
        literal = ast.literal_eval(default)
    except (ValueError, SyntaxError):
        return False
    same = (lambda a, b: list(a) == list(b)) if isinstance(value, (list, tuple)) and \
        isinstance(literal, (list, tuple)) else (lambda a, b: a == b and type(a) is type(b))
    return same(value, literal)


def build_box(notebook: str, declared: list[Declared], parameters: Mapping[str, object], profile: str,
              extra: Mapping[str, object], seconds: float | None, peak_mb: float | None,
              book_profile: str | None = None) -> str:
    """The MyST markdown of the build box (a collapsed admonition); ``profile`` is the one the page ran at,
    ``book_profile`` (default: the same) the one the book was built at (:mod:`.scope`)."""
    book_profile = book_profile or profile
    cost = ", ".join(part for part in (
        f"{seconds:.1f} s" if seconds is not None else "",
        f"{peak_mb:,.0f} MB peak memory" if peak_mb is not None else "") if part)
    rows = []
    for d in declared:
        if d.name in _INTERNAL:
            continue
        if d.name in parameters and not _is_default(parameters[d.name], d.default):
            value = f"{_code(repr(parameters[d.name]))} (default {_code(d.default)})"
        else:
            value = _code(d.default)
        rows.append(f"| `{d.name}` | {value} | {_cell_text(d.meaning)} |")
    lines = [f":::{{admonition}} Rerun this page · profile `{profile}`" + (f" · {cost}" if cost else ""),
             f":class: dropdown {BOX_CLASS}", ""]
    if book_profile != profile:
        lines += [f"In the book built at profile `{book_profile}`, this chapter runs at profile `{profile}` "
                  "(see `rramlib.study.scope`).", ""]
    if rows:
        lines += ["**Parameters of this build**", "", "| parameter | value | meaning |", "|:--|:--|:--|", *rows, ""]
    lines += ["From the repository root (the page's results go to `results/`):", "",
              "```bash", rerun_command(notebook, parameters), "```", ""]
    if cost:
        lines += [f"Its last execution took {cost}. The whole book with the same parameters:", ""]
    else:
        lines += ["The whole book with the same parameters:", ""]
    lines += ["```bash", book_command(book_profile, extra), "```", ":::"]
    return "\n".join(lines)


def present(executed, notebook: str, parameters: Mapping[str, object], profile: str,
            extra: Mapping[str, object], seconds: float | None = None, peak_mb: float | None = None,
            book_profile: str | None = None):
    """The page for an executed notebook node (a copy; see the module docstring)."""
    import nbformat

    nb = copy.deepcopy(executed)
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        tags = list(cell.metadata.get("tags", []))
        if _PARAMETER_TAGS & set(tags):
            tags.append("remove-cell")
        elif not _AUTHOR_TAGS & set(tags):
            tags.append("hide-input")
        cell.metadata["tags"] = list(dict.fromkeys(tags))
    box = nbformat.v4.new_markdown_cell(build_box(notebook, declared_parameters(executed, details=True),
                                                  parameters, profile, extra, seconds, peak_mb,
                                                  book_profile))
    box.metadata["tags"] = [BOX_CLASS]
    box["id"] = BOX_CLASS  # a fixed id: an unchanged page stays byte-identical, so Sphinx does not re-read it
    first = next((i for i, c in enumerate(nb.cells) if c.cell_type == "markdown"), -1)
    nb.cells.insert(first + 1, box)
    return nb
