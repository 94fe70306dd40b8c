"""Every compensation method (and its variants) through one table-driven matrix, plus method-specific behaviour."""
import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from rramlib.methods.adapters import DoRAConfig, LoRAConfig, VeraPlusConfig
from rramlib.device.analog import rram_layers
from rramlib.core.cache import Cache
from rramlib.methods.compensation import (METHODS, DoRACalibrationConfig, FitContext, LoRAMethodConfig, Method,
                                  VeraPlusMethodConfig, drift_injected_training, make_method)
from rramlib.methods.compensation.dora_calibration import ADAPTER, dora_values, stratified_pick
from rramlib.methods.compensation.noise_aware import drift_injectors
from rramlib.core.errors import RramlibError
from rramlib.nn.evaluate import accuracy
from rramlib.study.base_model import train_base_model
from rramlib.study.experiments import SweepConfig, fit_method, run_sweep
from rramlib.device.drift import make_drift_model
from rramlib.nn.models import build_model
from rramlib.methods.overhead import PRECISION_BITS, Storage, base_macs, vera_plus_extra_macs, vera_plus_rank_for_macs
from rramlib.study.profiles import get_profile
from rramlib.methods.schedule import log_windows
from rramlib.core.seeding import EVAL_CHIP_BASE, generator
from rramlib.core.times import TIME_GRID, parse_time
from rramlib.core.torchutil import eval_mode

T10Y = TIME_GRID["10y"]

#: label -> (method, hyper-parameters): every method, and the variants with their own code paths
VARIANTS = {
    "none": ("none", {}),
    "scale": ("scale", {}),
    "scale_column": ("scale", {"mode": "column"}),
    "bn": ("bn", {"batches": 2}),
    "bn_finetune": ("bn", {"batches": 2, "finetune_steps": 5}),
    "lora": ("lora", {"steps": 10}),
    "lora_1x1": ("lora", {"steps": 10, "conv_branch": "1x1"}),
    "vera_plus": ("vera_plus", {"steps": 10}),
    "vera_plus_cross": ("vera_plus", {"steps": 10, "sharing": "cross"}),
    "vera_plus_kd": ("vera_plus", {"steps": 10, "kd_weight": 0.5}),
    "offline_correction": ("offline_correction", {"steps": 10}),
    "dora": ("dora", {"steps": 5}),
    "noise_aware": ("noise_aware", {"epochs": 1}),
    "reprogram": ("reprogram", {}),
}
PER_LEVEL = ["bn", "bn_finetune", "lora", "vera_plus", "vera_plus_cross", "vera_plus_kd", "offline_correction"]


def make(label):
    name, params = VARIANTS[label]
    return make_method(name, **params)


def flags(model):
    return [(n, m.training) for n, m in model.named_modules()]


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    return train_base_model(get_profile("smoke"), cache=Cache(tmp_path_factory.mktemp("c")), progress=False)


def context(base, preset="ibm_pcm", levels=2, model=None, readout="raw"):
    return FitContext(model=model or base.model, splits=base.splits, drift=make_drift_model(preset),
                      schedule=log_windows(levels), train_chips=3, readout=readout)


@pytest.fixture(scope="module")
def teacher(base):
    """The caller's model in a mixed state (root training, one submodule in eval) that ``fit`` must not touch."""
    model = copy.deepcopy(base.model).train()
    next(m for m in model.modules() if isinstance(m, nn.BatchNorm2d)).eval()
    return model


@pytest.fixture(scope="module")
def fit_cache(tmp_path_factory):
    return Cache(tmp_path_factory.mktemp("fits"))


@pytest.fixture(scope="module")
def fitted(base, teacher, fit_cache):
    """Every variant fitted once through the cache path of the experiments (fit_method)."""
    before = (flags(teacher), {k: v.clone() for k, v in teacher.state_dict().items()},
              [p.requires_grad for p in teacher.parameters()])
    out = {}
    for label in VARIANTS:
        out[label] = make(label)
        fit_method(out[label], context(base, model=teacher), {"test": "compensation"}, fit_cache)
    after = (flags(teacher), teacher.state_dict(), [p.requires_grad for p in teacher.parameters()])
    return out, before, after


# ----------------------------------------------------------------------------------------- the matrix
def test_the_matrix_covers_every_method():
    # ln_refit needs LayerNorm, which these networks lack: its matrix is tests/test_text_methods.py (a BERT)
    assert {name for name, _ in VARIANTS.values()} == set(METHODS) - {"ln_refit"}


@pytest.mark.parametrize("label", list(VARIANTS))
def test_outputs_are_finite_and_deterministic(fitted, base, label):
    x = base.splits.test.tensors[0][:32]
    method = fitted[0][label]
    with torch.no_grad():
        y1 = method.at(EVAL_CHIP_BASE, T10Y)(x).clone()
        method.at(EVAL_CHIP_BASE + 1, T10Y)
        y2 = method.at(EVAL_CHIP_BASE, T10Y)(x)
    assert torch.isfinite(y1).all()
    torch.testing.assert_close(y1, y2, rtol=0, atol=1e-5 if label == "dora" else 0)


def test_fit_leaves_the_callers_model_unchanged(fitted):
    """Training flags of every submodule, values and requires_grad flags are as before any fit."""
    _, (flags0, state0, grads0), (flags1, state1, grads1) = fitted
    assert flags1 == flags0
    assert not all(flag for _, flag in flags0) and any(flag for _, flag in flags0)  # the mixed state survived
    assert grads1 == grads0
    assert all(torch.equal(state1[k], v) for k, v in state0.items())


@pytest.mark.parametrize("label", list(VARIANTS))
def test_restoring_from_the_cache_equals_the_fresh_fit(fitted, base, teacher, fit_cache, label):
    fresh = fitted[0][label]
    restored = make(label)
    hits = fit_cache.hits
    fit_method(restored, context(base, model=teacher), {"test": "compensation"}, fit_cache)
    assert fit_cache.hits == hits + 1  # restored, not fitted again
    x = base.splits.test.tensors[0][:32]
    for chip, t in ((EVAL_CHIP_BASE, 1.0), (EVAL_CHIP_BASE + 1, T10Y)):
        with torch.no_grad():
            expected = fresh.at(chip, t)(x).clone()
            got = restored.at(chip, t)(x)
        torch.testing.assert_close(got, expected, rtol=0, atol=1e-5 if label == "dora" else 0)


@pytest.mark.parametrize("label", list(VARIANTS))
def test_sram_tensors_are_what_storage_counts(fitted, label):
    method = fitted[0][label]
    storage = method.storage()
    tensors = method.sram_tensors()
    assert sum(t.numel() for t in tensors.values()) == storage.total_values
    read_at_10y = method.sram_tensors(T10Y)
    assert sum(t.numel() for t in read_at_10y.values()) == storage.values_per_level + storage.shared_values
    levels = {k.split("/", 1)[0] for k in tensors}
    assert levels <= {"shared", "calibration", *(method.schedule_.names if hasattr(method, "schedule_") else ())}
    calibration = sum(t.numel() for k, t in tensors.items() if k.startswith("calibration/"))
    assert calibration == storage.calibration_values + storage.input_values and (calibration > 0) == storage.online


@pytest.mark.parametrize("label", ["scale", "bn", "bn_finetune", "lora", "vera_plus", "vera_plus_cross",
                                   "offline_correction", "reprogram"])
def test_sram_tensors_are_live(fitted, base, label):
    """Writing into the tensors read at t changes the output at t; writing the old values back restores it."""
    method = fitted[0][label]
    x = base.splits.test.tensors[0][:32]
    with torch.no_grad():
        y0 = method.at(EVAL_CHIP_BASE, T10Y)(x).clone()
        tensors = method.sram_tensors(T10Y)
        saved = {k: v.clone() for k, v in tensors.items()}
        for v in tensors.values():
            v.add_(0.5)
        y1 = method.at(EVAL_CHIP_BASE, T10Y)(x).clone()
        for k, v in tensors.items():
            v.copy_(saved[k])
        y2 = method.at(EVAL_CHIP_BASE, T10Y)(x)
    assert not torch.allclose(y0, y1)
    assert torch.equal(y2, y0)


@pytest.mark.parametrize("label", PER_LEVEL)
def test_the_level_switch_selects_the_other_set(fitted, base, label):
    """At the first edge the output is that of level 1's set on these very drifted weights, not level 0's."""
    method = fitted[0][label]
    edge = method.schedule_.edges[1]
    x = base.splits.test.tensors[0][:32]
    with torch.no_grad():
        method.at(EVAL_CHIP_BASE, edge * 0.999)  # level 0 active
        y_level1 = method.at(EVAL_CHIP_BASE, edge)(x).clone()
        method.select(edge * 0.999)  # same weights, level 0's set
        y_level0 = method.analog_.model(x).clone()
        method.select(edge)
        y_back = method.analog_.model(x)
    assert method.schedule_.name_of(edge * 0.999) == "level0" and method.schedule_.name_of(edge) == "level1"
    assert torch.equal(y_back, y_level1)
    assert not torch.allclose(y_level0, y_level1)


# ----------------------------------------------------------------------------------------- configs
@pytest.mark.parametrize("bad", [
    {"name": "magic"}, {"name": "vera_plus", "colour": 1}, {"name": "vera_plus", "sharing": "all"},
    {"name": "vera_plus", "steps": "many"}, {"name": "scale", "mode": "row"}, {"name": "dora", "budget": -1.0},
    {"name": "vera_plus", "rank": 0}, {"name": "lora", "rank": -2}, {"name": "vera_plus", "kd_weight": -1.0},
    {"name": "lora", "steps": 0}, {"name": "offline_correction", "lr": 0.0}, {"name": "bn", "finetune_steps": -1},
    {"name": "bn", "batches": 2.0}, {"name": "scale", "n_probe": 0}, {"name": "dora", "sensitivity_time": "soon"},
    {"name": "dora", "sensitivity_chips": 0}, {"name": "noise_aware", "epochs": True},
    {"name": "vera_plus", "seed": -1}, {"name": "lora", "init_seed": 2**63}, {"name": "none", "rank": 4},
])
def test_bad_method_input(bad):
    bad = dict(bad)
    with pytest.raises(RramlibError):
        make_method(bad.pop("name"), **bad)


def test_adapter_defaults_live_in_the_adapter_configs():
    """A method's adapter part is the adapter's own config: one place for rank, alpha, d_init ... defaults."""
    assert VeraPlusMethodConfig().project(VeraPlusConfig) == VeraPlusConfig()
    assert LoRAMethodConfig().project(LoRAConfig) == LoRAConfig()
    assert DoRACalibrationConfig().adapter_config() == DoRAConfig()
    method = make_method("vera_plus", rank=3, projection_seed=9)
    assert method.hparams.project(VeraPlusConfig) == VeraPlusConfig(rank=3, projection_seed=9)
    assert method.config() == {"method": "vera_plus", **method.params, "seeding": method.config()["seeding"]}
    assert make_method("vera_plus", **method.params).config() == method.config()
    assert Method.Config().as_dict() == {}  # the base knows no parameter names


def test_eval_mode_restores_every_submodule_flag():
    model = nn.Sequential(nn.Linear(2, 2), nn.Sequential(nn.BatchNorm1d(2), nn.Dropout()))
    model.train()
    model[1][0].eval()
    before = flags(model)
    with eval_mode(model):
        assert not any(flag for _, flag in flags(model))
    assert flags(model) == before
    with pytest.raises(ValueError), eval_mode(model):
        raise ValueError
    assert flags(model) == before


# ----------------------------------------------------------------------------------------- behaviour
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


def test_kd_adds_kd_weight_times_the_distillation_loss(base):
    """Same stream, one step: loss(w) - loss(0) = w * KL, so it doubles with w and is positive on a drifted chip."""
    ctx = context(base)
    first = {}
    for w in (0.0, 0.5, 1.0):
        method = make_method("vera_plus")
        method.setup(ctx)
        first[w] = drift_injected_training(ctx, method.analog_, method.adapters_.adapter_parameters("level1"), 1,
                                           generator(0, "adapter_training", 1), steps=1, lr=1e-3, kd_weight=w)[0]
    kd = first[0.5] - first[0.0]
    assert kd > 1e-4
    assert first[1.0] - first[0.0] == pytest.approx(2 * kd, rel=1e-4)


def test_training_chips_are_disjoint_from_evaluation_chips(base, monkeypatch):
    ctx = context(base)
    method = make_method("vera_plus", steps=20)
    method.setup(ctx)
    seen = []
    original = method.analog_.program
    monkeypatch.setattr(method.analog_, "program", lambda seed: seen.append(seed) or original(seed))
    method.train(ctx)
    assert seen and set(seen) <= set(range(ctx.train_chips))


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


def _rram_weights(model):
    return [m.weight.detach().clone() for _, m in rram_layers(model)]


def test_none_on_a_gdc_chip_is_global_scale_on_a_raw_chip_bit_for_bit(base):
    """The readout "gdc" is the method scale (global, default probe) built into the chip: one definition of α
    (rramlib.device.analog.DriftCompensation), the same inputs, the same float32 operations in the same order, so
    the networks agree to the last bit (weights and logits), on every chip and time."""
    none = make_method("none").fit(context(base, readout="gdc"))
    scale = make_method("scale").fit(context(base))
    plain = make_method("none").fit(context(base))
    x = base.splits.test.tensors[0][:64]
    for seed in (EVAL_CHIP_BASE, EVAL_CHIP_BASE + 1):
        for t in (1.0, TIME_GRID["1d"], T10Y):
            w_none, logits = _rram_weights(none.at(seed, t)), none.at(seed, t)(x)
            w_scale = _rram_weights(scale.at(seed, t))
            assert all(torch.equal(a, b) for a, b in zip(w_none, w_scale))
            assert torch.equal(logits, scale.at(seed, t)(x))
            assert not torch.equal(w_none[0], _rram_weights(plain.at(seed, t))[0])  # the readout did act


def test_global_scale_on_a_gdc_chip_is_the_identity(base):
    """On a "gdc" chip, scale's reference r0' is the chip's r0 (α' = 1 exactly at t = 0) and at t it reads the
    already compensated layer: α' = r0 / r_t(α W) = 1 up to float32 rounding (r_t(α W) = α r_t(W) only to the
    last bits), so scale changes the weights by a relative error of the order of float32's epsilon."""
    none = make_method("none").fit(context(base, readout="gdc"))
    scale = make_method("scale").fit(context(base, readout="gdc"))
    for t in (0.0, 1.0, TIME_GRID["1d"], T10Y):
        w_none, w_scale = _rram_weights(none.at(EVAL_CHIP_BASE, t)), _rram_weights(scale.at(EVAL_CHIP_BASE, t))
        for a, b in zip(w_scale, w_none):
            if t == 0.0:
                assert torch.equal(a, b)
            else:
                torch.testing.assert_close(a, b, rtol=1e-6, atol=0)


def test_a_bad_readout_is_refused_by_the_fit_context(base):
    with pytest.raises(RramlibError, match="unknown readout 'gdc_column'"):
        context(base, readout="gdc_column")


def test_column_scale_makes_each_output_column_match_its_reference(fitted):
    """mode="column": after α, every output column's probe readout equals its r0 (global: only the mean)."""
    for label in ("scale", "scale_column"):
        method = fitted[0][label]
        method.at(EVAL_CHIP_BASE, T10Y)
        reference = method.sram_tensors()
        for name, module in zip(method.analog_.layer_names, method.analog_.layer_modules):
            w = module.weight.reshape(module.weight.shape[0], -1)
            per_column = (w @ method.probes_[name]).abs().mean(dim=1)
            r0 = reference[f"shared/{name}.r0"]
            if label == "scale_column":
                torch.testing.assert_close(per_column, r0, rtol=1e-4, atol=1e-6)
            else:
                torch.testing.assert_close(per_column.mean(), r0, rtol=1e-4, atol=1e-6)


def test_dora_sensitivity_is_the_logit_mse_of_one_drifted_layer(fitted, base):
    """Cross-check every layer's score against a direct computation on fresh chips, then the budget rule."""
    method = fitted[0]["dora"]
    p = method.hparams
    ctx = context(base)
    x, y = base.splits.calib.tensors
    x = x[stratified_pick(y, p.n_samples)]  # the calibration images DoRA uses
    with torch.no_grad(), eval_mode(base.model):
        reference = base.model(x)
    t = parse_time(p.sensitivity_time)
    for name, _ in rram_layers(base.model):
        scores = []
        for chip in range(p.sensitivity_chips):
            drifted = dict(ctx.analog(seed=chip).weights_at(t))[name]
            model = copy.deepcopy(base.model).eval()
            with torch.no_grad():
                model.get_submodule(name).weight.copy_(drifted)
                scores.append(float(F.mse_loss(model(x), reference)))
        assert method.sensitivity_[name] == pytest.approx(sum(scores) / len(scores), rel=1e-5)
    assert len(set(method.sensitivity_.values())) == len(method.sensitivity_)
    assert 0 < method.fraction_updated() <= p.budget
    # budget rule: walking the layers from the most sensitive down, a layer is taken iff it still fits
    modules, used = dict(rram_layers(base.model)), 0
    for name in sorted(method.sensitivity_, key=method.sensitivity_.get, reverse=True):
        cost = dora_values(modules[name], p.rank)
        fits = used + cost <= p.budget * method.total_parameters_
        assert (name in method.layers_) == fits
        used += cost if fits else 0


def test_reprogram_is_the_chip_right_after_programming(fitted, base):
    """The rewritten chip at any t equals the uncompensated chip at t = 0 (no drift), chip by chip."""
    reprogram, none = fitted[0]["reprogram"], fitted[0]["none"]
    x = base.splits.test.tensors[0][:32]
    with torch.no_grad():
        for chip in (EVAL_CHIP_BASE, EVAL_CHIP_BASE + 1):
            fresh = none.at(chip, 0.0)(x).clone()
            assert torch.equal(reprogram.at(chip, T10Y)(x), fresh)
            assert torch.equal(reprogram.at(chip, 1.0)(x), fresh)
        assert not torch.equal(none.at(EVAL_CHIP_BASE, T10Y)(x), fresh)


def test_vera_plus_extra_macs_against_rank_resnet20():
    """Linear in the rank: per position r*(in + 1 + out) + out, summed over ResNet-20's layers."""
    model, x = build_model("resnet20", num_classes=10), torch.zeros(1, 3, 32, 32)
    base = 40_551_040  # test_base_macs_golden_tiny_model_and_resnet20
    # per rank: conv1 32*32*(3+1+16), stage 1: 6 x 32*32*(16+1+16), stage 2: 16*16*(16+1+32) + 5 x 16*16*(32+1+32),
    # stage 3: 8*8*(32+1+64) + 5 x 8*8*(64+1+64), fc 64+1+10
    a = 1024 * 20 + 6 * 1024 * 33 + 256 * 49 + 5 * 256 * 65 + 64 * 97 + 5 * 64 * 129 + 75
    # λ_b: one multiply per output value: 1024*16 + 6*1024*16 + (6*256*32) + (6*64*64) + 10
    b = 1024 * 16 + 6 * 1024 * 16 + 6 * 256 * 32 + 6 * 64 * 64 + 10
    ratios = vera_plus_extra_macs(model, x, [1, 4, 16])
    assert ratios == {r: pytest.approx((a * r + b) / base, rel=1e-12) for r in (1, 4, 16)}
    for fraction in (0.019, 0.05, 0.2):
        rank = vera_plus_rank_for_macs(model, x, fraction)
        assert (a * rank + b) / base <= fraction < (a * (rank + 1) + b) / base
    assert vera_plus_rank_for_macs(model, x, 0.001) == 0  # below the λ_b floor nothing fits


def test_dora_budget_and_sample_errors(base):
    with pytest.raises(RramlibError, match="budget"):
        make_method("dora", budget=1e-6).fit(context(base))
    with pytest.raises(RramlibError, match="n_samples"):
        make_method("dora", n_samples=10_000).fit(context(base))


def test_dora_calibration_recovers_accuracy(base):
    ctx = context(base, "ibm_pcm")
    none, dora = make_method("none").fit(ctx), make_method("dora", steps=60, budget=0.05).fit(ctx)
    test = base.splits.test.tensors
    assert accuracy(dora.at(EVAL_CHIP_BASE, T10Y), test) > accuracy(none.at(EVAL_CHIP_BASE, T10Y), test) + 0.05


def test_dora_calibration_equals_stepping_the_whole_network(base):
    """Training one layer on its cached input gives the parameters of training it through the whole network
    (the loss reads only that layer's output; the layers before it are fixed while it trains)."""
    method = make_method("dora", steps=4, budget=0.05).fit(context(base, "ibm_pcm"))
    method.at(EVAL_CHIP_BASE, T10Y)
    fast = {k: v.clone() for k, v in method.adapters_.adapter_state_dict(ADAPTER).items()}
    # the reference: every step runs the whole network and reads the layer's output through a hook
    method.adapters_.load_adapter_state_dict(ADAPTER, method._initial)
    method.adapters_.reset_magnitude(ADAPTER)
    modules = dict(method.analog_.model.named_modules())
    with torch.enable_grad():
        for name, params in method._params_by_layer().items():
            out = {}
            handle = modules[name].register_forward_hook(lambda m, i, o: out.__setitem__("y", o))
            optimizer = torch.optim.Adam(params, lr=method.hparams.lr)
            for _ in range(method.hparams.steps):
                method.analog_.model(method.calib_inputs_)
                loss = F.mse_loss(out["y"], method.targets_[name])
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
            handle.remove()
    slow = method.adapters_.adapter_state_dict(ADAPTER)
    assert len(method.layers_) > 1 and fast.keys() == slow.keys()
    for key in fast:
        torch.testing.assert_close(fast[key], slow[key], rtol=0, atol=0)


# ----------------------------------------------------------------------------------------- storage and MACs
def test_storage_byte_arithmetic_golden():
    s = Storage(values_per_level=10, levels=4, shared_values=3, seed_bytes=8)
    # 10 * 4 + 3 = 43 values; fp32 43 * 4 + 8 = 180 B, fp16 43 * 2 + 8 = 94 B, int8 43 + 8 = 51 B
    assert s.total_values == 43
    assert [s.total_bytes(p) for p in ("fp32", "fp16", "int8")] == [180, 94, 51]
    assert [s.bytes_per_level(p) for p in ("fp32", "fp16", "int8")] == [40, 20, 10]
    row = s.as_dict()
    assert row["total_bytes_fp16"] == 94 and row["bytes_per_level_int8"] == 10 and row["total_values"] == 43
    assert set(PRECISION_BITS) == {"fp32", "fp16", "int8"}


def test_base_macs_golden_tiny_model_and_resnet20():
    tiny = nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), nn.Flatten(), nn.Linear(32, 3))
    # conv: 2 x 4 x 4 outputs x (1 x 3 x 3) = 288; linear: 3 x 32 = 96
    assert base_macs(tiny, torch.zeros(5, 1, 4, 4)) == 288 + 96
    resnet = build_model("resnet20", num_classes=10)
    # conv1 16*32*32*27 = 442,368; stage 1: 6 x 16*32*32*144 = 14,155,776; stage 2: 32*16*16*144 = 1,179,648
    # + 5 x 32*16*16*288 = 11,796,480; stage 3: 64*8*8*288 = 1,179,648 + 5 x 64*8*8*576 = 11,796,480;
    # fc 64*10 = 640 (option-A shortcuts have no weights): 40,551,040
    assert base_macs(resnet, torch.zeros(1, 3, 32, 32)) == 40_551_040


def test_macs_ratio_golden_for_vera_plus_on_a_tiny_model(base):
    """VeRA+ rank 4 per output position: r*in + r + out*r + out (A, λ_d, B, λ_b)."""
    tiny = nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), nn.Flatten(), nn.Linear(32, 3))
    ctx = FitContext(model=tiny, splits=base.splits, drift=make_drift_model("ibm_pcm"), schedule=log_windows(1),
                     train_chips=1)
    method = make_method("vera_plus", rank=4)
    method.setup(ctx)
    x = torch.zeros(1, 1, 4, 4)
    # conv at 16 positions: 16 x (4*1 + 4 + 2*4 + 2) = 288; linear: 4*32 + 4 + 3*4 + 3 = 147
    assert method.extra_macs(x) == 288 + 147
    assert method.macs_ratio(x) == pytest.approx((288 + 147) / (288 + 96))


def test_storage_hand_counts_on_the_smoke_model(fitted, base):
    fitted = fitted[0]
    layers = [m for _, m in rram_layers(base.model)]
    outs = sum(m.weight.shape[0] for m in layers)
    bn_features = sum(m.num_features for m in base.model.modules() if isinstance(m, torch.nn.BatchNorm2d))
    r = fitted["vera_plus"].params["rank"]
    assert fitted["vera_plus"].storage().values_per_level == outs + r * len(layers)
    assert fitted["vera_plus"].storage().levels == 2 and fitted["vera_plus"].storage().shared_values == 0
    assert fitted["vera_plus"].storage().seed_bytes == 8
    assert fitted["vera_plus_cross"].storage().values_per_level == max(m.weight.shape[0] for m in layers) + r
    assert fitted["bn"].storage().values_per_level == 2 * bn_features
    assert fitted["bn_finetune"].storage().values_per_level == 4 * bn_features
    assert fitted["offline_correction"].storage().values_per_level == sum(m.weight.numel() for m in layers)
    rl = fitted["lora"].params["rank"]
    assert fitted["lora"].storage().values_per_level == sum(rl * (m.weight[0].numel() + m.weight.shape[0]) for m in layers)
    assert fitted["lora_1x1"].storage().values_per_level == sum(rl * (m.weight.shape[1] + m.weight.shape[0])
                                                                 for m in layers)
    assert fitted["reprogram"].storage().total_values == sum(m.weight.numel() for m in layers)
    dora = fitted["dora"]
    inputs = dora.hparams.n_samples * base.splits.calib.tensors[0][0].numel()
    features = {}  # drift-free output size of every adapted layer on the calibration inputs
    hooks = [base.model.get_submodule(n).register_forward_hook(
        lambda m, i, o, n=n: features.__setitem__(n, o.numel())) for n in dora.layers_]
    with torch.no_grad(), eval_mode(base.model):
        base.model(base.splits.calib.tensors[0][stratified_pick(base.splits.calib.tensors[1], dora.hparams.n_samples)])
    for h in hooks:
        h.remove()
    targets = sum(features.values())
    assert dora.storage().calibration_values == targets and dora.storage().input_values == inputs
    assert dora.storage().online
    assert dora.storage().total_values == dora.storage().values_per_level + inputs + targets
    assert fitted["scale"].storage().shared_values == len(layers)
    assert fitted["scale_column"].storage().shared_values == outs
    assert fitted["none"].storage().total_bytes() == 0 and fitted["noise_aware"].storage().total_bytes() == 0


def test_smoke_sweep_vera_plus_beats_none_and_stores_less_per_level(tmp_path):
    config = SweepConfig(profile="smoke", preset="ibm_pcm", methods=("none", "vera_plus", "bn", "lora"),
                         method_params={"vera_plus": {"steps": 150}})
    result = run_sweep(config, cache=Cache(tmp_path), progress=False)
    acc = {}
    for r in result["records"]:
        if r["time_label"] == "10y":
            acc.setdefault(r["method"], []).append(r["accuracy"])
    mean = {k: sum(v) / len(v) for k, v in acc.items()}
    assert mean["vera_plus"] > mean["none"] + 0.05
    # per level: over all levels VeRA+'s shared projections (in SRAM, our reading) may outweigh BN's few levels
    storage = {k: v["storage"]["bytes_per_level_fp32"] for k, v in result["metadata"]["method_info"].items()}
    assert storage["vera_plus"] < storage["bn"] and storage["vera_plus"] < storage["lora"]
    levels = {r["time_label"]: r["level"] for r in result["records"] if r["method"] == "vera_plus"}
    assert levels == {"1s": "level0", "1d": "level1", "10y": "level1"}


def test_the_old_name_retrain_points_to_offline_correction():
    """``retrain`` was renamed (it is one correction per level for every chip, not an oracle): a clear error."""
    from rramlib.study.experiments import SweepConfig
    from rramlib.present.notebook import check_parameters

    for call in (lambda: make_method("retrain"), lambda: SweepConfig(profile="smoke", methods=("none", "retrain")),
                 lambda: check_parameters({"methods": ["retrain"]})):
        with pytest.raises(RramlibError, match="'retrain' is now called 'offline_correction'"):
            call()
    assert make_method("offline_correction").name == "offline_correction"


@pytest.mark.parametrize("readout", ["raw", "gdc"])
def test_noise_aware_injects_the_weights_the_deployed_chip_presents(base, readout):
    """Noise-aware training injects the drift of the chip it is deployed on: from the same generator state and at
    the same time, its injected weights are AnalogModel.weights_at's, the readout's α = r0 / r_t included."""
    ctx = context(base, readout=readout)
    layers = [m for _, m in rram_layers(base.model)]
    for seed, t in ((EVAL_CHIP_BASE, TIME_GRID["1d"]), (EVAL_CHIP_BASE + 1, T10Y)):
        injectors = drift_injectors(base.model, ctx, torch.Generator().manual_seed(seed))
        chip = dict(ctx.analog(seed=seed).weights_at(t))
        with torch.no_grad():
            injected = []
            for injector, module in zip(injectors, layers):
                injector.time = t
                injected.append(injector(module.weight))
        for w, (name, expected) in zip(injected, chip.items()):
            torch.testing.assert_close(w, expected, rtol=1e-6, atol=1e-7)
        if readout == "gdc":  # the readout's α did act
            raw = dict(context(base).analog(seed=seed).weights_at(t))
            assert not torch.allclose(injected[0], next(iter(raw.values())))
