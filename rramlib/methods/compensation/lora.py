"""LoRA per drift level: a trainable low-rank update ``(α/r)·B_k·A_k`` per layer and level.

The storage comparison the VeRA+ study draws: the same drift-injected training protocol
as VeRA+, but every level stores its own A and B matrices (Hu et al., ICLR 2022).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from rramlib.methods.adapters import LoRAConfig, add_lora
from rramlib.methods.compensation.base import PerLevelAdapterMethod, TrainingConfig

__all__ = ["LoRAMethod", "LoRAMethodConfig"]


@dataclass(frozen=True)
class LoRAMethodConfig(LoRAConfig, TrainingConfig):
    """LoRA's adapter hyper-parameters (:class:`~rramlib.methods.adapters.LoRAConfig`) and its training's."""

    owner: ClassVar[str] = "lora"
    lr: float = 2e-3


class LoRAMethod(PerLevelAdapterMethod):
    name = "lora"
    Config = LoRAMethodConfig
    label = "LoRA per level"
    color = "#009E73"
    marker = "v"
    fitting = "offline, per level, all chips"
    shared_note = "nothing: A and B per layer and level"
    trained = True
    not_for_hfn = None

    def add_adapters(self, model, adapter_names):
        return add_lora(model, self.hparams.project(LoRAConfig), adapter_names=adapter_names)
