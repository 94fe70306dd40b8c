"""Run a sweep's independent tasks on a Dask cluster (the optional extra ``rramlib[cluster]``).

A sweep is made of independent pieces of work, each already keyed in the content-addressed cache
(:mod:`rramlib.core.cache`): the base model, one fit per (method, drift level) for the methods that train one
parameter set per level (:func:`rramlib.study.experiments.fit_level`) and one fit per method (for those methods,
the assembly of their levels), and one evaluation per (method, evaluation chip). :func:`fill_cache` runs
them as Dask tasks -- level fits after the base model, a method's fit after its levels, each chip's
evaluation after its method's fit -- and every task writes its result into the cache. :func:`run_sweep`
then runs the ordinary in-process :func:`rramlib.study.experiments.run_sweep` as one last task, which finds
everything in the cache and assembles the records, so a cluster run writes the same records as an
in-process run: one code path computes, the cluster only decides where. A worker that dies takes only its running task
with it: Dask runs that task again elsewhere (a writer killed mid-write may leave a ``.tmp`` file, never
an entry). The numbers are the same bit for bit whatever the number of workers, as long as every
process computes with the same torch thread count on the same kind of hardware: torch's CPU kernels may
sum in another order with another thread count (a base model trained with 1 thread differed from one
trained with 2 here). :func:`local_cluster` therefore gives every worker this process's thread count;
on a machine with fewer cores than workers x threads, lower ``OMP_NUM_THREADS`` for all runs alike.

Requirements: every worker imports the same rramlib, and sees the cache folder (and the dataset
root) at the same path, e.g. on a shared filesystem. The cache takes concurrent writers: an entry is
written under a unique temporary name and renamed into place, so two workers computing the same key
leave one intact entry.

Nothing here is imported by rramlib unless a cluster is asked for (``--workers`` / ``--scheduler``).
"""
from __future__ import annotations

import dataclasses
import hashlib
import os
import threading
from contextlib import contextmanager
from pathlib import Path

from rramlib.core.cache import Cache, default_cache_dir, source_digest
from rramlib.core.errors import RramlibError
from rramlib.core.files import temporary_environ
from rramlib.methods.schedule import log_windows
from rramlib.core.numerics import numeric_environment
from rramlib.study.experiments import chip_accuracies, fit_level, prepare, run_sweep as run_in_process

__all__ = ["THREAD_VARIABLES", "connect", "fill_cache", "local_cluster", "require_cache", "run_sweep", "slurm_cluster"]

def _import_distributed():
    try:
        import distributed
    except ImportError:
        raise RramlibError("running on a Dask cluster needs the cluster extra: pip install 'rramlib[cluster]'") from None
    return distributed


def _check_workers(workers) -> int:
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise RramlibError(f"--workers must be a positive integer (number of worker processes), got {workers!r}")
    return workers


#: The variables that set a worker's thread count (OpenMP, MKL, OpenBLAS).
THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


def local_cluster(workers: int, *, threads: int | None = None):
    """A Dask cluster of ``workers`` processes on this machine, listening on 127.0.0.1 only.

    Each worker runs one task at a time with ``threads`` torch threads (default: this process's
    ``torch.get_num_threads()``, so that its numbers equal an in-process run's bit for bit).
    """
    import torch

    _check_workers(workers)
    distributed = _import_distributed()
    threads = threads or torch.get_num_threads()
    env = {name: str(threads) for name in THREAD_VARIABLES}
    with _environ(env):  # inherited by the worker processes the nannies spawn
        return distributed.LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, host="127.0.0.1",
                                        dashboard_address=None, silence_logs=40)


@contextmanager
def _environ(values: dict[str, str]):
    """``values`` in this process's environment and in the environment Dask's nannies give their workers."""
    import dask

    with temporary_environ(values), dask.config.set({"distributed.nanny.pre-spawn-environ": values}):
        yield


@contextmanager
def connect(*, workers: int | None = None, scheduler: str | None = None, timeout: float | None = None,
            threads: int | None = None):
    """A Dask ``Client``: on a new local cluster of ``workers`` processes, or on the scheduler at ``scheduler``.

    Fails with one :class:`RramlibError` (bad value, both or neither given, scheduler unreachable within
    ``timeout`` seconds -- default: Dask's ``distributed.comm.timeouts.connect`` setting, e.g.
    ``DASK_DISTRIBUTED__COMM__TIMEOUTS__CONNECT=10s`` -- or extra not installed) before any computation. The local cluster is closed on exit;
    ``threads`` goes to :func:`local_cluster`.
    """
    if (workers is None) == (scheduler is None):
        raise RramlibError("give either --workers N (a local cluster) or --scheduler ADDRESS (an existing one)")
    if workers is not None:
        _check_workers(workers)
    distributed = _import_distributed()
    if workers is not None:
        # a nanny that restarts a worker writes the workers' thread variables into this process's environment
        # (Dask applies pre-spawn-environ in the nanny, which lives here): put ours back when the cluster closes
        with temporary_environ({}, keep=THREAD_VARIABLES), local_cluster(workers, threads=threads) as cluster, \
                distributed.Client(cluster) as client:
            yield client
        return
    if timeout is None:
        import dask

        timeout = dask.utils.parse_timedelta(dask.config.get("distributed.comm.timeouts.connect"))
    try:
        client = distributed.Client(scheduler, timeout=timeout)
    except Exception as exc:  # OSError, TimeoutError, ValueError for a malformed address ...
        raise RramlibError(f"cannot reach the Dask scheduler at {scheduler!r} within {timeout:g} s "
                           f"({type(exc).__name__}: {exc})") from None
    with client:
        yield client


def require_cache(cache: Cache) -> Cache:
    """``cache``, or a RramlibError if it is disabled: the workers hand their results over through it."""
    if cache.root is None:
        raise RramlibError("a cluster run needs a results cache that every worker can read (drop --no-cache)")
    return cache


def slurm_cluster(*, cache_dir: str | os.PathLike, cpus: int = 8, memory: str = "32GB", gpus: int = 1,
                  walltime: str = "04:00:00", **kwargs):
    """A dask-jobqueue ``SLURMCluster`` for sweeps: each SLURM job is one Dask worker running one task at a
    time on ``gpus`` GPUs and ``cpus`` cores (torch threads), with ``RRAMLIB_CACHE=cache_dir`` (a shared
    folder). ``kwargs`` go to ``SLURMCluster`` (``queue``, ``account``, ``interface``, ``scheduler_options``,
    ``job_extra_directives`` ...). Grow it with ``cluster.scale(jobs=N)`` or ``cluster.adapt(maximum_jobs=N)``.
    """
    import shlex

    try:
        from dask_jobqueue import SLURMCluster
    except ImportError:
        raise RramlibError("a SLURM cluster needs the cluster extra: pip install 'rramlib[cluster]'") from None
    directives = [f"--gres=gpu:{gpus}"] if gpus else []
    prologue = [f"export RRAMLIB_CACHE={shlex.quote(str(cache_dir))}", f"export OMP_NUM_THREADS={cpus}"]
    return SLURMCluster(cores=1, processes=1, job_cpu=cpus, memory=memory, walltime=walltime,
                        job_extra_directives=directives + list(kwargs.pop("job_extra_directives", [])),
                        job_script_prologue=prologue + list(kwargs.pop("job_script_prologue", [])), **kwargs)


# ------------------------------------------------------------------ the tasks (run on the workers)
_EXPERIMENTS: dict[str, object] = {}
_EXPERIMENTS_LOCK = threading.Lock()


def _experiment(config, schedule, cache_root: str, data_root: str | None, download: bool):
    """This worker's :class:`~rramlib.study.experiments.Experiment` of ``config`` (built once per process)."""
    key = repr((dataclasses.replace(config, methods=("none",)), schedule and schedule.edges, cache_root, data_root))
    with _EXPERIMENTS_LOCK:
        if key not in _EXPERIMENTS:
            _EXPERIMENTS[key] = prepare(config, schedule=schedule, data_root=data_root, download=download,
                                        cache=Cache(cache_root))
        return _EXPERIMENTS[key]


def _base_task(*args) -> str:
    """Train (or find in the cache) the base model; returns its cache key."""
    return _experiment(*args).base.key


def _level_task(*args, method: str, level: int, after=None) -> tuple[str, int]:
    """Train drift level ``level`` of the per-level ``method`` (or find it in the cache), in a fresh method."""
    exp = _experiment(*args)
    fit_level(args[0].method(method), exp.ctx, exp.fit_key, Cache(args[2]), level)
    return method, level


def _fit_task(*args, method: str, after=None) -> str:
    """Fit ``method`` (or find its fit in the cache); a per-level method assembles its cached levels."""
    exp = _experiment(*args)
    exp.fit(method, args[0], Cache(args[2]))
    return method


def _eval_task(*args, method: str, seed: int, after=None) -> tuple[str, int]:
    """Accuracy of evaluation chip ``seed`` under ``method`` over the time grid, into the cache."""
    config, cache = args[0], Cache(args[2])
    exp = _experiment(*args)
    chip_accuracies(exp, config, exp.fit(method, config, cache), seed, cache)
    return method, seed


def _assemble_task(config, schedule, cache_root, data_root, download) -> dict:
    """The sweep's records, read from the cache by the in-process runner (on a worker: it has the data)."""
    return run_in_process(config, schedule=schedule, data_root=data_root, download=download,
                          cache=Cache(cache_root), progress=False)


# ------------------------------------------------------------------ the client side
def _worker_identity() -> tuple[str, dict]:
    """What a worker's cache keys depend on besides the configuration: the code the tasks run (the import
    closure of this module, which runs them: :func:`rramlib.core.cache.source_digest`) and its numeric
    environment (:func:`rramlib.core.numerics.numeric_environment`)."""
    return source_digest((__name__.split(".", 1)[1],)), numeric_environment()


def _check_same_sources(client) -> None:
    """Fail unless every worker imports the code the tasks run as this process has it, and all workers compute
    in one numeric environment (torch version, threads, instruction cap): cache keys depend on both, and a
    worker that keyed its results otherwise would hand nothing over to the others."""
    ours = _worker_identity()[0]
    first = None
    for worker, (digest, numerics) in client.run(_worker_identity).items():
        if digest != ours:
            raise RramlibError(f"worker {worker} runs other rramlib sources than this process (digest {digest[:12]} "
                               f"vs {ours[:12]}); every worker must import the same rramlib")
        if first is not None and numerics != first[1]:
            raise RramlibError(f"workers {first[0]} and {worker} compute in another numeric environment ({first[1]} "
                               f"vs {numerics}); give every worker the same torch version, threads and instruction cap")
        first = first or (worker, numerics)


def fill_cache(client, config, cache: Cache, *, schedule=None, data_root: str | None = None, download: bool = False,
               progress: bool = True) -> int:
    """Compute every cache entry ``config``'s sweep needs on the cluster behind ``client``; returns the task count.

    Progress is shown as tasks complete. A task whose worker dies is run again elsewhere (Dask retries
    it), and a result already in the cache is read, not recomputed.
    """
    from tqdm import tqdm

    distributed = _import_distributed()
    require_cache(cache)
    _check_same_sources(client)
    root = str(Path(cache.root).resolve())
    args = (config, schedule, root, data_root, download)
    tag = hashlib.sha256(repr((config, schedule and schedule.edges, root)).encode()).hexdigest()[:12]
    n_levels = (schedule or log_windows(config.resolved_profile().levels)).num_levels
    base = client.submit(_base_task, *args, key=f"base-{tag}", pure=False)
    levels = {m: [client.submit(_level_task, *args, method=m, level=k, after=base, key=f"level-{m}-{k}-{tag}",
                                pure=False) for k in range(n_levels)] if config.method(m).trains_per_level() else []
              for m in config.methods}
    fits = {m: client.submit(_fit_task, *args, method=m, after=levels[m] or base, key=f"fit-{m}-{tag}", pure=False)
            for m in config.methods}
    evals = [client.submit(_eval_task, *args, method=m, seed=s, after=fits[m], key=f"eval-{m}-{s}-{tag}", pure=False)
             for m in config.methods for s in config.chip_seeds()]
    futures = [base, *(f for fs in levels.values() for f in fs), *fits.values(), *evals]
    for future in tqdm(distributed.as_completed(futures), total=len(futures), desc="cluster tasks",
                       disable=not progress, unit="task"):
        future.result()  # raises the task's own error, e.g. a RramlibError from bad data
    return len(futures)


def run_sweep(config, client, *, schedule=None, data_root: str | None = None, download: bool = False,
              cache: Cache | None = None, progress: bool = True) -> dict:
    """:func:`rramlib.study.experiments.run_sweep` with its heavy work done on the cluster behind ``client``.

    After :func:`fill_cache`, one last task on a worker runs the in-process sweep, which finds every result
    in the cache and assembles the records (so this process needs neither the data nor a GPU).
    """
    cache = cache or Cache(default_cache_dir())
    fill_cache(client, config, cache, schedule=schedule, data_root=data_root, download=download, progress=progress)
    root = str(Path(cache.root).resolve())
    return client.submit(_assemble_task, config, schedule, root, data_root, download, pure=False).result()
