"""BatchNorm recalibration per drift level (a baseline named by the VeRA+ study).

For each drift level: (a) re-estimate every BatchNorm layer's running mean and variance on
training images passed through training chips drifted to times in the level's window
(cumulative average over ``batches`` batches); (b) optionally fine-tune BN's affine γ/β
with the same drift-injected protocol as the adapters. One full BN set (mean, variance,
and γ/β when fine-tuned) is stored per level — the storage cost the study contrasts VeRA+ with.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import torch
from torch import nn

from rramlib.core.errors import RramlibError, check_int, check_positive
from rramlib.methods.overhead import Storage
from rramlib.core.seeding import check_root_seed, generator, train_chips
from rramlib.methods.compensation.base import FitContext, Method, MethodConfig, drift_injected_training

__all__ = ["BNRecalibration", "BNRecalibrationConfig"]

_BN = (nn.BatchNorm1d, nn.BatchNorm2d)
#: stored per level: always the statistics; γ/β too when they are fine-tuned
_STATS, _AFFINE = ("running_mean", "running_var"), ("weight", "bias")


@dataclass(frozen=True)
class BNRecalibrationConfig(MethodConfig):
    """``batches`` × ``batch_size`` images re-estimate the statistics; ``finetune_steps`` > 0 also trains γ/β."""

    owner: ClassVar[str] = "bn"
    batches: int = field(default=20, metadata={
        "help": "batches of drifted-chip activations that re-estimate the statistics"})
    batch_size: int = field(default=128, metadata={"help": "images per batch"})
    finetune_steps: int = field(default=0, metadata={
        "help": "Adam steps that also fine-tune γ/β per level (0: statistics only)"})
    lr: float = field(default=1e-3, metadata={"help": "learning rate of the γ/β fine-tuning"})
    seed: int = field(default=0, metadata={"help": "root seed of the recalibration and fine-tuning draws"})

    def _validate(self) -> None:
        check_int("bn.batches", self.batches, 1)
        check_int("bn.batch_size", self.batch_size, 1)
        check_int("bn.finetune_steps", self.finetune_steps, 0)
        check_positive("bn.lr", self.lr)
        check_root_seed(self.seed, "bn.seed")


class BNRecalibration(Method):
    """One BN set per drift level; :meth:`select` makes the network's BN layers read the level's set."""

    name = "bn"
    Config = BNRecalibrationConfig
    label = "BN recalibration"
    color = "#56B4E9"
    marker = "^"
    fitting = "offline, per level, all chips"
    shared_note = "BN γ/β unchanged (shared)"
    trained = True
    not_for_hfn = None

    def setup(self, ctx: FitContext) -> None:
        self.analog_ = ctx.analog()
        self.bn_layers_ = {n: m for n, m in self.analog_.model.named_modules() if isinstance(m, _BN)}
        if not self.bn_layers_:
            raise RramlibError("bn recalibration needs a model with BatchNorm layers")
        self.schedule_ = ctx.schedule
        self.sets_: dict[str, dict[str, torch.Tensor]] = {}
        # the model's own BN values: every level starts from them
        self._initial = {f"{n}.{k}": getattr(m, k).detach().clone() for n, m in self.bn_layers_.items()
                         for k in _STATS + _AFFINE}

    @property
    def _stored(self) -> tuple[str, ...]:
        return _STATS + (_AFFINE if self.hparams.finetune_steps > 0 else ())

    def _snapshot(self) -> dict[str, torch.Tensor]:
        """Copies of the stored BN tensors of the network now, keyed ``"<layer>.<tensor>"``."""
        return {f"{n}.{k}": getattr(m, k).detach().clone() for n, m in self.bn_layers_.items() for k in self._stored}

    def train_level(self, ctx: FitContext, level: int) -> None:
        p = self.hparams
        name = ctx.schedule.names[level]
        x, _ = ctx.train_tensors()
        chips = train_chips(ctx.train_chips)
        self._point_to({k: v.clone() for k, v in self._initial.items()})  # every level starts from the model's
        gen = generator(p.seed, "bn_recalibration", level)
        times = ctx.schedule.sample_times(level, p.batches, gen)
        momenta = {n: m.momentum for n, m in self.bn_layers_.items()}
        for m in self.bn_layers_.values():
            m.reset_running_stats()
            m.momentum = None  # cumulative average over all recalibration batches
            m.train()
        with torch.no_grad():
            for t in times:
                self.analog_.program(chips[int(torch.randint(len(chips), (1,), generator=gen))])
                idx = torch.randint(len(x), (p.batch_size,), generator=gen).to(x.device)
                self.analog_.at(t)(x[idx])
        for n, m in self.bn_layers_.items():
            m.momentum = momenta[n]
            m.eval()
        if p.finetune_steps > 0:
            affine = [getattr(m, k) for m in self.bn_layers_.values() for k in _AFFINE]
            for param in affine:
                param.requires_grad_(True)
            drift_injected_training(ctx, self.analog_, affine, level, generator(p.seed, "bn_finetune", level),
                                    steps=p.finetune_steps, lr=p.lr, desc=f"bn {name}")
            for param in affine:
                param.requires_grad_(False)
        self.sets_[name] = self._snapshot()

    def _point_to(self, tensors: dict[str, torch.Tensor]) -> None:
        """Make the BN layers read ``tensors`` themselves (no copy), so writes into a stored set take effect."""
        for key, value in tensors.items():
            layer, attr = key.rsplit(".", 1)
            module = self.bn_layers_[layer]
            if attr in _AFFINE:
                module._parameters[attr] = value if isinstance(value, nn.Parameter) else \
                    nn.Parameter(value, requires_grad=False)
                tensors[key] = module._parameters[attr]
            else:
                module._buffers[attr] = value

    def select(self, t: float) -> None:
        self._point_to(self.sets_[self.schedule_.name_of(t)])

    def level_state_dict(self, level: int) -> dict:
        return {k: v.detach().cpu().clone() for k, v in self.sets_[self.schedule_.names[level]].items()}

    def load_level_state_dict(self, level: int, state: dict) -> None:
        device = next(iter(self.bn_layers_.values())).running_mean.device
        self.sets_[self.schedule_.names[level]] = {k: v.to(device) for k, v in state.items()}

    def state_dict(self) -> dict:
        return {"sets": {name: {k: v.detach().cpu().clone() for k, v in s.items()} for name, s in self.sets_.items()}}

    def load_state_dict(self, state: dict) -> None:
        device = next(iter(self.bn_layers_.values())).running_mean.device
        self.sets_ = {name: {k: v.to(device) for k, v in s.items()} for name, s in state["sets"].items()}
        self.select(0.0)

    def storage(self) -> Storage:
        # mean and variance change per level; gamma and beta too when they are fine-tuned
        per_level = sum(len(self._stored) * m.num_features for m in self.bn_layers_.values())
        return Storage(values_per_level=per_level, levels=self.schedule_.num_levels)

    def _sram_tensors(self) -> dict[str, torch.Tensor]:
        return {f"{name}/{k}": v for name, s in self.sets_.items() for k, v in s.items()}
