"""VeRA+ (the study's method): two small vectors per drift level over shared random projections.

Per adapted layer ``y = W(t)·x + Λ_b·B·Λ_d·A·x`` (see :mod:`rramlib.adapters.vera_plus`), one
(λ_b, λ_d) set per drift level trained offline with drift injection, selected by elapsed
time in the field (drift-aware scheduling, :mod:`rramlib.schedule`). A and B are regenerated
from a seed, so only the vectors (and the seed) are stored.
"""
from __future__ import annotations

from ..adapters import add_vera_plus
from ..errors import check_choice
from .base import PerLevelAdapterMethod


class VeraPlusMethod(PerLevelAdapterMethod):
    name = "vera_plus"
    adapter_params = ("rank", "sharing", "projection_seed", "d_init")
    defaults = {"rank": 16, "sharing": "layer", "projection_seed": 0, "d_init": 0.1,
                **PerLevelAdapterMethod.training_defaults, "lr": 1e-2}

    def __init__(self, **params):
        super().__init__(**params)
        check_choice("VeRA+ sharing", self.params["sharing"], ("layer", "cross"))

    def add_adapters(self, model, levels, *, rank, sharing, projection_seed, d_init):
        return add_vera_plus(model, rank=rank, sharing=sharing, seed=projection_seed, levels=levels, d_init=d_init)
