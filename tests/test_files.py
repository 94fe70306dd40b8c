"""Atomic file writes and results files (rramlib.core.files)."""
import json

import pytest


def test_atomic_write_replaces_whole_files(tmp_path):
    from rramlib.core.files import atomic_write

    path = atomic_write(tmp_path / "sub" / "x.json", "first")
    atomic_write(path, b"\x00second")
    assert path.read_bytes() == b"\x00second"
    assert [p.name for p in path.parent.iterdir()] == ["x.json"]  # no temporary file left behind

    class Boom(bytes):
        def __bytes__(self):
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        atomic_write(path, Boom(b"never"))
    assert path.read_bytes() == b"\x00second" and len(list(path.parent.iterdir())) == 1
