"""IBM CMO/HfOx ReRAM: programming noise, log-time relaxation and read noise (single device).

Source: aihwkit's ``ReRamCMONoiseModel`` (``src/aihwkit/inference/noise/reram.py``), fitted on
the conductive-metal-oxide/HfOx devices of IBM Research Zurich (Falcone et al., cited there
as "in review"); the equations and constants are that file's (the book's "Device models"
chapter lists them), cross-checked against it. Our code is independent of aihwkit.
"""
from __future__ import annotations

import math
from typing import ClassVar

import torch
from torch import Tensor

from rramlib.core.errors import RramlibError, check_positive
from rramlib.device.drift.base import DriftModel, _number

__all__ = ["IbmCmoReram", "PROG_COEFFS", "DRIFT_MEAN_SLOPE", "DRIFT_STD_SLOPE", "DRIFT_STD_OFFSET",
           "READ_K", "T_READ_S", "T_MIN_S"]

#: programming sigma = c0 + c1 * g (µS) per acceptance range of program-and-verify, in percent
PROG_COEFFS: dict[float, tuple[float, float]] = {
    0.2: (0.00081107, 0.00106879),
    2.0: (0.0112185391, 0.01129027418),
}
#: mean relaxation per unit ln(t / 1 s), µS
DRIFT_MEAN_SLOPE = -0.08900206
#: spread of the relaxation, sigma(t) = DRIFT_STD_SLOPE * ln t + DRIFT_STD_OFFSET, µS
DRIFT_STD_SLOPE = 0.04201137
DRIFT_STD_OFFSET = 0.41183342
#: read (1/f) noise amplitude K and read time t_read (s)
READ_K = 0.0277316483
T_READ_S = 1e-6
#: times below this (but > 0) are read as this time: the fits are in ln t, anchored at 1 s (our choice)
T_MIN_S = 1.0
#: log10 of a conductance below this (µS) is taken at this value (avoids log10(<=0); our choice)
_G_LOG_FLOOR = 1e-7


class IbmCmoReram(DriftModel):
    """IBM CMO/HfOx ReRAM (aihwkit ``ReRamCMONoiseModel``; Falcone et al.), single device.

    With ``g`` the target (µS) and ``t`` the time after programming (s):

    * programming: ``g_prog = clamp(g + s_p * (c0 + c1 g) z_prog, g_min, g_max)``, with
      ``(c0, c1) = (0.00081107, 0.00106879)`` for ``acceptance=0.2`` (%) and
      ``(0.0112185391, 0.01129027418)`` for ``acceptance=2.0``; ``s_p = prog_noise_scale``;
    * relaxation at t > 0 (natural log, t in s):
      ``g_drift = g_prog + d * (-0.08900206 ln t + (0.04201137 ln t + 0.41183342) z_drift)``,
      ``d = drift_scale``; the shift does not depend on the conductance level;
    * read noise: ``g = g_drift + s_r * 0.0277316483 * |log10 g_drift| *
      sqrt(ln((t + t_read) / (2 t_read))) * z_read``, ``t_read = 1e-6 s``,
      ``s_r = read_noise_scale``;
    * the result is clamped to ``[g_min, g_max]``.

    Differences from aihwkit (ours, documented):

    * aihwkit redraws the relaxation spread and the read noise at every call; here
      ``z_prog, z_drift, z_read`` (drawn in that order) are fixed per device at programming,
      so a chip has one trajectory (its spread at t is still the fitted sigma(t));
    * for ``0 < t < 1 s`` the time is taken as 1 s: the fits are linear in ln t and ln t < 0
      would flip the sign of the mean shift and make sigma(t) negative below 55 µs, so the
      model is frozen at its earliest fitted point. ``t = 0`` gives ``g_prog`` (no drift, no
      read noise), so the conductance jumps between t = 0 and t > 0, as in aihwkit;
    * ``log10`` is taken of ``max(g_drift, 1e-7)`` and its magnitude is used, so the read
      noise stays defined when ``g_min`` is set near 0 (for the default range, 9 µS and up,
      this changes nothing);
    * programmed conductances are also clamped to ``[g_min, g_max]``.

    Defaults: ``acceptance=0.2`` (aihwkit's default 2e-2 is not one of its keys and falls back
    to the smallest key, 0.2), ``g_min = 9.0`` and ``g_max = 88.2`` µS, the defaults of aihwkit's
    ``SingleDeviceConductanceConverter`` (``src/aihwkit/inference/converter/conductance.py``:
    ``9.0`` and ``88.199997``, the float32 value of 88.2) that ``ReRamCMONoiseModel`` uses when
    no range is given. Default mapping: single device.
    """

    name: ClassVar[str] = "ibm_cmo_reram"
    default_mapping: ClassVar[str] = "single"
    state_keys: ClassVar[tuple[str, ...]] = ("g_prog", "z_drift", "z_read")

    def __init__(self, *, acceptance: float = 0.2, drift_scale: float = 1.0, g_min: float = 9.0,
                 g_max: float = 88.2, prog_noise_scale: float = 1.0, read_noise_scale: float = 1.0) -> None:
        super().__init__(g_min=g_min, g_max=g_max, drift_scale=drift_scale)
        acceptance = _number("acceptance", acceptance)
        if acceptance not in PROG_COEFFS:
            raise RramlibError(f"acceptance must be one of {sorted(PROG_COEFFS)} (percent), got {acceptance!r}")
        self.acceptance = acceptance
        self.prog_noise_scale = check_positive("prog_noise_scale", _number("prog_noise_scale", prog_noise_scale),
                                               allow_zero=True)
        self.read_noise_scale = check_positive("read_noise_scale", _number("read_noise_scale", read_noise_scale),
                                               allow_zero=True)

    # ------------------------------------------------------------------ formulas
    def programming_sigma(self, g: Tensor | float) -> Tensor | float:
        """Programming noise sigma (µS) at target ``g``: ``c0 + c1 g`` (before ``prog_noise_scale``)."""
        c0, c1 = PROG_COEFFS[self.acceptance]
        return c0 + c1 * g

    @staticmethod
    def effective_time(t: float) -> float:
        """The time the fits are evaluated at: ``max(t, 1 s)`` for t > 0."""
        return max(t, T_MIN_S)

    def drift_mean(self, t: float) -> float:
        """Mean conductance shift (µS) at ``t > 0``, times ``drift_scale``."""
        return self.drift_scale * DRIFT_MEAN_SLOPE * math.log(self.effective_time(t))

    def drift_sigma(self, t: float) -> float:
        """Spread (µS) of the relaxation at ``t > 0``, times ``drift_scale``."""
        return self.drift_scale * (DRIFT_STD_SLOPE * math.log(self.effective_time(t)) + DRIFT_STD_OFFSET)

    def read_factor(self, t: float) -> float:
        """``read_noise_scale * K * sqrt(ln((t + t_read) / (2 t_read)))``; times ``|log10 g|`` gives sigma_read."""
        te = self.effective_time(t)
        return self.read_noise_scale * READ_K * math.sqrt(math.log((te + T_READ_S) / (2 * T_READ_S)))

    def params(self) -> dict:
        return {"acceptance": self.acceptance, **self._base_params(),
                "prog_noise_scale": self.prog_noise_scale, "read_noise_scale": self.read_noise_scale}

    # ------------------------------------------------------------------ hooks
    def _program(self, g_target: Tensor, generator: torch.Generator) -> dict[str, Tensor]:
        z_prog = self._normal(generator, g_target)
        z_drift = self._normal(generator, g_target)
        z_read = self._normal(generator, g_target)
        sigma = self.prog_noise_scale * self.programming_sigma(g_target)
        g_prog = (g_target + sigma * z_prog).clamp_(self.g_min, self.g_max)
        return {"g_prog": g_prog, "z_drift": z_drift, "z_read": z_read}

    def _at(self, state: dict[str, Tensor], t: float) -> Tensor:
        g_drift = (state["g_prog"] + self.drift_mean(t)).add_(state["z_drift"], alpha=self.drift_sigma(t))
        # log10 via the natural log: torch's CPU log10 kernel is ~10x slower than log here
        log_g = g_drift.clamp(min=_G_LOG_FLOOR).log_().mul_(1 / math.log(10)).abs_()
        g = torch.addcmul(g_drift, log_g, state["z_read"], value=self.read_factor(t))
        return g.clamp_(self.g_min, self.g_max)
