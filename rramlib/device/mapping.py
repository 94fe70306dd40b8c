"""Weights <-> conductances (the book's "Devices and drift" chapter, section "Mapping").

A layer's weights are scaled by ``w_max = max|W|`` (per layer, or per output channel,
i.e. along dim 0) and written as conductances in ``[g_min, g_max]`` (µS):

* **differential pair** (default): two devices per weight,

  ``G+ = g_min + (g_max - g_min) * max(w, 0) / w_max``,
  ``G- = g_min + (g_max - g_min) * max(-w, 0) / w_max``,
  read back as ``W = (G+ - G-) * w_max / (g_max - g_min)``.

* **single device** (the style of aihwkit's single-device converter for the CMO ReRAM):
  one device per weight, ``[-w_max, w_max]`` mapped linearly onto ``[g_min, g_max]``, so
  ``G = g_mid + (g_max - g_min) / 2 * w / w_max`` with ``g_mid = (g_min + g_max) / 2`` and
  ``W = (G - g_mid) * 2 * w_max / (g_max - g_min)``.

Consequence: a shift common to all conductances cancels in ``G+ - G-`` but moves every
weight of a single-device mapping.

Optionally each conductance is rounded to one of ``n_conductance_states`` equally spaced values
``g_min + k * (g_max - g_min) / (n_conductance_states - 1)`` (a multi-level cell; "level" is kept for drift
levels in this package); the error is at most half a step.
"""
from __future__ import annotations

from dataclasses import dataclass
from numbers import Real

import torch
from torch import Tensor

from rramlib.core.errors import RramlibError, check_choice, check_positive, check_type

__all__ = ["Mapping", "MAPPING_KINDS"]

#: The mapping kinds; ``"differential"`` is the default.
MAPPING_KINDS = ("differential", "single")


@dataclass(frozen=True)
class Mapping:
    """How a layer's weights become conductances (µS) and back.

    Parameters
    ----------
    g_min, g_max : conductance range in µS, ``0 <= g_min < g_max``.
    kind : ``"differential"`` (two devices per weight, G+ and G-) or ``"single"``.
    per_channel : scale by ``max|W|`` of each output channel (dim 0) instead of the whole layer.
    n_conductance_states : if given (>= 2), round each conductance to that many equally spaced values in
        ``[g_min, g_max]``.
    """

    g_min: float
    g_max: float
    kind: str = "differential"
    per_channel: bool = False
    n_conductance_states: int | None = None

    def __post_init__(self) -> None:
        for name in ("g_min", "g_max"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, Real):
                raise RramlibError(f"mapping {name} must be a number of µS, got {value!r}")
        g_min = check_positive("mapping g_min", self.g_min, allow_zero=True)
        g_max = check_positive("mapping g_max", self.g_max)
        if not g_min < g_max:
            raise RramlibError(f"mapping needs g_min < g_max, got g_min={g_min!r}, g_max={g_max!r}")
        check_choice("mapping kind", self.kind, MAPPING_KINDS)
        check_type("per_channel", self.per_channel, bool)
        if self.n_conductance_states is not None:
            check_type("n_conductance_states", self.n_conductance_states, int)
            if self.n_conductance_states < 2:
                raise RramlibError("n_conductance_states must be >= 2 (or None for no quantisation), "
                                   f"got {self.n_conductance_states}")
        object.__setattr__(self, "g_min", g_min)
        object.__setattr__(self, "g_max", g_max)

    # ------------------------------------------------------------------ helpers
    @property
    def span(self) -> float:
        """``g_max - g_min`` in µS."""
        return self.g_max - self.g_min

    @property
    def devices_per_weight(self) -> int:
        """2 for a differential pair, 1 for a single device."""
        return 2 if self.kind == "differential" else 1

    @property
    def step(self) -> float | None:
        """Distance between two conductance states (None without quantisation)."""
        return None if self.n_conductance_states is None else self.span / (self.n_conductance_states - 1)

    @classmethod
    def for_drift_model(cls, drift: object, **overrides: object) -> Mapping:
        """The mapping a drift model suggests: its ``g_min``, ``g_max`` and ``default_mapping``."""
        kwargs = {"g_min": drift.g_min, "g_max": drift.g_max, "kind": drift.default_mapping}
        kwargs.update(overrides)
        return cls(**kwargs)

    def w_max_of(self, w: Tensor) -> Tensor:
        """``max|W|`` per layer (0-dim) or per output channel (shape ``(out, 1, ..., 1)``); 0 -> 1."""
        _check_weight(w, self.per_channel)
        if self.per_channel:
            a = w.detach().abs().reshape(w.shape[0], -1).amax(dim=1)
            a = a.reshape((w.shape[0],) + (1,) * (w.dim() - 1))
        else:
            a = w.detach().abs().max() if w.numel() else torch.zeros((), dtype=w.dtype, device=w.device)
        return torch.where(a > 0, a, torch.ones_like(a))

    def quantise(self, g: Tensor) -> Tensor:
        """Round conductances to the nearest of ``n_conductance_states`` values (identity without quantisation)."""
        if self.n_conductance_states is None:
            return g
        step = self.span / (self.n_conductance_states - 1)
        k = torch.round((g - self.g_min) / step).clamp(0, self.n_conductance_states - 1)
        return self.g_min + k * step

    # ------------------------------------------------------------------ mapping
    def to_conductance(self, w: Tensor) -> tuple[Tensor, Tensor]:
        """Return ``(g, w_max)``.

        differential: ``g`` has shape ``(2, *w.shape)`` = ``stack(G+, G-)``; single: ``w.shape``.
        ``w_max`` is a 0-dim tensor (per layer) or has shape ``(out, 1, ..., 1)`` (per channel);
        an all-zero layer or channel uses ``w_max = 1``. ``w_max`` is computed from the detached
        weights, so ``to_weight(*to_conductance(w))`` passes gradients straight through to ``w``.
        """
        w_max = self.w_max_of(w)
        x = w / w_max  # in [-1, 1]
        if self.kind == "differential":
            g_pos = self.g_min + self.span * x.clamp(min=0)
            g_neg = self.g_min + self.span * (-x).clamp(min=0)
            g = torch.stack([self.quantise(g_pos), self.quantise(g_neg)])
        else:
            g = self.quantise((self.g_min + self.g_max) / 2 + (self.span / 2) * x)
        return g, w_max

    def to_weight(self, g: Tensor, w_max: Tensor) -> Tensor:
        """Weights from conductances: the exact inverse of :meth:`to_conductance` (up to rounding)."""
        if not isinstance(g, Tensor) or not g.is_floating_point():
            raise RramlibError(f"conductances must be a floating-point tensor, got {type(g).__name__}")
        if not isinstance(w_max, Tensor):
            w_max = torch.as_tensor(w_max, dtype=g.dtype, device=g.device)
        if self.kind == "differential":
            if g.dim() < 1 or g.shape[0] != 2:
                raise RramlibError(
                    f"a differential mapping needs conductances of shape (2, *weight.shape), got {tuple(g.shape)}")
            return (g[0] - g[1]) * (w_max / self.span)
        return (g - (self.g_min + self.g_max) / 2) * (w_max * (2.0 / self.span))


def _check_weight(w: object, per_channel: bool) -> None:
    if not isinstance(w, Tensor) or not w.is_floating_point():
        raise RramlibError(f"weights must be a floating-point tensor, got {type(w).__name__}")
    if per_channel and w.dim() == 0:
        raise RramlibError("per_channel mapping needs a weight with an output dimension (dim 0)")
    if per_channel and w.shape[0] == 0:
        raise RramlibError("per_channel mapping got a weight with no output channel")
    if w.numel() and not bool(torch.isfinite(w).all()):
        raise RramlibError("weights contain NaN or infinity; cannot map them to conductances")
