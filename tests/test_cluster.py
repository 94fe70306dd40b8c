"""Sweeps on a Dask cluster (rramlib.study.cluster): same records as in-process, robust to a dying worker,
clear errors before any work, and a cache that takes concurrent writers. Loopback only, bounded in time."""
from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch

from rramlib.core.cache import Cache
from rramlib.core.errors import RramlibError
from rramlib.study.experiments import SweepConfig, run_sweep
from rramlib.study.profiles import get_profile

distributed = pytest.importorskip("distributed")
from rramlib.study import cluster  # noqa: E402

#: Small but with every kind of task: a base model, fits with training, per-chip evaluations.
CONFIG = SweepConfig(profile="smoke", preset="ibm_pcm", methods=("none", "vera_plus"), chips=2,
                     method_params={"vera_plus": {"steps": 10}},
                     profile_overrides={"train": dataclasses.replace(get_profile("smoke").train, epochs=2)})
TIMING = {"wall_time_s", "peak_rss_mb", "cache", "fit_time_s"}
#: One task per (per-level method, drift level): vera_plus trains one vector set per level of the smoke profile.
LEVEL_TASKS = get_profile("smoke").levels
N_TASKS = 1 + LEVEL_TASKS + len(CONFIG.methods) * (1 + len(CONFIG.chip_seeds()))


def _diff(a: str, b: str) -> str:
    import difflib
    return "\n".join(difflib.unified_diff(json.dumps(json.loads(a), indent=1, sort_keys=True).splitlines(),
                                          json.dumps(json.loads(b), indent=1, sort_keys=True).splitlines(), lineterm=""))


def _without_timing(obj):
    """The sweep result with every timing/bookkeeping field removed, as canonical JSON."""
    def strip(o):
        if isinstance(o, dict):
            return {k: strip(v) for k, v in o.items() if k not in TIMING}
        if isinstance(o, list):
            return [strip(v) for v in o]
        return o
    return json.dumps(strip(obj), sort_keys=True)


@pytest.fixture(scope="module")
def in_process(tmp_path_factory):
    cache = Cache(tmp_path_factory.mktemp("in-process"))
    result = run_sweep(CONFIG, cache=cache, progress=False)
    result["cache_root"] = cache.root
    return result


def _entries_intact(root: Path) -> int:
    """Number of cache entries under ``root``; fails if any is damaged (Cache.load would discard it).
    A writer killed mid-write may leave a ``.tmp`` file, which is never read as an entry."""
    files = sorted(root.rglob("*.pt"))
    for path in files:
        assert Cache(root).load(path.parent.name, path.stem) is not None, f"damaged entry {path}"
    return len(files)


@pytest.mark.slow
def test_two_local_workers_give_the_in_process_records(in_process, tmp_path):
    cache = Cache(tmp_path)
    with cluster.connect(workers=2) as client:
        assert len(client.scheduler_info()["workers"]) == 2
        assert all(w.startswith("tcp://127.0.0.1:") for w in client.scheduler_info()["workers"])
        result = cluster.run_sweep(CONFIG, client, cache=cache, progress=False)
    ours, theirs = _without_timing(result), _without_timing({k: in_process[k] for k in ("metadata", "records")})
    assert ours == theirs, _diff(theirs, ours)
    # the workers computed everything; the client only read the cache
    assert result["metadata"]["cache"]["misses"] == 0
    # one model, one entry per (method, level) for vera_plus, one fit per method, one entry per (method, chip)
    assert _entries_intact(tmp_path) == N_TASKS
    # vera_plus's levels, fitted as separate tasks in the workers, assemble to the in-process fit bit for bit
    for kind in ("fit_level", "fit"):
        paths = sorted((in_process["cache_root"] / kind).glob("*.pt"))
        assert paths and [p.name for p in paths] == sorted(p.name for p in (tmp_path / kind).glob("*.pt"))
        for path in paths:
            ours, theirs = Cache(tmp_path).load(kind, path.stem), Cache(in_process["cache_root"]).load(kind, path.stem)
            _assert_same_tensors(ours["state"], theirs["state"])


def _assert_same_tensors(a, b, path="state"):
    if isinstance(b, torch.Tensor):
        assert torch.equal(a, b), path
    elif isinstance(b, dict):
        assert list(a) == list(b), path
        for k in b:
            _assert_same_tensors(a[k], b[k], f"{path}/{k}")
    elif isinstance(b, (list, tuple)):
        assert len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b)):
            _assert_same_tensors(x, y, f"{path}/{i}")
    else:
        assert a == b, path


@pytest.mark.slow
def test_a_worker_killed_mid_sweep(in_process, tmp_path):
    """Kill the worker running a fit or evaluation: the sweep finishes, each record once, no damaged entry; the
    nanny's restart of the worker leaves this process's thread variables as they were (they enter cache keys)."""
    shutil.copytree(in_process["cache_root"] / "model", tmp_path / "model")  # the base model is not the point here
    cache = Cache(tmp_path)
    threads_before = {k: os.environ.get(k) for k in cluster.THREAD_VARIABLES}
    with cluster.connect(workers=2) as client:
        done = {}

        def fill():
            try:
                done["n"] = cluster.fill_cache(client, CONFIG, cache, progress=False)
            except Exception as exc:  # surfaced below
                done["error"] = exc

        runner = threading.Thread(target=fill)
        runner.start()
        pids = client.run(os.getpid)
        victim, deadline = None, time.monotonic() + 120
        while victim is None and time.monotonic() < deadline and runner.is_alive():
            for worker, keys in client.processing().items():
                if any(str(k).startswith(("level-vera_plus", "fit-vera_plus", "eval-")) for k in keys):
                    victim = worker
                    break
            time.sleep(0.01)
        assert victim is not None, f"no fit or evaluation task was seen running ({done})"
        os.kill(pids[victim], 9)
        runner.join(timeout=180)
        assert not runner.is_alive() and "error" not in done, done
        assert done["n"] == N_TASKS
    assert {k: os.environ.get(k) for k in cluster.THREAD_VARIABLES} == threads_before
    _entries_intact(tmp_path)
    result = run_sweep(CONFIG, cache=cache, progress=False)
    assert result["metadata"]["cache"]["misses"] == 0
    keys = [(r["method"], r["time_label"], r["chip_seed"]) for r in result["records"]]
    assert len(keys) == len(set(keys)) == 1 + len(CONFIG.methods) * 3 * len(CONFIG.chip_seeds())
    assert _without_timing(result) == _without_timing({k: in_process[k] for k in ("metadata", "records")})


@pytest.mark.parametrize("workers", [0, -2, True, 1.5, "2"])
def test_bad_worker_count_is_refused(workers):
    with pytest.raises(RramlibError, match="--workers must be a positive integer"):
        with cluster.connect(workers=workers):
            pass


def test_workers_and_scheduler_are_exclusive():
    with pytest.raises(RramlibError, match="either --workers"):
        with cluster.connect(workers=2, scheduler="tcp://127.0.0.1:8786"):
            pass


def test_unreachable_scheduler_fails_fast():
    start = time.monotonic()
    with pytest.raises(RramlibError, match="cannot reach the Dask scheduler at 'tcp://127.0.0.1:9'"):
        with cluster.connect(scheduler="tcp://127.0.0.1:9", timeout=2):
            pass
    assert time.monotonic() - start < 30


def _cli(*args, cwd, timeout=600):  # generous: the subprocess imports torch on a loaded machine
    code = "import sys; from rramlib.cli.main import main; rc = main(sys.argv[1:]); " \
           "print('DASK', any(m.split('.')[0] in ('dask', 'distributed') for m in sys.modules)); sys.exit(rc)"
    env = {**os.environ, "DASK_DISTRIBUTED__COMM__TIMEOUTS__CONNECT": "2s"}
    return subprocess.run([sys.executable, "-c", code, *args], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, env=env)


@pytest.mark.parametrize("flags, message", [
    (["--workers", "0"], "error: --workers must be a positive integer"),
    (["--scheduler", "tcp://127.0.0.1:9"], "error: cannot reach the Dask scheduler"),
    (["--workers", "2", "--no-cache"], "error: a cluster run needs a results cache"),
])
def test_cli_errors_before_any_work(tmp_path, flags, message):
    out = _cli("sweep", "--profile", "smoke", "--methods", "none", "--cache-dir", str(tmp_path / "cache"),
               "--out", str(tmp_path / "out.json"), "--quiet", *flags, cwd=tmp_path)
    assert out.returncode == 2, out.stderr
    assert out.stderr.strip().splitlines() == [next(l for l in out.stderr.splitlines() if l.startswith(message))]
    assert not (tmp_path / "cache").exists() and not (tmp_path / "out.json").exists()  # nothing computed


@pytest.mark.slow
def test_in_process_sweep_never_imports_dask(tmp_path):
    out = _cli("sweep", "--profile", "smoke", "--methods", "none", "--chips", "1", "--times", "1s", "--epochs", "1",
               "--cache-dir", str(tmp_path / "cache"), "--out", str(tmp_path / "out.json"), "--quiet", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "DASK False" in out.stdout


# ------------------------------------------------------------------ the cache under concurrent writers
_HAMMER = """
import os, sys, time, torch
from rramlib.core.cache import Cache
root, writer, go = sys.argv[1], int(sys.argv[2]), sys.argv[3]
cache = Cache(root)
open(go + f".ready{writer}", "w").close()
while not os.path.exists(go):
    time.sleep(0.005)
for _ in range(15):
    cache.save("sweep", "samekey", {"writer": writer, "data": torch.full((200_000,), float(writer))})
    entry = cache.load("sweep", "samekey")
    assert entry is not None and bool((entry["data"] == entry["writer"]).all()), "torn entry read"
"""


def test_workers_must_run_this_code_in_one_numeric_environment():
    """The check before a cluster sweep: every worker's digest of the code the tasks run is this process's, and
    all workers share one numeric environment (cache keys depend on both)."""
    code, numerics = cluster._worker_identity()

    class Client:  # what Client.run(f) answers: {worker address: f() there}
        def __init__(self, answers):
            self.answers = answers

        def run(self, fn):
            assert fn is cluster._worker_identity
            return self.answers

    cluster._check_same_sources(Client({"w1": (code, numerics), "w2": (code, numerics)}))
    with pytest.raises(RramlibError, match="worker w2 runs other rramlib sources"):
        cluster._check_same_sources(Client({"w1": (code, numerics), "w2": ("0" * 64, numerics)}))
    with pytest.raises(RramlibError, match="workers w1 and w2 compute in another numeric environment"):
        cluster._check_same_sources(Client({"w1": (code, numerics), "w2": (code, {**numerics, "threads": 99})}))


def test_cache_takes_concurrent_writers_of_one_key(tmp_path):
    """Four processes write and read the same key at once: every read is one writer's whole entry,
    and one intact entry remains (unique temporary names + atomic rename)."""
    go = tmp_path / "go"
    procs = [subprocess.Popen([sys.executable, "-c", _HAMMER, str(tmp_path / "cache"), str(w), str(go)])
             for w in range(4)]
    deadline = time.monotonic() + 60
    while len(list(tmp_path.glob("go.ready*"))) < 4 and time.monotonic() < deadline:
        time.sleep(0.01)
    go.touch()  # all four start writing at once (each waits for this file once imported)
    assert [p.wait(timeout=120) for p in procs] == [0, 0, 0, 0]
    entry = Cache(tmp_path / "cache").load("sweep", "samekey")
    assert entry["writer"] in range(4) and bool((entry["data"] == entry["writer"]).all())
    assert [p.name for p in (tmp_path / "cache" / "sweep").iterdir()] == ["samekey.pt"]  # no temporary file left


# ------------------------------------------------------------------ SLURM recipe
def test_slurm_job_script_renders(tmp_path):
    pytest.importorskip("dask_jobqueue")
    slurm = cluster.slurm_cluster(cache_dir=tmp_path / "cache", cpus=8, memory="32GB", gpus=1, walltime="02:00:00",
                                  account="myproject", scheduler_options={"host": "127.0.0.1", "dashboard_address": "127.0.0.1:0"})
    try:
        script = slurm.job_script()
    finally:
        slurm.close()
    lines = script.splitlines()
    assert lines[0] == "#!/usr/bin/env bash"
    for directive in ("#SBATCH --cpus-per-task=8", "#SBATCH --gres=gpu:1", "#SBATCH -t 02:00:00", "#SBATCH -A myproject"):
        assert directive in lines, script
    assert f"export RRAMLIB_CACHE={tmp_path / 'cache'}" in lines
    assert "export OMP_NUM_THREADS=8" in lines
    worker = next(l for l in lines if "distributed.cli.dask_worker" in l)
    assert "tcp://127.0.0.1:" in worker and "--nthreads 1" in worker and "--nanny" in worker


# ------------------------------------------------------------------ the notebooks' scheduler parameter
def test_notebook_with_an_unreachable_scheduler_fails_at_start(tmp_path):
    import dask

    from rramlib.present.notebook import start

    # Dask read its environment when it was imported: set the connect timeout in its configuration
    with dask.config.set({"distributed.comm.timeouts.connect": "2s"}):
        with pytest.raises(RramlibError, match="cannot reach the Dask scheduler at 'tcp://127.0.0.1:9' within 2 s"):
            start("02_drift_impact", profile="smoke", out_dir=str(tmp_path), scheduler="tcp://127.0.0.1:9")


@pytest.mark.slow
def test_notebook_sweeps_on_its_scheduler(in_process, tmp_path, monkeypatch):
    """``nb.sweep`` with the ``scheduler`` parameter: its fits and evaluations run on that cluster (one worker, with
    this process's thread count: cache keys include it), and the records are those of the in-process sweep."""
    from rramlib.present.notebook import start

    monkeypatch.setenv("RRAMLIB_CACHE", str(tmp_path / "cache"))
    shutil.copytree(in_process["cache_root"] / "model", tmp_path / "cache" / "model")
    with cluster.local_cluster(1) as local:
        nb = start("02_drift_impact", profile="smoke", out_dir=str(tmp_path / "results"),
                   scheduler=local.scheduler_address)
        assert "scheduler" not in nb.report.params  # where it ran is not part of a result
        result = nb.sweep(CONFIG)
    assert result["metadata"]["cache"]["misses"] == 0  # assembled from what the worker's tasks computed
    assert _without_timing(result) == _without_timing({k: in_process[k] for k in ("metadata", "records")})
    assert _entries_intact(tmp_path / "cache") == N_TASKS  # computed by the worker, into the notebook's cache
