"""Storage and compute accounting shared by every compensation method.

Storage counts every value a method must keep, per drift level and in total over K levels,
in bytes at a stated precision; what is shared by all levels and what is regenerable from a
seed (and so costs only the seed) are counted apart. Compute counts the extra
multiply-accumulates (MACs) of one inference relative to the base network's.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn

__all__ = ["Storage", "base_macs", "PRECISION_BITS"]

#: Precisions reported for stored values (bits per value).
PRECISION_BITS = {"fp32": 32, "fp16": 16, "int8": 8}


@dataclass(frozen=True)
class Storage:
    """What a compensation method keeps in digital memory (SRAM).

    values_per_level : values stored for each drift level (e.g. VeRA+'s λ_b and λ_d).
    levels : number of drift levels K (1 for methods without levels).
    shared_values : values stored once and used at every level.
    seed_bytes : bytes of seeds from which shared random tensors are regenerated (not stored as values).
    """

    values_per_level: int
    levels: int = 1
    shared_values: int = 0
    seed_bytes: int = 0

    @property
    def total_values(self) -> int:
        return self.values_per_level * self.levels + self.shared_values

    def bytes_per_level(self, precision: str = "fp32") -> float:
        return self.values_per_level * PRECISION_BITS[precision] / 8

    def total_bytes(self, precision: str = "fp32") -> float:
        return self.total_values * PRECISION_BITS[precision] / 8 + self.seed_bytes

    def as_dict(self) -> dict:
        row = asdict(self)
        row["total_values"] = self.total_values
        for p in PRECISION_BITS:
            row[f"bytes_per_level_{p}"] = self.bytes_per_level(p)
            row[f"total_bytes_{p}"] = self.total_bytes(p)
        return row


@torch.no_grad()
def base_macs(model: nn.Module, example: torch.Tensor) -> int:
    """MACs of one sample through every Conv2d and Linear (the layers on RRAM), via forward hooks."""
    total = 0

    def hook(module, inputs, output):
        nonlocal total
        if isinstance(module, nn.Conv2d):
            per_output = module.in_channels // module.groups * module.kernel_size[0] * module.kernel_size[1]
            total += output[0].numel() * per_output
        else:
            total += output[0].numel() * module.in_features

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    was_training = model.training
    try:
        model.eval()
        model(example[:1])
    finally:
        model.train(was_training)
        for h in handles:
            h.remove()
    return total
