"""Weights <-> conductances (rramlib.device.mapping; equations in its module docstring and the book's "Device models")."""
from __future__ import annotations

import dataclasses

import pytest
import torch

from rramlib.core.errors import RramlibError
from rramlib.device.mapping import Mapping

SHAPES = {"linear": (16, 12), "conv": (8, 4, 3, 3), "bias": (10,)}
G_MIN, G_MAX = 9.0, 88.2


def _weights(shape, seed=0):
    w = torch.randn(shape, generator=torch.Generator().manual_seed(seed))
    if len(shape) > 1:
        w[1] *= 10.0  # channels of very different scale, so per-channel matters
    return w


def _w_max_like(w, w_max):
    return w_max.expand_as(w) if w_max.dim() else w_max.expand(w.shape)


@pytest.mark.parametrize("kind", ["differential", "single"])
@pytest.mark.parametrize("per_channel", [False, True])
@pytest.mark.parametrize("shape_name", list(SHAPES))
def test_round_trip_exact_and_in_range(kind, per_channel, shape_name):
    """to_weight(to_conductance(w)) == w within 1e-6 of w_max; g in [g_min, g_max]; shapes as documented."""
    shape = SHAPES[shape_name]
    w = _weights(shape)
    m = Mapping(G_MIN, G_MAX, kind=kind, per_channel=per_channel)
    g, w_max = m.to_conductance(w)
    assert g.shape == ((2, *shape) if kind == "differential" else shape)
    assert g.dtype == w.dtype
    assert float(g.min()) >= G_MIN and float(g.max()) <= G_MAX
    if per_channel:
        assert w_max.shape == (shape[0],) + (1,) * (len(shape) - 1)
        assert torch.equal(w_max.flatten(), w.abs().reshape(shape[0], -1).amax(1))
    else:
        assert w_max.dim() == 0 and float(w_max) == float(w.abs().max())
    back = m.to_weight(g, w_max)
    assert back.shape == w.shape
    assert torch.all((back - w).abs() <= 1e-6 * _w_max_like(w, w_max))
    # the largest weight of each scale group reaches the end of the range
    if kind == "differential":
        assert float(g.max()) == pytest.approx(G_MAX, abs=1e-5)
        # one device of each pair sits at g_min
        assert torch.all(torch.minimum(g[0], g[1]) == G_MIN)


@pytest.mark.parametrize("kind", ["differential", "single"])
def test_equations(kind):
    """Hand-checked values of the mapping equations (g_min=10, g_max=110, w_max=2)."""
    m = Mapping(10.0, 110.0, kind=kind)
    w = torch.tensor([-2.0, -1.0, 0.0, 0.5, 2.0])
    g, w_max = m.to_conductance(w)
    assert float(w_max) == 2.0
    if kind == "differential":
        assert torch.allclose(g[0], torch.tensor([10.0, 10.0, 10.0, 35.0, 110.0]))
        assert torch.allclose(g[1], torch.tensor([110.0, 60.0, 10.0, 10.0, 10.0]))
    else:
        assert torch.allclose(g, torch.tensor([10.0, 35.0, 60.0, 72.5, 110.0]))


@pytest.mark.parametrize("kind", ["differential", "single"])
@pytest.mark.parametrize("per_channel", [False, True])
def test_zero_weights_use_w_max_one(kind, per_channel):
    w = torch.zeros(4, 3)
    w[2] = torch.tensor([1.0, -3.0, 0.5])
    m = Mapping(0.0, 10.0, kind=kind, per_channel=per_channel)
    g, w_max = m.to_conductance(w)
    if per_channel:
        assert w_max.flatten().tolist() == [1.0, 1.0, 3.0, 1.0]
    else:
        assert float(w_max) == 3.0
    assert torch.allclose(m.to_weight(g, w_max), w, atol=1e-6)
    g0, w_max0 = m.to_conductance(torch.zeros(5))
    assert torch.all(w_max0 == 1.0)
    expected = 0.0 if kind == "differential" else 5.0
    assert torch.all(g0 == expected)


@pytest.mark.parametrize("kind", ["differential", "single"])
@pytest.mark.parametrize("n_conductance_states", [2, 5, 16])
def test_quantisation(kind, n_conductance_states):
    """At most n_conductance_states distinct conductances, all on the grid of states, error <= half a step."""
    w = _weights((32, 16), seed=1)
    exact = Mapping(G_MIN, G_MAX, kind=kind)
    quant = Mapping(G_MIN, G_MAX, kind=kind, n_conductance_states=n_conductance_states)
    g_exact, w_max = exact.to_conductance(w)
    g_q, w_max_q = quant.to_conductance(w)
    assert torch.equal(w_max, w_max_q)
    assert g_q.unique().numel() <= n_conductance_states
    step = (G_MAX - G_MIN) / (n_conductance_states - 1)
    assert quant.step == pytest.approx(step)
    k = (g_q - G_MIN) / step
    assert torch.allclose(k, k.round(), atol=1e-4)
    assert float((g_q - g_exact).abs().max()) <= step / 2 + 1e-4
    assert float(g_q.min()) >= G_MIN and float(g_q.max()) <= G_MAX + 1e-4


def test_common_shift_cancels_in_differential_not_in_single():
    """A shift common to all conductances cancels in G+ - G-, not in a single device."""
    w = _weights((8, 4, 3, 3), seed=2)
    delta = 1.5
    diff = Mapping(G_MIN, G_MAX, kind="differential")
    g, w_max = diff.to_conductance(w)
    assert torch.allclose(diff.to_weight(g + delta, w_max), w, atol=1e-5 * float(w_max))
    single = Mapping(G_MIN, G_MAX, kind="single")
    g, w_max = single.to_conductance(w)
    shifted = single.to_weight(g + delta, w_max)
    expected_offset = delta * 2 * float(w_max) / (G_MAX - G_MIN)
    assert torch.allclose(shifted - w, torch.full_like(w, expected_offset), atol=1e-5 * float(w_max))


def test_gradient_passes_straight_through():
    """w_max is treated as a constant, so d to_weight(to_conductance(w)) / dw = 1 (useful for drift injection)."""
    for kind in ("differential", "single"):
        w = _weights((6, 5), seed=3).requires_grad_(True)
        m = Mapping(G_MIN, G_MAX, kind=kind, per_channel=True)
        m.to_weight(*m.to_conductance(w)).sum().backward()
        assert torch.allclose(w.grad, torch.ones_like(w))


def test_for_drift_model_and_frozen():
    class Device:
        g_min, g_max, default_mapping = 9.0, 88.2, "single"

    m = Mapping.for_drift_model(Device(), n_conductance_states=8)
    assert (m.g_min, m.g_max, m.kind, m.n_conductance_states, m.devices_per_weight) == (9.0, 88.2, "single", 8, 1)
    with pytest.raises(dataclasses.FrozenInstanceError):
        m.g_min = 1.0  # type: ignore[misc]


@pytest.mark.parametrize("kwargs", [
    {"g_min": 10.0, "g_max": 10.0},
    {"g_min": 20.0, "g_max": 10.0},
    {"g_min": -1.0, "g_max": 10.0},
    {"g_min": 0.0, "g_max": float("nan")},
    {"g_min": "0", "g_max": 10.0},
    {"g_min": True, "g_max": 10.0},
    {"g_min": 0.0, "g_max": 10.0, "kind": "pair"},
    {"g_min": 0.0, "g_max": 10.0, "n_conductance_states": 1},
    {"g_min": 0.0, "g_max": 10.0, "n_conductance_states": 2.5},
    {"g_min": 0.0, "g_max": 10.0, "n_conductance_states": True},
    {"g_min": 0.0, "g_max": 10.0, "per_channel": 1},
])
def test_bad_mapping_arguments(kwargs):
    with pytest.raises(RramlibError):
        Mapping(**kwargs)


def test_bad_tensors():
    m = Mapping(0.0, 10.0)
    with pytest.raises(RramlibError):
        m.to_conductance([1.0, 2.0])
    with pytest.raises(RramlibError):
        m.to_conductance(torch.tensor([1, 2]))
    with pytest.raises(RramlibError):
        m.to_conductance(torch.tensor([1.0, float("nan")]))
    with pytest.raises(RramlibError):
        Mapping(0.0, 10.0, per_channel=True).to_conductance(torch.tensor(1.0))
    with pytest.raises(RramlibError):
        m.to_weight(torch.ones(3, 4), torch.tensor(1.0))  # differential needs a leading dim of 2
