"""The build: check the input, stage, execute the notebooks (cached), present them, build the HTML."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from .. import __version__
from ..errors import RramlibError
from ..recorded import recorded_inputs
from .assets import stage_static, write_if_changed
from .checks import check_offline, scan_outputs, warn_unglued
from .errors import BookError
from .execute import ANSI, REPO_ROOT, build_key, cached_seconds, execute_notebook, reads_other_results, source_files
from .parameters import PLACEMENT_PARAMETERS, RESERVED_PARAMETERS, declared_parameters, parse_parameter
from .present import present
from .scope import chapter_profile
from .toc import EXTRA_PART, make_toc, missing_notebooks, notebook_paths

__all__ = ["NotebookRun", "BuildResult", "build", "build_html", "BOOK_DIR", "NOTEBOOK_DIR", "OUT_DIR_PARAM"]

BOOK_DIR = REPO_ROOT / "book"
NOTEBOOK_DIR = REPO_ROOT / "notebooks"
#: Parameters every notebook receives; ``out_dir`` is relative to the kernel's working directory.
OUT_DIR_PARAM = "../results"


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
    from ..errors import check_choice
    from ..profiles import PROFILES

    check_choice("profile", profile, PROFILES)


def _check_tools(html: bool) -> None:
    import importlib.util

    needed = ["papermill", "nbformat", "cffconvert", "pybtex"] + (["jupyter_book"] if html else [])
    missing = [m for m in needed if importlib.util.find_spec(m) is None]
    if missing:
        raise BookError(f"missing {', '.join(missing)}; install the book dependencies: pip install -e '.[book]'")


def _write_times(path: Path, profile: str, runs: list[NotebookRun], extra: dict | None = None) -> None:
    payload = {"profile": profile, "rramlib_version": __version__, "notebooks": {
        r.name: {"seconds": round(r.seconds, 3), "cached": r.cached, "executed_seconds":
                 None if r.executed_seconds is None else round(r.executed_seconds, 3)} for r in runs}}
    payload.update(extra or {})
    write_if_changed(path, (json.dumps(payload, indent=1) + "\n").encode())


def _peak_memory(results_file: Path) -> float | None:
    """The peak memory (MB) that a notebook's results file records (``Report.finish``)."""
    try:
        return json.loads(results_file.read_text()).get("peak_rss_mb")
    except (OSError, ValueError):
        return None


def _print(message: str, end: str = "\n") -> None:
    print(message, end=end, flush=True)


def _stage_toc_and_config(book_dir: Path, src: Path, stems: list[str], log: Callable[..., None]) -> None:
    import yaml

    static_toc = yaml.safe_load((book_dir / "_toc.yml").read_text())
    toc, appended = make_toc(static_toc, stems)
    if appended:
        log(f"note: notebooks not listed in book/_toc.yml, added under '{EXTRA_PART}': {', '.join(appended)}")
    write_if_changed(src / "_toc.yml", yaml.safe_dump(toc, sort_keys=False).encode())
    missing = missing_notebooks(static_toc, stems)
    config = yaml.safe_load((book_dir / "_config.yml").read_text())
    if missing:
        # links to chapters not written yet cannot resolve; every other warning still fails the build
        log(f"note: {len(missing)} notebook(s) of book/_toc.yml missing ({', '.join(missing)}): left out, "
            "and links to them are not checked")
        sphinx_config = config.setdefault("sphinx", {}).setdefault("config", {})
        sphinx_config["suppress_warnings"] = sorted({*sphinx_config.get("suppress_warnings", ["myst.domains"]),
                                                     "myst.xref_missing", "ref.doc", "myst.domains"})
    write_if_changed(src / "_config.yml", yaml.safe_dump(config, sort_keys=False).encode())


def build(profile: str = "quick", out: str | os.PathLike | None = None, *, force: bool = False,
          parameters: Mapping[str, object] | None = None, html: bool = True,
          notebooks_dir: Path = NOTEBOOK_DIR, book_dir: Path = BOOK_DIR, log: Callable[..., None] = _print,
          ) -> BuildResult:
    """Stage, execute (cached), present and build the book; see :mod:`rramlib.book`. Returns what was done."""
    start = time.perf_counter()
    _check_profile(profile)
    extra = dict(parameters or {})
    for name in extra:
        parse_parameter(name, "x")  # name checks (reserved names, identifiers)
    _check_tools(html)
    import nbformat

    book_dir = Path(book_dir)
    notebooks = notebook_paths(notebooks_dir)
    declared = {p.stem: set(declared_parameters(nbformat.read(p, as_version=4))) for p in notebooks}
    unknown = sorted(set(extra) - set().union(*declared.values()))
    if unknown:
        known = sorted(set().union(*declared.values()) - set(RESERVED_PARAMETERS))
        raise RramlibError(f"no notebook has the parameter(s) {', '.join(unknown)}; "
                           f"the notebooks' parameters: {', '.join(known)}")
    out = (Path(out) if out is not None else REPO_ROOT / "_build" / "book" / profile).resolve()
    src = out / "src"
    executed_dir, pages, results = out / "executed", src / "notebooks", src / "results"
    for d in (executed_dir, pages, results / "figures"):
        d.mkdir(parents=True, exist_ok=True)

    stage_static(book_dir, src)
    stems = [p.stem for p in notebooks]
    for folder in (executed_dir, pages):
        for stale in folder.glob("*.ipynb"):
            if stale.stem not in stems:
                stale.unlink()
    _stage_toc_and_config(book_dir, src, stems, log)
    warn_unglued(notebooks, book_dir, log)

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
        mine = {k: v for k, v in extra.items() if k in declared[path.stem]}
        runs_at = chapter_profile(profile, path.stem)
        params = {"profile": runs_at, "out_dir": OUT_DIR_PARAM, **mine}
        # where the notebook computes (PLACEMENT_PARAMETERS) changes none of its results: not in its key, nor its page
        mine_shown = {k: v for k, v in mine.items() if k not in PLACEMENT_PARAMETERS}
        shown = {k: v for k, v in params.items() if k not in PLACEMENT_PARAMETERS}
        # results of other notebooks, and the recorded study-scale build (rramlib.recorded), where it shows them
        upstream = {**(dict(keys) if reads_other_results(raw) else {}), **recorded_inputs(raw)}
        key = build_key(raw, shown, sources, __version__, upstream)
        keys[path.stem] = key
        executed = executed_dir / path.name
        results_file = results / f"{path.stem}.json"
        label = f"  [{i}/{len(notebooks)}] {path.stem:<28}"
        t0 = time.perf_counter()
        previous = None if force else cached_seconds(executed, key, results_file)
        if previous is not None:
            run = NotebookRun(path.stem, time.perf_counter() - t0, True, key, previous)
            log(f"{label} {run.seconds:7.1f} s  cached (last run {previous:.1f} s)")
        else:
            log(label, end="")
            try:
                # the kernel runs in the pages' folder, so out_dir="../results" is src/results
                seconds = execute_notebook(path, executed, params, cwd=pages, cache_dir=cache_dir,
                                           metadata={"build_key": key, "profile": runs_at,
                                                     "parameters": params, "rramlib_version": __version__})
            except BookError:
                log(" failed")
                _write_times(times_path, profile, result.runs)
                raise
            run = NotebookRun(path.stem, seconds, False, key, seconds)
            log(f" {seconds:7.1f} s")
            if not results_file.exists():
                raise BookError(f"notebook {path.stem} wrote no results/{path.stem}.json: create its report "
                                f"as Report({path.stem!r}, params, out_dir) and call report.finish() last")
        executed_nb = nbformat.read(executed, as_version=4)
        findings = scan_outputs(executed_nb, allowed=[str(v) for v in extra.values() if isinstance(v, str)])
        if findings:
            raise BookError(f"notebook {path.stem} shows machine-specific text in its outputs "
                            f"({executed}):\n  " + "\n  ".join(findings[:10]))
        # the notebook's whole execution (kernel start included), as the builder timed it; memory from its report
        page = present(executed_nb, path.stem, shown, runs_at, mine_shown, run.executed_seconds,
                       _peak_memory(results_file), book_profile=profile)
        write_if_changed(pages / path.name, nbformat.writes(page).encode())
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
    text = ANSI.sub("", log_path.read_text(errors="replace"))
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
