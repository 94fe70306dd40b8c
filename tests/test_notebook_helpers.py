"""The helpers the book's notebooks call: parameter checks, device statistics, cost tables, claims, runtimes."""
import json
import math

import pytest
import torch

from rramlib.core.errors import RramlibError
from rramlib.present.notebook import PARAMETERS, as_list, check_parameters


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


def test_drift_models_adds_the_main_preset_and_checks_params():
    from rramlib.device.stats import drift_models

    models = drift_models(["ibm_pcm"], "relative_gaussian", 2.0, {"relative_gaussian": {"rd": 0.3}})
    assert list(models) == ["ibm_pcm", "relative_gaussian"]
    assert models["relative_gaussian"].params()["rd"] == 0.3 and models["ibm_pcm"].params()["drift_scale"] == 2.0
    with pytest.raises(RramlibError, match="not in presets"):
        drift_models(["ibm_pcm"], "ibm_pcm", 1.0, {"measured": {}})


def test_conductance_statistics_golden_at_programming():
    """relative_gaussian has no programming noise: at t = 0 every device holds its target exactly."""
    from rramlib.device.stats import conductance_statistics, on_grid, targets_of

    models = {"relative_gaussian": __import__("rramlib.device.drift", fromlist=["x"]).make_drift_model("relative_gaussian")}
    states, stats = conductance_statistics(models, [0.25, 0.75], 2_000, seed=0, times=[1.0, 10 * 365.25 * 86400])
    m = models["relative_gaussian"]
    t0 = stats[stats["time_s"] == 0]
    assert t0["mean"].tolist() == pytest.approx(targets_of(m, [0.25, 0.75]).tolist())
    assert t0["std"].tolist() == pytest.approx([0.0, 0.0], abs=1e-6)
    late = stats[stats["time_s"] > 1].set_index("level")
    # zero mean, spread rd*G at ten years (the preset's definition), within sampling error of 2000 devices
    for f in (0.25, 0.75):
        g = late.loc[f, "g_target"]
        assert late.loc[f, "std"] == pytest.approx(m.params()["rd"] * g, rel=0.08)
        assert abs(late.loc[f, "shift"]) < 4 * m.params()["rd"] * g / math.sqrt(2_000)
    assert on_grid(stats)["time"].tolist()[:2] == ["0s", "0s"]


def test_weight_errors_definitions():
    """At t = 0 a noiseless preset reads the weights back exactly: rms 0, bias 0, gain 1, in both mappings."""
    from rramlib.device.stats import weight_errors
    from rramlib.device.drift import make_drift_model

    errors = weight_errors({"relative_gaussian": make_drift_model("relative_gaussian")}, 1_000, seed=1, times=[1e8])
    at0 = errors[errors["time_s"] == 0]
    assert sorted(at0["mapping"]) == ["differential", "single"]
    assert at0["rms_error"].abs().max() < 1e-5 and at0["bias"].abs().max() < 1e-5
    assert at0["gain"].tolist() == pytest.approx([1.0, 1.0], abs=1e-5)
    late = errors[errors["time_s"] > 0]
    assert (late["rms_error"] > 0.01).all() and (late["gain"] < 1.1).all()


def test_method_variants_add_the_other_sharing_and_bn_finetuning():
    from rramlib.study.costs import method_variants
    from rramlib.study.experiments import SweepConfig

    rows = method_variants(SweepConfig(profile="smoke", preset="ibm_pcm", methods=("vera_plus", "bn")))
    labels = [r[0] for r in rows]
    assert labels == ["vera_plus (per-layer)", "vera_plus (cross-layer)", "bn", "bn (+ γ/β fine-tuned)"]
    sharing = [r[2].method("vera_plus").params["sharing"] for r in rows[:2]]
    assert sharing == ["layer", "cross"]
    assert rows[3][2].method("bn").params["finetune_steps"] >= 1


def test_switching_times_straddle_every_edge():
    from rramlib.study.experiments import switching_times
    from rramlib.methods.schedule import log_windows
    from rramlib.core.times import parse_time

    schedule = log_windows(4)
    times = switching_times(schedule, ("1s", "1d", "10y"), 5)
    seconds = [parse_time(t) for t in times]
    assert seconds == sorted(seconds) and {"1s", "1d", "10y"} <= set(times)
    for e in schedule.edges[1:-1]:
        assert any(abs(s - 0.93 * e) < 1e-5 * e for s in seconds) and any(abs(s - 1.07 * e) < 1e-5 * e for s in seconds)


def test_atomic_write_replaces_whole_files(tmp_path):
    from rramlib.core.files import atomic_write

    path = atomic_write(tmp_path / "sub" / "x.json", "first")
    atomic_write(path, b"\x00second")
    assert path.read_bytes() == b"\x00second"
    assert [p.name for p in path.parent.iterdir()] == ["x.json"]  # no temporary file left behind

    class Boom(bytes):
        def __bytes__(self):
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        atomic_write(path, Boom(b"never"))
    assert path.read_bytes() == b"\x00second" and len(list(path.parent.iterdir())) == 1


def test_runtime_table_and_claims_table(tmp_path):
    from rramlib.study.claims import CLAIMS, claims_table
    from rramlib.present.report import runtime_table

    c1 = next(c for c in CLAIMS if c.id == "C1")
    numbers = {c.key: 0.5 for c in CLAIMS if c.notebook == c1.notebook}
    (tmp_path / f"{c1.notebook}.json").write_text(json.dumps(
        {"notebook": c1.notebook, "numbers": {**numbers, c1.key: 99.5}, "runtime_s": 12.34, "peak_rss_mb": 321.4}))
    (tmp_path / "build_times.json").write_text(json.dumps({"jobs": 2, "notebooks": {c1.notebook: {"seconds": 13.0,
                                                                                                  "cached": False}}}))
    times = runtime_table(tmp_path)
    assert times.to_dict("records") == [{"notebook": c1.notebook, "runtime (s)": 12.3, "CPU (s)": None,
                                         "peak RAM (MiB)": 321, "builder wall (s)": 13.0, "cached": False,
                                         "notebooks at once": 2}]
    t5, ours = claims_table(tmp_path, "quick")
    assert ours["C1"] == pytest.approx(99.5 * c1.scale)
    row = t5.set_index("id").loc["C1"]
    assert row["ours"] == "99.5 %" and row["wall time (s)"] == 12.3
    assert t5.set_index("id").loc["C3", "ours"] == "not run"
    (tmp_path / f"{c1.notebook}.json").write_text(json.dumps({"notebook": c1.notebook, "numbers": {},
                                                               "runtime_s": 1, "peak_rss_mb": 1}))
    with pytest.raises(RramlibError, match="stores no number"):
        claims_table(tmp_path, "quick")


def test_every_registered_parameter_checks_its_values():
    assert all(callable(spec.check) for spec in PARAMETERS.values())
    assert PARAMETERS["levels_list"].default("smoke") == [1, 2]


def test_place_labels_do_not_overlap():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from rramlib.present.plotting import place_labels

    fig, ax = plt.subplots(figsize=(4, 3))
    xs, ys = [1.0, 1.05, 1.1, 3.0], [0.5, 0.5, 0.52, 0.9]
    ax.plot(xs, ys, "o")
    ax.set_xlim(0, 4)
    ax.set_ylim(0, 1)
    texts = place_labels(ax, xs, ys, ["alpha", "beta", "gamma", "delta"])
    renderer = fig.canvas.get_renderer()
    boxes = [t.get_window_extent(renderer) for t in texts]
    assert not any(a.overlaps(b) for i, a in enumerate(boxes) for b in boxes[i + 1:])
    plt.close(fig)


def test_sram_layers_group_the_state_by_layer():
    from rramlib.study.seu import sram_layers

    class Fake:
        def sram_tensors(self, t):
            return {"level1/conv1.lambda_b": torch.zeros(4), "level1/conv1.lambda_d": torch.zeros(2),
                    "level1/fc.lambda_b": torch.zeros(3), "shared/lambda_d": torch.zeros(2)}

    layers = sram_layers(Fake(), 1.0)
    assert {k: sorted(v) for k, v in layers.items()} == {
        "conv1": ["conv1.lambda_b", "conv1.lambda_d"], "fc": ["fc.lambda_b"], "lambda_d": ["lambda_d"]}


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
