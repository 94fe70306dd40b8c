"""Drift-aware scheduling: K drift levels as K windows of time after programming.

The VeRA+ study trains one small parameter set per drift level offline and, in the
field, selects the set by elapsed time. The abstract does not give the windows; the
default here (our choice) splits [1 s, 10 years] into K windows of equal width in
log time. :func:`greedy_windows` is the ablation that grows a window while a
quality measure stays within a tolerance; the measure must be computed on held-out data
(:func:`rramlib.study.tuning.greedy_schedule` uses the validation split read through
validation chips, never the training chips a set was fitted on, the evaluation chips or
the test split), or the windows would be chosen on the numbers they are judged by.
"""
from __future__ import annotations

import bisect
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from rramlib.core.errors import RramlibError, check_time, check_type
from rramlib.core.times import TIME_GRID, format_time

__all__ = ["Schedule", "log_windows", "greedy_windows"]

T_START = TIME_GRID["1s"]
T_END = TIME_GRID["10y"]


@dataclass(frozen=True)
class Schedule:
    """Window edges ``e_0 < e_1 < ... < e_K``; level k covers ``[e_k, e_{k+1})``.

    Times before ``e_0`` use level 0 and times from ``e_K`` on use the last level.
    """

    edges: tuple[float, ...]

    def __post_init__(self):
        if len(self.edges) < 2:
            raise RramlibError("a schedule needs at least two edges (one window)")
        for e in self.edges:
            check_time(e, "window edge")
        if any(a >= b for a, b in zip(self.edges, self.edges[1:])):
            raise RramlibError(f"window edges must increase strictly, got {self.edges}")

    @property
    def num_levels(self) -> int:
        return len(self.edges) - 1

    @property
    def names(self) -> list[str]:
        return [f"level{k}" for k in range(self.num_levels)]

    def level_of(self, t: float) -> int:
        """Index of the window holding time ``t`` (seconds)."""
        t = check_time(t)
        return min(max(bisect.bisect_right(self.edges, t) - 1, 0), self.num_levels - 1)

    def name_of(self, t: float) -> str:
        return self.names[self.level_of(t)]

    def window(self, level: int) -> tuple[float, float]:
        return self.edges[level], self.edges[level + 1]

    def sample_times(self, level: int, n: int, generator: torch.Generator) -> list[float]:
        """``n`` times drawn log-uniformly from window ``level`` (drift injection during training)."""
        lo, hi = (max(e, 1e-3) for e in self.window(level))
        u = torch.rand(n, generator=generator, dtype=torch.float64)
        return [math.exp(math.log(lo) + float(v) * (math.log(hi) - math.log(lo))) for v in u]

    def describe(self) -> list[dict]:
        return [{"level": name, "start_s": lo, "end_s": hi, "start": format_time(lo), "end": format_time(hi)}
                for name, (lo, hi) in zip(self.names, map(self.window, range(self.num_levels)))]


def log_windows(k: int, start: float = T_START, end: float = T_END) -> Schedule:
    """K windows of equal width in log time between ``start`` and ``end`` (default 1 s and 10 years)."""
    check_type("number of levels", k, int)
    if k < 1:
        raise RramlibError(f"number of levels must be >= 1, got {k}")
    lo, hi = math.log(check_time(start)), math.log(check_time(end))
    if not start > 0 or not end > start:
        raise RramlibError(f"need 0 < start < end, got {start}, {end}")
    return Schedule(tuple([start] + [math.exp(lo + (hi - lo) * i / k) for i in range(1, k)] + [end]))


def greedy_windows(
    quality: Callable[[float, float], float], candidates: Sequence[float], tolerance: float
) -> Schedule:
    """Grow each window over ``candidates`` (increasing times) while ``quality(lo, hi) >= -tolerance``.

    ``quality(lo, hi)`` scores one parameter set serving the whole window (e.g. validation accuracy at ``hi``,
    on validation chips, of a set trained for ``[lo, hi)``, minus the drift-free validation accuracy); a window
    closes at the last candidate edge that still scores within ``tolerance``. Always returns at least one
    window and covers all candidates.
    """
    times = [check_time(t) for t in candidates]
    if len(times) < 2 or any(a >= b for a, b in zip(times, times[1:])):
        raise RramlibError("greedy windows need at least two strictly increasing candidate times")
    edges, i = [times[0]], 0
    while i < len(times) - 1:
        j = i + 1
        while j + 1 < len(times) and quality(times[i], times[j + 1]) >= -tolerance:
            j += 1
        edges.append(times[j])
        i = j
    return Schedule(tuple(edges))
