"""IBM PCM-like model: programming noise, power-law drift with per-device exponent, 1/f read noise.

Source: aihwkit's ``PCMLikeNoiseModel`` (``src/aihwkit/inference/noise/pcm.py``), the statistical
model of S. R. Nandakumar et al., "Phase-change memory models for deep learning training and
inference", ICECS 2019. Equations and constants as in that file (listed in the book's "Device models"
chapter) and cross-checked against it; our code is independent of aihwkit. Included for comparison with the ReRAM presets.
"""
from __future__ import annotations

import math
from typing import ClassVar

import torch
from torch import Tensor

from rramlib.core.errors import check_positive
from rramlib.device.drift.base import DriftModel, _number

__all__ = ["IbmPcm", "PROG_COEFFS", "PROG_G_REF", "T0_S", "T_READ_S", "G_HAT_FLOOR"]

#: programming sigma polynomial in g_hat = g / g_max, µS at the reference g_max below
PROG_COEFFS = (0.26348, 1.9650, -1.1731)
#: g_max (µS) at which the programming polynomial was fitted
PROG_G_REF = 25.0
#: drift reference time t0 and read time t_read, seconds
T0_S = 20.0
T_READ_S = 250e-9
#: g_hat is clamped below at this value before taking logs
G_HAT_FLOOR = 1e-7


class IbmPcm(DriftModel):
    """IBM PCM-like model (aihwkit ``PCMLikeNoiseModel``; Nandakumar et al., ICECS 2019).

    With ``g_hat = g_target / g_max`` (clamped below at 1e-7 before logs), t in seconds:

    * programming: ``g_prog = max(g_target + s_p * sigma_p z_prog, 0)``,
      ``sigma_p = (0.26348 + 1.9650 g_hat - 1.1731 g_hat^2) * g_max / 25`` (fitted at 25 µS);
    * drift exponent per device: ``nu = |mu_nu + sigma_nu z_nu| * drift_scale`` with
      ``mu_nu = clip(-0.0155 ln g_hat + 0.0244, 0.049, 0.1)`` and
      ``sigma_nu = clip(-0.0125 ln g_hat - 0.0059, 0.008, 0.045)``;
    * drift for t > 0: ``g_drift = g_prog * ((t + t0) / t0)^(-nu)``, ``t0 = 20 s``;
    * read noise for t > 0: ``g = max(g_drift + |g_drift| * s_r * Q_s * sqrt(ln((t + t0 + t_read) /
      (2 t_read))) * z_read, 0)``, ``Q_s = min(0.0088 / max((g_prog / g_max)^0.65, 1e-3), 0.2)``,
      ``t_read = 250 ns``;
    * ``t = 0`` gives ``g_prog``.

    ``s_p = prog_noise_scale``, ``s_r = read_noise_scale`` (default 1, as in aihwkit).
    ``z_prog, z_nu, z_read`` are drawn once at programming, in that order (aihwkit redraws
    the read noise at every call; here a chip has one trajectory). The state holds
    ``nu`` and ``q_read = s_r * Q_s * z_read``.

    Defaults: ``g_min = 0``, ``g_max = 25 µS`` (the fit's reference), differential pair
    (aihwkit's default converter for this model is a single pair).
    """

    name: ClassVar[str] = "ibm_pcm"
    default_mapping: ClassVar[str] = "differential"
    state_keys: ClassVar[tuple[str, ...]] = ("g_prog", "nu", "q_read")

    def __init__(self, *, drift_scale: float = 1.0, g_min: float = 0.0, g_max: float = 25.0,
                 prog_noise_scale: float = 1.0, read_noise_scale: float = 1.0) -> None:
        super().__init__(g_min=g_min, g_max=g_max, drift_scale=drift_scale)
        self.prog_noise_scale = check_positive("prog_noise_scale", _number("prog_noise_scale", prog_noise_scale),
                                               allow_zero=True)
        self.read_noise_scale = check_positive("read_noise_scale", _number("read_noise_scale", read_noise_scale),
                                               allow_zero=True)

    # ------------------------------------------------------------------ formulas
    def programming_sigma(self, g_target: Tensor) -> Tensor:
        """Programming noise sigma (µS) at the target (before ``prog_noise_scale``)."""
        g_hat = g_target / self.g_max
        c0, c1, c2 = PROG_COEFFS
        return (c0 + c1 * g_hat + c2 * g_hat * g_hat) * (self.g_max / PROG_G_REF)

    def nu_parameters(self, g_target: Tensor) -> tuple[Tensor, Tensor]:
        """``(mu_nu, sigma_nu)`` of the drift exponent at the target (before ``drift_scale``)."""
        log_g = (g_target / self.g_max).abs().clamp(min=G_HAT_FLOOR).log()
        mu = (-0.0155 * log_g + 0.0244).clamp(0.049, 0.1)
        sigma = (-0.0125 * log_g - 0.0059).clamp(0.008, 0.045)
        return mu, sigma

    def read_q(self, g_prog: Tensor) -> Tensor:
        """``Q_s`` of the read noise at the programmed conductance."""
        g_hat = (g_prog / self.g_max).abs()
        return (0.0088 / g_hat.pow(0.65).clamp(min=1e-3)).clamp(max=0.2)

    @staticmethod
    def drift_log_factor(t: float) -> float:
        """``ln((t + t0) / t0)``: ``g_drift = g_prog * exp(-nu * this)``."""
        return math.log1p(t / T0_S)

    @staticmethod
    def read_time_factor(t: float) -> float:
        """``sqrt(ln((t + t0 + t_read) / (2 t_read)))``."""
        return math.sqrt(math.log((t + T0_S + T_READ_S) / (2 * T_READ_S)))

    def params(self) -> dict:
        return {**self._base_params(), "prog_noise_scale": self.prog_noise_scale,
                "read_noise_scale": self.read_noise_scale}

    # ------------------------------------------------------------------ hooks
    def _program(self, g_target: Tensor, generator: torch.Generator) -> dict[str, Tensor]:
        z_prog = self._normal(generator, g_target)
        z_nu = self._normal(generator, g_target)
        z_read = self._normal(generator, g_target)
        sigma = self.prog_noise_scale * self.programming_sigma(g_target)
        g_prog = (g_target + sigma * z_prog).clamp_(min=0.0)
        mu_nu, sigma_nu = self.nu_parameters(g_target)
        nu = (mu_nu + sigma_nu * z_nu).abs_() * self.drift_scale
        q_read = self.read_noise_scale * self.read_q(g_prog) * z_read
        return {"g_prog": g_prog, "nu": nu, "q_read": q_read}

    def _at(self, state: dict[str, Tensor], t: float) -> Tensor:
        g_drift = state["g_prog"] * torch.exp(state["nu"] * -self.drift_log_factor(t))
        g = torch.addcmul(g_drift, g_drift, state["q_read"], value=self.read_time_factor(t))
        return g.clamp_(min=0.0)
