"""What a notebook produces: glued numbers, tables and figures, all also written to files.

Each book notebook makes one :class:`Report`. Every number the prose quotes goes through
:meth:`Report.number` (glued for the book *and* stored in the notebook's JSON results file),
every table through :meth:`Report.table`, every figure through :meth:`Report.figure` (PNG and
PDF, with a footer naming notebook, parameters, package version, git commit and cache key).
:meth:`Report.finish` writes ``<out_dir>/<notebook>.json`` atomically, with the notebook's
runtime, peak memory and the machine it ran on (CPU model, cores).
"""
from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path

from rramlib import __version__
from rramlib.core.bits import pack_bools
from rramlib.core.files import atomic_write, load_results
from rramlib.core.provenance import git_commit, machine, peak_rss_mb
from rramlib.core.errors import RramlibError

__all__ = ["Report", "load_results", "runtime_table"]


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
        self.arrays: dict[str, dict] = {}
        self.figures: list[str] = []
        #: per figure, its smallest text (less the footer) as the book shows it, in CSS px (plotting.displayed_text_px)
        self.figure_text_px: dict[str, float] = {}
        self.cache_keys: set[str] = set()
        self.data_sources: list[dict] = []
        self._start = time.perf_counter()
        self._cpu_start = time.process_time()
        self.commit = git_commit()

    def uses(self, result: dict) -> dict:
        """Note the cache key of a sweep result (shown in figure footers); returns the result."""
        key = result.get("metadata", {}).get("config_hash")
        if key:
            self.cache_keys.add(key[:12])
        self.data_source(result.get("metadata", {}).get("data_source"))
        return result

    def data_source(self, source: dict | None) -> None:
        """Note where the data came from (``DatasetSplits.info["source"]``: format, file-list hash ...);
        stored in the results file, so a recorded build names its data (:mod:`rramlib.study.recorded`)."""
        source = {k: v for k, v in (source or {}).items() if k != "root"}  # a folder of this machine: not kept
        if source and source not in self.data_sources:
            self.data_sources.append(source)

    def number(self, key: str, value, fmt: str = "{:.4g}"):
        """Glue ``value`` under ``key`` and store it; returns the formatted text (for printing).

        NaN is stored as JSON ``null`` but glued as NaN, so that a formatted reference in the prose
        (``{glue:text}`key:.3f```) reads ``nan`` instead of failing the build. A key reported twice is refused
        (the book would fail on the duplicate glue, far from the cell that made it)."""
        if key in self.numbers:
            raise RramlibError(f"{self.notebook}: number {key!r} reported twice")
        stored = _plain(value)
        self.numbers[key] = stored
        _glue(key, value.item() if hasattr(value, "item") else value)
        return fmt.format(stored) if stored is not None else "n/a"

    def table(self, key: str, frame, glue: bool = True):
        """Store a pandas DataFrame (records) and CSV; glue it for the book."""
        self.tables[key] = json.loads(frame.to_json(orient="records"))
        frame.to_csv(self.out_dir / f"{self.notebook}_{key}.csv", index=False)
        if glue:
            _glue(key, frame)
        return frame

    def array(self, key: str, values) -> None:
        """Store a boolean array (e.g. per-image results: seeds x chips x images) in the results file, one bit per
        value (:func:`rramlib.core.bits.pack_bools`); read back with :meth:`rramlib.study.recorded.Recorded.array`
        or :func:`rramlib.core.bits.unpack_bools`. Not glued: the book shows what is computed from it."""
        if key in self.arrays:
            raise RramlibError(f"{self.notebook}: array {key!r} reported twice")
        self.arrays[key] = pack_bools(values)

    def footer(self) -> str:
        params = ", ".join(f"{k}={v}" for k, v in self.params.items() if k != "out_dir")
        keys = ",".join(sorted(self.cache_keys)) or "-"
        return (f"{self.notebook} | {params} | rramlib {__version__} | commit {(self.commit or 'n/a')[:10]} "
                f"| cache {keys}")

    def figure(self, fig, key: str):
        """Save ``fig`` as PNG and PDF with the provenance footer; returns the figure."""
        # local: plotting loads matplotlib and torch, which reading or writing a results file must not need
        from rramlib.present.plotting import displayed_text_px

        footer = fig.text(0.01, 0.005, self.footer(), fontsize=5.5, color="#666666", ha="left", va="bottom", wrap=True)
        fig.subplots_adjust(bottom=max(fig.subplotpars.bottom, 0.16))
        self.figure_text_px[key] = min((px for px, text in displayed_text_px(fig) if text != footer.get_text()),
                                       default=None)
        for ext in ("png", "pdf"):
            fig.savefig(self.out_dir / "figures" / f"{key}.{ext}", bbox_inches="tight")
        self.figures.append(key)
        return fig

    def finish(self) -> dict:
        """Write the results JSON (atomically) and glue the runtime and peak memory."""
        runtime = time.perf_counter() - self._start
        cpu = time.process_time() - self._cpu_start  # CPU seconds of this process: less sensitive to other load
        rss = peak_rss_mb()
        self.number(f"{self.notebook}_runtime_s", runtime)
        self.number(f"{self.notebook}_peak_rss_mb", rss)
        payload = {
            "notebook": self.notebook, "params": self.params, "numbers": self.numbers, "tables": self.tables,
            "arrays": self.arrays,
            "figures": self.figures, "cache_keys": sorted(self.cache_keys), "data_sources": self.data_sources,
            "figure_text_px": self.figure_text_px, "runtime_s": runtime, "cpu_s": cpu,
            "peak_rss_mb": rss, "rramlib_version": __version__, "git_commit": self.commit, "machine": machine(),
        }
        atomic_write(self.out_dir / f"{self.notebook}.json", json.dumps(payload, indent=1, default=_plain))
        return payload


def runtime_table(out_dir: str | os.PathLike, skip: tuple[str, ...] = ()):
    """Wall time, CPU time (user + system, of the kernel process; barely affected by other load on the
    machine) and peak memory of every notebook whose results file is in ``out_dir``, as each recorded them,
    with the book builder's own wall time, cache flag and how many notebooks it ran at once where
    ``build_times.json`` has them."""
    import pandas as pd

    out = Path(out_dir)
    build = json.loads((out / "build_times.json").read_text()) if (out / "build_times.json").exists() else {}
    builds = build.get("notebooks", build) if isinstance(build, dict) else {}
    rows = []
    for path in sorted(out.glob("[0-9][0-9]_*.json")):
        res = json.loads(path.read_text())
        if res.get("notebook") in skip:
            continue
        entry = builds.get(res["notebook"], {})
        entry = entry if isinstance(entry, dict) else {}
        cpu = res.get("cpu_s")
        rows.append({"notebook": res["notebook"], "runtime (s)": round(res["runtime_s"], 1),
                     "CPU (s)": None if cpu is None else round(cpu, 1), "peak RAM (MiB)": round(res["peak_rss_mb"]),
                     "builder wall (s)": entry.get("seconds"), "cached": entry.get("cached"),
                     "notebooks at once": build.get("jobs") if entry else None})
    return pd.DataFrame(rows, columns=["notebook", "runtime (s)", "CPU (s)", "peak RAM (MiB)", "builder wall (s)",
                                       "cached", "notebooks at once"])
