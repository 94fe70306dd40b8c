"""Recorded study-scale builds (rramlib.study.recorded): recording, provenance, staleness, and the book's display.

The smoke profile stands in for the study-scale one. Results come from real :class:`~rramlib.present.report.Report`
objects (and, in the last test, from a real book build of a tiny notebook at the smoke profile); the package
and notebooks whose changes must make a record stale are copies in ``tmp_path``.
"""
import dataclasses
import hashlib
import json
import os
import shutil
from pathlib import Path

import nbformat
import pandas as pd
import pytest

from rramlib.present import study_scale
from rramlib.study import analysis, recorded
from rramlib.study.claims import CLAIMS, claims_table
from rramlib.core.errors import RramlibError
from rramlib.study.profiles import PROFILES, get_profile
from rramlib.present.report import Report
from tiny_book import tiny_book_dirs

PACKAGE = Path(recorded.__file__).resolve().parents[1]


def _notebook(path: Path, code: str = "x = 1", prose: str = "# a page") -> Path:
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell(prose), nbformat.v4.new_code_cell(code)]
    nbformat.write(nb, path)
    return path


def _build(tmp_path: Path, numbers: dict[str, dict], profile: str = "smoke", tables=None) -> tuple[Path, Path]:
    """A finished 'build': one notebook and one results file (written by a Report) per entry of ``numbers``."""
    notebooks, results = tmp_path / "notebooks", tmp_path / "results"
    notebooks.mkdir(exist_ok=True)
    for name, values in numbers.items():
        _notebook(notebooks / f"{name}.ipynb", code=f"name = {name!r}")
        report = Report(name, params={"profile": profile, "out_dir": str(results)}, out_dir=results)
        report.data_source({"dataset": "digits"})
        for key, value in values.items():
            report.number(key, value, "{}" if isinstance(value, str) else "{:.4g}")
        for key, frame in (tables or {}).get(name, {}).items():
            report.table(key, frame, glue=False)
        report.finish()
    return notebooks, results


@pytest.fixture
def package(tmp_path):
    """A copy of the rramlib sources, to change without touching the real ones."""
    return Path(shutil.copytree(PACKAGE, tmp_path / "pkg", ignore=shutil.ignore_patterns("__pycache__")))


@pytest.fixture
def record(tmp_path):
    notebooks, results = _build(tmp_path, {"01_a": {"acc": 0.75}, "02_b": {"acc": 0.5, "bytes": 1234.0}})
    dest = tmp_path / "recorded" / "smoke"
    recorded.record("smoke", results, dest, command="rramlib book --profile smoke", notebooks_dir=notebooks,
                    base_models=False)
    return notebooks, results, dest


def _load(record, package, profile="smoke"):
    notebooks, _, dest = record
    return recorded.load(profile, dest, package_dir=package, notebooks_dir=notebooks)


# ---------------------------------------------------------------------------------------------- recording
def test_record_copies_the_results_files_and_writes_their_provenance(record):
    notebooks, results, dest = record
    assert sorted(p.name for p in dest.iterdir()) == ["01_a.json", "02_b.json", "provenance.json"]
    for name in ("01_a", "02_b"):
        assert (dest / f"{name}.json").read_bytes() == (results / f"{name}.json").read_bytes()
    prov = json.loads((dest / "provenance.json").read_text())
    assert prov["profile"] == "smoke" and prov["command"] == "rramlib book --profile smoke"
    assert prov["regenerate"] == "make record PROFILE=smoke"
    assert prov["profile_config"]["train"]["epochs"] == PROFILES["smoke"].train.epochs
    assert prov["profile_config"]["chips"] == PROFILES["smoke"].chips
    assert prov["code"]["files"] == recorded.code_files(notebooks=[notebooks / f"{n}.ipynb" for n in ("01_a", "02_b")])
    assert prov["data_sources"] == [{"dataset": "digits"}]
    for name in ("01_a", "02_b"):
        res, entry = json.loads((results / f"{name}.json").read_text()), prov["notebooks"][name]
        assert entry["runtime_s"] == res["runtime_s"] and entry["peak_rss_mb"] == res["peak_rss_mb"] > 0
        assert entry["results_sha256"] == hashlib.sha256((results / f"{name}.json").read_bytes()).hexdigest()
        assert entry["code_sha256"] == recorded.notebook_code_digest(notebooks / f"{name}.ipynb")
    assert prov["total_runtime_s"] == pytest.approx(sum(e["runtime_s"] for e in prov["notebooks"].values()))


def test_code_files_are_the_closures_of_the_kinds_and_of_what_the_notebooks_compute_with(tmp_path):
    """The code of a record: every cache kind's closure, plus the closures of the package modules its notebooks
    import, less the presentation layers and the readers of records (hashes as rramlib.core.cache has them)."""
    from rramlib.core.cache import KINDS, code_files, module_closure

    kinds = recorded.code_files()
    assert kinds == code_files(tuple(m for modules in KINDS.values() for m in modules))
    assert {"study.base_model", "study.experiments", "nn.train", "device.analog", "study.tuning"} <= set(kinds)
    assert not [m for m in kinds if m.startswith(("present", "book", "cli")) or m in ("study.claims", "study.recorded")]
    nb = _notebook(tmp_path / "01_a.ipynb", code="%matplotlib inline\nfrom rramlib.study.analysis import to_frame\n"
                   "from rramlib.study import claims, recorded\nfrom rramlib.present import plotting")
    files = recorded.code_files(notebooks=[nb])
    assert set(files) == set(kinds) | set(module_closure(("study.analysis",)))
    assert "study.analysis" not in kinds and files["study.analysis"] == code_files(("study.analysis",))["study.analysis"]
    broken = _notebook(tmp_path / "02_b.ipynb", code="from rramlib.study import (")
    with pytest.raises(RramlibError, match="cannot read the imports of notebook .*02_b.ipynb"):
        recorded.code_files(notebooks=[broken])


def test_record_refuses_an_unfinished_build_or_another_profile(tmp_path):
    notebooks, results = _build(tmp_path, {"01_a": {"acc": 0.75}})
    _notebook(notebooks / "02_b.ipynb")
    dest = tmp_path / "dest"
    with pytest.raises(RramlibError, match="no results for 02_b"):
        recorded.record("smoke", results, dest, notebooks_dir=notebooks)
    (notebooks / "02_b.ipynb").unlink()
    with pytest.raises(RramlibError, match="not made at profile 'quick'"):
        recorded.record("quick", results, dest, notebooks_dir=notebooks)
    with pytest.raises(RramlibError, match="unknown profile"):
        recorded.record("nonsense", results, dest, notebooks_dir=notebooks)
    assert not dest.exists()


def test_nothing_recorded_reads_not_recorded(tmp_path):
    rec = recorded.load("smoke", tmp_path / "nowhere")
    assert not rec.exists and not rec.stale() and rec.reasons() == []
    assert rec.shown("03_comparison", "acc") == "not recorded" and rec.column() == "study scale (smoke)"
    assert "not recorded" in rec.caption() and "make record PROFILE=smoke" in rec.caption()
    assert study_scale.figures(rec, ["none"]) == {}


# ---------------------------------------------------------------------------------------------- staleness
def test_unchanged_code_is_current(record, package):
    rec = _load(record, package)
    assert rec.reasons() == [] and not rec.stale()
    assert rec.shown("02_b", "bytes", scale=1e-3, unit="kB") == "1.234 kB"
    assert rec.column() == "study scale (smoke)"
    assert "recorded at commit" in rec.caption() and "STALE" not in rec.caption()


def test_changed_package_source_is_stale_and_named(record, package):
    for name in ("device/analog.py", "nn/train.py"):
        (package / name).write_text((package / name).read_text() + "\nSOMETHING = 1\n")
    (package / "device" / "drift" / "extra.py").write_text("X = 2\n")  # imported by nothing: computes nothing
    rec = _load(record, package)
    assert rec.reasons() == ["code changed: rramlib.device.analog, rramlib.nn.train"]
    assert rec.shown("01_a", "acc") == "0.75 (STALE)" and rec.column() == "study scale (smoke, STALE)"
    assert "STALE: code changed: rramlib.device.analog" in rec.caption()


def test_a_module_a_recorded_notebook_computes_with_is_part_of_its_code(tmp_path, package):
    notebooks, results = _build(tmp_path, {"01_a": {"acc": 0.75}})
    _notebook(notebooks / "01_a.ipynb", code="from rramlib.study.analysis import to_frame\n"
              "from rramlib.study.claims import CLAIMS\nfrom rramlib.present import plotting")
    dest = tmp_path / "recorded" / "smoke"
    recorded.record("smoke", results, dest, notebooks_dir=notebooks, base_models=False)
    for name in ("study/claims.py", "present/plotting.py"):  # it shows with these: they computed nothing
        (package / name).write_text((package / name).read_text() + "\n# restyled\n")
    assert recorded.load("smoke", dest, package_dir=package, notebooks_dir=notebooks).reasons() == []
    (package / "study" / "analysis.py").write_text((package / "study" / "analysis.py").read_text() + "\n# edit\n")
    assert recorded.load("smoke", dest, package_dir=package, notebooks_dir=notebooks).reasons() == [
        "code changed: rramlib.study.analysis"]


def test_a_long_list_of_changed_modules_is_cut_short(record, package):
    notebooks, _, dest = record
    prov = json.loads((dest / recorded.PROVENANCE).read_text())
    prov["code"]["files"] = {}  # e.g. a record of older code, named otherwise
    (dest / recorded.PROVENANCE).write_text(json.dumps(prov))
    (reason,) = _load(record, package).reasons()
    assert reason.startswith("code changed: rramlib (new), rramlib.core (new), ")
    assert reason.endswith(f" and {len(recorded.code_files(package)) - 10} more")


def test_presentation_and_display_modules_do_not_make_it_stale(record, package):
    book = [str(p.relative_to(package)) for p in (package / "book").glob("*.py")]
    for name in ("present/plotting.py", "present/report.py", "present/notebook.py", "study/claims.py",
                 "study/recorded.py", "cli/main.py", *book):
        (package / name).write_text((package / name).read_text() + "\n# restyled\n")
    assert _load(record, package).reasons() == []


def test_changed_profile_configuration_is_stale_with_the_fields(record, package, monkeypatch):
    smoke = PROFILES["smoke"]
    monkeypatch.setitem(PROFILES, "smoke", dataclasses.replace(
        smoke, chips=smoke.chips + 1, train=dataclasses.replace(smoke.train, epochs=smoke.train.epochs + 1)))
    assert _load(record, package).reasons() == [
        f"profile smoke changed: chips {smoke.chips} -> {smoke.chips + 1}, "
        f"train.epochs {smoke.train.epochs} -> {smoke.train.epochs + 1}"]


def test_notebook_code_change_is_stale_prose_change_is_not(record, package):
    notebooks = record[0]
    _notebook(notebooks / "01_a.ipynb", code="name = '01_a'", prose="# the same page, reworded")
    assert _load(record, package).reasons() == []
    _notebook(notebooks / "01_a.ipynb", code="name = '01_a'\ny = 2")
    rec = _load(record, package)
    assert rec.reasons() == ["code cells of notebook 01_a changed"]
    assert rec.stale("01_a") and not rec.stale("02_b")  # per notebook: the other one's numbers stay current
    assert rec.shown("02_b", "acc") == "0.5" and rec.shown("01_a", "acc") == "0.75 (STALE)"
    (notebooks / "02_b.ipynb").unlink()
    assert "notebook 02_b no longer exists" in _load(record, package).reasons("02_b")


def test_edited_or_missing_recorded_file_is_stale(record, package):
    dest = record[2]
    data = json.loads((dest / "01_a.json").read_text())
    data["numbers"]["acc"] = 0.99
    (dest / "01_a.json").write_text(json.dumps(data))
    (dest / "02_b.json").unlink()
    rec = _load(record, package)
    assert rec.reasons() == ["recorded file recorded/smoke/01_a.json differs from its provenance",
                             "recorded file recorded/smoke/02_b.json is missing"]
    assert rec.shown("02_b", "acc") == "not in the record (STALE)"


def test_a_record_of_another_profile_is_named_unreadable(record, package):
    rec = _load(record, package, profile="quick")
    assert not rec.exists and rec.unreadable == (
        "recorded/smoke/provenance.json is not a format-1 record of profile 'quick'",)
    assert rec.shown("03_comparison", "acc") == "record unreadable" and rec.column() == "study scale (quick, STALE)"


def test_recorded_inputs_follow_the_record_and_only_for_notebooks_that_show_it(record, tmp_path):
    notebooks, results, dest = record
    folder = dest.parent
    reader = b"study = recorded.load()"
    assert recorded.recorded_inputs(b"nothing recorded here", "quick", folder, notebooks) == {}
    before = recorded.recorded_inputs(reader, "quick", folder, notebooks)
    assert before == recorded.recorded_inputs(reader, "quick", folder, notebooks) != {}
    assert recorded.recorded_inputs(reader, "smoke", folder, notebooks) == {}  # the book the record records
    assert recorded.recorded_inputs(reader, "quick", tmp_path / "nothing recorded", notebooks) == {}
    data = json.loads((results / "01_a.json").read_text())
    (results / "01_a.json").write_text(json.dumps({**data, "numbers": {"acc": 0.8}}))
    recorded.record("smoke", results, dest, notebooks_dir=notebooks, base_models=False)  # another recorded number
    after = recorded.recorded_inputs(reader, "quick", folder, notebooks)
    assert after != before
    _notebook(notebooks / "02_b.ipynb", code="changed = True")  # the verdict on 02_b changes: so does the key
    assert recorded.recorded_inputs(reader, "quick", folder, notebooks) != after


# ---------------------------------------------------------------------------------------------- display
def test_claims_table_puts_the_recorded_number_beside_ours(tmp_path, package):
    import pandas as pd

    from rramlib.study.claims import SETTINGS_COLUMNS, SETTINGS_TABLE

    measured = [c for c in CLAIMS if c.notebook]
    numbers, tables, expected = {}, {}, {}
    for i, c in enumerate(measured):
        values = numbers.setdefault(c.notebook, {})
        if c.over_settings:  # a maximum over the settings two chapters stored, with their median
            for j, nb in enumerate((c.notebook, "05_scheduling")):
                numbers.setdefault(nb, {})
                rows = [dict(zip(SETTINGS_COLUMNS, (f"setting {j}{k}", "cross", "raw", "p", 4, True, 90.0 + 4 * j + k)))
                        for k in range(2)]
                tables.setdefault(nb, {})[SETTINGS_TABLE] = pd.DataFrame(rows)
            expected[c.id] = "95 % (maximum of 4 settings, at: setting 11, 05_scheduling; median 92.5 %)"
            continue
        values.setdefault(c.key, 0.25 + i)  # two claims may share one number
        expected[c.id] = f"{values[c.key] * c.scale:.4g} {c.unit}".strip()
        if c.interval:
            values[f"{c.key}_low"], values[f"{c.key}_high"] = values[c.key] - 0.125, values[c.key] + 0.5
            expected[c.id] += f" [{values[c.key] - 0.125:.4g}, {values[c.key] + 0.5:.4g}]"
    notebooks, results = _build(tmp_path, numbers, tables=tables)
    dest = tmp_path / "recorded" / "smoke"
    recorded.record("smoke", results, dest, notebooks_dir=notebooks, base_models=False)
    rec = recorded.load("smoke", dest, package_dir=package, notebooks_dir=notebooks)
    quick = tmp_path / "quick"
    quick.mkdir()
    t5, _ = claims_table(quick, "quick", rec)
    rows = t5.set_index("id")
    for c in measured:
        assert rows.loc[c.id, "study scale (smoke)"] == expected[c.id]
        assert rows.loc[c.id, "ours"] == "not run"
        assert rows.loc[c.id, "study-scale wall time of the chapter (s)"] == round(rec.provenance["notebooks"][c.notebook]
                                                                     ["runtime_s"], 1)
    unmeasured = [c.id for c in CLAIMS if not c.notebook]
    assert all(rows.loc[i, "study scale (smoke)"] == "not measurable here" for i in unmeasured)
    _notebook(notebooks / f"{measured[0].notebook}.ipynb", code="changed = True")
    t5, _ = claims_table(quick, "quick", recorded.load("smoke", dest, package_dir=package, notebooks_dir=notebooks))
    shown = t5.set_index("id")["study scale (smoke, STALE)"]
    for c in measured:
        assert shown[c.id].endswith("(STALE)") == (c.notebook == measured[0].notebook)
    t5, _ = claims_table(quick, "quick", recorded.load("smoke", tmp_path / "empty"))
    assert set(t5.set_index("id").loc[[c.id for c in measured], "study scale (smoke)"]) == {"not recorded"}


def _sweep_result(free: float, acc: dict[str, list[float]]) -> dict:
    """A run_sweep-shaped result: two chips, times 1s / 1d / 10y, one accuracy list per method."""
    from rramlib.methods.overhead import Storage

    times = {"1s": 1.0, "1d": 86400.0, "10y": 315576000.0}
    records = [{"method": "drift_free", "time_s": None, "time_label": None, "chip_seed": None, "accuracy": free}]
    for m, values in acc.items():
        for (label, t), base in zip(times.items(), values):
            records += [{"method": m, "time_s": t, "time_label": label, "chip_seed": s, "accuracy": base + d}
                        for s, d in ((1, 0.01), (2, -0.01))]
    info = {m: {"storage": Storage(0 if m == "none" else 50, levels=4).as_dict(), "extra_macs_ratio": 0.0}
            for m in acc}
    return {"metadata": {"drift_free_accuracy": free, "method_info": info}, "records": records}


def test_comparison_table_and_figures_from_the_recorded_comparison(tmp_path, package):
    methods, times = ["none", "vera_plus"], ["1d", "10y"]
    study = _sweep_result(0.9, {"none": [0.9, 0.6, 0.3], "vera_plus": [0.9, 0.85, 0.8]})
    tables = {"03_comparison": {"T1_accuracy": analysis.time_table(study, methods, times, n_test=1000),
                                "F4_accuracy": analysis.accuracy_table(study),
                                "F9_pareto": analysis.pareto_table(study, methods, "10y")}}
    notebooks, results = _build(tmp_path, {"03_comparison": {"drift_free_acc": 0.9}}, tables=tables)
    dest = tmp_path / "recorded" / "smoke"
    recorded.record("smoke", results, dest, notebooks_dir=notebooks, base_models=False)
    rec = recorded.load("smoke", dest, package_dir=package, notebooks_dir=notebooks)
    quick = analysis.time_table(_sweep_result(0.95, {"none": [0.95, 0.9, 0.7], "vera_plus": [0.95, 0.94, 0.93]}),
                                methods, times, n_test=1000)
    side = study_scale.comparison_table(rec, quick, methods, times).set_index(["method", "time"])
    row = side.loc[("VeRA+", "10y")]
    assert row["study scale (smoke): accuracy"] == "0.800 ± 0.014"  # std of 0.81, 0.79
    assert row["study scale (smoke): retained %"] == f"{100 * 0.8 / 0.9:.1f} ± {100 * 0.01414 / 0.9:.1f}"
    assert row["this build: accuracy"] == "0.930 ± 0.014"
    figs = study_scale.figures(rec, methods)
    assert sorted(figs) == ["F4_study_scale", "F9_study_scale"]
    lines = {line.get_label(): line for line in figs["F4_study_scale"].axes[0].get_lines()}
    assert list(lines["VeRA+"].get_ydata()) == pytest.approx([0.9, 0.85, 0.8])
    assert "STALE" not in figs["F4_study_scale"].get_suptitle()
    _notebook(notebooks / "03_comparison.ipynb", code="changed = True")
    rec = recorded.load("smoke", dest, package_dir=package, notebooks_dir=notebooks)
    side = study_scale.comparison_table(rec, quick, methods, times)
    assert list(side.columns) == ["method", "time", "this build: accuracy", "study scale (smoke, STALE): accuracy",
                                  "this build: retained %", "study scale (smoke, STALE): retained %"]
    assert side.iloc[0, 3] == "0.600 ± 0.014 (STALE)" and not side.iloc[0, 2].endswith("(STALE)")
    assert study_scale.figures(rec, methods)["F9_study_scale"].get_suptitle().replace("\n", " ").endswith("— STALE")
    empty = study_scale.comparison_table(recorded.load("smoke", tmp_path / "empty"), quick, methods, times)
    assert set(empty["study scale (smoke): accuracy"]) == {"not recorded"}


def test_provenance_table_names_no_local_path(record, package):
    rec = _load(record, package)
    text = rec.provenance_table().to_string()
    assert "rramlib book --profile smoke" in text and "current" in text and str(record[1]) not in text


# ---------------------------------------------------------------------------------------------- a real build
def test_record_from_a_smoke_book_build(tmp_path, monkeypatch):
    """Build a one-notebook book at the smoke profile (a real kernel trains the smoke model), record it with its base
    model, then find it current, the kernel blind to its own record, the book's build keys unchanged, the shipped
    model restorable, and the record stale after its notebook's code changes."""
    from rramlib import book
    from rramlib.book.builder import notebook_keys, numeric_environment
    from rramlib.cli.main import main

    monkeypatch.setenv("RRAMLIB_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(recorded, "RECORDED_DIR", tmp_path / "recorded")  # where the builder looks for records
    notebooks, book_dir = tiny_book_dirs(tmp_path)
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    params = nbformat.v4.new_code_cell("profile = 'quick'\nout_dir = 'results'")
    params.metadata["tags"] = ["parameters"]
    nb.cells = [params, nbformat.v4.new_code_cell(
        "from rramlib.present.notebook import start\nfrom rramlib.study import recorded\n"
        "nb = start('01_a', profile=profile, out_dir=out_dir)\n"
        "nb.report.number('acc', nb.base_model().accuracy)\n"
        "nb.report.number('sees_itself', float(recorded.load(profile).itself))\nnb.report.finish();")]
    nbformat.write(nb, notebooks / "01_a.ipynb")
    out = tmp_path / "out"
    book.build("smoke", out, html=False, notebooks_dir=notebooks, book_dir=book_dir, log=lambda *a, **k: None)
    dest, keys = tmp_path / "recorded" / "smoke", notebook_keys("smoke", notebooks)
    recorded.record("smoke", out / "src" / "results", notebooks_dir=notebooks)  # into recorded/smoke
    rec = recorded.load("smoke", dest, notebooks_dir=notebooks, book_profile="")
    results = json.loads((out / "src" / "results" / "01_a.json").read_text())
    assert rec.reasons() == [] and rec.number("01_a", "acc") == results["numbers"]["acc"] > 0.5
    assert rec.number("01_a", "sees_itself") == 1.0  # the kernel of the smoke book did not read the smoke record
    assert rec.provenance["data_sources"] == [{"dataset": "digits"}]
    assert rec.provenance["notebooks"]["01_a"]["builder_wall_s"] > rec.provenance["notebooks"]["01_a"]["runtime_s"] > 0
    (model,) = rec.provenance["base_models"]  # the model the kernel trained, under the key the kernel computed
    assert sorted(p.name for p in (dest / "cache" / "model").iterdir()) == [f"{model['key']}.pt"]
    assert model["numerics"]["threads"] == 1 and model["epochs"] == PROFILES["smoke"].train.epochs
    assert notebook_keys("smoke", notebooks) == keys  # recording changed nothing the book would execute again
    restored = recorded.restore_models("smoke", tmp_path / "fresh", dest, environment=numeric_environment("smoke"))
    assert restored.notes == [] and [p.name for p in restored.copied] == [f"{model['key']}.pt"]
    nb.cells[1].source += "\nprint('changed')"
    nbformat.write(nb, notebooks / "01_a.ipynb")
    assert recorded.load("smoke", dest, notebooks_dir=notebooks).reasons() == ["code cells of notebook 01_a changed"]
    assert main(["record", "--profile", "nonsense", "--dest", str(tmp_path / "x")]) == 2
    assert not (tmp_path / "x").exists()


def test_record_keeps_only_the_chapters_run_at_the_profiles_scale(tmp_path, monkeypatch):
    """With a chapter scope, the chapters that run at the fallback profile are neither required nor recorded, a
    scoped chapter is recorded at the profile it runs at, and one made at another profile is refused."""
    from rramlib.study import scope

    monkeypatch.setitem(scope.PROFILE_CHAPTERS, "smoke", {"01_a": "smoke"})
    notebooks, results = _build(tmp_path, {"01_a": {"acc": 0.75}})
    _build(tmp_path, {"02_b": {"acc": 0.5}}, profile="quick")
    dest = tmp_path / "recorded" / "smoke"
    recorded.record("smoke", results, dest, notebooks_dir=notebooks, base_models=False)
    assert sorted(p.name for p in dest.iterdir()) == ["01_a.json", recorded.PROVENANCE]
    rec = recorded.load("smoke", dest, notebooks_dir=notebooks)
    assert rec.reasons() == [] and rec.number("01_a", "acc") == 0.75 and rec.number("02_b", "acc") is None
    monkeypatch.setitem(scope.PROFILE_CHAPTERS, "smoke", {"01_a": "smoke", "02_b": "quick"})  # cifar_subset's way
    recorded.record("smoke", results, dest, notebooks_dir=notebooks, base_models=False)
    rec = recorded.load("smoke", dest, notebooks_dir=notebooks)
    assert rec.number("02_b", "acc") == 0.5 and rec.provenance["notebooks"]["02_b"]["profile"] == "quick"
    assert sorted(rec.provenance["profile_configs"]) == ["quick", "smoke"] and rec.reasons() == []
    quick = PROFILES["quick"]
    monkeypatch.setitem(PROFILES, "quick", dataclasses.replace(quick, chips=quick.chips + 1))
    assert recorded.load("smoke", dest, notebooks_dir=notebooks).reasons() == [
        f"profile quick changed: chips {quick.chips} -> {quick.chips + 1}"]
    monkeypatch.setitem(scope.PROFILE_CHAPTERS, "smoke", {"01_a": "smoke", "02_b": "smoke"})
    with pytest.raises(RramlibError, match="02_b .*not made at profile 'smoke'"):
        recorded.record("smoke", results, tmp_path / "again", notebooks_dir=notebooks, base_models=False)
    assert not (tmp_path / "again").exists()


# ---------------------------------------------------------------------------------------------- base models
def _fake_models(cache_dir, environment=None, epochs=3) -> dict[int, str]:
    """A trained-looking base model of every base seed of the smoke profile in ``cache_dir``, under the key a build
    with the kernel ``environment`` computes for the digits data; ``{seed: key}``."""
    import torch

    from rramlib.core.cache import Cache

    profile, keys = get_profile("smoke"), {}
    for seed in profile.base_seeds:
        key = recorded.model_identity(profile.with_base_seed(seed), {"dataset": "digits"}, environment=environment)["key"]
        Cache(cache_dir).save("model", key, {"state_dict": {"w": torch.full((2,), float(seed))}, "history": {
            "train_loss": [1.0] * epochs, "val_accuracy": [0.5, 0.9 + seed / 100], "wall_seconds": 10.0 + seed}})
        keys[seed] = key
    return keys


KERNEL = {"OMP_NUM_THREADS": "2"}  # the numeric environment of the fake build's kernels


@pytest.fixture
def shipped(tmp_path, monkeypatch):
    """A fake smoke build with three base seeds, its base models in a results cache, recorded."""
    monkeypatch.setitem(PROFILES, "smoke", dataclasses.replace(PROFILES["smoke"], base_seeds=(0, 1, 2)))
    notebooks, results = _build(tmp_path, {"01_a": {"acc": 0.75}})
    (results / "build_times.json").write_text(json.dumps({"jobs": 1, "kernel_numerics": {"smoke": KERNEL}, "notebooks": {
        "01_a": {"seconds": 0.1, "cached": True, "executed_seconds": 12.5, "unfinished_runs": 2},
        "05_x": {"seconds": 3.0, "cached": False, "executed_seconds": 3.0}}}))
    cache = tmp_path / "cache"
    keys = _fake_models(cache, KERNEL)
    dest = tmp_path / "recorded" / "smoke"
    recorded.record("smoke", results, dest, notebooks_dir=notebooks, cache_dir=cache)
    return notebooks, results, dest, cache, keys


def test_record_ships_every_base_model_with_its_provenance(shipped, tmp_path):
    import importlib.metadata

    import torch

    notebooks, results, dest, cache, keys = shipped
    for key in keys.values():
        assert (dest / "cache" / "model" / f"{key}.pt").read_bytes() == (cache / "model" / f"{key}.pt").read_bytes()
    prov = json.loads((dest / recorded.PROVENANCE).read_text())
    assert [m["base_seed"] for m in prov["base_models"]] == [0, 1, 2]
    for m in prov["base_models"]:
        seed = m["base_seed"]
        assert m["key"] == keys[seed] and m["file"] == f"cache/model/{keys[seed]}.pt"
        assert m["sha256"] == hashlib.sha256((dest / m["file"]).read_bytes()).hexdigest()
        assert (m["epochs"], m["wall_s"], m["val_accuracy"]) == (3, 10.0 + seed, pytest.approx(0.9 + seed / 100))
        assert m["numerics"]["threads"] == 2 and m["precision"] == PROFILES["smoke"].train.precision
        assert m["config"]["model_seed"] == seed and m["config"]["train"]["seed"] == seed
    assert prov["base_model_precision"] == PROFILES["smoke"].train.precision
    assert prov["libraries"]["torch"] == importlib.metadata.version("torch") and "numpy" in prov["libraries"]
    assert prov["cpu"]["aten_capability"] == torch.backends.cpu.get_cpu_capability()
    res = json.loads((results / "01_a.json").read_text())
    assert prov["build"] == {"jobs": 1, "notebooks": {
        "01_a": {"profile": "smoke", "wall_s": 12.5, "cpu_s": res["cpu_s"], "peak_rss_mb": res["peak_rss_mb"],
                 "unfinished_runs": 2, "cached_in_recording_run": True},
        "05_x": {"profile": "smoke", "wall_s": 3.0, "cpu_s": None, "peak_rss_mb": None, "unfinished_runs": 0,
                 "cached_in_recording_run": False}}}
    page = study_scale.record_page(recorded.load("smoke", dest, notebooks_dir=notebooks))
    assert "| 01_a | smoke | yes | 12.5 | 2 |" in page and "| 05_x | smoke | no | 3.0 | 0 | n/a | n/a |" in page
    assert "| all, one after another | | | 16 | |" in page and "unfinished executions'" in page
    for seed, key in keys.items():
        # this build has no comparison chapter: the drift-free test accuracy (notebook 03's) reads n/a
        assert f"| {seed} | `{key[:12]}` | 3 | {10 + seed} s | n/a | {0.9 + seed / 100:.4f} | n/a | torch " in page
    assert "the last call's time, not the whole training's" in page


def test_kernel_numerics_borrow_the_kernels_thread_count_and_instruction_cap(monkeypatch):
    import torch

    from rramlib.core.numerics import numeric_environment

    monkeypatch.delenv("ATEN_CPU_CAPABILITY", raising=False)
    threads = torch.get_num_threads()
    with recorded.kernel_numerics({"OMP_NUM_THREADS": str(threads + 1), "ATEN_CPU_CAPABILITY": "default"}):
        inside = numeric_environment()
    assert inside["threads"] == threads + 1 and inside["instructions"]["ATEN_CPU_CAPABILITY"] == "default"
    assert torch.get_num_threads() == threads and "ATEN_CPU_CAPABILITY" not in os.environ


def test_record_refuses_a_build_without_every_base_model(shipped, tmp_path):
    notebooks, results, dest, cache, keys = shipped
    before = {p: p.read_bytes() for p in dest.rglob("*") if p.is_file()}
    (cache / "model" / f"{keys[1]}.pt").unlink()
    with pytest.raises(RramlibError, match=rf"no trained base model of profile 'smoke' for base seed 1 \(key "
                                           rf"{keys[1][:12]}\).*rramlib train --profile smoke --base-seed"):
        recorded.record("smoke", results, dest, notebooks_dir=notebooks, cache_dir=cache)
    assert {p: p.read_bytes() for p in dest.rglob("*") if p.is_file()} == before  # the record is untouched


def test_recording_replaces_the_whole_record(shipped, tmp_path, monkeypatch):
    """Record once: a new record holds nothing of the one it replaces -- no results file, no base model, nothing
    else that was in the folder -- and leaves nothing beside it."""
    notebooks, results, dest, cache, keys = shipped
    files = lambda: {p.relative_to(dest).as_posix() for p in dest.rglob("*") if p.is_file()}  # noqa: E731
    assert files() == {"01_a.json", "provenance.json", *(f"cache/model/{k}.pt" for k in keys.values())}
    (dest / "cold_build_times.txt").write_text("a note kept by hand\n")
    smoke = PROFILES["smoke"]  # the next record: another notebook, base models trained otherwise
    monkeypatch.setitem(PROFILES, "smoke", dataclasses.replace(smoke, train=dataclasses.replace(
        smoke.train, epochs=smoke.train.epochs + 1)))
    (tmp_path / "second").mkdir()
    notebooks2, results2 = _build(tmp_path / "second", {"02_b": {"acc": 0.5}})
    new = _fake_models(cache)
    recorded.record("smoke", results2, dest, notebooks_dir=notebooks2, cache_dir=cache)
    assert not set(new.values()) & set(keys.values())
    assert files() == {"02_b.json", "provenance.json", *(f"cache/model/{k}.pt" for k in new.values())}
    assert not any(key in (dest / recorded.PROVENANCE).read_text() for key in keys.values())
    assert [p.name for p in dest.parent.iterdir()] == ["smoke"]  # no half-made or old folder beside it


def test_restore_copies_the_base_models_the_build_will_read(shipped, tmp_path):
    from rramlib.core.cache import Cache

    notebooks, results, dest, cache, keys = shipped
    target = tmp_path / "fresh"
    restored = recorded.restore_models("smoke", target, dest, environment=KERNEL)
    assert restored.notes == [] and sorted(p.name for p in restored.copied) == sorted(f"{k}.pt" for k in keys.values())
    assert Cache(target).load("model", keys[1])["history"]["wall_seconds"] == 11.0  # intact, checksum and all
    assert recorded.restore_models("smoke", target, dest, environment=KERNEL).copied == []  # never replaced
    assert recorded.restore_models("smoke", target, tmp_path / "no-record") == recorded.Restored([], [])


def test_restore_copies_a_shipped_training_checkpoint_only_where_the_cache_has_nothing_of_it(shipped, tmp_path):
    notebooks, results, dest, cache, keys = shipped
    (dest / "cache" / "model" / "unfinished.ckpt").write_bytes(b"epoch 40")
    (dest / "cache" / "model" / f"{keys[0]}.ckpt").write_bytes(b"epoch 2")  # its finished model is shipped too
    target = tmp_path / "fresh"
    restored = recorded.restore_models("smoke", target, dest, environment=KERNEL)
    assert sorted(p.name for p in restored.copied) == sorted([*(f"{k}.pt" for k in keys.values()), "unfinished.ckpt"])
    assert (target / "model" / "unfinished.ckpt").read_bytes() == b"epoch 40"
    assert not (target / "model" / f"{keys[0]}.ckpt").exists()
    (target / "model" / "unfinished.ckpt").write_bytes(b"epoch 41")  # this machine trained on
    assert recorded.restore_models("smoke", target, dest, environment=KERNEL).copied == []
    assert (target / "model" / "unfinished.ckpt").read_bytes() == b"epoch 41"  # never replaced


def test_what_a_restore_did_reads_as_one_line_for_the_copies_and_one_per_note():
    one, two = Path("model/a.pt"), Path("model/b.ckpt")
    assert recorded.Restored([], []).lines("cifar") == []
    lines = recorded.Restored([one, two], ["seed 2: torch version differs", "x.pt is not described"]).lines("cifar")
    assert lines[0].startswith("results cache: 2 files shipped with recorded/cifar/ copied in")
    assert lines[1:] == ["note: seed 2: torch version differs", "note: x.pt is not described"]
    assert recorded.Restored([one], []).lines("smoke")[0].startswith("results cache: 1 file shipped with recorded/smoke/")


def test_the_record_says_whether_a_training_wall_time_covers_every_call(shipped, tmp_path):
    from rramlib.core.cache import Cache

    notebooks, results, dest, cache, keys = shipped
    page = lambda: study_scale.record_page(recorded.load("smoke", dest, notebooks_dir=notebooks))  # noqa: E731
    assert "the last call's time, not the whole training's" in page()
    for seed, key in keys.items():  # trained since the history keeps every epoch's wall time
        entry = Cache(cache).load("model", key)
        Cache(cache).save("model", key, {**entry, "history": {**entry["history"], "epoch_seconds": [3.0, 4.0, 5.0]}})
    recorded.record("smoke", results, dest, notebooks_dir=notebooks, cache_dir=cache)
    prov = json.loads((dest / recorded.PROVENANCE).read_text())
    assert [m["wall_s_all_calls"] for m in prov["base_models"]] == [True, True, True]
    assert [m["epoch_s_median"] for m in prov["base_models"]] == [4.0, 4.0, 4.0]  # paused epochs cannot move it far
    text = page()
    assert "sums the wall times of every epoch, over every call" in text and "last call" not in text
    assert text.count(" s | 4.0 s | ") == 3 and "the median epoch times the epochs" in text


def test_restore_says_in_one_line_why_a_shipped_model_would_not_be_read(shipped, tmp_path, monkeypatch, package):
    from rramlib.core.cache import Cache

    notebooks, results, dest, cache, keys = shipped
    where = {seed: f"the shipped base model of base seed {seed} (recorded/smoke/cache/model/{key}.pt)"
             for seed, key in keys.items()}

    def restore(environment=KERNEL, **kwargs):
        restored = recorded.restore_models("smoke", tmp_path / "c", dest, environment=environment, **kwargs)
        assert all("\n" not in note for note in restored.notes)
        return restored

    other = restore(environment={"OMP_NUM_THREADS": "1"})
    assert other.copied == [] and other.notes == [
        f"{where[s]} would not be read: 2 -> 1 torch threads; the build trains base seed {s} anew" for s in keys]
    (package / "nn" / "train.py").write_text((package / "nn" / "train.py").read_text() + "\n# edited\n")
    assert restore(package_dir=package).notes[0] == (
        f"{where[0]} would not be read: code changed: rramlib.nn.train; the build trains base seed 0 anew")
    smoke = PROFILES["smoke"]
    monkeypatch.setitem(PROFILES, "smoke", dataclasses.replace(smoke, train=dataclasses.replace(
        smoke.train, epochs=smoke.train.epochs + 1)))
    assert restore().notes[0] == (f"{where[0]} would not be read: configuration changed: train.epochs "
                                  f"{smoke.train.epochs} -> {smoke.train.epochs + 1}; the build trains base seed 0 anew")
    monkeypatch.setitem(PROFILES, "smoke", dataclasses.replace(smoke, base_seeds=(0, 1)))
    assert restore().notes == [f"{where[2]} is not one of profile smoke's base seeds (0, 1): not copied"]
    monkeypatch.setitem(PROFILES, "smoke", smoke)
    (dest / "cache" / "model" / f"{keys[0]}.pt").write_bytes(b"edited")
    (dest / "cache" / "model" / f"{keys[1]}.pt").unlink()
    Cache(dest / "cache").save("model", "k9", {"w": 1})
    damaged = restore()
    assert damaged.notes == [f"{where[0]} differs from its provenance: not copied; the build trains base seed 0",
                             f"{where[1]} is missing: the build trains base seed 1",
                             "recorded/smoke/cache/model/k9.pt is not described by its provenance: copied unchecked"]
    assert sorted(p.name for p in damaged.copied) == sorted([f"{keys[2]}.pt", "k9.pt"])


def test_the_book_builder_restores_its_cache_from_the_record_and_writes_the_study_scale_pages(tmp_path, monkeypatch):
    import torch

    from rramlib import book
    from rramlib.book.builder import STUDY_SCALE_PAGES
    from rramlib.core.cache import Cache

    monkeypatch.setattr(recorded, "RECORDED_DIR", tmp_path / "recorded")
    Cache(tmp_path / "recorded" / "smoke" / recorded.SHIPPED_CACHE).save("model", "k1", {"w": torch.ones(2)})
    monkeypatch.setenv("RRAMLIB_CACHE", str(tmp_path / "cache"))
    notebooks, book_dir = tiny_book_dirs(tmp_path)
    lines = []
    book.build("smoke", tmp_path / "out", html=False, notebooks_dir=notebooks, book_dir=book_dir,
               log=lambda *a, **k: lines.append(a[0]))
    assert torch.equal(Cache(tmp_path / "cache").load("model", "k1")["w"], torch.ones(2))
    assert any("results cache: 1 file shipped with recorded/smoke/ copied in" in line for line in lines)
    staged = tmp_path / "out" / "src" / "results"
    nothing = recorded.load(book_profile="smoke")
    assert (staged / STUDY_SCALE_PAGES["answer"]).read_text() == study_scale.recorded_answer(nothing)
    assert (staged / STUDY_SCALE_PAGES["record"]).read_text() == study_scale.record_page(nothing)
    assert "not recorded yet" in study_scale.recorded_answer(nothing)


def test_the_static_pages_include_the_study_scale_pages():
    from rramlib.book.builder import BOOK_DIR, STUDY_SCALE_PAGES

    for page, name in (("intro.md", "answer"), ("reproducing.md", "record")):
        assert f"```{{include}} results/{STUDY_SCALE_PAGES[name]}\n```" in (BOOK_DIR / page).read_text()
    # the first page opens with the answer: right under its title
    assert (BOOK_DIR / "intro.md").read_text().split("\n")[2] == f"```{{include}} results/{STUDY_SCALE_PAGES['answer']}"


def test_the_shipped_base_models_load_into_the_records_network():
    """recorded/cifar ships its trained ResNet-20s under model keys (kind "model"): each loads into ResNet-20 (every
    tensor, every shape) with its recorded number of epochs, and the provenance describes one per base seed of
    the profile (a record older than that description: the profile's epochs). A model it does not describe was
    trained since, for the next record, with the study-scale profile's epochs."""
    import torch

    from rramlib.core.cache import Cache
    from rramlib.nn.models import build_model

    rec = recorded.load(book_profile="")
    folder = recorded.RECORDED_DIR / recorded.STUDY_PROFILE / recorded.SHIPPED_CACHE
    entries = sorted((folder / "model").glob("*.pt"))
    described = {m["file"]: m for m in rec.provenance.get("base_models", [])}
    assert entries and set(described) <= {f"cache/model/{e.name}" for e in entries}
    if described:
        assert sorted(m["base_seed"] for m in described.values()) == rec.provenance["profile_config"]["base_seeds"]
    for entry in entries:
        state = Cache(folder).load("model", entry.stem)
        model = build_model("resnet20", num_classes=10, in_channels=3, seed=0)
        model.load_state_dict(state["state_dict"])  # strict
        assert all(torch.isfinite(v.float()).all() for v in state["state_dict"].values())
        m = described.get(f"cache/model/{entry.name}")
        # a model not described: the record's own (a record older than the description) or trained since, for the
        # next record (restored unchecked), at today's profile
        today = recorded.profile_config(recorded.STUDY_PROFILE)["train"]["epochs"]
        own = () if described else (rec.provenance["profile_config"]["train"]["epochs"],)
        epochs = {m["epochs"]} if m else {today, *own}
        assert len(state["history"]["train_loss"]) in epochs


# ---------------------------------------------------------------------------------------------- the build keys
def test_recording_changes_no_build_key_of_the_recorded_book(tmp_path, monkeypatch):
    """A second `make record` executes nothing: the build keys of the book at the recorded profile do not depend on
    its record (its kernels do not read it), while the default book's notebook that shows the record follows it."""
    from rramlib.book.builder import notebook_keys

    monkeypatch.setattr(recorded, "RECORDED_DIR", tmp_path / "recorded")
    notebooks, results = _build(tmp_path, {"01_a": {"acc": 0.75}, "03_comparison": {"drift_free_acc": 0.9}})
    _notebook(notebooks / "03_comparison.ipynb", code="from rramlib.study import recorded\nstudy = recorded.load()")
    keys = {profile: notebook_keys(profile, notebooks) for profile in ("smoke", "quick")}
    for value in (0.75, 0.8):  # record, then record again with another number
        data = json.loads((results / "01_a.json").read_text())
        (results / "01_a.json").write_text(json.dumps({**data, "numbers": {"acc": value}}))
        recorded.record("smoke", results, notebooks_dir=notebooks, base_models=False)
        assert recorded.load("smoke", book_profile="quick", notebooks_dir=notebooks).number("01_a", "acc") == value
        assert notebook_keys("smoke", notebooks) == keys["smoke"]
        quick = notebook_keys("quick", notebooks)
        assert quick["01_a"] == keys["quick"]["01_a"] and quick["03_comparison"] != keys["quick"]["03_comparison"]
        keys["quick"] = quick


def test_a_kernel_of_the_recorded_book_does_not_read_its_record(record, package, monkeypatch):
    notebooks, _, dest = record
    monkeypatch.setenv(recorded.BOOK_PROFILE_ENV, "smoke")  # as the builder sets it in the smoke book's kernels
    rec = recorded.load("smoke", dest, package_dir=package, notebooks_dir=notebooks)
    assert rec.itself and not rec.exists and rec.results == {} and rec.reasons() == []
    assert rec.shown("01_a", "acc") == "this build" and "the study-scale build itself" in rec.caption()
    assert study_scale.figures(rec, ["none"]) == {} and "itself" in study_scale.recorded_answer(rec)
    monkeypatch.setenv(recorded.BOOK_PROFILE_ENV, "quick")  # the default book's kernels show it
    assert recorded.load("smoke", dest, package_dir=package, notebooks_dir=notebooks).number("01_a", "acc") == 0.75


# ---------------------------------------------------------------------------------------------- unreadable records
def _break(case: str, dest: Path) -> None:
    prov = dest / recorded.PROVENANCE
    if case == "provenance not JSON":
        prov.write_text('{"format": 1,')
    elif case == "provenance unreadable":
        prov.unlink()
        prov.mkdir()
    elif case == "provenance of another shape":
        data = json.loads(prov.read_text())
        del data["notebooks"]
        prov.write_text(json.dumps(data))
    elif case == "results not JSON":
        (dest / "01_a.json").write_text("[1, 2")
    elif case == "results missing":
        (dest / "02_b.json").unlink()
    elif case == "results edited":
        data = json.loads((dest / "02_b.json").read_text())
        (dest / "02_b.json").write_text(json.dumps({**data, "numbers": {"acc": 0.99}}))


BROKEN = {"provenance not JSON": "recorded/smoke/provenance.json is unreadable: not valid JSON (",
          "provenance unreadable": "recorded/smoke/provenance.json is unreadable (Is a directory)",
          "provenance of another shape": "recorded/smoke/provenance.json lacks notebooks",
          "results not JSON": "recorded file recorded/smoke/01_a.json is unreadable: not valid JSON (",
          "results missing": "recorded file recorded/smoke/02_b.json is missing",
          "results edited": "recorded file recorded/smoke/02_b.json differs from its provenance"}


@pytest.mark.parametrize("case", list(BROKEN))
def test_an_unreadable_record_names_its_file_everywhere_the_book_shows_it(case, record, package, tmp_path):
    notebooks, _, dest = record
    _break(case, dest)
    rec = _load(record, package)  # no exception, whatever the damage
    named = BROKEN[case]
    assert named in rec.caption() and named in rec.caption("03_comparison") and rec.stale()
    assert named in study_scale.recorded_answer(rec) and named in study_scale.record_page(rec)
    assert named in "\n".join(rec.provenance_table()["value"])
    assert rec.shown("01_a", "acc") in ({"0.75 (STALE)", "not in the record (STALE)"} if rec.exists
                                         else {"record unreadable"})
    quick = tmp_path / "quick"
    quick.mkdir()
    claims_table(quick, "quick", rec)
    t1 = analysis.time_table(_sweep_result(0.9, {"none": [0.9, 0.6, 0.3]}), ["none"], ["10y"], n_test=1000)
    study_scale.comparison_table(rec, t1, ["none"], ["10y"])
    study_scale.figures(rec, ["none"])


# ---------------------------------------------------------------------------------------------- the answer first
def _interval_rows() -> pd.DataFrame:
    """T1_intervals as the comparison chapter reports it: two readouts, two times; only gdc at 10y is distinct."""
    rows = []
    for readout in ("raw", "gdc"):
        for time in ("1y", "10y"):
            for method, shown in (("none", (0.61, 0.6, 0.622, 67.8, 66.7, 69.1, None, 0.0)),
                                  ("vera_plus_layer", (0.86, 0.85, 0.872, 95.6, 94.4, 96.9, 0.7, 16296.0))):
                values = shown if (readout, time) == ("gdc", "10y") else (0.1,) * 6 + (0.1, 1.0)
                rows.append(dict(zip(("acc_mean", "acc_low", "acc_high", "retained_pct", "retained_low",
                                      "retained_high", "recovered", "storage_bytes"), values),
                                 method=method, readout=readout, time=time))
    return pd.DataFrame(rows)


def _comparison_record(tmp_path, numbers: dict, tables: dict):
    notebooks, results = _build(tmp_path, {"03_comparison": numbers}, tables={"03_comparison": tables})
    dest = tmp_path / "recorded" / "smoke"
    recorded.record("smoke", results, dest, notebooks_dir=notebooks, base_models=False)
    return notebooks, dest


def test_the_first_page_opens_with_the_recorded_answer(tmp_path, package):
    from rramlib.present.plotting import METHOD_LABELS

    verdict = "VeRA+ keeps its accuracy where the uncompensated chip loses a third"
    notebooks, dest = _comparison_record(tmp_path, {"verdict": verdict, "verdict_readout": "gdc"},
                                         {"T1_intervals": _interval_rows()})
    rec = recorded.load("smoke", dest, package_dir=package, notebooks_dir=notebooks)
    assert study_scale.recorded_answer(rec) == "\n".join([
        "**What the study-scale build found**, 10y after programming, chips read gdc:", "",
        "| method | retained, % of drift-free (95 % interval) | accuracy (95 % interval) | storage |",
        "|:--|--:|--:|--:|",
        f"| {METHOD_LABELS['none']} | 67.8 (66.7 to 69.1) | 0.610 (0.600 to 0.622) | 0 B |",
        f"| {METHOD_LABELS['vera_plus_layer']} | 95.6 (94.4 to 96.9) | 0.860 (0.850 to 0.872) | 16.3 kB |", "",
        verdict + ".", "", f"Source: {rec.caption('03_comparison')}.", ""])
    _notebook(notebooks / "03_comparison.ipynb", code="changed = True")
    stale = recorded.load("smoke", dest, package_dir=package, notebooks_dir=notebooks)
    assert "Source: study scale (profile smoke): recorded at commit" in study_scale.recorded_answer(stale)
    assert "STALE: code cells of notebook 03_comparison changed" in study_scale.recorded_answer(stale)


def test_every_readout_has_its_table_with_the_paired_differences(tmp_path, package, capsys):
    from rramlib.cli.main import main as cli_main
    from rramlib.present.plotting import METHOD_LABELS

    rows = _interval_rows()
    rows["d_bn_mean"], rows["d_bn_low"], rows["d_bn_high"] = -0.25, -0.27, -0.23
    rows["d_vera_mean"], rows["d_vera_low"], rows["d_vera_high"] = float("nan"), float("nan"), float("nan")
    numbers = {"verdict": "V", "verdict_readout": "gdc", "verdict_gdc": "on gdc, this", "verdict_raw": "on raw, that"}
    notebooks, dest = _comparison_record(tmp_path, numbers, {"T1_intervals": rows})
    rec = recorded.load("smoke", dest, package_dir=package, notebooks_dir=notebooks)
    text = study_scale.readout_tables(rec.results["03_comparison"])
    assert text.index("**gdc readout, 10y after programming**, the readout the book leads with") < text.index(
        "**raw readout, 10y after programming** (95 % intervals")  # the lead first, at the latest time only
    assert "1y" not in text and text.count("| method | accuracy |") == 2
    assert (f"| {METHOD_LABELS['vera_plus_layer']} | 0.8600 (0.8500 to 0.8720) | 95.6 (94.4 to 96.9) | 0.70 "
            f"| -25.00 (-27.00 to -23.00) | - | 16.3 kB |") in text
    assert f"| {METHOD_LABELS['none']} | 0.6100 (0.6000 to 0.6220) | 67.8 (66.7 to 69.1) | n/a |" in text
    assert text.index("On gdc, this.") < text.index("**raw readout") < text.index("On raw, that.")
    assert study_scale.readout_tables(None) == "" == study_scale.readout_tables({"numbers": numbers})
    assert cli_main(["recorded", "--profile", "smoke", "--dest", str(dest)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("**What the study-scale build found**, 10y after programming, chips read gdc:")
    assert text in out and f"Source: {rec.caption('03_comparison')}." in out
    assert cli_main(["recorded", "--profile", "smoke", "--dest", str(tmp_path / "none")]) == 2
    assert "error: nothing is recorded for profile 'smoke'" in capsys.readouterr().err


@pytest.mark.parametrize("numbers, tables, lacking", [
    ({"drift_free_acc": 0.9}, {}, "T1_intervals, verdict, verdict_readout"),  # today's record
    ({"verdict": "A sentence.", "verdict_readout": "raw"}, {"T1_intervals": _interval_rows().query("readout == 'gdc'")},
     "T1_intervals"),  # no rows for the readout it leads with
    ({"verdict_readout": "gdc"}, {"T1_intervals": _interval_rows()}, "verdict")])
def test_a_record_without_the_answer_says_so_in_one_sentence(numbers, tables, lacking, tmp_path, package):
    notebooks, dest = _comparison_record(tmp_path, numbers, tables)
    rec = recorded.load("smoke", dest, package_dir=package, notebooks_dir=notebooks)
    text = study_scale.recorded_answer(rec)
    assert text == (f"The study-scale answer is not here yet: the results of its comparison (03_comparison) lack "
                    f"{lacking}, which a record made with the current comparison chapter holds "
                    f"({rec.caption('03_comparison')}).\n")


def test_the_first_page_of_a_book_without_a_record_or_of_the_study_scale_book(tmp_path, monkeypatch):
    from rramlib.book.builder import study_scale_pages

    monkeypatch.setattr(recorded, "RECORDED_DIR", tmp_path / "recorded")
    pages = study_scale_pages("quick", tmp_path)
    assert pages["answer"] == (f"Study scale (profile {recorded.STUDY_PROFILE}): not recorded yet; record it with "
                               f"\"{recorded.regenerate_command(recorded.STUDY_PROFILE)}\".\n")
    assert pages["record"] == pages["answer"]
    _, results = _build(tmp_path, {"03_comparison": {"verdict": "Ours.", "verdict_readout": "gdc"}},
                        tables={"03_comparison": {"T1_intervals": _interval_rows()}})
    own = study_scale_pages(recorded.STUDY_PROFILE, results)["answer"]  # the study-scale book shows its own answer
    assert own.startswith("**What the study-scale build found**, 10y after programming, chips read gdc:")
    assert own.endswith(f"Source: computed by this build (profile {recorded.STUDY_PROFILE}) in the chapter "
                        f"03_comparison.\n")
    assert "itself" in study_scale_pages(recorded.STUDY_PROFILE, tmp_path / "empty")["record"]
