import json

import matplotlib

matplotlib.use("Agg")  # non-notebook code path
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from rramlib.core.errors import RramlibError  # noqa: E402
from rramlib.core.files import load_results  # noqa: E402
from rramlib.present.report import Report  # noqa: E402


def test_report_writes_numbers_tables_figures_and_provenance(tmp_path):
    report = Report("99_test", params={"profile": "smoke", "preset": "ibm_pcm", "out_dir": str(tmp_path)},
                    out_dir=tmp_path)
    assert report.number("acc", 0.91234, "{:.2f}") == "0.91"
    report.number("missing", float("nan"))
    report.table("T9", pd.DataFrame({"method": ["none", "vera_plus"], "accuracy": [0.5, 0.9]}))
    report.uses({"metadata": {"config_hash": "abcdef0123456789"}})
    fig, ax = plt.subplots()
    ax.plot([1, 2], [3, 4])
    report.figure(fig, "F9_test")
    payload = report.finish()
    saved = load_results(tmp_path, "99_test")
    assert saved["numbers"]["acc"] == 0.91234 and saved["numbers"]["missing"] is None
    assert saved["tables"]["T9"][1] == {"method": "vera_plus", "accuracy": 0.9}
    assert saved["runtime_s"] > 0 and saved["peak_rss_mb"] > 0 and saved == json.loads(json.dumps(payload))
    assert 0 < saved["cpu_s"] < saved["runtime_s"] * 4  # at most a few cores busy
    assert (tmp_path / "figures" / "F9_test.png").stat().st_size > 0
    assert (tmp_path / "figures" / "F9_test.pdf").stat().st_size > 0
    assert (tmp_path / "99_test_T9.csv").read_text().startswith("method,accuracy")
    footer = report.footer()
    assert "99_test" in footer and "preset=ibm_pcm" in footer and "abcdef012345" in footer
    assert str(tmp_path) not in footer  # out_dir (a path) stays out of the footer
    assert not list(tmp_path.glob(".*.tmp"))  # no temporary file left behind
    import os

    assert saved["machine"]["cores"] == len(os.sched_getaffinity(0))  # the cores this process may use
    assert saved["machine"]["cpu"] and saved["machine"]["python"].count(".") == 2


def test_missing_results_is_a_clear_error(tmp_path):
    with pytest.raises(RramlibError, match="run it first"):
        load_results(tmp_path, "03_comparison")


def test_report_imports_provenance_not_the_experiment_stack():
    """Every notebook imports the report; it must not pull in training, sweeps or torch for provenance."""
    import subprocess
    import sys

    code = ("import sys, rramlib.present.report; "
            "print(sorted(m for m in ('rramlib.study.experiments', 'rramlib.nn.train', 'torch') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_nan_is_stored_as_null_but_glued_so_that_formatted_prose_reads_nan(tmp_path, monkeypatch):
    """A number the profile cannot measure (e.g. a recorded value while nothing is recorded) must not fail the book:
    myst-nb formats the glued text/plain with the prose's spec, which works for NaN and fails for None."""
    import numpy as np
    from myst_nb.core.variables import format_plain_text

    from rramlib.present import report as report_module

    glued = {}
    monkeypatch.setattr(report_module, "_glue", lambda key, value: glued.__setitem__(key, value))
    report = Report("x", params={}, out_dir=tmp_path)
    assert report.number("missing", float("nan")) == "n/a" and report.number("np", np.float64("nan")) == "n/a"
    assert report.numbers == {"missing": None, "np": None}
    assert format_plain_text(repr(glued["missing"]), ".3f") == "nan" == format_plain_text(repr(glued["np"]), ".1f")
    with pytest.raises(TypeError):
        format_plain_text(repr(None), ".3f")  # what gluing the stored value would do


def test_a_number_reported_twice_is_refused_before_the_book_sees_a_duplicate_glue(tmp_path):
    report = Report("99_test", params={}, out_dir=tmp_path)
    report.number("x", 1.0)
    with pytest.raises(RramlibError, match="'x' reported twice"):
        report.number("x", 1.0)
    assert report.numbers == {"x": 1.0}


def test_runtime_table_and_claims_table(tmp_path):
    from rramlib.study.claims import CLAIMS, claims_table
    from rramlib.present.report import runtime_table

    c2 = next(c for c in CLAIMS if c.id == "C2")  # a number with its interval, in the comparison chapter
    numbers = {c.key: 0.5 for c in CLAIMS if c.notebook == c2.notebook}
    (tmp_path / f"{c2.notebook}.json").write_text(json.dumps(
        {"notebook": c2.notebook, "numbers": {**numbers, c2.key: 99.5, f"{c2.key}_low": 99.0, f"{c2.key}_high": 99.75},
         "runtime_s": 12.34, "peak_rss_mb": 321.4}))
    (tmp_path / "build_times.json").write_text(json.dumps({"jobs": 2, "notebooks": {c2.notebook: {"seconds": 13.0,
                                                                                                  "cached": False}}}))
    times = runtime_table(tmp_path)
    assert times.to_dict("records") == [{"notebook": c2.notebook, "runtime (s)": 12.3, "CPU (s)": None,
                                         "peak RAM (MiB)": 321, "builder wall (s)": 13.0, "cached": False,
                                         "notebooks at once": 2}]
    t5, ours = claims_table(tmp_path, "quick")
    assert ours["C2"] == pytest.approx(99.5 * c2.scale)
    rows = t5.set_index("id")
    assert rows.loc["C2", "ours"] == "99.5 % [99, 99.75]" and rows.loc["C2", "wall time (s)"] == 12.3
    assert rows.loc["C1", "ours"] == "n/a" and "C1" not in ours  # no chapter stored a setting
    assert rows.loc["C3", "ours"] == "not run"
    (tmp_path / f"{c2.notebook}.json").write_text(json.dumps({"notebook": c2.notebook, "numbers": {},
                                                               "runtime_s": 1, "peak_rss_mb": 1}))
    with pytest.raises(RramlibError, match="stores no number"):
        claims_table(tmp_path, "quick")
