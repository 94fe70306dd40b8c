import pytest
import torch
from torch import nn

from rramlib.device.analog import AnalogModel, rram_layers
from rramlib.device.drift import PRESETS, make_drift_model
from rramlib.core.errors import RramlibError
from rramlib.core.times import TIME_GRID


def small_cnn():
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1, bias=False), nn.BatchNorm2d(4), nn.ReLU(),
        nn.Conv2d(4, 8, 3, stride=2, padding=1), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 3),
    ).eval()


def weights(module):
    return [m.weight.detach().clone() for _, m in rram_layers(module)]


@pytest.mark.parametrize("preset", list(PRESETS))
def test_same_chip_has_one_trajectory(preset):
    analog = AnalogModel(small_cnn(), preset, seed=3)
    for t in (1.0, TIME_GRID["1d"], TIME_GRID["10y"]):
        first = weights(analog.at(t))
        analog.at(2.0)
        again = weights(analog.at(t))
        assert all(torch.equal(a, b) for a, b in zip(first, again))
    # reprogramming with the same seed rebuilds the same chip, another seed another chip
    w10 = weights(analog.at(TIME_GRID["10y"]))
    assert all(torch.equal(a, b) for a, b in zip(w10, weights(AnalogModel(small_cnn(), preset, seed=3).at(TIME_GRID["10y"]))))
    other = weights(AnalogModel(small_cnn(), preset, seed=4).at(TIME_GRID["10y"]))
    assert not any(torch.equal(a, b) for a, b in zip(w10, other))


def test_time_zero_is_the_programmed_network():
    net = small_cnn()
    analog = AnalogModel(net, "relative_gaussian", seed=0)  # no programming noise in this preset
    for ref, w in zip(weights(net), weights(analog.at(0))):
        torch.testing.assert_close(w, ref, rtol=1e-5, atol=1e-6)
    x = torch.randn(2, 1, 8, 8)
    torch.testing.assert_close(analog.model(x), net(x), rtol=1e-4, atol=1e-5)


def test_drift_grows_with_time_and_software_model_is_untouched():
    net = small_cnn()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    analog = AnalogModel(net, "relative_gaussian", seed=0)
    errors = []
    for t in TIME_GRID.values():
        errors.append(sum(float((w - r).pow(2).sum()) for w, r in zip(weights(analog.at(t)), weights(net))))
    assert all(a < b for a, b in zip(errors, errors[1:]))
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())
    # digital parts are exact: biases and BatchNorm are never drifted
    drifted = analog.at(TIME_GRID["10y"])
    assert torch.equal(drifted[3].bias, net[3].bias) and torch.equal(drifted[1].weight, net[1].weight)


def test_drift_free_restores_reference_and_devices_are_counted():
    net = small_cnn()
    analog = AnalogModel(net, "ibm_pcm", seed=1)
    analog.at(TIME_GRID["1y"])
    assert all(torch.equal(a, b) for a, b in zip(weights(analog.drift_free()), weights(net)))
    n_weights = sum(m.weight.numel() for _, m in rram_layers(net))
    assert analog.num_devices() == 2 * n_weights  # differential pair
    single = AnalogModel(net, "ibm_cmo_reram", seed=1)
    assert single.mapping.kind == "single" and single.num_devices() == n_weights


def test_wrapped_layers_keep_seeing_the_drift():
    """Adapters wrap analog.model's layers; at(t) must still reach the wrapped weights."""
    analog = AnalogModel(small_cnn(), "relative_gaussian", seed=0)
    layer = analog.model[7]
    analog.model[7] = nn.Sequential(layer)  # a stand-in wrapper
    w1 = layer.weight.clone()
    analog.at(TIME_GRID["10y"])
    assert not torch.equal(layer.weight, w1)


def test_layer_selection_and_errors():
    net = small_cnn()
    analog = AnalogModel(net, "relative_gaussian", seed=0, layers=["7"])
    assert analog.layer_names == ["7"]
    assert torch.equal(analog.at(TIME_GRID["10y"])[0].weight, net[0].weight)
    with pytest.raises(RramlibError, match="no Conv2d/Linear layer named"):
        AnalogModel(net, "relative_gaussian", seed=0, layers=["nope"])
    with pytest.raises(RramlibError, match="unknown preset .nonsense."):
        AnalogModel(net, "nonsense", seed=0)
    with pytest.raises(RramlibError):
        AnalogModel(net, "relative_gaussian", seed=0).at(-1.0)
    with pytest.raises(RramlibError):
        AnalogModel(net, "relative_gaussian", seed="0")
    with pytest.raises(RramlibError):
        AnalogModel(nn.ReLU(), "relative_gaussian", seed=0)
    with pytest.raises(RramlibError):
        AnalogModel(net, make_drift_model("ibm_pcm"), seed=0, drift_params={"drift_scale": 2.0})


# ------------------------------------------------------------------ readout "gdc": global drift compensation
def _alpha_by_definition(raw: AnalogModel, t: float, n_probe: int = 64, probe_seed: int = 0) -> dict:
    """aihwkit's GlobalDriftCompensation written out: α = r0 / r_t, r = mean over probes and columns of |W p|, the
    probes standard normals from one generator seeded ``probe_seed``, layer after layer."""
    gen = torch.Generator().manual_seed(probe_seed)
    w0, wt = dict(raw.weights_at(0.0)), dict(raw.weights_at(t))
    alphas = {}
    for name in raw.layer_names:
        probe = torch.randn(w0[name][0].numel(), n_probe, generator=gen)
        alphas[name] = (w0[name].flatten(1) @ probe).abs().mean() / (wt[name].flatten(1) @ probe).abs().mean()
    return alphas


@pytest.mark.parametrize("preset", list(PRESETS))
def test_gdc_readout_multiplies_each_layer_by_r0_over_rt(preset):
    raw = AnalogModel(small_cnn(), preset, seed=5)
    gdc = AnalogModel(small_cnn(), preset, seed=5, readout="gdc")
    assert (raw.readout, gdc.readout) == ("raw", "gdc") and "readout='gdc'" in repr(gdc)
    for t in (TIME_GRID["1d"], TIME_GRID["10y"]):
        alphas, expected = gdc.alphas_at(t), _alpha_by_definition(raw, t)
        assert all(alphas[n].dim() == 0 for n in gdc.layer_names)  # global: one α per layer
        torch.testing.assert_close(alphas, expected, rtol=1e-5, atol=0)
        presented = dict(gdc.weights_at(t))
        for name, w in raw.weights_at(t):
            assert torch.equal(presented[name], w * alphas[name])  # the same chip, read through α
        assert all(torch.equal(a, b) for a, b in zip(weights(gdc.at(t)), presented.values()))
        assert all(torch.equal(a, torch.ones(())) for a in raw.alphas_at(t).values())  # raw: no correction
    if preset == "ibm_pcm":  # PCM conductances decay: α grows above 1
        assert all(float(a) > 1.05 for a in gdc.alphas_at(TIME_GRID["10y"]).values())
    # the software reference carries no readout
    assert all(torch.equal(a, b) for a, b in zip(weights(gdc.drift_free()), weights(small_cnn())))


@pytest.mark.parametrize("preset", list(PRESETS))
def test_gdc_alpha_is_exactly_one_without_drift(preset):
    """At t = 0 (every preset), and at ten years on a preset whose drift is scaled to zero, the chip reads exactly
    its programmed state, so α = r0 / r0 = 1 and the weights are the raw ones, bit for bit."""
    chips = [(AnalogModel(small_cnn(), preset, seed=2, readout=r), 0.0) for r in ("raw", "gdc")]
    if preset == "relative_gaussian":
        chips.append((AnalogModel(small_cnn(), preset, seed=2, drift_params={"drift_scale": 0.0}, readout="gdc"),
                      TIME_GRID["10y"]))
    (raw, _), *gdc = chips
    w0 = dict(raw.weights_at(0.0))
    for chip, t in gdc:
        assert all(torch.equal(a, torch.ones(())) for a in chip.alphas_at(t).values())
        assert all(torch.equal(w, w0[name]) for name, w in chip.weights_at(t))


def test_bad_readout_is_refused_before_any_work():
    with pytest.raises(RramlibError, match="unknown readout 'gdc2'; choose one of: gdc, raw"):
        AnalogModel(nn.ReLU(), "nonsense", seed=0, readout="gdc2")  # neither the model nor the preset is looked at
    with pytest.raises(RramlibError, match="unknown readout"):
        AnalogModel(small_cnn(), "ibm_pcm", seed=0, readout=None)
