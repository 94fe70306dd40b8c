"""Conductance and weight-error statistics of the drift presets (rramlib.device.stats)."""
import math

import pytest

from rramlib.core.errors import RramlibError


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
