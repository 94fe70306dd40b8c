"""Memory of a Hidden-Fold Network (:mod:`rramlib.nn.hidden_fold`) against that of a dense network.

An HFN stores one bit per weight position (its supermask, a folded layer once), the seed its random
signed-constant weights are regenerated from, and its BatchNorm values; a dense network stores every weight,
bias and BatchNorm value. Both are counted with the :class:`~rramlib.methods.overhead.Storage` conventions of
the compensation methods (values at a stated precision, seeds apart), so the HFN chapter's memory figure and
the methods' storage tables use one rule.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from torch import nn

from rramlib.core.errors import RramlibError
from rramlib.methods.overhead import PRECISION_BITS, Storage
from rramlib.nn.hidden_fold import HFNResNet, supermask_layers

__all__ = ["HFNMemory", "hfn_memory", "dense_memory", "SEED_BYTES"]

#: Bytes of the one seed from which every layer's random signs are regenerated (a 64-bit integer).
SEED_BYTES = 8


def _bn_values(model: nn.Module) -> int:
    """Values a BatchNorm layer keeps for inference: running mean and variance, plus γ and β if affine."""
    return sum((4 if m.affine else 2) * m.num_features for m in model.modules() if isinstance(m, nn.BatchNorm2d))


@dataclass(frozen=True)
class HFNMemory:
    """Memory of an HFN: one bit per weight position (packed), plus ``digital`` (BatchNorm values at the
    stated precision and the seed of the random weights, as a :class:`~rramlib.methods.overhead.Storage`)."""

    mask_bits: int
    digital: Storage

    @property
    def mask_bytes(self) -> int:
        return math.ceil(self.mask_bits / 8)

    def total_bytes(self, precision: str = "fp32") -> float:
        return self.mask_bytes + self.digital.total_bytes(precision)

    def as_dict(self) -> dict:
        row = {"mask_bits": self.mask_bits, "mask_bytes": self.mask_bytes, **self.digital.as_dict()}
        row.update({f"total_bytes_{p}": self.total_bytes(p) for p in PRECISION_BITS})
        return row


def hfn_memory(model: HFNResNet) -> HFNMemory:
    """What an HFN must store: the mask of every distinct supermask layer (a folded layer once), the seed,
    and its BatchNorm values. The weights themselves cost nothing (regenerated from the seed)."""
    layers = supermask_layers(model)
    if not layers:
        raise RramlibError("hfn_memory needs a network with supermask layers (an HFN)")
    other = [n for n, p in model.named_parameters() if not n.endswith("scores") and not _is_bn_param(model, n)]
    if other:
        raise RramlibError(f"hfn_memory counts masks and BatchNorm only; the network also has {other}")
    return HFNMemory(mask_bits=sum(m.weight.numel() for _, m in layers),
                     digital=Storage(values_per_level=0, shared_values=_bn_values(model), seed_bytes=SEED_BYTES))


def dense_memory(model: nn.Module) -> Storage:
    """What a dense network must store: every Conv2d/Linear weight and bias and its BatchNorm values."""
    if supermask_layers(model):
        raise RramlibError("dense_memory got an HFN; use hfn_memory")
    layers = [m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    values = sum(m.weight.numel() + (m.bias.numel() if m.bias is not None else 0) for m in layers)
    return Storage(values_per_level=0, shared_values=values + _bn_values(model))


def _is_bn_param(model: nn.Module, name: str) -> bool:
    owner = model.get_submodule(name.rpartition(".")[0])
    return isinstance(owner, nn.BatchNorm2d)
