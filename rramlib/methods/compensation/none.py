"""No compensation: the drifted chip as it is (the study's "uncompensated drift" baseline)."""
from __future__ import annotations

from rramlib.methods.overhead import Storage
from rramlib.methods.compensation.base import FitContext, Method


class NoCompensation(Method):
    """Evaluate the drifted weights as they are; stores nothing (no hyper-parameters)."""

    name = "none"
    label = "uncompensated"
    color = "#999999"
    marker = "o"
    fitting = "nothing fitted"
    shared_note = "—"
    trained = False
    not_for_hfn = None

    def setup(self, ctx: FitContext) -> None:
        self.analog_ = ctx.analog()

    def storage(self) -> Storage:
        return Storage(values_per_level=0, levels=1)
