"""VeRA+ (the study's method): two small vectors per drift level over shared random projections.

Per adapted layer ``y = W(t)·x + Λ_b·B·Λ_d·A·x`` (see :mod:`rramlib.methods.adapters.vera_plus`), one
(λ_b, λ_d) set per drift level trained offline with drift injection, selected by elapsed
time in the field (drift-aware scheduling, :mod:`rramlib.methods.schedule`). A and B are regenerated
from a seed, so only the vectors (and the seed) are stored.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from rramlib.methods.adapters import VeraPlusConfig, add_vera_plus
from rramlib.methods.compensation.base import PerLevelAdapterMethod, TrainingConfig

__all__ = ["VeraPlusMethod", "VeraPlusMethodConfig"]


@dataclass(frozen=True)
class VeraPlusMethodConfig(VeraPlusConfig, TrainingConfig):
    """VeRA+'s adapter hyper-parameters (:class:`~rramlib.methods.adapters.VeraPlusConfig`) and its training's."""

    owner: ClassVar[str] = "vera_plus"
    lr: float = 1e-2


class VeraPlusMethod(PerLevelAdapterMethod):
    name = "vera_plus"
    Config = VeraPlusMethodConfig

    def add_adapters(self, model, adapter_names):
        return add_vera_plus(model, self.hparams.project(VeraPlusConfig), adapter_names=adapter_names)
