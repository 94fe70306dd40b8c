"""Relative Gaussian drift: ``G = G_t + N(0, (RD * G_t)^2)``.

Source: the drift model of W. Dong et al., "Efficient Calibration for RRAM-based
In-Memory Computing using DoRA" (2025), as quoted second-hand (see the book's "Unknowns" page): the
"relative drift" ``RD = sigma / G_t`` is the drift level; values around 20 % were quoted
as typical. The paper's full text is not available to us, so the time dependence below
is **our** documented choice, not the paper's.
"""
from __future__ import annotations

import math
from typing import ClassVar

import torch
from torch import Tensor

from rramlib.core.errors import check_choice, check_positive
from rramlib.core.times import YEAR
from rramlib.device.drift.base import DriftModel, _number

__all__ = ["RelativeGaussian", "TIME_MODELS", "T0_S", "T_REF_S"]

#: time constant of the logarithmic map (our choice), seconds
T0_S = 1.0
#: reference time at which RD(t) equals ``rd`` (our choice: the study's horizon, ten years)
T_REF_S = 10 * YEAR
TIME_MODELS = ("log", "constant")


class RelativeGaussian(DriftModel):
    """Relative Gaussian drift ``G = G_t (1 + RD(t) z)`` (Dong et al. 2025, quoted second-hand).

    Each device draws one standard normal ``z`` at programming, so a chip follows one
    trajectory: every device keeps the sign and rank of its deviation, and only its size
    grows with ``RD(t)``. There is no programming noise: ``conductance(state, 0)`` equals
    the target exactly. The result is not clamped (the model is a pure Gaussian as quoted;
    a device goes below 0 µS only when ``RD z < -1``, i.e. ``z < -5`` at RD = 0.2).

    Time dependence (our choice), multiplied by ``drift_scale``:

    * ``time_model="log"`` (default): ``RD(t) = rd * ln(1 + t/t0) / ln(1 + t_ref/t0)``
      with ``t0 = 1 s`` and ``t_ref = 10 years`` -- RD(0) = 0, RD(10 y) = ``rd``, linear in
      ln t for t >> t0;
    * ``time_model="constant"``: ``RD(t) = rd`` for every t > 0 (RD is the drift level
      itself, as in the paper), 0 at t = 0.

    Parameters: ``rd`` (default 0.2, "around 20 %" quoted as typical), ``time_model``,
    ``drift_scale`` (default 1), ``g_min`` = 0 and ``g_max`` = 100 µS (our choice; only the
    ratio matters for a relative model). Default mapping: differential pair.
    """

    name: ClassVar[str] = "relative_gaussian"
    default_mapping: ClassVar[str] = "differential"
    state_keys: ClassVar[tuple[str, ...]] = ("g_prog", "z")

    def __init__(self, *, rd: float = 0.2, time_model: str = "log", drift_scale: float = 1.0,
                 g_min: float = 0.0, g_max: float = 100.0) -> None:
        super().__init__(g_min=g_min, g_max=g_max, drift_scale=drift_scale)
        self.rd = check_positive("rd", _number("rd", rd), allow_zero=True)
        self.time_model = check_choice("time_model", time_model, TIME_MODELS)

    def relative_drift(self, t: float) -> float:
        """``drift_scale * RD(t)``: the relative standard deviation at ``t`` seconds."""
        if t <= 0:
            return 0.0
        if self.time_model == "constant":
            rd = self.rd
        else:
            rd = self.rd * math.log1p(t / T0_S) / math.log1p(T_REF_S / T0_S)
        return self.drift_scale * rd

    def params(self) -> dict:
        return {"rd": self.rd, "time_model": self.time_model, **self._base_params()}

    def _program(self, g_target: Tensor, generator: torch.Generator) -> dict[str, Tensor]:
        # draw order: z
        return {"g_prog": g_target.clone(), "z": self._normal(generator, g_target)}

    def _at(self, state: dict[str, Tensor], t: float) -> Tensor:
        g = state["g_prog"]
        return torch.addcmul(g, g, state["z"], value=self.relative_drift(t))
