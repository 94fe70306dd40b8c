"""The book builder running notebooks side by side: how many, in which order, and what the kernels see."""
from __future__ import annotations

import json
import os
import pickle
import re

import nbformat
import pytest

from rramlib import book
from rramlib.book import builder
from rramlib.core.errors import RramlibError

from tiny_book import tiny_book_dirs

# each notebook notes when it started and ended, its kernel's thread settings and torch's thread count
_LOGGING = ("import json, os, pathlib, time\n"
            "start = time.time()\n"
            "time.sleep(seconds)\n"
            "{extra}"
            "pathlib.Path(out_dir).mkdir(parents=True, exist_ok=True)\n"
            "(pathlib.Path(out_dir) / '{stem}.json').write_text(json.dumps({{'runtime_s': 0.1, 'peak_rss_mb': 1}}))\n"
            "written = pathlib.Path(log_dir, '{stem}.json').write_text(json.dumps({{'start': start, 'end': time.time(), "
            "'wait_policy': os.environ.get('OMP_WAIT_POLICY'), 'omp': os.environ.get('OMP_NUM_THREADS'), "
            "'threads': threads}}))")


def _wait_for(marker: str, then: float = 0.0) -> str:
    """Notebook code that waits (at most two minutes) until another notebook creates ``marker`` in ``log_dir``."""
    return (f"for tick in range(1200):\n    if pathlib.Path(log_dir, {marker!r}).exists():\n        break\n"
            f"    time.sleep(0.1)\ntime.sleep({then})\nthreads = None\n")


def _notebook(stem, log_dir, seconds=0.0, after=None, extra="threads = None\n"):
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    if after is not None:
        nb.metadata["rramlib_book"] = {"after": after}
    cell = nbformat.v4.new_code_cell(f"profile = 'quick'\nout_dir = 'results'\nlog_dir = {str(log_dir)!r}\n"
                                     f"seconds = {seconds}")
    cell.metadata["tags"] = ["parameters"]
    nb.cells = [nbformat.v4.new_markdown_cell(f"# {stem}"), cell,
                nbformat.v4.new_code_cell(_LOGGING.format(stem=stem, extra=extra))]
    return nb


def _book(tmp_path, specs):
    """A book of the notebooks ``specs`` (stem -> keyword arguments of :func:`_notebook`)."""
    notebooks, book_dir = tiny_book_dirs(tmp_path, next(iter(specs)))
    log_dir = tmp_path / "log"
    log_dir.mkdir()
    for stem, kwargs in specs.items():
        nbformat.write(_notebook(stem, log_dir, **kwargs), notebooks / f"{stem}.ipynb")
    return notebooks, book_dir, log_dir


def _build(tmp_path, notebooks, book_dir, jobs, lines=None):
    log = (lambda *a, **k: lines.append(a[0])) if lines is not None else (lambda *a, **k: None)
    return book.build("smoke", tmp_path / "out", html=False, notebooks_dir=notebooks, book_dir=book_dir, log=log,
                      jobs=jobs)


def _logs(log_dir):
    return {p.stem: json.loads(p.read_text()) for p in log_dir.glob("*.json")}


def test_jobs_from_argument_environment_and_profile(monkeypatch):
    monkeypatch.delenv(builder.JOBS_ENV, raising=False)
    monkeypatch.setattr(builder.os, "cpu_count", lambda: 8)
    assert builder.build_jobs(3) == 3
    assert builder.build_jobs(None, "quick") == builder.MAX_AUTO_JOBS == 4
    assert builder.build_jobs(None, "cifar") == 1  # a study-scale notebook keeps every core busy on its own
    monkeypatch.setattr(builder.os, "cpu_count", lambda: 1)
    assert builder.build_jobs(None, "smoke") == 1
    monkeypatch.setenv(builder.JOBS_ENV, "4")
    assert builder.build_jobs(None, "cifar") == 4
    assert builder.build_jobs(2, "cifar") == 2  # the argument wins over the environment


@pytest.mark.parametrize("value", ["two", "0", "-1", "1.5"])
def test_bad_jobs_are_refused_before_any_work(tmp_path, monkeypatch, value):
    monkeypatch.setenv(builder.JOBS_ENV, value)
    with pytest.raises(RramlibError, match="RRAMLIB_BOOK_JOBS|jobs"):
        book.build("smoke", tmp_path / "out", html=False, notebooks_dir=tmp_path, book_dir=tmp_path)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("after", [["02_b"], ["99_x"], "01_a", [1]])
def test_after_must_name_earlier_notebooks(tmp_path, monkeypatch, after):
    monkeypatch.setenv("RRAMLIB_CACHE", str(tmp_path / "cache"))
    notebooks, book_dir, log_dir = _book(tmp_path, {"01_a": {"after": after}, "02_b": {}})
    with pytest.raises(book.BookError, match="rramlib_book.after"):
        _build(tmp_path, notebooks, book_dir, jobs=2)
    assert _logs(log_dir) == {}  # refused before any notebook ran


def test_kernel_threads_by_profile(monkeypatch):
    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    monkeypatch.delenv("GLIBC_TUNABLES", raising=False)
    keep = builder.KEEP_FREED_MEMORY
    single = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", **builder.instruction_cap()}
    assert builder.kernel_environment("quick", 1) == builder.kernel_environment("smoke", 4) == {**single, **keep}
    assert builder.kernel_environment("cifar", 1) == keep  # torch's default threads: the recorded build's setting
    assert builder.kernel_environment("cifar", 2) == {**keep, "OMP_WAIT_POLICY": "PASSIVE"}
    # only threads and instructions change numbers: they alone enter the build key
    assert builder.numeric_environment("quick") == single and builder.numeric_environment("cifar") == {}
    monkeypatch.setenv("OMP_WAIT_POLICY", "ACTIVE")  # the user's own choices stand
    monkeypatch.setenv("GLIBC_TUNABLES", "glibc.malloc.arena_max=2")
    assert builder.kernel_environment("paper", 2) == {}


@pytest.mark.parametrize("capability,capped", [("AVX512", True), ("AVX2", True), ("DEFAULT", False),
                                                ("NO AVX", False), ("ZVECTOR", False)])
def test_small_profiles_cap_vector_instructions_at_avx2(monkeypatch, capability, capped):
    """x86 machines with AVX2 or AVX-512 both compute at AVX2 (the same sums); other machines are left alone."""
    monkeypatch.setattr(builder, "cpu_capability", lambda: capability)
    for name in builder.AVX2_CAP:
        monkeypatch.delenv(name, raising=False)
    env = builder.kernel_environment("quick", 2)
    assert (env.items() >= builder.AVX2_CAP.items()) == capped
    assert not any(name in env for name in builder.AVX2_CAP) or capped
    assert builder.numeric_environment("cifar") == {}  # the study scale keeps the machine's widest instructions
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX512_CORE")  # a variable the user set stands
    assert "ONEDNN_MAX_CPU_ISA" not in builder.kernel_environment("smoke", 1)


def test_cpu_capability_is_torchs():
    import torch

    assert builder.cpu_capability() == torch.backends.cpu.get_cpu_capability()


def test_side_by_side_order_and_kernel_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("RRAMLIB_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("OMP_NUM_THREADS", "2")  # a small profile's kernels run on one thread all the same

    # each runs until the other runs: side by side they overlap (whichever kernel starts first); one at a time, the
    # first would wait in vain
    specs = {"01_a": {"extra": "pathlib.Path(log_dir, 'a-running').touch()\n" + _wait_for("b-running", then=1)},
             "02_b": {"extra": "pathlib.Path(log_dir, 'b-running').touch()\n" + _wait_for("a-running") +
                               "import torch\n"
                               "threads = torch.get_num_threads()\n"
                               "pathlib.Path(log_dir, 'isa').write_text(torch.backends.cpu.get_cpu_capability())\n"
                               "pathlib.Path(log_dir, 'malloc').write_text(os.environ.get('GLIBC_TUNABLES', ''))\n"},
             "03_c": {"after": ["01_a"]},  # reuses what 01_a leaves in the cache
             "04_d": {"extra": "threads = None  # load_results: reads the others' results\n"}}
    notebooks, book_dir, log_dir = _book(tmp_path, specs)
    lines = []
    result = _build(tmp_path, notebooks, book_dir, jobs=2, lines=lines)
    logs = _logs(log_dir)
    assert logs["02_b"]["start"] < logs["01_a"]["end"] and logs["01_a"]["start"] < logs["02_b"]["end"]  # overlap
    assert logs["03_c"]["start"] >= logs["01_a"]["end"]  # waited for the notebook it names
    assert logs["04_d"]["start"] >= max(logs[s]["end"] for s in ("01_a", "02_b", "03_c"))  # reads every earlier one
    assert {log["omp"] for log in logs.values()} == {"1"} and logs["02_b"]["threads"] == 1
    capped = builder.cpu_capability() in ("AVX2", "AVX512") and "ATEN_CPU_CAPABILITY" not in os.environ
    assert (log_dir / "isa").read_text() == ("AVX2" if capped else builder.cpu_capability())
    keep = os.environ.get("GLIBC_TUNABLES", builder.KEEP_FREED_MEMORY["GLIBC_TUNABLES"])
    assert (log_dir / "malloc").read_text() == keep
    assert [r.name for r in result.runs] == list(specs) and result.jobs == 2  # reported in notebook order
    assert any(line.endswith("up to 2 at once") for line in lines)
    times = json.loads((tmp_path / "out" / "src" / "results" / "build_times.json").read_text())
    assert times["jobs"] == 2 and list(times["notebooks"]) == list(specs)

    for stem in specs:  # the same book one at a time: the same pages and threads
        (log_dir / f"{stem}.json").unlink()
    pages = {s: _page(tmp_path, s) for s in specs}
    result = book.build("smoke", tmp_path / "out", html=False, notebooks_dir=notebooks, book_dir=book_dir,
                        log=lambda *a, **k: None, jobs=1, force=True)
    logs = _logs(log_dir)
    assert {log["omp"] for log in logs.values()} == {"1"} and logs["02_b"]["threads"] == 1
    assert [logs[s]["start"] for s in specs] == sorted(logs[s]["start"] for s in specs)
    assert {s: _page(tmp_path, s) for s in specs} == pages


def _page(tmp_path, stem):
    """A page's cells as the reader sees them, less the wall time in the build box."""
    page = nbformat.read(tmp_path / "out" / "src" / "notebooks" / f"{stem}.ipynb", as_version=4)
    return [(cell.cell_type, re.sub(r"\d+\.\d s", "", cell.source),
             json.dumps(cell.get("outputs", []), sort_keys=True)) for cell in page.cells]


def test_longest_last_time_starts_first(tmp_path, monkeypatch):
    monkeypatch.setenv("RRAMLIB_CACHE", str(tmp_path / "cache"))
    notebooks, book_dir, log_dir = _book(tmp_path, {"01_a": {}, "02_b": {"seconds": 1.0}, "03_c": {"seconds": 1.0}})
    executed = tmp_path / "out" / "executed"
    executed.mkdir(parents=True)
    for stem, seconds in (("01_a", 1.0), ("02_b", 50.0), ("03_c", 100.0)):  # an earlier build's times (other keys)
        nb = _notebook(stem, log_dir)
        nb.metadata["rramlib"] = {"build_key": "old", "seconds": seconds}
        nbformat.write(nb, executed / f"{stem}.ipynb")
    _build(tmp_path, notebooks, book_dir, jobs=2)
    logs = _logs(log_dir)
    assert logs["01_a"]["start"] >= min(logs["02_b"]["end"], logs["03_c"]["end"])  # the shortest waited


def test_a_first_build_takes_the_order_from_the_expected_times(tmp_path, monkeypatch):
    monkeypatch.setenv("RRAMLIB_CACHE", str(tmp_path / "cache"))
    notebooks, book_dir, log_dir = _book(tmp_path, {"01_a": {}, "02_b": {"seconds": 1.0}, "03_c": {"seconds": 1.0}})
    expected = {"smoke": {"notebooks": {"01_a": {"seconds": 1.0}, "02_b": {"seconds": 50.0},
                                        "03_c": {"seconds": 100.0}}}}
    (book_dir / builder.EXPECTED_TIMES).write_text(json.dumps(expected))
    assert builder.expected_seconds(book_dir, "smoke") == {"01_a": 1.0, "02_b": 50.0, "03_c": 100.0}
    _build(tmp_path, notebooks, book_dir, jobs=2)  # nothing executed here before: the shipped times order it
    logs = _logs(log_dir)
    assert logs["01_a"]["start"] >= min(logs["02_b"]["end"], logs["03_c"]["end"])  # the shortest waited
    assert not (tmp_path / "out" / "src" / builder.EXPECTED_TIMES).exists()  # builder input, not a page


@pytest.mark.parametrize("text", ["", "not json", "[]", '{"smoke": {"notebooks": {"01_a": {"seconds": "x"}}}}',
                                  '{"quick": {"notebooks": {}}}'])
def test_unreadable_expected_times_leave_the_notebook_order(tmp_path, text):
    (tmp_path / builder.EXPECTED_TIMES).write_text(text)
    assert builder.expected_seconds(tmp_path, "smoke") == {}
    assert builder.expected_seconds(tmp_path / "missing", "smoke") == {}


def test_the_shipped_expected_times_name_notebooks_of_the_book():
    shipped = builder.expected_seconds(builder.BOOK_DIR, "quick")
    assert shipped and set(shipped) <= {p.stem for p in builder.NOTEBOOK_DIR.glob("*.ipynb")}
    assert all(seconds > 0 for seconds in shipped.values())


def test_a_failure_side_by_side_stops_new_work_and_names_the_notebook(tmp_path, monkeypatch):
    monkeypatch.setenv("RRAMLIB_CACHE", str(tmp_path / "cache"))
    # 01_a runs until 02_b has failed (and a little longer): 03_c could start only after a failure
    specs = {"01_a": {"extra": _wait_for("failing", then=3)},
             "02_b": {"extra": "pathlib.Path(log_dir, 'failing').touch()\nraise ValueError('broken on purpose')\n"},
             "03_c": {}}
    notebooks, book_dir, log_dir = _book(tmp_path, specs)
    with pytest.raises(book.NotebookError, match="broken on purpose") as info:
        _build(tmp_path, notebooks, book_dir, jobs=2)
    assert info.value.notebook == "02_b" and info.value.ename == "ValueError"
    assert set(_logs(log_dir)) == {"01_a"}  # the running one finished, nothing started after the failure
    times = json.loads((tmp_path / "out" / "src" / "results" / "build_times.json").read_text())
    assert list(times["notebooks"]) == ["01_a"]


def test_notebook_error_survives_pickling():
    error = book.NotebookError("03_c", "RramlibError", "bad input", 4, "Traceback ...", None)
    copy = pickle.loads(pickle.dumps(error))
    assert (copy.notebook, copy.ename, copy.evalue, copy.cell, copy.exit_code, copy.message) == (
        "03_c", "RramlibError", "bad input", 4, 2, error.message)
