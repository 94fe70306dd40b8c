"""Every compensation method through one table-driven matrix, plus method-specific behaviour."""
import dataclasses

import pytest
import torch

from rramlib.analog import rram_layers
from rramlib.cache import Cache
from rramlib.compensation import METHODS, FitContext, make_method
from rramlib.errors import RramlibError
from rramlib.evaluate import accuracy
from rramlib.experiments import EVAL_CHIP_BASE, SweepConfig, get_profile, run_sweep, train_base_model
from rramlib.drift import make_drift_model
from rramlib.schedule import log_windows
from rramlib.times import TIME_GRID

FAST = {"vera_plus": {"steps": 10}, "lora": {"steps": 10}, "retrain": {"steps": 10},
        "noise_aware": {"epochs": 1}, "bn": {"batches": 2}, "dora": {"steps": 5}}
T10Y = TIME_GRID["10y"]


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    return train_base_model(get_profile("smoke"), cache=Cache(tmp_path_factory.mktemp("c")), progress=False)


def context(base, preset="ibm_pcm", levels=2):
    return FitContext(model=base.model, splits=base.splits, drift=make_drift_model(preset),
                      schedule=log_windows(levels), train_chips=3)


@pytest.fixture(scope="module")
def fitted(base):
    out = {}
    for name in METHODS:
        out[name] = make_method(name, **FAST.get(name, {})).fit(context(base))
    return out


@pytest.mark.parametrize("name", list(METHODS))
def test_outputs_are_finite_and_deterministic(fitted, base, name):
    x = base.splits.test.tensors[0][:32]
    method = fitted[name]
    with torch.no_grad():
        y1 = method.at(EVAL_CHIP_BASE, T10Y)(x).clone()
        method.at(EVAL_CHIP_BASE + 1, T10Y)
        y2 = method.at(EVAL_CHIP_BASE, T10Y)(x)
    assert torch.isfinite(y1).all()
    torch.testing.assert_close(y1, y2, rtol=0, atol=1e-5 if name == "dora" else 0)


@pytest.mark.parametrize("name", ["vera_plus", "lora", "retrain", "dora"])
def test_untrained_adapters_leave_the_drifted_chip_unchanged(base, name):
    ctx = context(base)
    plain = make_method("none").fit(ctx)
    method = make_method(name, **FAST.get(name, {}))
    method.setup(ctx)  # structure only, parameters at their initial values
    x = base.splits.test.tensors[0][:64]
    with torch.no_grad():
        expected = plain.at(EVAL_CHIP_BASE, T10Y)(x)
        if name == "dora":
            method.analog_.program(EVAL_CHIP_BASE)
            method.analog_.at(T10Y)
            method.adapters_.reset_magnitude()
            got = method.analog_.model(x)
        else:
            got = method.at(EVAL_CHIP_BASE, T10Y)(x)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", ["vera_plus", "lora", "retrain", "bn", "noise_aware"])
def test_state_round_trip_reproduces_outputs(fitted, base, name, tmp_path):
    method = fitted[name]
    torch.save(method.state_dict(), tmp_path / "state.pt")
    restored = make_method(name, **FAST.get(name, {}))
    restored.setup(context(base))
    restored.load_state_dict(torch.load(tmp_path / "state.pt", weights_only=True))
    x = base.splits.test.tensors[0][:32]
    for t in (1.0, T10Y):
        with torch.no_grad():
            assert torch.equal(method.at(EVAL_CHIP_BASE, t)(x), restored.at(EVAL_CHIP_BASE, t)(x))


@pytest.mark.parametrize("name", ["vera_plus", "lora", "retrain", "bn"])
def test_levels_switch_with_time(fitted, base, name):
    method = fitted[name]
    lo_edge = method.schedule_.edges[1]
    x = base.splits.test.tensors[0][:32]
    with torch.no_grad():
        before = method.at(EVAL_CHIP_BASE, lo_edge * 0.999)(x).clone()
        after_level = method.at(EVAL_CHIP_BASE, lo_edge)(x).clone()
    assert method.schedule_.name_of(lo_edge * 0.999) == "level0" and method.schedule_.name_of(lo_edge) == "level1"
    if hasattr(method, "adapters_"):
        assert method.adapters_.active_level == "level1"
    assert not torch.allclose(before, after_level)  # another parameter set (and nearly the same drift)


def test_training_reduces_the_loss_and_only_touches_adapters(base):
    ctx = context(base)
    method = make_method("vera_plus", steps=60, lr=1e-2)
    method.setup(ctx)
    frozen = {k: v.clone() for k, v in method.analog_.model.state_dict().items() if "lambda" not in k}
    method.train(ctx)
    losses = method.losses_["level1"]
    assert sum(losses[-10:]) / 10 < sum(losses[:10]) / 10
    state = method.analog_.model.state_dict()
    assert all(torch.equal(state[k], v) for k, v in frozen.items() if "weight" not in k or "bn" in k)


def test_training_chips_are_disjoint_from_evaluation_chips(base, monkeypatch):
    ctx = context(base)
    method = make_method("vera_plus", steps=20)
    method.setup(ctx)
    seen = []
    original = method.analog_.program
    monkeypatch.setattr(method.analog_, "program", lambda seed: seen.append(seed) or original(seed))
    method.train(ctx)
    assert seen and all(0 <= s < ctx.train_chips < EVAL_CHIP_BASE for s in seen)


def test_scale_compensates_a_global_decay(base):
    """PCM drift shrinks conductances; global output scaling must undo most of the loss."""
    ctx = context(base, "ibm_pcm")
    none, scale = make_method("none").fit(ctx), make_method("scale").fit(ctx)
    test = base.splits.test.tensors
    acc_none = accuracy(none.at(EVAL_CHIP_BASE, T10Y), test)
    acc_scale = accuracy(scale.at(EVAL_CHIP_BASE, T10Y), test)
    assert acc_scale > acc_none + 0.1
    # the scale is taken against the chip's own programmed state: alpha = 1 right after programming
    w0 = dict(scale.analog_.weights_at(0.0))
    scale.at(EVAL_CHIP_BASE, 0.0)
    for name, module in zip(scale.analog_.layer_names, scale.analog_.layer_modules):
        torch.testing.assert_close(module.weight, w0[name])


def test_dora_respects_budget_and_ranks_layers(base):
    method = make_method("dora", steps=5, budget=0.05).fit(context(base))
    assert 0 < method.fraction_updated() <= 0.05
    assert set(method.layers_) <= set(method.sensitivity_)
    assert all(v >= 0 for v in method.sensitivity_.values())
    with pytest.raises(RramlibError, match="budget"):
        make_method("dora", budget=1e-6).fit(context(base))
    with pytest.raises(RramlibError, match="n_samples"):
        make_method("dora", n_samples=10_000).fit(context(base))


def test_dora_calibration_recovers_accuracy(base):
    ctx = context(base, "ibm_pcm")
    none, dora = make_method("none").fit(ctx), make_method("dora", steps=60, budget=0.05).fit(ctx)
    test = base.splits.test.tensors
    assert accuracy(dora.at(EVAL_CHIP_BASE, T10Y), test) > accuracy(none.at(EVAL_CHIP_BASE, T10Y), test) + 0.05


def test_storage_hand_counts_on_the_smoke_model(fitted, base):
    layers = [m for _, m in rram_layers(base.model)]
    outs = sum(m.weight.shape[0] for m in layers)
    bn_features = sum(m.num_features for m in base.model.modules() if isinstance(m, torch.nn.BatchNorm2d))
    r = fitted["vera_plus"].params["rank"]
    assert fitted["vera_plus"].storage().values_per_level == outs + r * len(layers)
    assert fitted["vera_plus"].storage().levels == 2 and fitted["vera_plus"].storage().shared_values == 0
    assert fitted["vera_plus"].storage().seed_bytes > 0
    assert fitted["bn"].storage().values_per_level == 2 * bn_features
    assert fitted["retrain"].storage().values_per_level == sum(m.weight.numel() for m in layers)
    rl = fitted["lora"].params["rank"]
    assert fitted["lora"].storage().values_per_level == sum(rl * (m.weight[0].numel() + m.weight.shape[0]) for m in layers)
    assert fitted["none"].storage().total_bytes() == 0


@pytest.mark.parametrize("bad", [
    {"name": "magic"}, {"name": "vera_plus", "colour": 1}, {"name": "vera_plus", "sharing": "all"},
    {"name": "vera_plus", "steps": "many"}, {"name": "scale", "mode": "row"}, {"name": "dora", "budget": -1.0},
    {"name": "vera_plus", "rank": 0}, {"name": "lora", "rank": -2}, {"name": "vera_plus", "kd_weight": -1.0},
    {"name": "lora", "steps": 0}, {"name": "retrain", "lr": 0.0},
])
def test_bad_method_input(bad):
    bad = dict(bad)
    with pytest.raises(RramlibError):
        make_method(bad.pop("name"), **bad)


def test_smoke_sweep_vera_plus_beats_none_and_stores_less(tmp_path):
    config = SweepConfig(profile="smoke", preset="ibm_pcm", methods=("none", "vera_plus", "bn", "lora"),
                         method_params={"vera_plus": {"steps": 150}})
    result = run_sweep(config, cache=Cache(tmp_path), progress=False)
    acc = {}
    for r in result["records"]:
        if r["time_label"] == "10y":
            acc.setdefault(r["method"], []).append(r["accuracy"])
    mean = {k: sum(v) / len(v) for k, v in acc.items()}
    assert mean["vera_plus"] > mean["none"] + 0.05
    storage = {k: v["storage"]["total_bytes_fp32"] for k, v in result["metadata"]["method_info"].items()}
    assert storage["vera_plus"] < storage["bn"] and storage["vera_plus"] < storage["lora"]
    levels = {r["time_label"]: r["level"] for r in result["records"] if r["method"] == "vera_plus"}
    assert levels == {"1s": "level0", "1d": "level1", "10y": "level1"}
