"""A content-addressed store for trained models and sweep results.

An entry's key is the SHA-256 of the canonical JSON of its configuration plus the
package version, so a changed parameter (or a new rramlib) never reads a stale
result. Each entry is one file, ``<kind>/<key>.pt``, holding a header line with
the SHA-256 of the payload followed by the payload (``torch.save`` bytes). Files
are written to a temporary name in the same folder and renamed into place
(atomic on POSIX), so an interrupted run leaves no entry at all; an entry whose
checksum does not match (truncated, corrupted) is discarded and recomputed.
"""
from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from . import __version__

__all__ = ["Cache", "config_hash", "default_cache_dir"]

log = logging.getLogger(__name__)
_MAGIC = b"rramlib-cache-v1 "


def _canonical(obj: Any) -> Any:
    """JSON-ready form of a config: tuples become lists, paths strings, floats exact."""
    if isinstance(obj, dict):
        return {str(k): _canonical(v) for k, v in sorted(obj.items(), key=lambda kv: str(kv[0]))}
    if isinstance(obj, (list, tuple)):
        return [_canonical(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, float):
        return float.hex(obj)  # exact and stable across platforms
    if obj is None or isinstance(obj, (bool, int, str)):
        return obj
    raise TypeError(f"cannot hash config value of type {type(obj).__name__}: {obj!r}")


def config_hash(config: dict, *, version: str = __version__) -> str:
    """SHA-256 (hex) of a configuration dict together with the package version."""
    text = json.dumps({"config": _canonical(config), "version": version}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()


def default_cache_dir() -> Path:
    """``$RRAMLIB_CACHE`` if set, else ``.rramlib_cache`` in the working directory."""
    return Path(os.environ.get("RRAMLIB_CACHE", ".rramlib_cache"))


class Cache:
    """Content-addressed results store. ``Cache(None)`` disables caching (always computes)."""

    def __init__(self, root: str | os.PathLike | None = None):
        self.root = None if root is None else Path(root)
        self.hits = 0
        self.misses = 0

    def path(self, kind: str, key: str) -> Path:
        return self.root / kind / f"{key}.pt"

    def load(self, kind: str, key: str) -> Any | None:
        """The stored object, or None when absent or unreadable (an unreadable file is removed)."""
        if self.root is None:
            return None
        path = self.path(kind, key)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return None
        try:
            header, payload = data.split(b"\n", 1)
            if not header.startswith(_MAGIC) or header[len(_MAGIC):].decode() != hashlib.sha256(payload).hexdigest():
                raise ValueError("checksum mismatch")
            return torch.load(io.BytesIO(payload), weights_only=True)
        except Exception as exc:  # a damaged entry is never used
            log.warning("discarding damaged cache entry %s (%s)", path, exc)
            path.unlink(missing_ok=True)
            return None

    def save(self, kind: str, key: str, obj: Any) -> None:
        """Store ``obj`` atomically (temporary file, fsync, rename)."""
        if self.root is None:
            return
        buffer = io.BytesIO()
        torch.save(obj, buffer)
        payload = buffer.getvalue()
        header = _MAGIC + hashlib.sha256(payload).hexdigest().encode() + b"\n"
        folder = self.root / kind
        folder.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{key}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(header)
                f.write(payload)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path(kind, key))
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def get_or_compute(self, kind: str, config: dict, compute: Callable[[], Any]) -> Any:
        """Return the cached result for ``config`` or compute, store and return it."""
        key = config_hash(config)
        obj = self.load(kind, key)
        if obj is not None:
            self.hits += 1
            return obj
        self.misses += 1
        obj = compute()
        self.save(kind, key, obj)
        return obj
