"""Retraining oracle: a full set of weights per drift level (the cost of rewriting the RRAM).

Per level, every RRAM layer's weight gets a trainable full-size correction ΔW_k, trained
with the same drift-injected protocol as the adapters, so the layer computes
``(W(t) + ΔW_k)·x``. This is the most any weight-level correction can do for a level and
serves as the upper reference; its storage is one whole set of RRAM weights per level,
which in hardware means rewriting the crossbar (energy, latency, endurance).
"""
from __future__ import annotations

import torch
from torch import nn
from torch.func import functional_call

from ..overhead import Storage
from .base import FitContext, Method, drift_injected_training


class _FullDelta(nn.Module):
    """Wraps a Conv2d/Linear; adds the active level's ΔW to the (drifted) base weight."""

    def __init__(self, base_layer: nn.Module, levels: list[str]):
        super().__init__()
        self.base_layer = base_layer
        self.delta = nn.ParameterDict({k: nn.Parameter(torch.zeros_like(base_layer.weight)) for k in levels})
        self.active = levels[0]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight = self.base_layer.weight + self.delta[self.active]
        return functional_call(self.base_layer, {"weight": weight}, (x,))


class RetrainOracle(Method):
    name = "retrain"
    defaults = {"steps": 300, "lr": 1e-3, "batch_size": 64, "kd_weight": 0.0, "seed": 0}

    def setup(self, ctx: FitContext) -> None:
        self.analog_ = ctx.analog()
        self.schedule_ = ctx.schedule
        self._wrappers = []
        names = dict(self.analog_.model.named_modules())
        for name, module in zip(self.analog_.layer_names, self.analog_.layer_modules):
            parent_name, _, child = name.rpartition(".")
            wrapper = _FullDelta(module, ctx.schedule.names)
            setattr(names[parent_name] if parent_name else self.analog_.model, child, wrapper)
            self._wrappers.append(wrapper)

    def train(self, ctx: FitContext) -> None:
        for level, name in enumerate(ctx.schedule.names):
            self.select_level(name)
            params = [w.delta[name] for w in self._wrappers]
            drift_injected_training(ctx, self.analog_, params, level, steps=self.params["steps"],
                                    lr=self.params["lr"], batch_size=self.params["batch_size"],
                                    kd_weight=self.params["kd_weight"], seed=self.params["seed"] + level,
                                    desc=f"retrain {name}")

    def select_level(self, name: str) -> None:
        for w in self._wrappers:
            w.active = name

    def select(self, t: float) -> None:
        self.select_level(self.schedule_.name_of(t))

    def state_dict(self) -> dict:
        return {"deltas": [{k: v.detach().cpu() for k, v in w.delta.items()} for w in self._wrappers]}

    @torch.no_grad()
    def load_state_dict(self, state: dict) -> None:
        for w, deltas in zip(self._wrappers, state["deltas"]):
            for k, v in deltas.items():
                w.delta[k].copy_(v)

    def storage(self) -> Storage:
        per_level = sum(w.base_layer.weight.numel() for w in self._wrappers)
        return Storage(values_per_level=per_level, levels=self.schedule_.num_levels)
