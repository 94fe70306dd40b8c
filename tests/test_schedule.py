import math

import pytest
import torch

from rramlib.core.errors import RramlibError
from rramlib.methods.schedule import Schedule, greedy_windows, log_windows
from rramlib.core.times import TIME_GRID


def test_log_windows_are_equal_in_log_time():
    s = log_windows(4)
    assert s.num_levels == 4 and s.names == ["level0", "level1", "level2", "level3"]
    widths = [math.log(b / a) for a, b in zip(s.edges, s.edges[1:])]
    assert max(widths) - min(widths) < 1e-9
    assert s.edges[0] == 1.0 and s.edges[-1] == TIME_GRID["10y"]


def test_selection_at_window_edges():
    s = Schedule((1.0, 10.0, 100.0, 1000.0))
    assert [s.level_of(t) for t in (0.0, 0.5, 1.0, 9.999, 10.0, 99.0, 100.0, 999.0, 1000.0, 1e9)] == \
        [0, 0, 0, 0, 1, 1, 2, 2, 2, 2]
    assert s.name_of(10.0) == "level1"


def test_sampled_times_stay_in_window_and_are_seeded():
    s = log_windows(3)
    a = s.sample_times(1, 1000, torch.Generator().manual_seed(0))
    b = s.sample_times(1, 1000, torch.Generator().manual_seed(0))
    lo, hi = s.window(1)
    assert a == b and all(lo <= t <= hi for t in a)
    # log-uniform: the median sits at the geometric mean of the window
    assert abs(math.log(sorted(a)[500]) - 0.5 * (math.log(lo) + math.log(hi))) < 0.1 * math.log(hi / lo)


def test_greedy_windows_grow_while_within_tolerance():
    candidates = [1.0, 10.0, 100.0, 1000.0, 10000.0]
    # quality drops by 1 % per decade of window width
    quality = lambda lo, hi: -0.01 * math.log10(hi / lo)  # noqa: E731
    assert greedy_windows(quality, candidates, tolerance=0.02).edges == (1.0, 100.0, 10000.0)
    assert greedy_windows(quality, candidates, tolerance=0.0).edges == tuple(candidates)
    assert greedy_windows(quality, candidates, tolerance=1.0).edges == (1.0, 10000.0)


@pytest.mark.parametrize("edges", [(1.0,), (1.0, 1.0), (10.0, 1.0), (-1.0, 1.0)])
def test_bad_schedules(edges):
    with pytest.raises(RramlibError):
        Schedule(edges)


def test_bad_level_counts():
    for k in (0, -1, 1.5, "2"):
        with pytest.raises(RramlibError):
            log_windows(k)
