"""What a notebook produces: glued numbers, tables and figures, all also written to files.

Each book notebook makes one :class:`Report`. Every number the prose quotes goes through
:meth:`Report.number` (glued for the book *and* stored in the notebook's JSON results file),
every table through :meth:`Report.table`, every figure through :meth:`Report.figure` (PNG and
PDF, with a footer naming notebook, parameters, package version, git commit and cache key).
:meth:`Report.finish` writes ``<out_dir>/<notebook>.json`` atomically, with the notebook's
runtime and peak memory.
"""
from __future__ import annotations

import json
import math
import os
import tempfile
import time
from pathlib import Path

from . import __version__
from .experiments import git_commit, peak_rss_mb

__all__ = ["Report", "load_results"]


def _glue(key, value):
    try:
        from myst_nb import glue
    except ImportError:  # plain Python: nothing to glue into
        return
    glue(key, value, display=False)


def _plain(value):
    """JSON-ready numbers (numpy scalars, NaN -> None)."""
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


class Report:
    """Collects one notebook's outputs. ``params`` are the papermill parameters shown in footers."""

    def __init__(self, notebook: str, params: dict, out_dir: str | os.PathLike = "results"):
        self.notebook = notebook
        self.params = dict(params)
        self.out_dir = Path(out_dir)
        (self.out_dir / "figures").mkdir(parents=True, exist_ok=True)
        self.numbers: dict[str, object] = {}
        self.tables: dict[str, list[dict]] = {}
        self.figures: list[str] = []
        self.cache_keys: set[str] = set()
        self._start = time.perf_counter()
        self.commit = git_commit()

    def uses(self, result: dict) -> dict:
        """Note the cache key of a sweep result (shown in figure footers); returns the result."""
        key = result.get("metadata", {}).get("config_hash")
        if key:
            self.cache_keys.add(key[:12])
        return result

    def number(self, key: str, value, fmt: str = "{:.4g}"):
        """Glue ``value`` under ``key`` and store it; returns the formatted text (for printing)."""
        value = _plain(value)
        self.numbers[key] = value
        _glue(key, value)
        return fmt.format(value) if value is not None else "n/a"

    def table(self, key: str, frame, glue: bool = True):
        """Store a pandas DataFrame (records) and CSV; glue it for the book."""
        self.tables[key] = json.loads(frame.to_json(orient="records"))
        frame.to_csv(self.out_dir / f"{self.notebook}_{key}.csv", index=False)
        if glue:
            _glue(key, frame)
        return frame

    def footer(self) -> str:
        params = ", ".join(f"{k}={v}" for k, v in self.params.items() if k != "out_dir")
        keys = ",".join(sorted(self.cache_keys)) or "-"
        return (f"{self.notebook} | {params} | rramlib {__version__} | commit {(self.commit or 'n/a')[:10]} "
                f"| cache {keys}")

    def figure(self, fig, key: str):
        """Save ``fig`` as PNG and PDF with the provenance footer; returns the figure."""
        fig.text(0.01, 0.005, self.footer(), fontsize=5.5, color="#666666", ha="left", va="bottom", wrap=True)
        fig.subplots_adjust(bottom=max(fig.subplotpars.bottom, 0.16))
        for ext in ("png", "pdf"):
            fig.savefig(self.out_dir / "figures" / f"{key}.{ext}", bbox_inches="tight")
        self.figures.append(key)
        return fig

    def finish(self) -> dict:
        """Write the results JSON (atomically) and glue the runtime and peak memory."""
        runtime = time.perf_counter() - self._start
        rss = peak_rss_mb()
        self.number(f"{self.notebook}_runtime_s", runtime)
        self.number(f"{self.notebook}_peak_rss_mb", rss)
        payload = {
            "notebook": self.notebook, "params": self.params, "numbers": self.numbers, "tables": self.tables,
            "figures": self.figures, "cache_keys": sorted(self.cache_keys), "runtime_s": runtime,
            "peak_rss_mb": rss, "rramlib_version": __version__, "git_commit": self.commit,
        }
        path = self.out_dir / f"{self.notebook}.json"
        fd, tmp = tempfile.mkstemp(dir=self.out_dir, prefix=f".{path.name}.", suffix=".tmp")
        with os.fdopen(fd, "w") as f:
            json.dump(payload, f, indent=1, default=_plain)
        os.replace(tmp, path)
        return payload


def load_results(out_dir: str | os.PathLike, notebook: str) -> dict:
    """Read another notebook's results file (the claims page gathers them)."""
    path = Path(out_dir) / f"{notebook}.json"
    if not path.exists():
        from .errors import RramlibError

        raise RramlibError(f"no results for notebook {notebook!r} in {str(out_dir)!r}; run it first")
    return json.loads(path.read_text())
