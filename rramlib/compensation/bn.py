"""BatchNorm recalibration per drift level (a baseline named by the VeRA+ study).

For each drift level: (a) re-estimate every BatchNorm layer's running mean and variance on
training images passed through training chips drifted to times in the level's window
(cumulative average over ``batches`` batches); (b) optionally fine-tune BN's affine γ/β
with the same drift-injected protocol as the adapters. One full BN set (mean, variance,
and γ/β when fine-tuned) is stored per level — the storage cost the study contrasts VeRA+ with.
"""
from __future__ import annotations

import torch
from torch import nn

from ..errors import RramlibError
from ..overhead import Storage
from .base import FitContext, Method, drift_injected_training

_BN = (nn.BatchNorm1d, nn.BatchNorm2d)


class BNRecalibration(Method):
    name = "bn"
    defaults = {"batches": 20, "batch_size": 128, "finetune_steps": 0, "lr": 1e-3, "seed": 0}

    def setup(self, ctx: FitContext) -> None:
        self.analog_ = ctx.analog()
        self._bns = [m for m in self.analog_.model.modules() if isinstance(m, _BN)]
        if not self._bns:
            raise RramlibError("bn recalibration needs a model with BatchNorm layers")
        self.schedule_ = ctx.schedule
        self.sets_: dict[str, list[dict[str, torch.Tensor]]] = {}

    def _bn_state(self) -> list[dict[str, torch.Tensor]]:
        return [{"mean": m.running_mean.clone(), "var": m.running_var.clone(),
                 "weight": m.weight.detach().clone(), "bias": m.bias.detach().clone()} for m in self._bns]

    @torch.no_grad()
    def _load(self, state: list[dict[str, torch.Tensor]]) -> None:
        for m, s in zip(self._bns, state):
            m.running_mean.copy_(s["mean"]); m.running_var.copy_(s["var"])
            m.weight.copy_(s["weight"]); m.bias.copy_(s["bias"])

    def train(self, ctx: FitContext) -> None:
        original = self._bn_state()
        x, _ = ctx.train_tensors()
        for level, name in enumerate(ctx.schedule.names):
            self._load(original)
            gen = torch.Generator().manual_seed(self.params["seed"] * 1000 + level)
            times = ctx.schedule.sample_times(level, self.params["batches"], gen)
            momenta = [m.momentum for m in self._bns]
            for m in self._bns:
                m.reset_running_stats()
                m.momentum = None  # cumulative average over all recalibration batches
                m.train()
            with torch.no_grad():
                for step, t in enumerate(times):
                    chip = int(torch.randint(ctx.train_chips, (1,), generator=gen))
                    self.analog_.program(chip)
                    idx = torch.randint(len(x), (self.params["batch_size"],), generator=gen).to(x.device)
                    self.analog_.at(t)(x[idx])
            for m, momentum in zip(self._bns, momenta):
                m.momentum = momentum
                m.eval()
            if self.params["finetune_steps"] > 0:
                affine = [p for m in self._bns for p in (m.weight, m.bias)]
                for p in affine:
                    p.requires_grad_(True)
                drift_injected_training(ctx, self.analog_, affine, level, steps=self.params["finetune_steps"],
                                        lr=self.params["lr"], seed=self.params["seed"] + level, desc=f"bn {name}")
                for p in affine:
                    p.requires_grad_(False)
            self.sets_[name] = self._bn_state()

    def select(self, t: float) -> None:
        self._load(self.sets_[self.schedule_.name_of(t)])

    def state_dict(self) -> dict:
        return {"sets": self.sets_}

    def load_state_dict(self, state: dict) -> None:
        self.sets_ = state["sets"]

    def storage(self) -> Storage:
        # mean and variance change per level; gamma and beta too when they are fine-tuned
        per_feature = 4 if self.params["finetune_steps"] > 0 else 2
        per_level = sum(per_feature * m.num_features for m in self._bns)
        return Storage(values_per_level=per_level, levels=self.schedule_.num_levels)
