"""One seeding scheme for every random stream in rramlib, and the two disjoint ranges of chip numbers.

Two kinds of randomness, two rules:

* **A chip** is programmed from ``torch.Generator().manual_seed(chip)``: the chip number *is* its seed
  (see :class:`~rramlib.device.analog.AnalogModel`). Chip numbers lie in ``[0, 2**63)``.
* **Every other stream** that one seed must feed several times (per drift level, per layer, per epoch and
  sample, per purpose) is derived with :func:`derive_seed` from ``(root seed, purpose, *keys)`` through
  numpy's :class:`~numpy.random.SeedSequence` (O'Neill's seed-sequence hashing, numpy's recommended way
  to spawn independent streams). A purpose is a name registered in :data:`PURPOSES` with a fixed number,
  so that a stream keeps its seed when purposes are added. Derived seeds lie in ``[2**63, 2**64)``, so a
  derived stream never starts from a chip's seed.

A single seed that feeds a single stream (a method's probe vectors, the base model's initialisation) is
used as it is.

Chips: training and calibration use chip numbers ``0 .. n-1`` (:func:`train_chips`), evaluation uses
``EVAL_CHIP_BASE + i`` (:func:`eval_chips`) and hyper-parameter selection ``VALIDATION_CHIP_BASE + i``
(:func:`validation_chips`); the functions refuse a count that would let two ranges meet.
"""
from __future__ import annotations

import numpy as np
import torch

from rramlib.core.errors import RramlibError, check_choice

__all__ = ["EVAL_CHIP_BASE", "VALIDATION_CHIP_BASE", "PURPOSES", "SCHEME", "check_root_seed", "derive_seed", "generator", "train_chips",
           "eval_chips", "validation_chips"]

#: Name of this scheme, part of every fitted method's cache key (change it when a derivation changes).
SCHEME = "seedsequence-v1"

#: Evaluation chips are numbered from here; training and calibration chips lie below.
EVAL_CHIP_BASE = 10_000
#: Validation chips (held out from training and evaluation, for choosing hyper-parameters) are numbered from here.
VALIDATION_CHIP_BASE = 2 * EVAL_CHIP_BASE

#: Purpose name -> number in the spawn key. Append new purposes; never renumber (stream seeds would change).
PURPOSES: dict[str, int] = {
    "adapter_training": 1,    # drift-injected training of a per-level adapter: (drift level)
    "bn_recalibration": 2,    # BN statistics re-estimation: (drift level)
    "bn_finetune": 3,         # BN gamma/beta fine-tuning: (drift level)
    "offline_correction": 4,  # full-rank weight correction per drift level ("retrain"): (drift level)
    "lora_init": 5,           # LoRA/DoRA A matrix: (adapter name, layer name)
    "augment": 6,             # data augmentation: (epoch, sample index)
    "fault_sites": 7,         # bit-flip sites of a fault-sensitivity run: (group names)
    "random_weights": 8,      # a random test layer whose weight error is measured (device statistics)
    "crossbar_systematic": 10,  # per-column crossbar parts drawn at programming (root: the chip)
    "crossbar_read": 11,      # per-read crossbar output noise (root: the chip; key: read time as repr)
    "supermask_weights": 12,  # HFN signed-constant weights of a supermask layer (rramlib.nn.hidden_fold): (layer index)
    "supermask_scores": 13,   # HFN initial supermask scores of a layer (rramlib.nn.hidden_fold): (layer index)
}

_CHIP_LIMIT = 2**63
_DERIVED_BIT = 1 << 63


def check_root_seed(root: object, name: str = "seed") -> int:
    """A root seed for :func:`derive_seed`: an int in ``[0, 2**63)`` (bools rejected)."""
    if isinstance(root, bool) or not isinstance(root, (int, np.integer)) or not 0 <= int(root) < _CHIP_LIMIT:
        raise RramlibError(f"{name} must be an integer in [0, 2**63), got {root!r}")
    return int(root)


def _words(key: object) -> list[int]:
    """One key as uint32 words, prefixed by its type and length, so that key tuples map one-to-one."""
    if isinstance(key, str):
        tag, value = 1, int.from_bytes(b"\x01" + key.encode("utf-8"), "little")
    elif isinstance(key, (int, np.integer)) and not isinstance(key, bool) and int(key) >= 0:
        tag, value = 0, int(key)
    else:
        raise RramlibError(f"a seed key must be a non-negative int or a string, got {key!r}")
    words = []
    while True:
        words.append(value & 0xFFFFFFFF)
        value >>= 32
        if not value:
            break
    return [tag, len(words), *words]


def derive_seed(root: int, purpose: str, *keys: int | str) -> int:
    """The seed of stream ``(root, purpose, *keys)``: an int in ``[2**63, 2**64)`` for ``manual_seed``.

    Equal inputs give equal seeds on every platform; different inputs give independent streams
    (``SeedSequence(root, spawn_key=...)``; keys are encoded one-to-one as uint32 words).
    """
    root = check_root_seed(root)
    check_choice("seed purpose", purpose, PURPOSES)
    spawn_key = [PURPOSES[purpose]]
    for key in keys:
        spawn_key += _words(key)
    state = np.random.SeedSequence(root, spawn_key=tuple(spawn_key)).generate_state(1, dtype=np.uint64)
    return int(state[0]) | _DERIVED_BIT


def generator(root: int, purpose: str, *keys: int | str) -> torch.Generator:
    """A CPU ``torch.Generator`` seeded with :func:`derive_seed` ``(root, purpose, *keys)``."""
    return torch.Generator().manual_seed(derive_seed(root, purpose, *keys))


def _check_count(kind: str, n: object) -> int:
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or not 1 <= int(n) <= EVAL_CHIP_BASE:
        raise RramlibError(f"number of {kind} chips must be an integer in [1, {EVAL_CHIP_BASE}], got {n!r}")
    return int(n)


def train_chips(n: int) -> range:
    """Chip numbers for training and calibration: ``0 .. n-1`` (at most ``EVAL_CHIP_BASE`` chips)."""
    return range(_check_count("training", n))


def eval_chips(n: int) -> range:
    """Chip numbers for evaluation: ``EVAL_CHIP_BASE .. EVAL_CHIP_BASE + n - 1``, never a training chip."""
    return range(EVAL_CHIP_BASE, EVAL_CHIP_BASE + _check_count("evaluation", n))


def validation_chips(n: int) -> range:
    """Chip numbers for choosing hyper-parameters: ``VALIDATION_CHIP_BASE .. VALIDATION_CHIP_BASE + n - 1``,
    never a training or an evaluation chip."""
    return range(VALIDATION_CHIP_BASE, VALIDATION_CHIP_BASE + _check_count("validation", n))
