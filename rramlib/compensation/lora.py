"""LoRA per drift level: a trainable low-rank update ``(α/r)·B_k·A_k`` per layer and level.

The storage comparison the VeRA+ study draws: the same drift-injected training protocol
as VeRA+, but every level stores its own A and B matrices (Hu et al., ICLR 2022).
"""
from __future__ import annotations

from ..adapters import add_lora
from .base import PerLevelAdapterMethod


class LoRAMethod(PerLevelAdapterMethod):
    name = "lora"
    adapter_params = ("rank", "alpha", "init_seed")
    defaults = {"rank": 4, "alpha": 8.0, "init_seed": 0, **PerLevelAdapterMethod.training_defaults, "lr": 2e-3}

    def add_adapters(self, model, levels, *, rank, alpha, init_seed):
        return add_lora(model, rank=rank, alpha=alpha, levels=levels, seed=init_seed)
