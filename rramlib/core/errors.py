"""One exception type for bad input, and small validators that raise it early.

Every check here runs before any heavy computation so that a user sees a single
clear message (the CLI turns :class:`RramlibError` into ``error: ...`` and exit
code 2, without a traceback).
"""
from __future__ import annotations

import math
from collections.abc import Iterable
from numbers import Real

__all__ = ["RramlibError", "check_choice", "check_time", "check_positive", "check_type", "check_int", "check_finite",
           "check_seed"]


class RramlibError(ValueError):
    """Bad input given to rramlib (unknown name, out-of-range value, malformed file ...)."""


def check_choice(kind: str, value: object, choices: Iterable[str]) -> str:
    """Return ``value`` if it is one of ``choices``, else raise naming the valid ones."""
    choices = sorted(choices)
    if not isinstance(value, str) or value not in choices:
        raise RramlibError(f"unknown {kind} {value!r}; choose one of: {', '.join(choices)}")
    return value


def check_type(name: str, value: object, types: type | tuple[type, ...]) -> object:
    """Raise if ``value`` is not an instance of ``types`` (bools are not numbers here)."""
    if isinstance(value, bool) and bool not in (types if isinstance(types, tuple) else (types,)):
        raise RramlibError(f"{name} must be {_type_names(types)}, got bool {value!r}")
    if not isinstance(value, types):
        raise RramlibError(f"{name} must be {_type_names(types)}, got {type(value).__name__} {value!r}")
    return value


def check_time(t: object, name: str = "time") -> float:
    """A time in seconds: a finite, non-negative real number."""
    if isinstance(t, bool) or not isinstance(t, Real):
        raise RramlibError(f"{name} must be a number of seconds, got {type(t).__name__} {t!r}")
    t = float(t)
    if not math.isfinite(t) or t < 0:
        raise RramlibError(f"{name} must be a finite number of seconds >= 0, got {t!r}")
    return t


def check_positive(name: str, value: object, allow_zero: bool = False) -> float:
    """A finite real number > 0 (or >= 0 with ``allow_zero``)."""
    if isinstance(value, bool) or not isinstance(value, Real) or not math.isfinite(float(value)):
        raise RramlibError(f"{name} must be a finite number, got {value!r}")
    value = float(value)
    if value < 0 or (value == 0 and not allow_zero):
        raise RramlibError(f"{name} must be {'>= 0' if allow_zero else '> 0'}, got {value!r}")
    return value


def check_int(name: str, value: object, minimum: int | None = None) -> int:
    """A Python int (bools rejected), optionally ``>= minimum``."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise RramlibError(f"{name} must be an integer, got {type(value).__name__} {value!r}")
    if minimum is not None and value < minimum:
        raise RramlibError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return value


def check_finite(name: str, value: object) -> float:
    """A finite real number (bools rejected)."""
    if isinstance(value, bool) or not isinstance(value, Real) or not math.isfinite(float(value)):
        raise RramlibError(f"{name} must be a finite number, got {value!r}")
    return float(value)


def check_seed(name: str, value: object) -> int:
    """A seed for ``torch.Generator.manual_seed``: an int in [0, 2**64) (bools rejected)."""
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 2**64:
        raise RramlibError(f"{name} must be an integer in [0, 2**64), got {value!r}")
    return value


def _type_names(types: type | tuple[type, ...]) -> str:
    types = types if isinstance(types, tuple) else (types,)
    return " or ".join(t.__name__ for t in types)
