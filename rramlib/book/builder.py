"""The build: check the input, stage, execute the notebooks (cached), present them, build the HTML."""
from __future__ import annotations

import functools
import json
import multiprocessing
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path

from rramlib import __version__
from rramlib.core.errors import RramlibError, check_choice, check_int
from rramlib.study import recorded
from rramlib.book.assets import EXPECTED_TIMES, stage_static, write_if_changed
from rramlib.book.checks import check_offline, scan_outputs, warn_unglued
from rramlib.book.errors import BookError
from rramlib.book.execute import ANSI, REPO_ROOT, build_key, cached_seconds, execute_notebook, reads_other_results, source_files
from rramlib.book.parameters import PLACEMENT_PARAMETERS, RESERVED_PARAMETERS, declared_parameters, parse_parameter
from rramlib.book.present import present
from rramlib.study.scope import chapter_profile
from rramlib.book.toc import EXTRA_PART, make_toc, missing_notebooks, notebook_paths
from rramlib.study.profiles import PROFILES
from rramlib.nn.data import FOLDER_DATASETS
from rramlib.study.profiles import get_profile

__all__ = ["NotebookRun", "BuildResult", "build", "build_html", "build_jobs", "BOOK_DIR", "NOTEBOOK_DIR",
           "OUT_DIR_PARAM", "JOBS_ENV", "DATA_ROOT_ENV", "check_data_root", "MAX_AUTO_JOBS", "SMALL_PROFILES",
           "AVX2_CAP", "instruction_cap", "STUDY_SCALE_PAGES", "notebook_keys", "study_scale_pages",
           "KEEP_FREED_MEMORY", "kernel_environment", "numeric_environment"]

BOOK_DIR = REPO_ROOT / "book"
NOTEBOOK_DIR = REPO_ROOT / "notebooks"
#: Parameters every notebook receives; ``out_dir`` is relative to the kernel's working directory.
OUT_DIR_PARAM = "../results"
#: The environment variable that sets how many notebooks a build executes at once.
JOBS_ENV = "RRAMLIB_BOOK_JOBS"
#: The profiles whose kernels run single-threaded and side by side. Their models are small: a second torch
#: thread barely speeds a kernel up, while a second kernel on the next core nearly doubles the build's pace.
#: One thread and instructions capped at AVX2 (:func:`instruction_cap`) also make their numbers the same on
#: every x86 machine with AVX2 (the order of torch's sums follows both).
SMALL_PROFILES = ("smoke", "quick")
#: The most notebooks a build of a small profile runs at once unless told otherwise (about 1 GB of memory
#: each; the chapters' dependencies leave little to gain beyond this; our choice).
MAX_AUTO_JOBS = 4


@dataclass
class NotebookRun:
    name: str
    seconds: float
    cached: bool
    key: str
    #: the wall time of the execution that computed the results, earlier unfinished executions of the same build
    #: key included (:class:`~rramlib.book.execute.UnfinishedRuns`)
    executed_seconds: float | None = None
    #: how many of those executions did not finish (interrupted, or a cell raised), if the executed copy says
    unfinished_runs: int = 0


@dataclass
class BuildResult:
    profile: str
    out: Path
    runs: list[NotebookRun] = field(default_factory=list)
    html: Path | None = None
    seconds: float = 0.0
    jobs: int = 1


@dataclass(frozen=True)
class _Planned:
    """One notebook of a build, with everything decided before anything executes."""
    path: Path
    label: str
    runs_at: str
    params: dict
    shown: dict
    mine_shown: dict
    key: str
    reads_others: bool
    after: tuple[str, ...]
    executed: Path
    results_file: Path


def _check_profile(profile: str) -> None:
    check_choice("profile", profile, PROFILES)


#: The environment variable that names the data folder (``make book DATA_ROOT=DIR`` sets it); every notebook's
#: :meth:`~rramlib.present.notebook.Notebook.data_root` reads it.
DATA_ROOT_ENV = "RRAMLIB_DATA_ROOT"


def check_data_root(profile: str, stems, data_root: str | os.PathLike | None) -> str | None:
    """The data folder of a build at ``profile`` as an absolute path (the kernels run in the build folder), or
    ``None`` where no chapter needs one.

    ``data_root``: ``--data-root``, the ``data_root`` parameter or ``$RRAMLIB_DATA_ROOT``. A build whose chapters
    (``stems``, each at its :func:`~rramlib.study.scope.chapter_profile`) read a dataset from a folder
    (:data:`~rramlib.nn.data.FOLDER_DATASETS`) and has none stops here, naming the two ways to give it, before
    any notebook runs; a folder that does not exist stops it too.
    """
    if data_root:
        if not Path(data_root).is_dir():
            raise RramlibError(f"the data folder {os.fspath(data_root)!r} (--data-root, DATA_ROOT=DIR or "
                               f"${DATA_ROOT_ENV}) does not exist or is not a folder")
        return str(Path(data_root).resolve())
    needs = sorted({get_profile(chapter_profile(profile, stem)).dataset for stem in stems} & set(FOLDER_DATASETS))
    if needs:
        raise RramlibError(f"the {profile} book reads {', '.join(needs)} from a data folder, and none was given: "
                           f"rramlib book --profile {profile} --data-root DIR, or make book PROFILE={profile} "
                           f"DATA_ROOT=DIR (DIR holds the dataset, e.g. cifar-10-batches-py; see Reproducing the book)")
    return None


def _check_tools(html: bool) -> None:
    import importlib.util

    needed = ["papermill", "nbformat", "cffconvert", "pybtex"] + (["jupyter_book"] if html else [])
    missing = [m for m in needed if importlib.util.find_spec(m) is None]
    if missing:
        raise BookError(f"missing {', '.join(missing)}; install the book dependencies: pip install -e '.[book]'")


def build_jobs(jobs: int | None = None, profile: str = "quick") -> int:
    """How many notebooks execute at once: ``jobs`` if given, else ``$RRAMLIB_BOOK_JOBS``, else, for the
    :data:`SMALL_PROFILES`, the CPU count capped at :data:`MAX_AUTO_JOBS`, and one for the others (a
    study-scale notebook keeps every core busy on its own). The numbers are the same whatever this is
    (:func:`kernel_environment`); only the wall time changes."""
    if jobs is None:
        value = os.environ.get(JOBS_ENV, "").strip()
        if not value:
            return max(1, min(os.cpu_count() or 1, MAX_AUTO_JOBS)) if profile in SMALL_PROFILES else 1
        try:
            jobs = int(value)
        except ValueError:
            raise RramlibError(f"{JOBS_ENV} must be a positive integer, got {value!r}") from None
    return check_int("jobs", jobs, minimum=1)


#: Environment that caps the vector instructions of torch's own CPU kernels (ATen), oneDNN's convolutions and
#: MKL's matrix products at AVX2.
AVX2_CAP = {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2", "MKL_ENABLE_INSTRUCTIONS": "AVX2"}


@functools.cache
def cpu_capability() -> str:
    """The widest vector instruction set torch uses on this machine (``"AVX512"``, ``"AVX2"``, ``"DEFAULT"``, ...)."""
    import torch

    return torch.backends.cpu.get_cpu_capability()


def instruction_cap() -> dict[str, str]:
    """:data:`AVX2_CAP` on a machine whose widest instruction set is AVX2 or AVX-512, else nothing.

    The libraries pick the widest vector instructions a machine has, and the width changes the order of their
    sums: the quick book's numbers built on an AVX-512 machine differed in the fourth digit from those built
    on an AVX2 one, and were the same once capped at AVX2 (measured). A variable the user set stands.
    """
    if cpu_capability() not in ("AVX2", "AVX512"):
        return {}
    return {name: value for name, value in AVX2_CAP.items() if name not in os.environ}


#: glibc's allocator keeps the memory torch frees for reuse instead of handing every large block back to the
#: system and faulting it in again at the next allocation (measured on ResNet-20 with the crossbar periphery:
#: most of the time went to page faults, and plain inference also gained). How memory is reused changes no number.
KEEP_FREED_MEMORY = {"GLIBC_TUNABLES": "glibc.malloc.mmap_threshold=4294967295:glibc.malloc.trim_threshold=4294967295"}


def kernel_environment(runs_at: str, jobs: int) -> dict[str, str]:
    """What a notebook's kernel gets in its environment for threads and instructions, by its profile.

    A notebook of the :data:`SMALL_PROFILES` runs torch (and OpenMP) on one thread, whatever ``jobs``, with its
    vector instructions capped at AVX2 (:func:`instruction_cap`), so its numbers depend neither on the machine
    nor on how many notebooks run at once. Others keep torch's defaults (every core, the widest instructions);
    side by side, their idle threads then sleep instead of spinning (measured on 2 cores: two spinning kernels
    slowed each other down 4 to 80 times). How threads wait changes no number. Every kernel keeps the memory it
    frees (:data:`KEEP_FREED_MEMORY`) unless the user set ``GLIBC_TUNABLES``.
    """
    env = {} if "GLIBC_TUNABLES" in os.environ else dict(KEEP_FREED_MEMORY)
    if runs_at in SMALL_PROFILES:
        return {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", **instruction_cap(), **env}
    if jobs > 1 and "OMP_WAIT_POLICY" not in os.environ:
        env["OMP_WAIT_POLICY"] = "PASSIVE"
    return env


def numeric_environment(runs_at: str) -> dict[str, str]:
    """The part of :func:`kernel_environment` that can change a notebook's numbers (threads, instructions)."""
    return {k: v for k, v in kernel_environment(runs_at, 1).items() if k not in KEEP_FREED_MEMORY}


class _Inline:
    """An executor that runs each task at once, in this process (a build with one job)."""

    def submit(self, fn, /, *args, **kwargs) -> Future:
        future: Future = Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except Exception as exc:
            future.set_exception(exc)
        return future

    def shutdown(self, wait: bool = True, cancel_futures: bool = False) -> None:
        pass


def _execute(plan: list[_Planned], to_run: list[_Planned], jobs: int, pages: Path, cache_dir: Path,
             finish: Callable[[_Planned, NotebookRun], None], log: Callable[..., None],
             expected: Mapping[str, float] | None = None, book_env: Mapping[str, str] | None = None) -> None:
    """Execute ``to_run``, up to ``jobs`` at once, calling ``finish`` as each one completes.

    One at a time, notebooks run in notebook order. Side by side, of the notebooks free to start, the one that
    took longest in its last build goes first; a notebook never built here takes its time from ``expected``
    (:func:`expected_seconds`), and one unknown to both goes before the others, in notebook order. A notebook
    starts after the notebooks it names in ``metadata.rramlib_book.after`` (it reuses what they leave in the
    results cache, so it must not compute the same fits beside them) and, when it reads other notebooks'
    results, after every notebook before it. After a failure nothing new starts, the running notebooks finish
    (their results stay cached), and the first error is raised. ``book_env`` goes into every kernel's
    environment (the data folder, :func:`check_data_root`, and the book's profile).
    """
    if not to_run:
        return
    position = {item.path.stem: n for n, item in enumerate(plan)}
    done = {item.path.stem for item in plan} - {item.path.stem for item in to_run}
    # longest first, by each notebook's time in its last build here, else the shipped one (unknown: first)
    expected = expected or {}
    pending = (sorted(to_run, key=lambda item: -_last_seconds(item.executed, expected.get(item.path.stem)))
               if jobs > 1 else list(to_run))
    running: dict[Future, _Planned] = {}
    error: BookError | None = None

    def ready(item: _Planned) -> bool:
        if not all(stem in done for stem in item.after):
            return False
        return not item.reads_others or all(p.path.stem in done for p in plan[:position[item.path.stem]])

    executor = _Inline() if jobs == 1 else ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn"))
    try:
        while pending or running:
            while error is None and len(running) < jobs:
                item = next((it for it in pending if ready(it)), None)
                if item is None:
                    break
                pending.remove(item)
                log(item.label, end="") if jobs == 1 else log(f"{item.label} started")
                # the kernel runs in the pages' folder, so out_dir="../results" is src/results
                running[executor.submit(execute_notebook, item.path, item.executed, item.params, cwd=pages,
                                        cache_dir=cache_dir, metadata={"build_key": item.key, "profile": item.runs_at,
                                                                       "parameters": item.params,
                                                                       "rramlib_version": __version__},
                                        environment={**kernel_environment(item.runs_at, jobs),
                                                     **(book_env or {})})] = item
            if not running:
                break
            completed, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in sorted(completed, key=lambda f: position[running[f].path.stem]):
                item = running.pop(future)
                prefix = "" if jobs == 1 else item.label
                try:
                    seconds = future.result()
                    log(f"{prefix} {seconds:7.1f} s" + _unfinished_note(item.executed))
                    finish(item, NotebookRun(item.path.stem, seconds, False, item.key, seconds))
                    done.add(item.path.stem)
                except BookError as exc:
                    log(f"{prefix} failed")
                    error = error or exc
    finally:
        executor.shutdown(wait=True, cancel_futures=True)
    if error is not None:
        raise error


def _unfinished_note(executed: Path) -> str:
    """``"  (N earlier execution(s) interrupted: S s of it)"`` when the executed copy counts unfinished runs, else ``""``."""
    try:
        meta = json.loads(executed.read_text(encoding="utf-8"))["metadata"]["rramlib"]
        runs, seconds = int(meta.get("unfinished_runs", 0)), float(meta.get("unfinished_seconds", 0.0))
    except (OSError, ValueError, KeyError, TypeError):
        return ""
    return f"  ({runs} earlier execution(s) unfinished: {seconds:.1f} s of it)" if runs else ""


def _last_seconds(executed: Path, otherwise: float | None = None) -> float:
    """The wall time of the notebook's last execution (whatever its key); when it never ran here, ``otherwise``,
    or infinity."""
    try:
        return float(json.loads(executed.read_text(encoding="utf-8"))["metadata"]["rramlib"]["seconds"])
    except (OSError, ValueError, KeyError, TypeError):
        return float("inf") if otherwise is None else float(otherwise)


def expected_seconds(book_dir: Path, profile: str) -> dict[str, float]:
    """Each notebook's wall time in a reference build of ``profile`` (``book/{EXPECTED_TIMES}``), by name.

    Only the order of a first build side by side uses it (longest first, so that the slowest chapter does not
    start last); a missing or unreadable file, or a notebook it does not list, just leaves that order to the
    notebook order. The file is a ``results/build_times.json`` of a cold build, copied.
    """
    try:
        notebooks = json.loads((book_dir / EXPECTED_TIMES).read_text(encoding="utf-8"))[profile]["notebooks"]
        return {name: float(entry["seconds"]) for name, entry in notebooks.items()}
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return {}


def _after(stem: str, notebook, order: list[str]) -> tuple[str, ...]:
    """The notebooks ``stem`` runs after (``metadata.rramlib_book.after``: earlier notebooks of this build)."""
    names = notebook.metadata.get("rramlib_book", {}).get("after", [])
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise BookError(f"notebook {stem}: metadata rramlib_book.after must be a list of notebook names, "
                        f"got {names!r}")
    for name in names:
        if name not in order or order.index(name) >= order.index(stem):
            raise BookError(f"notebook {stem}: metadata rramlib_book.after names {name!r}, which is not a notebook "
                            f"before it ({', '.join(order[:order.index(stem)]) or 'none'})")
    return tuple(names)


def _write_times(path: Path, profile: str, runs: list[NotebookRun], extra: dict | None = None) -> None:
    payload = {"profile": profile, "rramlib_version": __version__, "notebooks": {
        r.name: {"seconds": round(r.seconds, 3), "cached": r.cached, "executed_seconds":
                 None if r.executed_seconds is None else round(r.executed_seconds, 3),
                 "unfinished_runs": r.unfinished_runs} for r in runs}}
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


def _plan(profile: str, notebooks: list[Path], extra: Mapping[str, object], declared: Mapping[str, set],
          after: Mapping[str, tuple[str, ...]], executed_dir: Path, results: Path) -> list[_Planned]:
    """Every notebook of a book at ``profile`` with its parameters and build key, in notebook order."""
    sources = source_files()
    keys: dict[str, str] = {}
    plan: list[_Planned] = []
    for i, path in enumerate(notebooks, 1):
        raw = path.read_bytes()
        # a notebook gets (and its key depends on) only the extra parameters it declares
        mine = {k: v for k, v in extra.items() if k in declared[path.stem]}
        runs_at = chapter_profile(profile, path.stem)
        params = {"profile": runs_at, "out_dir": OUT_DIR_PARAM, **mine}
        # where the notebook computes (PLACEMENT_PARAMETERS) changes none of its results: not in its key, nor its page
        mine_shown = {k: v for k, v in mine.items() if k not in PLACEMENT_PARAMETERS}
        shown = {k: v for k, v in params.items() if k not in PLACEMENT_PARAMETERS}
        # results of other notebooks, and the recorded study-scale build (rramlib.study.recorded), where it shows
        # them: a record of another profile than this book's (a kernel of this book does not read this book's record)
        reads_others = reads_other_results(raw)
        upstream = {**(dict(keys) if reads_others else {}), **recorded.recorded_inputs(raw, profile)}
        # the kernel's numeric environment (threads, instructions; how threads wait changes no number)
        key = build_key(raw, shown, sources, __version__, upstream, numeric_environment(runs_at))
        keys[path.stem] = key
        plan.append(_Planned(path, f"  [{i}/{len(notebooks)}] {path.stem:<28}", runs_at, params, shown, mine_shown,
                             key, reads_others, after[path.stem], executed_dir / path.name,
                             results / f"{path.stem}.json"))
    return plan


def notebook_keys(profile: str = "quick", notebooks_dir: Path = NOTEBOOK_DIR,
                  parameters: Mapping[str, object] | None = None) -> dict[str, str]:
    """The build key of every notebook of a book at ``profile`` with ``parameters``, by name: what :func:`build`
    compares with each executed copy to decide whether to run it again. Executes nothing."""
    import nbformat

    _check_profile(profile)
    notebooks = notebook_paths(notebooks_dir)
    declared = {p.stem: set(declared_parameters(nbformat.read(p, as_version=4))) for p in notebooks}
    plan = _plan(profile, notebooks, dict(parameters or {}), declared, {p.stem: () for p in notebooks}, Path(),
                 Path())
    return {item.path.stem: item.key for item in plan}


#: The passages of static pages that the builder writes from the recorded study-scale build, into the staged
#: ``results/`` folder, and the pages that include them: the answer first (book/intro.md) and what the record
#: holds (book/reproducing.md).
STUDY_SCALE_PAGES = {"answer": "study_scale_answer.md", "record": "study_scale_record.md"}


def study_scale_pages(profile: str, results: Path) -> dict[str, str]:
    """The markdown of :data:`STUDY_SCALE_PAGES` for a book at ``profile`` whose notebooks wrote ``results``.

    A book at the recorded profile (:data:`rramlib.study.recorded.STUDY_PROFILE`) is the study-scale build itself:
    its first page shows its own comparison; every other book shows the record's
    (:func:`rramlib.present.study_scale.recorded_answer`), stale or unreadable as the record says."""
    from rramlib.present import study_scale

    rec = recorded.load(recorded.STUDY_PROFILE, book_profile=profile)
    if rec.itself:
        try:
            own = json.loads((results / f"{study_scale.COMPARISON}.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            own = None
        own = own if isinstance(own, dict) else None
        where = f"computed by this build (profile {profile}) in the chapter {study_scale.COMPARISON}"
        answer = study_scale.answer_first(own, where if own is not None else f"{where}, which wrote no results")
    else:
        answer = study_scale.recorded_answer(rec)
    return {"answer": answer, "record": study_scale.record_page(rec)}


def build(profile: str = "quick", out: str | os.PathLike | None = None, *, force: bool = False,
          parameters: Mapping[str, object] | None = None, html: bool = True,
          notebooks_dir: Path = NOTEBOOK_DIR, book_dir: Path = BOOK_DIR, log: Callable[..., None] = _print,
          jobs: int | None = None, data_root: str | os.PathLike | None = None) -> BuildResult:
    """Stage, execute (cached), present and build the book; see :mod:`rramlib.book`. Returns what was done.

    ``data_root``: the dataset folder of a profile that reads one (else the ``data_root`` parameter, else
    ``$RRAMLIB_DATA_ROOT``; :func:`check_data_root`); every notebook's kernel gets it as ``$RRAMLIB_DATA_ROOT``.

    ``jobs``: how many notebooks execute at once (default :func:`build_jobs`); every notebook's results are
    the same either way.
    """
    start = time.perf_counter()
    _check_profile(profile)
    jobs = build_jobs(jobs, profile)
    extra = dict(parameters or {})
    for name in extra:
        parse_parameter(name, "x")  # name checks (reserved names, identifiers)
    _check_tools(html)
    import nbformat

    book_dir = Path(book_dir)
    notebooks = notebook_paths(notebooks_dir)
    read = {p.stem: nbformat.read(p, as_version=4) for p in notebooks}
    declared = {stem: set(declared_parameters(nb)) for stem, nb in read.items()}
    after = {stem: _after(stem, nb, list(read)) for stem, nb in read.items()}
    # the data folder, before any work: one clear error where a chapter needs one and none was given
    data_root = check_data_root(profile, list(read),
                                data_root or extra.get("data_root") or os.environ.get(DATA_ROOT_ENV))
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

    cache_dir = recorded.book_cache_dir()
    cache_dir.mkdir(parents=True, exist_ok=True)
    restored = recorded.restore_models(profile, cache_dir, environment=numeric_environment(profile))
    for line in restored.lines(profile):
        log(line)
    result = BuildResult(profile=profile, out=out, jobs=jobs)
    times_path = results / "build_times.json"
    plan = _plan(profile, notebooks, extra, declared, after, executed_dir, results)
    log(f"book ({profile}): {len(notebooks)} notebook(s), results cache {cache_dir}"
        + (f", up to {jobs} at once" if jobs > 1 else ""))

    runs: dict[str, NotebookRun] = {}
    # with the times: how many ran at once, and the numeric environment of the kernels of each profile (a record
    # computes the base models' cache keys in it, rramlib.study.recorded.record)
    facts = {"jobs": jobs, "kernel_numerics": {runs_at: numeric_environment(runs_at)
                                               for runs_at in sorted({item.runs_at for item in plan})}}

    def finish(item: _Planned, run: NotebookRun) -> None:
        """Check an executed notebook's outputs, write its page and the build times so far."""
        if not item.results_file.exists():
            raise BookError(f"notebook {item.path.stem} wrote no results/{item.path.stem}.json: create its report "
                            f"as Report({item.path.stem!r}, params, out_dir) and call report.finish() last")
        executed_nb = nbformat.read(item.executed, as_version=4)
        run.unfinished_runs = int(executed_nb.metadata.get("rramlib", {}).get("unfinished_runs", 0))
        findings = scan_outputs(executed_nb, allowed=[str(v) for v in extra.values() if isinstance(v, str)])
        if findings:
            raise BookError(f"notebook {item.path.stem} shows machine-specific text in its outputs "
                            f"({item.executed}):\n  " + "\n  ".join(findings[:10]))
        # the notebook's whole execution (kernel start included), as the builder timed it; memory from its report
        page = present(executed_nb, item.path.stem, item.shown, item.runs_at, item.mine_shown, run.executed_seconds,
                       _peak_memory(item.results_file), book_profile=profile)
        write_if_changed(pages / item.path.name, nbformat.writes(page).encode())
        runs[item.path.stem] = run
        result.runs = [runs[p.path.stem] for p in plan if p.path.stem in runs]
        _write_times(times_path, profile, result.runs, facts)

    to_run = []
    for item in plan:
        t0 = time.perf_counter()
        previous = None if force else cached_seconds(item.executed, item.key, item.results_file)
        if previous is None:
            to_run.append(item)
            continue
        run = NotebookRun(item.path.stem, time.perf_counter() - t0, True, item.key, previous)
        log(f"{item.label} {run.seconds:7.1f} s  cached (last run {previous:.1f} s)")
        finish(item, run)
    # every kernel: the data folder (check_data_root), and the profile of this book (a kernel of the book at the
    # recorded profile does not show that record: it is part of the build the record records)
    book_env = {recorded.BOOK_PROFILE_ENV: profile, **({DATA_ROOT_ENV: data_root} if data_root else {})}
    try:
        _execute(plan, to_run, jobs, pages, cache_dir, finish, log, expected_seconds(book_dir, profile), book_env)
    except BookError:
        _write_times(times_path, profile, result.runs, facts)
        raise
    for name, text in study_scale_pages(profile, results).items():
        write_if_changed(results / STUDY_SCALE_PAGES[name], text.encode())
    notebooks_s = time.perf_counter() - start
    if html:
        t0 = time.perf_counter()
        result.html = build_html(src, log=log)
        _write_times(times_path, profile, result.runs, {**facts, "notebooks_total_s": round(notebooks_s, 3),
                                                        "html_s": round(time.perf_counter() - t0, 3)})
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
