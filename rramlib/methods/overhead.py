"""Storage and compute accounting shared by every compensation method.

Storage counts every value a method must keep, per drift level and in total over K levels,
in bytes at a stated precision; what is shared by all levels and what is regenerable from a
seed are counted apart. Random projections regenerable from a seed (VeRA+'s A and B) are read two
ways (:data:`PROJECTION_READINGS`): kept in SRAM (stored, or regenerated once at power-up
into SRAM), or regenerated at every inference from the seed (the seed and the generator's state are
kept, and the draws and their scaling are work per inference). Stored input images (BN recalibrated in
the field, DoRA's calibration inputs) are counted at one pixel precision, :data:`PIXEL_BITS`, whatever
the precision of the parameters. Compute counts the extra multiply-accumulates (MACs) of one inference
relative to the base network's.
"""
from __future__ import annotations

import copy
import math
from dataclasses import asdict, dataclass

import torch
from torch import nn

from rramlib.methods.adapters import add_vera_plus
from rramlib.core.errors import RramlibError, check_positive
from rramlib.core.torchutil import eval_mode

__all__ = ["Storage", "base_macs", "input_bits", "PRECISION_BITS", "PIXEL_BITS", "TOKEN_BITS", "PROJECTION_READINGS",
           "OUR_READING", "MT19937_STATE_BYTES", "vera_plus_extra_macs", "vera_plus_rank_for_macs"]

#: Precisions reported for stored values (bits per value).
PRECISION_BITS = {"fp32": 32, "fp16": 16, "int8": 8}
#: Bits per stored input value (pixel), for every method that keeps input images on the chip: the precision
#: of the source images (CIFAR-10's pixels are 8-bit; the digits' 0-16 grey levels fit in 8 bits), so keeping
#: them at 8 bits loses nothing. Ours: the study states no precision.
PIXEL_BITS = 8
#: Bits per stored input value of a language model (token ids and the attention mask of a packed sequence): a
#: 16-bit unsigned integer holds any id of a vocabulary of up to 65,536 entries (BERT's uncased one has 30,522).
#: Ours: the study states no precision.
TOKEN_BITS = 16
#: How random projections regenerable from a seed are counted: label -> what the chip keeps.
PROJECTION_READINGS = {
    "sram": "A and B kept in SRAM (stored, or regenerated once at power-up into SRAM): their values are counted",
    "regenerated": "A and B regenerated at every inference: the seed and the generator's state are counted, and "
                   "the draws and their Kaiming scaling are work per inference",
}
#: Our reading of the study's "reuses shared projection matrices": matrices that are *reused* are kept, so A and B
#: sit in SRAM (stored, or regenerated once at power-up into SRAM; the same SRAM either way). Every storage total
#: counts this reading unless told otherwise; the claims page shows the per-inference regeneration beside it.
OUR_READING = "sram"
#: State of the generator that reproduces rramlib's (and peft's) projections bit for bit: torch's CPU generator is
#: the Mersenne Twister MT19937, 624 words of 32 bits (Matsumoto & Nishimura, ACM TOMACS 1998).
MT19937_STATE_BYTES = 624 * 4


@dataclass(frozen=True)
class Storage:
    """What a compensation method keeps in digital memory (SRAM).

    values_per_level : values stored for each drift level (e.g. VeRA+'s λ_b and λ_d).
    levels : number of drift levels K (1 for methods without levels).
    shared_values : values stored once and used at every level.
    seed_bytes : bytes of seeds from which shared random tensors are regenerated (not stored as values).
    calibration_values : data a method calibrating in the field keeps on the chip besides its parameters and
        its input images (e.g. DoRA's drift-free targets); the network does not read them.
    input_values : input values kept on the chip to calibrate it (e.g. DoRA's calibration inputs), counted at
        ``input_bits`` whatever the precision.
    input_bits : bits per stored input value: :data:`PIXEL_BITS` for images, :data:`TOKEN_BITS` for token
        sequences (:func:`input_bits`).
    projection_values : values of the random projections regenerated from ``seed_bytes`` (VeRA+'s A and B);
        counted only under a projection reading (:meth:`total_bytes`).
    generator_state_bytes : state of the generator that regenerates them (:data:`MT19937_STATE_BYTES`).
    online : whether the method trains in the field, per chip (then its parameters are that chip's).
    """

    values_per_level: int
    levels: int = 1
    shared_values: int = 0
    seed_bytes: int = 0
    calibration_values: int = 0
    input_values: int = 0
    input_bits: int = PIXEL_BITS
    projection_values: int = 0
    generator_state_bytes: int = 0
    online: bool = False

    @property
    def total_values(self) -> int:
        """Every value kept in SRAM besides the regenerable projections (the count of ``Method.sram_tensors``)."""
        return self.values_per_level * self.levels + self.shared_values + self.calibration_values + self.input_values

    def bytes_per_level(self, precision: str = "fp32") -> float:
        return self.values_per_level * PRECISION_BITS[precision] / 8

    def total_bytes(self, precision: str = "fp32", projections: str | None = OUR_READING) -> float:
        """Bytes of everything kept: values at ``precision``, inputs at ``input_bits``, seeds.

        ``projections`` (:data:`PROJECTION_READINGS`): ``"sram"`` (the default, :data:`OUR_READING`) adds the
        projections' values at ``precision`` to the seed (SRAM forgets at power-off: the seed refills them);
        ``"regenerated"`` adds the generator's state to the seed; ``None`` counts the seed alone (neither reading:
        how earlier builds counted VeRA+).
        """
        if projections is not None and projections not in PROJECTION_READINGS:
            raise RramlibError(f"projections must be one of {sorted(PROJECTION_READINGS)} or None, got {projections!r}")
        bits = PRECISION_BITS[precision]
        values = (self.total_values - self.input_values) * bits / 8 + self.input_values * self.input_bits / 8
        if projections == "sram":
            return values + self.projection_values * bits / 8 + self.seed_bytes
        if projections == "regenerated":
            return values + self.seed_bytes + self.generator_state_bytes
        return values + self.seed_bytes

    def regeneration_ops(self) -> dict[str, int]:
        """Work per inference under the ``"regenerated"`` reading: one random draw and one multiply-add (the
        Kaiming-uniform scaling ``u·2b − b``) per projection value (our count of the generator's work)."""
        return {"draws": self.projection_values, "macs": self.projection_values}

    def as_dict(self) -> dict:
        row = asdict(self)
        row["total_values"] = self.total_values
        for p in PRECISION_BITS:
            row[f"bytes_per_level_{p}"] = self.bytes_per_level(p)
            row[f"total_bytes_{p}"] = self.total_bytes(p)
        return row


def input_bits(inputs: torch.Tensor) -> int:
    """Bits per value to store ``inputs`` on the chip: :data:`PIXEL_BITS` for images (floating point),
    :data:`TOKEN_BITS` for token sequences (integers)."""
    return PIXEL_BITS if inputs.is_floating_point() else TOKEN_BITS


@torch.no_grad()
def base_macs(model: nn.Module, example: torch.Tensor) -> int:
    """MACs of one sample through every Conv2d and Linear (the layers on RRAM), via forward hooks: every output
    pixel of a convolution, every token of a Linear layer applied to a sequence. Products of two activations
    (a transformer's attention scores and their weighted sum) are not layers on RRAM and are not counted."""
    total = 0

    def hook(module, inputs, output):
        nonlocal total
        if isinstance(module, nn.Conv2d):
            per_output = module.in_channels // module.groups * module.kernel_size[0] * module.kernel_size[1]
            total += output[0].numel() * per_output
        else:
            total += output[0].numel() * module.in_features

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    try:
        with eval_mode(model):
            model(example[:1])
    finally:
        for h in handles:
            h.remove()
    return total


def _linear_in_rank(model: nn.Module, example: torch.Tensor, targets) -> tuple[int, int]:
    """VeRA+'s extra MACs are ``a·r + b`` (per position ``r·(in + 1 + out) + out``): return ``(a, b)``."""
    counts = []
    for rank in (1, 2):
        ctrl = add_vera_plus(copy.deepcopy(model), rank=rank, targets=targets)
        counts.append(ctrl.extra_macs(example[:1]))
    return counts[1] - counts[0], 2 * counts[0] - counts[1]


def vera_plus_extra_macs(model: nn.Module, example: torch.Tensor, ranks, targets=None) -> dict[int, float]:
    """VeRA+'s extra MACs as a fraction of ``model``'s (:func:`base_macs`), per rank; no training needed.

    ``targets``: the adapted layers (default: every Conv2d and Linear). ``model`` is not changed.
    """
    a, b = _linear_in_rank(model, example, targets)
    base = base_macs(model, example)
    return {int(r): (a * int(r) + b) / base for r in ranks}


def vera_plus_rank_for_macs(model: nn.Module, example: torch.Tensor, fraction: float, targets=None) -> int:
    """The largest rank whose VeRA+ extra MACs stay within ``fraction`` of ``model``'s MACs (0: none fits)."""
    check_positive("fraction", fraction)
    a, b = _linear_in_rank(model, example, targets)
    base = base_macs(model, example)
    if a <= 0:
        raise RramlibError("VeRA+ adds no MACs per rank on this model")
    return max(0, math.floor((fraction * base - b) / a))
