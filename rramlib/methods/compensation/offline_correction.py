"""Full-rank offline correction per drift level (registered as ``offline_correction``; formerly ``retrain``).

Per level, every RRAM layer's weight gets a trainable full-size correction ΔW_k, trained offline with
the same drift-injected protocol as the adapters on training chips, so the layer computes
``(W(t) + ΔW_k)·x``. The same ΔW_k serves every chip. It is neither an oracle nor an upper line: a method
fitted to each chip (DoRA calibration) can beat it, and with the same training budget it can fall below
LoRA and VeRA+, which are special cases of it; the upper line is the chip rewritten
(:mod:`~rramlib.methods.compensation.reprogram`). Its storage is one whole set of RRAM weights per level. An
RRAM chip cannot add ΔW_k to the weights before they are read without rewriting the array, so the
correction runs digitally beside the crossbar: ΔW_k·x costs as many MACs as the layer itself
(:meth:`OfflineCorrection.extra_macs`); done by rewriting the array it would be reprogramming.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn
from torch.func import functional_call

from rramlib.methods.overhead import Storage, base_macs
from rramlib.core.seeding import generator
from rramlib.methods.compensation.base import FitContext, Method, TrainingConfig, drift_injected_training

__all__ = ["OfflineCorrection", "OfflineCorrectionConfig"]


@dataclass(frozen=True)
class OfflineCorrectionConfig(TrainingConfig):
    """The drift-injected training protocol (:class:`~rramlib.methods.compensation.base.TrainingConfig`), lr 1e-3."""

    owner: ClassVar[str] = "offline_correction"
    lr: float = 1e-3


class _FullDelta(nn.Module):
    """Wraps a Conv2d/Linear; adds the active level's ΔW to the (drifted) base weight."""

    def __init__(self, base_layer: nn.Module, level_names: list[str]):
        super().__init__()
        self.base_layer = base_layer
        self.delta = nn.ParameterDict({k: nn.Parameter(torch.zeros_like(base_layer.weight)) for k in level_names})
        self.active = level_names[0]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight = self.base_layer.weight + self.delta[self.active]
        return functional_call(self.base_layer, {"weight": weight}, (x,))


class OfflineCorrection(Method):
    """Full-size ΔW per layer and drift level, trained offline; :meth:`select` activates the level's ΔW."""

    name = "offline_correction"
    Config = OfflineCorrectionConfig
    label = "full-rank correction per level"
    color = "#CC79A7"
    marker = "X"
    fitting = "offline, per level, all chips"
    shared_note = "nothing: a full-rank correction of every weight per level"
    trained = True
    not_for_hfn = "adds trained full-rank weights to the RRAM's, which turns the HFN into a dense network"

    def setup(self, ctx: FitContext) -> None:
        self.analog_ = ctx.analog()
        self.schedule_ = ctx.schedule
        self.wrappers_: dict[str, _FullDelta] = {}
        names = dict(self.analog_.model.named_modules())
        for name, module in zip(self.analog_.layer_names, self.analog_.layer_modules):
            parent_name, _, child = name.rpartition(".")
            wrapper = _FullDelta(module, ctx.schedule.names)
            setattr(names[parent_name] if parent_name else self.analog_.model, child, wrapper)
            self.wrappers_[name] = wrapper

    def train_level(self, ctx: FitContext, level: int) -> None:
        p = self.hparams
        name = ctx.schedule.names[level]
        self.select_level(name)
        params = [w.delta[name] for w in self.wrappers_.values()]
        drift_injected_training(ctx, self.analog_, params, level, generator(p.seed, "offline_correction", level),
                                steps=p.steps, lr=p.lr, batch_size=p.batch_size, kd_weight=p.kd_weight,
                                desc=f"offline correction {name}")

    def select_level(self, name: str) -> None:
        for w in self.wrappers_.values():
            w.active = name

    def select(self, t: float) -> None:
        self.select_level(self.schedule_.name_of(t))

    def level_state_dict(self, level: int) -> dict:
        name = self.schedule_.names[level]
        return {"deltas": [w.delta[name].detach().cpu() for w in self.wrappers_.values()]}

    @torch.no_grad()
    def load_level_state_dict(self, level: int, state: dict) -> None:
        name = self.schedule_.names[level]
        for w, delta in zip(self.wrappers_.values(), state["deltas"]):
            w.delta[name].copy_(delta)

    def state_dict(self) -> dict:
        return {"deltas": [{k: v.detach().cpu() for k, v in w.delta.items()} for w in self.wrappers_.values()]}

    @torch.no_grad()
    def load_state_dict(self, state: dict) -> None:
        for w, deltas in zip(self.wrappers_.values(), state["deltas"]):
            for k, v in deltas.items():
                w.delta[k].copy_(v)

    def extra_macs(self, example: torch.Tensor) -> int:
        """ΔW_k·x computed digitally beside the crossbar: 100 % of the adapted layers' MACs (every RRAM layer)."""
        return base_macs(self.analog_.model, example)

    def storage(self) -> Storage:
        per_level = sum(w.base_layer.weight.numel() for w in self.wrappers_.values())
        return Storage(values_per_level=per_level, levels=self.schedule_.num_levels)

    def _sram_tensors(self) -> dict[str, torch.Tensor]:
        return {f"{level}/{layer}.delta": w.delta[level] for level in self.schedule_.names
                for layer, w in self.wrappers_.items()}
