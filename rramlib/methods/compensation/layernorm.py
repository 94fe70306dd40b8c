"""LayerNorm re-fit per drift level: our analogue of BN recalibration for networks without BatchNorm.

**Our choice, not the study's.** The study's BN-based calibration (:mod:`~rramlib.methods.compensation.bn`)
needs BatchNorm, which a transformer encoder such as BERT does not have: its normalisation is LayerNorm
(Ba, Kiros & Hinton 2016, ``y = γ ⊙ (x − mean(x)) / sqrt(var(x) + ε) + β`` over each token's features), whose
statistics are computed per token at every inference, so there are no running statistics to re-estimate. What
is left of BN recalibration is its optional second step, fine-tuning the affine γ/β per drift level
(:class:`~rramlib.methods.compensation.bn.BNRecalibrationConfig`'s ``finetune_steps``): this method re-fits
every LayerNorm's γ and β per drift level on training chips drifted to times in the level's window, with the
drift-injected training loop the adapters use (:func:`~rramlib.methods.compensation.base.drift_injected_training`:
Adam, cross-entropy plus optional distillation), every level starting from the trained model's values. One full
LayerNorm set (γ and β of every LayerNorm layer) is stored per drift level and selected by elapsed time.
Embeddings and LayerNorm are digital, so the re-fitted values live in SRAM, as BN's sets do.

A model without an affine LayerNorm is refused. The training draws come from the stream of BN's γ/β
fine-tuning (purpose ``"bn_finetune"``, keys: drift level and ``"layernorm"``): the same kind of draw, a
stream of its own.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from torch import nn

from rramlib.core.seeding import generator
from rramlib.methods.compensation.base import FitContext, TrainingConfig
from rramlib.methods.compensation.norm_sets import AFFINE, PerLevelNormSets

__all__ = ["LayerNormRefit", "LayerNormRefitConfig"]


@dataclass(frozen=True)
class LayerNormRefitConfig(TrainingConfig):
    """The drift-injected training protocol (:class:`~rramlib.methods.compensation.base.TrainingConfig`) applied to
    every LayerNorm's γ/β, with BN's γ/β fine-tuning learning rate (1e-3)."""

    owner: ClassVar[str] = "ln_refit"
    lr: float = 1e-3


class LayerNormRefit(PerLevelNormSets):
    """One LayerNorm γ/β set per drift level, re-fitted offline on drifted training chips (module docstring:
    our analogue of BN recalibration for networks without BatchNorm)."""

    name = "ln_refit"
    Config = LayerNormRefitConfig
    label = "LayerNorm γ/β re-fit (ours, BN's analogue)"
    color = "#56B4E9"  # BN recalibration's: the same role where a network has LayerNorm instead of BatchNorm
    marker = "<"
    fitting = "offline, per level, all chips"
    shared_note = "nothing: one LayerNorm γ/β set per level"
    trained = True
    not_for_hfn = "re-fits LayerNorm, which a Hidden-Fold ResNet does not have (it has BatchNorm)"

    norm_types = (nn.LayerNorm,)
    norm_name = "affine LayerNorm"
    changed = AFFINE

    @classmethod
    def norm_layers(cls, model: nn.Module) -> dict[str, nn.Module]:
        """The LayerNorm layers of ``model`` with affine γ (``elementwise_affine=True``)."""
        return {n: m for n, m in super().norm_layers(model).items() if m.weight is not None}

    def setup(self, ctx: FitContext) -> None:
        super().setup(ctx)
        self.losses_: dict[str, list[float]] = {}

    def train_level(self, ctx: FitContext, level: int) -> None:
        p = self.hparams
        name = ctx.schedule.names[level]
        self.reset()  # every level starts from the model's values
        self.losses_[name] = self.finetune_affine(
            ctx, level, generator(p.seed, "bn_finetune", level, "layernorm"), steps=p.steps, lr=p.lr,
            batch_size=p.batch_size, kd_weight=p.kd_weight, desc=f"{self.name} {name}")
        self.keep_level(level)
