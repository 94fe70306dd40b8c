"""How the book's kernels show pandas tables: no counter index, numbers formatted, text never cut.

The builder runs every notebook kernel with :func:`install` (an IPython start-up file), so every
``DataFrame`` a notebook displays or glues is rendered by :func:`frame_html`:

* a default index (0, 1, 2 ... without a name) is left out; a named index (a pivot's rows) stays;
* the numbers of a float column share one number of decimals chosen from the column's magnitude
  (three for values below ten, fewer for larger ones, thousands separators from 1,000);
* text cells are shown in full (no ``…`` at 50 characters); a column of long texts gets a minimum
  width (:func:`text_width`) so it is not squeezed to its longest word; the book's CSS wraps the text
  and puts tables wider than the column in a horizontally scrolling box.

Styled tables (``DataFrame.style``) are left as the notebook made them.
"""
from __future__ import annotations

import math
from collections.abc import Callable

__all__ = ["frame_html", "column_format", "text_width", "install", "TABLE_CLASS"]

#: CSS class of every table made by :func:`frame_html` (styled in ``book/_assets/rramlib.css``).
TABLE_CLASS = "rramlib-table"
MISSING = "–"


def column_format(values) -> Callable[[object], str]:
    """A formatter for a float column: decimals by magnitude, trailing zeros that every value shares
    dropped (``0.5, 1.0, 2.0`` -> ``0.5, 1.0, 2.0``; ``1.0, 2.0`` -> ``1, 2``)."""
    finite = [abs(float(v)) for v in values if v is not None and math.isfinite(float(v))]
    largest = max(finite, default=0.0)
    if largest and largest < 0.01:
        return lambda x: _missing_or(x, lambda v: f"{v:.3g}")
    decimals = 0 if largest >= 1000 else 1 if largest >= 100 else 2 if largest >= 10 else 3
    while decimals > 0 and all(f"{v:.{decimals}f}".endswith("0") for v in finite):
        decimals -= 1
    return lambda x: _missing_or(x, lambda v: f"{v:,.{decimals}f}")


def _missing_or(x, fmt: Callable[[float], str]) -> str:
    try:
        value = float(x)
    except (TypeError, ValueError):
        return str(x)
    return fmt(value) if math.isfinite(value) else MISSING


def text_width(values, long: int = 30) -> str | None:
    """Minimum CSS width of a column whose longest text exceeds ``long`` characters, else None:
    about a quarter of that length in ``em`` (a few lines per cell), between 10 and 24 em."""
    longest = max((len(str(v)) for v in values), default=0)
    return f"{min(24, max(10, longest // 4))}em" if longest > long else None


def _default_index(index) -> bool:
    import pandas as pd

    return (isinstance(index, pd.RangeIndex) and index.name is None and index.start == 0
            and index.step == 1)


def frame_html(frame) -> str:
    """The book's HTML for a DataFrame (see the module docstring)."""
    import pandas as pd

    formatters, widths = {}, {}
    if frame.columns.is_unique:
        for col in frame.columns:
            if pd.api.types.is_float_dtype(frame[col].dtype):
                formatters[col] = column_format(frame[col])
            elif pd.api.types.is_object_dtype(frame[col].dtype) or pd.api.types.is_string_dtype(frame[col].dtype):
                width = text_width(frame[col])
                if width:
                    widths[col] = width
    with pd.option_context("display.max_colwidth", None):
        return frame.to_html(index=not _default_index(frame.index), formatters=formatters, na_rep=MISSING,
                             border=0, classes=TABLE_CLASS, max_rows=pd.get_option("display.max_rows"),
                             show_dimensions=False, col_space=widths or None)


def install(shell=None) -> None:
    """Register :func:`frame_html` as the HTML form of every DataFrame in this IPython kernel (also the
    form ``myst_nb.glue`` stores)."""
    if shell is None:
        from IPython import get_ipython

        shell = get_ipython()
    if shell is None:
        return
    html = shell.display_formatter.formatters["text/html"]
    for module in ("pandas", "pandas.core.frame"):  # DataFrame.__module__ is "pandas" from pandas 3 on
        html.for_type_by_name(module, "DataFrame", frame_html)
