"""BatchNorm recalibration per drift level (a baseline named by the VeRA+ study).

For each drift level: (a) re-estimate every BatchNorm layer's running mean and variance on
training images passed through training chips drifted to times in the level's window
(cumulative average over ``batches`` batches); (b) optionally fine-tune BN's affine γ/β
with the same drift-injected protocol as the adapters. One full BN set (mean, variance,
and γ/β when fine-tuned) is stored per level — the storage cost the study contrasts VeRA+ with.
A network without BatchNorm (e.g. a transformer) is refused; its analogue there is the LayerNorm
re-fit (:mod:`~rramlib.methods.compensation.layernorm`).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import torch
from torch import nn

from rramlib.core.errors import check_int, check_positive
from rramlib.core.seeding import check_root_seed, generator, train_chips
from rramlib.methods.compensation.base import FitContext, MethodConfig
from rramlib.methods.compensation.norm_sets import AFFINE, PerLevelNormSets

__all__ = ["BNRecalibration", "BNRecalibrationConfig"]

_BN = (nn.BatchNorm1d, nn.BatchNorm2d)
#: stored per level: always the statistics; γ/β too when they are fine-tuned (:data:`~.norm_sets.AFFINE`)
_STATS = ("running_mean", "running_var")


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


class BNRecalibration(PerLevelNormSets):
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

    norm_types = _BN
    norm_name = "BatchNorm"
    changed = _STATS + AFFINE

    def stored(self) -> tuple[str, ...]:
        """The statistics; γ/β too when they are fine-tuned."""
        return _STATS + (AFFINE if self.hparams.finetune_steps > 0 else ())

    def train_level(self, ctx: FitContext, level: int) -> None:
        p = self.hparams
        name = ctx.schedule.names[level]
        x, _ = ctx.train_tensors()
        chips = train_chips(ctx.train_chips)
        self.reset()  # every level starts from the model's values
        gen = generator(p.seed, "bn_recalibration", level)
        times = ctx.schedule.sample_times(level, p.batches, gen)
        momenta = {n: m.momentum for n, m in self.norm_layers_.items()}
        for m in self.norm_layers_.values():
            m.reset_running_stats()
            m.momentum = None  # cumulative average over all recalibration batches
            m.train()
        with torch.no_grad():
            for t in times:
                self.analog_.program(chips[int(torch.randint(len(chips), (1,), generator=gen))])
                idx = torch.randint(len(x), (p.batch_size,), generator=gen).to(x.device)
                self.analog_.at(t)(x[idx])
        for n, m in self.norm_layers_.items():
            m.momentum = momenta[n]
            m.eval()
        if p.finetune_steps > 0:
            self.finetune_affine(ctx, level, generator(p.seed, "bn_finetune", level), steps=p.finetune_steps,
                                 lr=p.lr, desc=f"bn {name}")
        self.keep_level(level)
