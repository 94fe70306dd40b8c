"""The time grid of the study (1 s ... 10 years) and parsing of human time strings.

Times are seconds after programming throughout rramlib.
"""
from __future__ import annotations

import re

from rramlib.core.errors import RramlibError, check_time

__all__ = ["SECOND", "MINUTE", "HOUR", "DAY", "WEEK", "MONTH", "YEAR", "TIME_GRID", "parse_time", "format_time"]

SECOND = 1.0
MINUTE = 60.0
HOUR = 3600.0
DAY = 86400.0
WEEK = 7 * DAY
YEAR = 365.25 * DAY
MONTH = YEAR / 12

#: The study's evaluation grid, label -> seconds: one second to ten years (book/devices.md).
TIME_GRID: dict[str, float] = {
    "1s": SECOND,
    "1min": MINUTE,
    "1h": HOUR,
    "1d": DAY,
    "1w": WEEK,
    "1mo": MONTH,
    "1y": YEAR,
    "10y": 10 * YEAR,
}

_UNITS = {"s": SECOND, "min": MINUTE, "h": HOUR, "d": DAY, "w": WEEK, "mo": MONTH, "y": YEAR}
_PATTERN = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:e[+-]?[0-9]+)?)\s*(s|min|h|d|w|mo|y)?\s*$", re.IGNORECASE)


def parse_time(value: object) -> float:
    """Seconds from a number or a string such as ``"10y"``, ``"1d"``, ``"30min"``, ``"5"``."""
    if isinstance(value, str):
        match = _PATTERN.match(value)
        if not match:
            raise RramlibError(
                f"cannot read time {value!r}: use seconds or a number with one of the units "
                f"{', '.join(_UNITS)} (e.g. '10y')"
            )
        number, unit = match.groups()
        return check_time(float(number) * _UNITS[(unit or "s").lower()], name=f"time {value!r}")
    return check_time(value)


def format_time(seconds: float) -> str:
    """Short label for a time in seconds: the grid label when it is on the grid, else the best unit."""
    for label, value in TIME_GRID.items():
        if abs(seconds - value) <= 1e-9 * value:
            return label
    if seconds == 0:
        return "0s"
    for unit in ("y", "mo", "w", "d", "h", "min", "s"):
        if seconds >= _UNITS[unit]:
            return f"{seconds / _UNITS[unit]:.3g}{unit}"
    return f"{seconds:.3g}s"
