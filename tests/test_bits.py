"""Boolean arrays in results files (rramlib.core.bits): exact round trip, compact, malformed entries refused."""
import json

import numpy as np
import pytest

from rramlib.core.bits import pack_bools, unpack_bools
from rramlib.core.errors import RramlibError


@pytest.mark.parametrize("shape", [(0,), (1,), (7,), (8,), (9,), (3, 5, 17), (2, 0, 4)])
def test_round_trip_is_exact_through_json(shape):
    values = np.random.default_rng(sum(shape)).random(shape) < 0.3
    back = unpack_bools(json.loads(json.dumps(pack_bools(values))))
    assert back.dtype == bool and back.shape == values.shape and np.array_equal(back, values)


def test_one_bit_per_value():
    entry = pack_bools(np.ones((3, 5, 10_000), dtype=bool))
    assert len(entry["bits"]) == 4 * ((3 * 5 * 10_000 // 8 + 2) // 3)  # base64 of 18,750 bytes


@pytest.mark.parametrize("entry, pattern", [
    ({"shape": [9]}, "not a packed"), ({"shape": [9], "bits": "%%%"}, "not a packed"),
    ({"shape": [17], "bits": "AAA="}, "cannot hold"), ({"shape": [-8], "bits": "AA=="}, "cannot hold"),
    ({"shape": "x", "bits": "AA=="}, "not a packed")])
def test_malformed_entries_are_refused(entry, pattern):
    with pytest.raises(RramlibError, match=pattern):
        unpack_bools(entry)


def test_only_booleans_are_packed():
    with pytest.raises(RramlibError, match="boolean"):
        pack_bools(np.array([0, 1, 1]))
