"""Reprogramming: the same chip written again at time t (the upper line of any in-field correction).

Rewriting the crossbar with the software weights undoes drift completely: what is left is the chip's
programming error. We model the rewrite of chip ``c`` at time ``t`` as chip ``c`` read right after its
programming (``t = 0``: the programming noise of that chip, no drift, no read noise), so the rewritten
chip is the same chip with the same devices and programming draws (our choice; a real rewrite would
draw new programming errors of the same statistics). The digital copy of every RRAM weight must be kept
to rewrite the chip; the energy, latency and endurance cost of a rewrite is not counted here.
"""
from __future__ import annotations

import torch
from torch import nn

from rramlib.core.errors import check_time
from rramlib.methods.overhead import Storage
from rramlib.methods.compensation.base import SHARED, FitContext, Method

__all__ = ["Reprogram"]


class Reprogram(Method):
    """The chip rewritten at every ``at`` call; stores the software weights (no hyper-parameters)."""

    name = "reprogram"
    label = "reprogrammed chip (upper line)"
    color = "#444444"
    marker = "+"
    fitting = "chip rewritten (upper line)"
    shared_note = "the software weights, once (to rewrite the chip)"
    trained = False
    not_for_hfn = None

    def setup(self, ctx: FitContext) -> None:
        self.analog_ = ctx.analog()

    def at(self, seed: int, t: float) -> nn.Module:
        """Chip ``seed`` rewritten at ``t`` seconds: programmed from the stored weights and read at once.

        Returns the method's own network, shared between calls (see :meth:`Method.at`).
        """
        check_time(t)
        self._check_fitted()
        self.analog_.program(seed)
        return self.analog_.at(0.0)

    def storage(self) -> Storage:
        weights = sum(w.numel() for w in self.analog_.reference.values())
        return Storage(values_per_level=0, levels=1, shared_values=weights)

    def _sram_tensors(self) -> dict[str, torch.Tensor]:
        return {f"{SHARED}/{name}.weight": w for name, w in self.analog_.reference.items()}
