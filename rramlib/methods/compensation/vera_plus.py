"""VeRA+ (the study's method): two small vectors per drift level over shared random projections.

Per adapted layer ``y = W(t)·x + Λ_b·B·Λ_d·A·x`` (see :mod:`rramlib.methods.adapters.vera_plus`), one
(λ_b, λ_d) set per drift level trained offline with drift injection, selected by elapsed
time in the field (drift-aware scheduling, :mod:`rramlib.methods.schedule`). A and B are regenerable
from a seed; :meth:`VeraPlusMethod.storage` counts their values and the generator's state apart, so that
both readings (kept in SRAM, or regenerated at every inference) can be reported.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import ClassVar

from rramlib.methods.adapters import VeraPlusConfig, add_vera_plus
from rramlib.methods.compensation.base import PerLevelAdapterMethod, TrainingConfig
from rramlib.methods.overhead import MT19937_STATE_BYTES, Storage

__all__ = ["VeraPlusMethod", "VeraPlusMethodConfig"]


@dataclass(frozen=True)
class VeraPlusMethodConfig(VeraPlusConfig, TrainingConfig):
    """VeRA+'s adapter hyper-parameters (:class:`~rramlib.methods.adapters.VeraPlusConfig`) and its training's."""

    owner: ClassVar[str] = "vera_plus"
    lr: float = 1e-2


class VeraPlusMethod(PerLevelAdapterMethod):
    name = "vera_plus"
    Config = VeraPlusMethodConfig
    label = "VeRA+"
    color = "#D55E00"
    marker = "*"
    fitting = "offline, per level, all chips"
    shared_note = "A, B: in SRAM, or regenerated per inference from a seed (both readings counted)"
    trained = True
    not_for_hfn = None

    def add_adapters(self, model, adapter_names):
        return add_vera_plus(model, self.hparams.project(VeraPlusConfig), adapter_names=adapter_names)

    def storage(self) -> Storage:
        """The vectors per level and the seed, with A and B's values and the generator's state counted apart."""
        return dataclasses.replace(super().storage(), projection_values=self.adapters_.projection_values(),
                                   generator_state_bytes=MT19937_STATE_BYTES)
