import math

import pytest

from rramlib.core.errors import RramlibError
from rramlib.core.times import DAY, TIME_GRID, YEAR, format_time, parse_time


def test_grid_spans_one_second_to_ten_years():
    assert list(TIME_GRID) == ["1s", "1min", "1h", "1d", "1w", "1mo", "1y", "10y"]
    assert TIME_GRID["10y"] == 10 * 365.25 * 86400
    assert all(a < b for a, b in zip(list(TIME_GRID.values()), list(TIME_GRID.values())[1:]))


@pytest.mark.parametrize("text, seconds", [
    ("10y", 10 * YEAR), ("1d", DAY), ("30min", 1800.0), ("5", 5.0), ("2.5h", 9000.0), ("1e3s", 1000.0),
    (0, 0.0), (3.5, 3.5),
])
def test_parse_time(text, seconds):
    assert math.isclose(parse_time(text), seconds)


@pytest.mark.parametrize("bad", ["-1s", "abc", "1 parsec", "", None, True, float("nan"), -3, float("inf")])
def test_parse_time_rejects(bad):
    with pytest.raises(RramlibError):
        parse_time(bad)


def test_format_time_round_trips_grid_labels():
    for label, seconds in TIME_GRID.items():
        assert format_time(seconds) == label
        assert parse_time(label) == seconds
    assert format_time(2 * DAY) == "2d"
