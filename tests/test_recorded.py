"""Recorded study-scale builds (rramlib.study.recorded): recording, provenance, staleness, and the book's display.

The smoke profile stands in for the study-scale one. Results come from real :class:`~rramlib.present.report.Report`
objects (and, in the last test, from a real book build of a tiny notebook at the smoke profile); the package
and notebooks whose changes must make a record stale are copies in ``tmp_path``.
"""
import dataclasses
import hashlib
import json
import shutil
from pathlib import Path

import nbformat
import pytest

from rramlib.present import study_scale
from rramlib.study import analysis, recorded
from rramlib.study.claims import CLAIMS, claims_table
from rramlib.core.errors import RramlibError
from rramlib.study.profiles import PROFILES
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
            report.number(key, value)
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
    recorded.record("smoke", results, dest, command="rramlib book --profile smoke", notebooks_dir=notebooks)
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
    recorded.record("smoke", results, dest, notebooks_dir=notebooks)
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
    assert rec.reasons() == ["recorded file 01_a.json differs from its provenance",
                             "recorded file 02_b.json is missing"]
    assert rec.shown("02_b", "acc") == "not in the record (STALE)"


def test_a_record_of_another_profile_is_refused(record, package):
    with pytest.raises(RramlibError, match="not a format-1 record of profile 'quick'"):
        _load(record, package, profile="quick")


def test_recorded_inputs_follow_the_record_and_only_for_notebooks_that_show_it(record):
    notebooks, results, dest = record
    folder = dest.parent
    assert recorded.recorded_inputs(b"nothing recorded here", folder, notebooks) == {}
    before = recorded.recorded_inputs(b"study = recorded.load()", folder, notebooks)
    assert before == recorded.recorded_inputs(b"study = recorded.load()", folder, notebooks)
    data = json.loads((results / "01_a.json").read_text())
    (results / "01_a.json").write_text(json.dumps({**data, "numbers": {"acc": 0.8}}))
    recorded.record("smoke", results, dest, notebooks_dir=notebooks)  # another recorded number
    after = recorded.recorded_inputs(b"study = recorded.load()", folder, notebooks)
    assert after != before
    _notebook(notebooks / "02_b.ipynb", code="changed = True")  # the verdict on 02_b changes: so does the key
    assert recorded.recorded_inputs(b"study = recorded.load()", folder, notebooks) != after


# ---------------------------------------------------------------------------------------------- display
def test_claims_table_puts_the_recorded_number_beside_ours(tmp_path, package):
    measured = [c for c in CLAIMS if c.notebook]
    numbers = {}
    for i, c in enumerate(measured):
        numbers.setdefault(c.notebook, {}).setdefault(c.key, 0.25 + i)  # two claims may share one number
    notebooks, results = _build(tmp_path, numbers)
    dest = tmp_path / "recorded" / "smoke"
    recorded.record("smoke", results, dest, notebooks_dir=notebooks)
    rec = recorded.load("smoke", dest, package_dir=package, notebooks_dir=notebooks)
    quick = tmp_path / "quick"
    quick.mkdir()
    t5, _ = claims_table(quick, "quick", rec)
    rows = t5.set_index("id")
    for c in measured:
        assert rows.loc[c.id, "study scale (smoke)"] == f"{numbers[c.notebook][c.key] * c.scale:.4g} {c.unit}".strip()
        assert rows.loc[c.id, "ours"] == "not run"
        assert rows.loc[c.id, "study-scale time of the recording run (s)"] == round(rec.provenance["notebooks"][c.notebook]
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
    recorded.record("smoke", results, dest, notebooks_dir=notebooks)
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
    """Build a one-notebook book at the smoke profile (a real kernel trains the smoke model), record it,
    then find it current, and stale after its notebook's code changes."""
    from rramlib import book
    from rramlib.cli.main import main

    monkeypatch.setenv("RRAMLIB_CACHE", str(tmp_path / "cache"))
    notebooks, book_dir = tiny_book_dirs(tmp_path)
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    params = nbformat.v4.new_code_cell("profile = 'quick'\nout_dir = 'results'")
    params.metadata["tags"] = ["parameters"]
    nb.cells = [params, nbformat.v4.new_code_cell(
        "from rramlib.present.notebook import start\nnb = start('01_a', profile=profile, out_dir=out_dir)\n"
        "nb.report.number('acc', nb.base_model().accuracy)\nnb.report.finish();")]
    nbformat.write(nb, notebooks / "01_a.ipynb")
    out = tmp_path / "out"
    book.build("smoke", out, html=False, notebooks_dir=notebooks, book_dir=book_dir, log=lambda *a, **k: None)
    dest = tmp_path / "recorded" / "smoke"
    recorded.record("smoke", out / "src" / "results", dest, notebooks_dir=notebooks)
    rec = recorded.load("smoke", dest, notebooks_dir=notebooks)
    results = json.loads((out / "src" / "results" / "01_a.json").read_text())
    assert rec.reasons() == [] and rec.number("01_a", "acc") == results["numbers"]["acc"] > 0.5
    assert rec.provenance["data_sources"] == [{"dataset": "digits"}]
    assert rec.provenance["notebooks"]["01_a"]["builder_wall_s"] > rec.provenance["notebooks"]["01_a"]["runtime_s"] > 0
    nb.cells[1].source += "\nprint('changed')"
    nbformat.write(nb, notebooks / "01_a.ipynb")
    assert recorded.load("smoke", dest, notebooks_dir=notebooks).reasons() == ["code cells of notebook 01_a changed"]
    assert main(["record", "--profile", "nonsense", "--dest", str(tmp_path / "x")]) == 2
    assert not (tmp_path / "x").exists()



def test_record_keeps_only_the_chapters_run_at_the_profile(tmp_path, monkeypatch):
    """With a chapter scope, the chapters that ran at the fallback profile are neither required nor recorded,
    and a scoped chapter made at another profile is still refused."""
    from rramlib.study import scope

    monkeypatch.setitem(scope.PROFILE_CHAPTERS, "smoke", ("01_a",))
    notebooks, results = _build(tmp_path, {"01_a": {"acc": 0.75}})
    _build(tmp_path, {"02_b": {"acc": 0.5}}, profile="quick")
    dest = tmp_path / "recorded" / "smoke"
    recorded.record("smoke", results, dest, notebooks_dir=notebooks)
    assert sorted(p.name for p in dest.iterdir()) == ["01_a.json", recorded.PROVENANCE]
    rec = recorded.load("smoke", dest, notebooks_dir=notebooks)
    assert rec.reasons() == [] and rec.number("01_a", "acc") == 0.75 and rec.number("02_b", "acc") is None
    monkeypatch.setitem(scope.PROFILE_CHAPTERS, "smoke", ("01_a", "02_b"))
    with pytest.raises(RramlibError, match="02_b .*not made at profile 'smoke'"):
        recorded.record("smoke", results, tmp_path / "again", notebooks_dir=notebooks)
    assert not (tmp_path / "again").exists()


def test_provenance_table_points_to_the_cold_build_times_when_kept(record, tmp_path):
    """The recording run may be a cached one: its times are labelled so, and a kept cold-build log is named."""
    rows = dict(recorded.load("smoke", tmp_path / "recorded" / "smoke", notebooks_dir=tmp_path / "notebooks")
                .provenance_table().values)
    assert "notebook time of the recording run, total (s)" in rows and "first, uncached build" not in rows
    (tmp_path / "recorded" / "smoke" / recorded.COLD_BUILD).write_text("  [1/2] 01_a   12.0 s\n")
    rows = dict(recorded.load("smoke", tmp_path / "recorded" / "smoke", notebooks_dir=tmp_path / "notebooks")
                .provenance_table().values)
    assert f"recorded/smoke/{recorded.COLD_BUILD}" in rows["first, uncached build"]


def test_seed_cache_copies_shipped_entries_where_absent(tmp_path):
    import torch

    from rramlib.core.cache import Cache

    folder = tmp_path / "recorded" / "cifar"
    Cache(folder / recorded.SHIPPED_CACHE).save("model", "k1", {"w": torch.arange(3.0)})
    cache_dir = tmp_path / "cache"
    assert recorded.seed_cache("cifar", cache_dir, folder) == [cache_dir / "model" / "k1.pt"]
    assert torch.equal(Cache(cache_dir).load("model", "k1")["w"], torch.arange(3.0))  # intact, checksum and all
    Cache(cache_dir).save("model", "k1", {"w": torch.zeros(3)})
    assert recorded.seed_cache("cifar", cache_dir, folder) == []  # an entry already there is never replaced
    assert torch.equal(Cache(cache_dir).load("model", "k1")["w"], torch.zeros(3))
    assert recorded.seed_cache("cifar", cache_dir, tmp_path / "no-record") == []


def test_the_book_builder_seeds_its_cache_from_the_record(tmp_path, monkeypatch):
    import torch

    from rramlib import book
    from rramlib.core.cache import Cache

    monkeypatch.setattr(recorded, "RECORDED_DIR", tmp_path / "recorded")
    Cache(tmp_path / "recorded" / "smoke" / recorded.SHIPPED_CACHE).save("model", "k1", {"w": torch.ones(2)})
    monkeypatch.setenv("RRAMLIB_CACHE", str(tmp_path / "cache"))
    notebooks, book_dir = tiny_book_dirs(tmp_path)
    lines = []
    book.build("smoke", tmp_path / "out", html=False, notebooks_dir=notebooks, book_dir=book_dir,
               log=lambda *a, **k: lines.append(a[0]))
    assert torch.equal(Cache(tmp_path / "cache").load("model", "k1")["w"], torch.ones(2))
    assert any("1 entry shipped with recorded/smoke/" in line for line in lines)


def test_the_shipped_base_model_loads_into_the_records_network():
    """recorded/cifar ships its trained ResNet-20 under a model key (kind "model"): it loads into ResNet-20 (every
    tensor, every shape) with the recorded number of epochs. The cache reads it only where its key -- the
    code of rramlib.study.base_model's closure, the configuration, the data and the numeric environment --
    is the one a rebuild computes."""
    import torch

    from rramlib.core.cache import Cache
    from rramlib.nn.models import build_model

    rec = recorded.load()
    folder = recorded.RECORDED_DIR / recorded.STUDY_PROFILE / recorded.SHIPPED_CACHE
    (entry,) = (folder / "model").glob("*.pt")
    state = Cache(folder).load("model", entry.stem)
    model = build_model("resnet20", num_classes=10, in_channels=3, seed=0)
    model.load_state_dict(state["state_dict"])  # strict
    assert all(torch.isfinite(v.float()).all() for v in state["state_dict"].values())
    assert len(state["history"]["train_loss"]) == rec.provenance["profile_config"]["train"]["epochs"]
