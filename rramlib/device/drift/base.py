"""The common shape of every drift model: programming (random, once) and drift at t (deterministic).

The split follows aihwkit's noise models (programming noise, drift coefficients, drift
at t), with one difference that matters for the study: *all* per-device
randomness -- programming noise, drift exponents and the standard normals that aihwkit
redraws at every read -- is drawn once in :meth:`DriftModel.program` from an explicit
:class:`torch.Generator`. The returned state is one chip; :meth:`DriftModel.conductance`
then gives that chip at any time ``t`` with a few elementwise operations and no RNG,
so ``conductance(state, t1)`` and ``conductance(state, t2)`` are one trajectory, and
two seeds are two chips.

Conventions shared by all presets:

* conductances in µS, times in seconds after programming;
* the state is a dict of float32 tensors of the target's shape; it always holds
  ``"g_prog"``, the conductances right after programming (= ``conductance(state, 0)``);
* random draws are made on the generator's device (normally the CPU) in a documented
  order and then moved to the target's device, so a seed gives the same chip on any
  device;
* :meth:`DriftModel.params` returns the constructor arguments (JSON-serialisable), so
  ``make_drift_model(m.name, **m.params())`` rebuilds ``m``.
"""
from __future__ import annotations

import abc
from numbers import Real
from typing import ClassVar

import torch
from torch import Tensor

from rramlib.core.errors import RramlibError, check_positive, check_time
from rramlib.device.mapping import Mapping

__all__ = ["DriftModel"]


class DriftModel(abc.ABC):
    """Base class of the device presets (see :mod:`rramlib.device.drift`)."""

    #: preset name, the key in :data:`rramlib.device.drift.PRESETS`
    name: ClassVar[str]
    #: the mapping the preset is meant for: ``"differential"`` or ``"single"``
    default_mapping: ClassVar[str]
    #: names of the tensors in a programmed state
    state_keys: ClassVar[tuple[str, ...]]

    def __init__(self, *, g_min: float, g_max: float, drift_scale: float = 1.0) -> None:
        self.g_min = _number("g_min", g_min)
        self.g_max = _number("g_max", g_max)
        check_positive("g_min", self.g_min, allow_zero=True)
        check_positive("g_max", self.g_max)
        if not self.g_min < self.g_max:
            raise RramlibError(f"{self.name}: need g_min < g_max, got g_min={self.g_min!r}, g_max={self.g_max!r}")
        self.drift_scale = check_positive("drift_scale", _number("drift_scale", drift_scale), allow_zero=True)

    # ------------------------------------------------------------------ public API
    def program(self, g_target: Tensor, generator: torch.Generator) -> dict[str, Tensor]:
        """Program target conductances (µS) once: draws all per-device randomness.

        Returns the device state, float32 tensors of ``g_target``'s shape and device.
        """
        if not isinstance(g_target, Tensor) or not g_target.is_floating_point():
            raise RramlibError(f"g_target must be a floating-point tensor of µS, got {type(g_target).__name__}")
        if not isinstance(generator, torch.Generator):
            raise RramlibError(f"generator must be a torch.Generator, got {type(generator).__name__}")
        g_target = g_target.detach().to(torch.float32)
        if g_target.numel() and not bool(torch.isfinite(g_target).all()):
            raise RramlibError("g_target contains NaN or infinity")
        with torch.no_grad():
            state = self._program(g_target, generator)
        return {k: v.to(torch.float32).contiguous() for k, v in state.items()}

    def conductance(self, state: dict[str, Tensor], t: float) -> Tensor:
        """Conductances (µS) ``t`` seconds after programming; no randomness inside.

        The same state and ``t`` give bit-identical output; ``t = 0`` gives ``state["g_prog"]``.
        """
        t = check_time(t)
        if not isinstance(state, dict) or any(k not in state for k in self.state_keys):
            raise RramlibError(
                f"{self.name}: a device state must be the dict returned by program() with keys {self.state_keys}")
        if t == 0.0:
            return state["g_prog"].clone()
        with torch.no_grad():
            return self._at(state, t)

    @abc.abstractmethod
    def params(self) -> dict:
        """The preset's parameters (constructor arguments), JSON-serialisable."""

    def mapping(self, **overrides: object):
        """The :class:`~rramlib.device.mapping.Mapping` this preset suggests (its range and default kind)."""
        return Mapping.for_drift_model(self, **overrides)

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.params().items())
        return f"{type(self).__name__}({args})"

    # ------------------------------------------------------------------ hooks
    @abc.abstractmethod
    def _program(self, g_target: Tensor, generator: torch.Generator) -> dict[str, Tensor]:
        """Draw the per-device randomness for float32 ``g_target``; return the state."""

    @abc.abstractmethod
    def _at(self, state: dict[str, Tensor], t: float) -> Tensor:
        """Conductances at ``t > 0`` (already validated)."""

    # ------------------------------------------------------------------ helpers
    @staticmethod
    def _normal(generator: torch.Generator, like: Tensor) -> Tensor:
        """Standard normals of ``like``'s shape, drawn on the generator's device, moved to ``like``'s."""
        z = torch.randn(like.shape, generator=generator, dtype=torch.float32, device=generator.device)
        return z.to(like.device)

    def _base_params(self) -> dict:
        return {"g_min": self.g_min, "g_max": self.g_max, "drift_scale": self.drift_scale}


def _number(name: str, value: object) -> float:
    """A real number (not bool) as float, else RramlibError."""
    if isinstance(value, bool) or not isinstance(value, Real):
        raise RramlibError(f"{name} must be a number, got {type(value).__name__} {value!r}")
    return float(value)
