"""Process-level I/O helpers: atomic file writes (the one place where rramlib replaces a file on disk) and
temporary environment variables for the processes a block starts.

The data go to a temporary file in the target's folder, are flushed and fsync'ed, and the temporary file
is renamed over the target (``os.replace``, atomic on POSIX and Windows): a reader sees the old file or
the new one, never a partial one, and an interrupted write leaves only the old file.
"""
from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterable, Iterator, Mapping
import json
from pathlib import Path

from rramlib.core.errors import RramlibError

__all__ = ["atomic_write", "load_results", "temporary_environ"]


def atomic_write(path: str | os.PathLike, data: bytes | str, *, encoding: str = "utf-8") -> Path:
    """Write ``data`` (bytes, or text encoded with ``encoding``) to ``path`` atomically; returns the path.

    The parent folder is created if needed.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = data.encode(encoding) if isinstance(data, str) else bytes(data)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(payload)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


@contextlib.contextmanager
def temporary_environ(updates: Mapping[str, str], remove: Iterable[str] = (),
                      keep: Iterable[str] = ()) -> Iterator[None]:
    """Set ``updates`` and unset ``remove`` in ``os.environ`` inside the block (for the processes it
    starts: notebook kernels, Dask workers), then restore every variable exactly as it was; ``keep``: variables
    left as they are inside the block but restored too (against code in the block that sets them)."""
    saved = {k: os.environ.get(k) for k in [*updates, *remove, *keep]}
    try:
        os.environ.update(updates)
        for k in remove:
            os.environ.pop(k, None)
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def load_results(out_dir: str | os.PathLike, notebook: str) -> dict:
    """Read a notebook's results file ``<out_dir>/<notebook>.json``, as :class:`rramlib.present.report.Report`
    writes it (the claims page and the runtime table gather them)."""
    path = Path(out_dir) / f"{notebook}.json"
    if not path.exists():
        raise RramlibError(f"no results for notebook {notebook!r} in {str(out_dir)!r}; run it first")
    return json.loads(path.read_text())
