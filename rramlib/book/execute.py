"""Executing one notebook with papermill, and the build key that decides whether it must run again."""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import sys
import threading
import time
from collections.abc import Mapping
from pathlib import Path

from rramlib import __version__
from rramlib.core.files import atomic_write, temporary_environ
from rramlib.book.errors import BookError, NotebookError

__all__ = ["KERNEL_NAME", "KEY_VERSION", "source_files", "build_key", "reads_other_results", "execute_notebook",
           "cached_seconds", "HEARTBEAT_S", "UnfinishedRuns"]

PACKAGE_DIR = Path(__file__).resolve().parents[1]
REPO_ROOT = PACKAGE_DIR.parent
KERNEL_NAME = "python3"
#: Bump when the builder changes how notebooks execute (kernel environment, parameters, cwd).
KEY_VERSION = b"rramlib-book-key-v3"
#: The one file of this package that runs inside the kernels (it shapes their outputs): part of the key.
KERNEL_SIDE = ("book/display.py",)
ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def source_files(package_dir: Path = PACKAGE_DIR) -> dict[str, bytes]:
    """Every rramlib source file (``*.py`` in all subpackages, and the bundled data tables), by path.

    The builder (``book/``) is left out, so that working on it does not re-execute every notebook; what it
    changes in the notebooks' execution is versioned by :data:`KEY_VERSION`, and what runs inside the kernels
    (:data:`KERNEL_SIDE`) is kept in.
    """
    files = {}
    for path in sorted(package_dir.rglob("*")):
        if not path.is_file() or path.suffix not in (".py", ".csv") or "__pycache__" in path.parts:
            continue
        rel = path.relative_to(package_dir).as_posix()
        if rel.startswith("book/") and rel not in KERNEL_SIDE:
            continue
        files[rel] = path.read_bytes()
    return files


def build_key(notebook_source: bytes, parameters: Mapping[str, object], sources: Mapping[str, bytes],
              version: str = __version__, upstream: Mapping[str, str] | None = None,
              environment: Mapping[str, str] | None = None) -> str:
    """SHA-256 of everything an executed notebook depends on.

    ``notebook_source``: the notebook file's bytes; ``parameters``: what papermill injects;
    ``sources``: :func:`source_files`; ``upstream``: build keys of the notebooks whose results this
    one reads (empty for most); ``environment``: the kernel's variables that change numbers (threads,
    vector instructions; none leaves the key as it was without them). Every field is length-prefixed, so no
    two inputs collide by concatenation.
    """
    h = hashlib.sha256()

    def feed(data: bytes) -> None:
        h.update(len(data).to_bytes(8, "little"))
        h.update(data)

    feed(KEY_VERSION)
    feed(notebook_source)
    feed(json.dumps(dict(parameters), sort_keys=True, default=repr).encode())
    feed(str(len(sources)).encode())
    for name in sorted(sources):
        feed(name.encode())
        feed(sources[name])
    feed(version.encode())
    feed(json.dumps(dict(upstream or {}), sort_keys=True).encode())
    if environment:
        feed(json.dumps(dict(environment), sort_keys=True).encode())
    return h.hexdigest()


def reads_other_results(notebook_source: bytes) -> bool:
    """Does the notebook read other notebooks' results (``load_results``, ``build_times.json``, or the helpers
    that call them: ``claims_table``, ``runtime_table``)?"""
    return any(word in notebook_source for word in (b"load_results", b"build_times", b"claims_table", b"runtime_table"))


def cached_seconds(executed: Path, key: str, results: Path) -> float | None:
    """The last execution time when ``executed`` holds ``key`` and the results file exists, else None."""
    if not executed.exists() or not results.exists():
        return None
    try:
        meta = json.loads(executed.read_text(encoding="utf-8")).get("metadata", {}).get("rramlib", {})
    except (OSError, ValueError):
        return None
    return meta.get("seconds", 0.0) if meta.get("build_key") == key else None


#: Seconds between two notes of how long a running notebook has run (:class:`UnfinishedRuns`): what an
#: interruption can lose of a notebook's wall time, at most.
HEARTBEAT_S = 30.0


class UnfinishedRuns:
    """The wall time of a notebook's executions that did not finish, so that the one that finishes reports all the
    time its results took to compute.

    A study-scale chapter runs for hours, and a session's end, a crash or a failing cell can stop it; its finished
    work stays in the results cache, so the next execution computes only the rest. The ledger, a JSON file beside
    the executed notebook (``<name>.unfinished.json``), holds for one build key the seconds of every earlier
    unfinished execution and of the current one, the latter rewritten every ``heartbeat_s`` seconds while it runs
    (an interruption loses at most that). A ledger of another build key is discarded (its work was another
    version's). Use it as a context manager around one execution; :meth:`finish` deletes it once the execution's
    own record is written.
    """

    def __init__(self, executed: Path, key: str, heartbeat_s: float = HEARTBEAT_S):
        self.path = Path(executed).with_suffix(".unfinished.json")
        self.key, self.heartbeat_s = key, float(heartbeat_s)
        self.earlier: list[float] = []
        self._start = 0.0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._finished = False

    @property
    def earlier_seconds(self) -> float:
        """Wall seconds of the earlier unfinished executions with this key."""
        return float(sum(self.earlier))

    def _read(self) -> list[float]:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
            if data.get("build_key") != self.key:
                return []
            runs = [float(s) for s in data.get("earlier_s", [])]
            current = float(data.get("current_s", 0.0))
        except (OSError, ValueError, TypeError, AttributeError):
            return []  # absent, or half-written by a process that was killed: nothing to add
        return runs + ([current] if current > 0 else [])

    def _write(self) -> None:
        atomic_write(self.path, json.dumps({"build_key": self.key, "earlier_s": self.earlier,
                                            "current_s": round(time.perf_counter() - self._start, 3)}) + "\n")

    def _beat(self) -> None:
        while not self._stop.wait(self.heartbeat_s):
            self._write()

    def __enter__(self) -> UnfinishedRuns:
        self.earlier = self._read()
        self._start = time.perf_counter()
        self._write()
        self._thread = threading.Thread(target=self._beat, name=f"heartbeat {self.path.stem}", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        if not self._finished:
            self._write()  # this execution's seconds: an earlier run for the next one, unless finish() follows

    def finish(self) -> None:
        """The execution finished and its record holds the earlier runs: forget them (inside or after the
        ``with`` block)."""
        self._finished = True
        self._stop.set()
        if self._thread is not None:
            self._thread.join()  # no note after the deletion
        self.path.unlink(missing_ok=True)


_STARTUP = """# written by the rramlib book builder: the book's table display in every kernel
from rramlib.book.display import install

install()
"""


def _ipython_dir(cache_dir: Path) -> Path:
    """An IPython folder whose start-up file installs :mod:`rramlib.book.display` (and nothing of the
    user's own IPython profile, so every build's kernels start alike)."""
    folder = cache_dir / "book-ipython"
    startup = folder / "profile_default" / "startup" / "00-rramlib-book.py"
    if not startup.exists() or startup.read_text() != _STARTUP:
        atomic_write(startup, _STARTUP)
    return folder


def _kernel_env(cache_dir: Path) -> dict[str, str]:
    """Environment of the kernels: shared results cache, this checkout first on the path."""
    env = {"RRAMLIB_CACHE": str(cache_dir), "IPYTHONDIR": str(_ipython_dir(cache_dir))}
    path = os.environ.get("PYTHONPATH")
    env["PYTHONPATH"] = str(REPO_ROOT) + (os.pathsep + path if path else "")
    # tqdm.auto warns (with the absolute path of the importing file) when ipywidgets is missing
    warnings = os.environ.get("PYTHONWARNINGS")
    env["PYTHONWARNINGS"] = "ignore:IProgress not found" + ("," + warnings if warnings else "")
    # the kernelspec of this environment first (a user-level "python3" could be another Python)
    jupyter_path = os.environ.get("JUPYTER_PATH")
    env["JUPYTER_PATH"] = str(Path(sys.prefix) / "share" / "jupyter") + (os.pathsep + jupyter_path if jupyter_path
                                                                         else "")
    env["PYDEVD_DISABLE_FILE_VALIDATION"] = "1"  # debugger notice on stderr, irrelevant here
    return env


def execute_notebook(source: Path, output: Path, parameters: Mapping[str, object], *,
                     cwd: Path | None = None, cache_dir: Path | None = None,
                     metadata: Mapping[str, object] | None = None, timeout: float | None = None,
                     environment: Mapping[str, str] | None = None) -> float:
    """Execute ``source`` with papermill into ``output``; returns the wall seconds.

    With a ``build_key`` in ``metadata``, the seconds include those of the earlier executions with that key that
    did not finish (:class:`UnfinishedRuns`): the time the notebook's results took, across interruptions; the
    executed notebook's ``metadata.rramlib`` says how many there were (``unfinished_runs``) and how long they took
    (``unfinished_seconds``). The kernel (``python3``) runs in ``cwd`` (default: the output's folder) with the shared results
    cache, this checkout's rramlib and the book's table display (:mod:`rramlib.book.display`).
    ``metadata`` is stored under ``metadata.rramlib`` of the executed notebook; ``environment`` adds variables
    to the kernel's environment. Raises
    :class:`NotebookError` when a cell raises.
    """
    import nbformat
    import papermill
    from papermill.exceptions import PapermillExecutionError

    source, output = Path(source).resolve(), Path(output).resolve()
    cwd = Path(cwd).resolve() if cwd is not None else output.parent
    cwd.mkdir(parents=True, exist_ok=True)
    output.parent.mkdir(parents=True, exist_ok=True)
    cache_dir = Path(cache_dir or os.environ.get("RRAMLIB_CACHE") or REPO_ROOT / ".rramlib_cache").resolve()
    name = source.stem
    # MPLBACKEND=Agg in the environment would make every figure vanish from the book
    key = (metadata or {}).get("build_key")
    ledger = UnfinishedRuns(output, key) if key else contextlib.nullcontext()
    start = time.perf_counter()
    try:
        with ledger, temporary_environ({**_kernel_env(cache_dir), **(environment or {})}, remove=("MPLBACKEND",)):
            papermill.execute_notebook(
                str(source), str(output), parameters=dict(parameters), kernel_name=KERNEL_NAME,
                cwd=str(cwd), progress_bar=False, log_output=False, report_mode=False,
                execution_timeout=timeout, extra_arguments=["--IPKernelApp.log_level=CRITICAL"],
            )
    except PapermillExecutionError as exc:
        raise NotebookError(name, exc.ename, exc.evalue, exc.exec_count,
                            ANSI.sub("", "\n".join(exc.traceback or [])), output) from None
    except Exception as exc:  # kernel died, notebook unreadable, ...
        raise BookError(f"notebook {name} could not be executed: {type(exc).__name__}: {exc}") from None
    earlier = ledger.earlier if key else []
    seconds = time.perf_counter() - start + sum(earlier)
    nb = nbformat.read(output, as_version=4)
    pm = nb.metadata.get("papermill", {})
    # papermill stores the absolute paths it was given
    inside = source.is_relative_to(REPO_ROOT)
    pm["input_path"] = source.relative_to(REPO_ROOT).as_posix() if inside else source.name
    pm["output_path"] = output.name
    nb.metadata["rramlib"] = {**(metadata or {}), "seconds": round(seconds, 3), "unfinished_runs": len(earlier),
                              "unfinished_seconds": round(sum(earlier), 3)}
    atomic_write(output, nbformat.writes(nb))
    if key:
        ledger.finish()
    return seconds
