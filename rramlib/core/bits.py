"""Boolean arrays in JSON: per-image results (which test image a chip classified correctly) kept in a results file
at one bit per value.

:func:`pack_bools` gives ``{"shape": [...], "bits": <base64 of numpy.packbits of the flattened array>}``;
:func:`unpack_bools` reverses it exactly and refuses a malformed entry. A 3 x 5 x 10,000 array takes 25 kB of
text instead of the ~750 kB of a JSON list of booleans.
"""
from __future__ import annotations

import base64
import binascii
import math

import numpy as np

from rramlib.core.errors import RramlibError

__all__ = ["pack_bools", "unpack_bools"]


def pack_bools(values) -> dict:
    """A boolean array as a JSON-ready dict (shape and base64 of its packed bits, C order)."""
    array = np.asarray(values)
    if array.dtype != bool:
        raise RramlibError(f"pack_bools needs a boolean array, got dtype {array.dtype}")
    return {"shape": list(array.shape), "bits": base64.b64encode(np.packbits(array.ravel())).decode("ascii")}


def unpack_bools(entry: dict) -> np.ndarray:
    """The boolean array of :func:`pack_bools` (RramlibError for a malformed entry)."""
    try:
        shape = tuple(int(n) for n in entry["shape"])
        packed = np.frombuffer(base64.b64decode(entry["bits"], validate=True), dtype=np.uint8)
    except (KeyError, TypeError, ValueError, binascii.Error) as err:
        raise RramlibError(f"not a packed boolean array: {err}") from None
    count = math.prod(shape)
    if any(n < 0 for n in shape) or len(packed) != (count + 7) // 8:
        raise RramlibError(f"packed boolean array: {len(packed)} bytes cannot hold shape {shape}")
    return np.unpackbits(packed, count=count).astype(bool).reshape(shape)
