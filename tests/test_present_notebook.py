"""rramlib.present.notebook: the notebooks' ``scheduler`` parameter (where their sweeps run) is checked like every
parameter, and left out of the book builder's cache key and pages, since a result does not depend on where it was
computed. The sweeps on a real scheduler are checked in tests/test_cluster.py."""
from __future__ import annotations

import json

import nbformat
import pytest

from rramlib import book
from rramlib.core.errors import RramlibError
from rramlib.present.notebook import PARAMETERS, as_list, check_parameters
from tiny_book import tiny_book_dirs


@pytest.mark.parametrize("address", [None, "tcp://127.0.0.1:8786", "tls://scheduler.example.org:8786", "node7:8786"])
def test_scheduler_addresses_are_accepted(address):
    assert check_parameters({"scheduler": address}) == {"scheduler": address}


@pytest.mark.parametrize("bad", ["", "nonsense", "tcp://", "8786", "host: 8786", 8786, ["tcp://h:1"]])
def test_bad_scheduler_is_refused(bad):
    with pytest.raises(RramlibError, match="scheduler must be the address of a Dask scheduler"):
        check_parameters({"scheduler": bad})


def test_sweeping_notebooks_declare_the_scheduler():
    """Every notebook that sweeps through ``nb.sweep`` declares ``scheduler`` and hands it to ``start``."""
    from pathlib import Path

    root = Path(__file__).resolve().parents[1] / "notebooks"
    sweeping = [p for p in book.notebook_paths(root) if "nb.sweep(" in p.read_text()]
    assert sweeping
    for path in sweeping:
        assert "scheduler" in book.declared_parameters(nbformat.read(path, as_version=4)), path.name
        assert "scheduler=scheduler" in path.read_text(), path.name


_NOTEBOOK = ("import json, pathlib\n"
             "runs = pathlib.Path(counter)\n"
             "runs.write_text(str(int(runs.read_text()) + 1) if runs.exists() else '1')\n"
             "pathlib.Path(out_dir).mkdir(parents=True, exist_ok=True)\n"
             "(pathlib.Path(out_dir) / '01_a.json').write_text(json.dumps({'runtime_s': 0.5, 'peak_rss_mb': 10}))\n"
             "print('done')")


@pytest.mark.slow
def test_the_build_key_and_page_ignore_the_scheduler(tmp_path, monkeypatch):
    monkeypatch.setenv("RRAMLIB_CACHE", str(tmp_path / "cache"))
    (notebooks, book_dir), counter = tiny_book_dirs(tmp_path), tmp_path / "runs"
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    params = nbformat.v4.new_code_cell(f"profile = 'quick'\nout_dir = 'results'\ncounter = {str(counter)!r}\n"
                                       "scheduler = None  # a Dask scheduler to run the sweeps on\nshift = 0")
    params.metadata["tags"] = ["parameters"]
    nb.cells = [nbformat.v4.new_markdown_cell("# A"), params, nbformat.v4.new_code_cell(_NOTEBOOK)]
    nbformat.write(nb, notebooks / "01_a.ipynb")

    def build(**parameters):
        result = book.build("smoke", tmp_path / "out", html=False, notebooks_dir=notebooks, book_dir=book_dir,
                            parameters=parameters, log=lambda *a, **k: None)
        page = nbformat.read(tmp_path / "out" / "src" / "notebooks" / "01_a.ipynb", as_version=4)
        shown = [c for c in page.cells if "remove-cell" not in c.metadata.get("tags", [])]  # what the HTML shows
        return result.runs[0].cached, int(counter.read_text()), json.dumps(shown)

    assert build(scheduler="tcp://127.0.0.1:8786")[:2] == (False, 1)
    cached, runs, page = build()
    assert (cached, runs) == (True, 1)  # the same results: not executed again without the scheduler ...
    cached, runs, page = build(scheduler="tcp://10.0.0.1:8786")
    assert (cached, runs) == (True, 1)  # ... nor on another one
    assert "10.0.0.1" not in page and "127.0.0.1" not in page  # where it ran is not part of the page
    assert "scheduler" in page and "done" in page  # its default is listed in the box; the outputs are there
    assert build(shift=1)[:2] == (False, 2)  # a parameter the results depend on still runs it again


@pytest.mark.parametrize("value, expected", [
    (None, []), ("ibm_pcm", ["ibm_pcm"]), (3, [3]), ((1, 2), [1, 2]), ("[1, 2]", [1, 2]), ('["a", "b"]', ["a", "b"]),
    ("(4, 8)", [4, 8]), ("('a(b)', 2)", ["a(b)", 2]), ('["x)", "(y"]', ["x)", "(y"]), ("(4)", [4]),
    ("[vera_plus, bn]", ["vera_plus", "bn"]), ("(1d, 10y)", ["1d", "10y"]), ("[]", []), ("[0.5, 2]", [0.5, 2]),
])
def test_as_list(value, expected):
    """Python literals keep parentheses inside their strings; bare words still read as a YAML list."""
    assert as_list(value) == expected

@pytest.mark.parametrize("text", ["[4, ", "(a, [b)", "[1, 2] x"])
def test_as_list_rejects_what_is_not_a_list(text):
    with pytest.raises(RramlibError, match="cannot read the list"):
        as_list(text)

def test_notebook_helpers_pass_the_data_folder(tmp_path, monkeypatch):
    """Every way a notebook reaches data passes the data folder: ``data_root``, else ``$RRAMLIB_DATA_ROOT``."""
    from types import SimpleNamespace

    from rramlib.present import notebook
    from rramlib.present.notebook import start

    seen = []

    def fake(result):
        def call(*args, **kwargs):
            seen.append(kwargs["data_root"])
            return result
        return call

    exp = SimpleNamespace(base="base", fit=lambda name, config, cache: f"fitted {name}")
    monkeypatch.setattr(notebook, "prepare", fake(exp))
    monkeypatch.setattr(notebook, "greedy_schedule", fake(("schedule", [])))
    monkeypatch.setattr(notebook, "train_pair", fake("pair"))
    monkeypatch.setenv("RRAMLIB_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("RRAMLIB_DATA_ROOT", "/from/env")
    nb = start("99_test", profile="smoke", out_dir=str(tmp_path))
    config = nb.config(("none", "bn"))
    assert nb.prepare(config) is exp
    assert nb.fitted(config, ["none", "bn"]) == ("base", {"none": "fitted none", "bn": "fitted bn"})
    assert nb.greedy_schedule(config, 0.01, n_chips=2) == ("schedule", [])
    assert nb.train_pair() == "pair"
    assert seen == ["/from/env"] * 4
    given = start("99_test", profile="smoke", out_dir=str(tmp_path), data_root="/given")
    given.prepare(config)
    assert seen[-1] == "/given"

def test_check_parameters_normalises_and_fills_profile_defaults():
    out = check_parameters({"profile": "smoke", "ranks": "[4, 8]", "n_devices": None, "levels_list": None,
                            "methods": "vera_plus", "budgets": (0.0234,)})
    assert out == {"profile": "smoke", "ranks": [4, 8], "n_devices": 10_000, "levels_list": [1, 2],
                   "methods": ["vera_plus"], "budgets": [0.0234]}
    assert check_parameters({"profile": "quick", "n_devices": None})["n_devices"] == 100_000

@pytest.mark.parametrize("params, match", [
    ({"profile": "huge"}, "unknown profile"),
    ({"colour": "red"}, "unknown notebook parameter"),
    ({"preset": "nonsense"}, "unknown preset"),
    ({"methods": ["none", "magic"]}, "unknown method"),
    ({"methods": []}, "at least one"),
    ({"drift_scale": -1.0}, ">= 0"),
    ({"ranks": [4, 0]}, ">= 1"),
    ({"ranks": [4.5]}, "must be an integer"),
    ({"budgets": [1.5]}, "fraction"),
    ({"g_targets": [0.5, 1.2]}, "fraction"),
    ({"table_times": ["1d", "soon"]}, "time"),
    ({"run_greedy": "yes"}, "must be bool"),
    ({"n_devices": 10}, ">= 100"),
    ({"range_mode": "ignore"}, "unknown range_mode"),
    ({"ranks": "[4, "}, "cannot read the list"),
])
def test_check_parameters_rejects_bad_input(params, match):
    with pytest.raises(RramlibError, match=match):
        check_parameters(params)

def test_notebook_grid_and_config(tmp_path, monkeypatch):
    from rramlib.present.notebook import start

    monkeypatch.setenv("RRAMLIB_CACHE", str(tmp_path / "cache"))
    nb = start("99_test", profile="smoke", out_dir=str(tmp_path), preset="ibm_pcm", drift_scale=2.0)
    assert nb.profile.times == ("1s", "1d", "10y")
    assert nb.grid("1d", "10y") is None  # the plain grid: the same sweeps as every other notebook
    assert nb.grid("1y", "1s") == ("1s", "1d", "1y", "10y")
    config = nb.config(("none", "bn"), times=nb.grid("1y"))
    assert (config.profile, config.preset, config.methods, config.drift_params) == (
        "smoke", "ibm_pcm", ("none", "bn"), {"drift_scale": 2.0})
    assert nb.config(drift_params={"rd": 0.3}, preset="relative_gaussian").drift_params == {"drift_scale": 2.0,
                                                                                             "rd": 0.3}
    assert nb.parameter_table().set_index("parameter")["value"].to_dict()["drift_scale"] == "2.0"

def test_every_registered_parameter_checks_its_values():
    assert all(callable(spec.check) for spec in PARAMETERS.values())
    assert PARAMETERS["levels_list"].default("smoke") == [1, 2]

def test_crossbar_parameter_reaches_the_sweep(tmp_path, monkeypatch):
    from rramlib.device.crossbar import CROSSBARS
    from rramlib.present.notebook import start

    monkeypatch.setenv("RRAMLIB_CACHE", str(tmp_path / "cache"))
    other = next(c for c in CROSSBARS if c != "ideal")
    nb = start("03_comparison", profile="smoke", out_dir=str(tmp_path), crossbar=other)
    assert nb.config(("none",)).crossbar == other
    assert start("03_comparison", profile="smoke", out_dir=str(tmp_path)).config().crossbar == "ideal"
    with pytest.raises(RramlibError, match="unknown crossbar"):
        start("03_comparison", profile="smoke", out_dir=str(tmp_path), crossbar="quantum")
