"""rramlib.study.seu: the SRAM state of a fitted method, grouped by layer, and its single-bit-flip records.

The golden values come from a network small enough to work out by hand: two classes, logits
``x * scale + shift`` with ``scale = [1, 1]`` (drift level ``level1``) and ``shift = [0, 0]`` (shared), and
four samples on which no flip studied here leaves a tie between the two logits.
"""
from __future__ import annotations

import pytest
import torch
from torch import nn

from rramlib.core.errors import RramlibError
from rramlib.device.faults import Remedy
from rramlib.study.seu import single_flip_records, sram_layers

X = torch.tensor([[2.5, 1.0], [1.0, 2.5], [6.0, 1.0], [1.0, 6.0]])
Y = torch.tensor([0, 1, 0, 1])
REMEDIES = {"none": Remedy(), "protect": Remedy(protect_bits=(30, 31)), "clamp": Remedy(range_check="clamp")}

#: fp32 bit -> accuracy drop of flipping it in an entry of ``scale`` (1.0): the sign bit (-1) and the top
#: exponent bit (inf) misclassify one class; clearing exponent bit 23 + k divides by 2**(2**k): by 2 nothing
#: changes, by 4 one sample (2.5/4 < 1) fails, by 16 or more both samples of that class; the mantissa bits
#: keep the value in [1, 2), where nothing changes.
SCALE_DROP = {**{b: 0.0 for b in range(24)}, 24: 0.25, **{b: 0.5 for b in range(25, 32)}}
#: the same for an entry of ``shift`` (0.0): only the top exponent bit matters (0 -> 2, and 1 + 2 > 2.5);
#: every other bit leaves -0, a subnormal or at most 2**-63.
SHIFT_DROP = {**{b: 0.0 for b in range(32)}, 30: 0.25}


class Head(nn.Module):
    def __init__(self, scale: torch.Tensor, shift: torch.Tensor):
        super().__init__()
        self.scale, self.shift = scale, shift  # the live tensors, not copies

    def forward(self, x):
        return x * self.scale + self.shift


class FittedMethod:
    """What single_flip_records reads of a fitted method: ``at`` and ``sram_tensors``."""

    def __init__(self):
        self.scale, self.shift = torch.ones(2), torch.zeros(2)
        self.calls = []

    def at(self, chip_seed, t):
        self.calls.append(("at", chip_seed, t))
        return Head(self.scale, self.shift)

    def sram_tensors(self, t):
        self.calls.append(("sram_tensors", t))
        return {"level1/a.scale": self.scale, "shared/b.shift": self.shift}


@pytest.fixture(scope="module")
def flips():
    method = FittedMethod()
    out = single_flip_records("toy", method, chip_seed=7, t=3.0, test=(X, Y), fmt="fp32", remedies=REMEDIES,
                              n_params=2, seed=0)
    return method, out


def test_single_flip_records_golden(flips):
    method, (baseline, records, sizes) = flips
    assert baseline == 1.0
    assert sizes == [2, 2]
    assert method.calls == [("at", 7, 3.0), ("sram_tensors", 3.0)]  # chip 7 at t = 3 s, the state read at t
    # n_params=2 over two layers: one entry of each, every bit, every remedy
    assert len(records) == 2 * 32 * len(REMEDIES)
    assert {(r["method"], r["format"]) for r in records} == {("toy", "fp32")}
    assert [(r["layer"], r["group"], r["index"]) for r in records[::32 * len(REMEDIES)]] == [
        ("a", "a.scale", 1), ("b", "b.shift", 0)]  # seed 0, each layer its own "fault_sites" stream
    drops = {(r["layer"], r["remedy"], r["bit"]): r["drop"] for r in records}
    for layer, golden in (("a", SCALE_DROP), ("b", SHIFT_DROP)):
        assert {b: drops[layer, "none", b] for b in range(32)} == golden, layer
        assert {b: drops[layer, "protect", b] for b in range(32)} == {**golden, 30: 0.0, 31: 0.0}, layer
        assert {b: drops[layer, "clamp", b] for b in range(32)} == dict.fromkeys(range(32), 0.0), layer
    assert all(r["accuracy"] == baseline - r["drop"] for r in records)


def test_single_flip_records_leave_the_state_bit_for_bit(flips):
    method, _ = flips
    assert torch.equal(method.scale, torch.ones(2)) and torch.equal(method.shift, torch.zeros(2))
    assert not torch.signbit(method.shift).any()  # not -0.0


def test_values_are_split_evenly_over_the_layers():
    """n_params=3 over two layers of two values: ceil(3/2) = 2 per layer, i.e. every entry."""
    _, records, _ = single_flip_records("toy", FittedMethod(), chip_seed=0, t=1.0, test=(X, Y), fmt="fp16",
                                        remedies={"none": Remedy()}, n_params=3, seed=0)
    assert sorted({(r["group"], r["index"]) for r in records}) == [
        ("a.scale", 0), ("a.scale", 1), ("b.shift", 0), ("b.shift", 1)]
    assert len(records) == 4 * 16 and {r["format"] for r in records} == {"fp16"}


def test_a_remedy_the_format_cannot_hold_is_refused():
    with pytest.raises(RramlibError, match="bit"):
        single_flip_records("toy", FittedMethod(), chip_seed=0, t=1.0, test=(X, Y), fmt="int8",
                            remedies={"p": Remedy(protect_bits=(31,))}, n_params=1, seed=0)


def test_sram_layers_group_the_state_by_layer():
    class Fake:
        def sram_tensors(self, t):
            return {"level1/conv1.lambda_b": torch.zeros(4), "level1/conv1.lambda_d": torch.zeros(2),
                    "level1/fc.lambda_b": torch.zeros(3), "shared/lambda_d": torch.zeros(2)}

    layers = sram_layers(Fake(), 1.0)
    assert {k: sorted(v) for k, v in layers.items()} == {
        "conv1": ["conv1.lambda_b", "conv1.lambda_d"], "fc": ["fc.lambda_b"], "lambda_d": ["lambda_d"]}
