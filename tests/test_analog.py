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
