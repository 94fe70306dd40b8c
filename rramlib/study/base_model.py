"""The trained base model: a profile's data, network and training, cached as one entry (kind ``"model"``).

Kept in a module of its own so that the model's cache key covers exactly the code that makes it -- from loading
the data and building the network to the last optimiser step (this module and what it imports:
:mod:`rramlib.nn.data`, :mod:`rramlib.nn.models`, :mod:`rramlib.nn.train`, :mod:`rramlib.nn.evaluate` and the
core helpers; :data:`rramlib.core.cache.KINDS`) -- and nothing else: the hour-long study-scale training survives
edits of the methods, the sweeps or the book, and an edit of its seed handling or of the training call here
trains it again.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from rramlib.core.cache import Cache, config_hash
from rramlib.core.torchutil import resolve_device
from rramlib.nn.data import DatasetSplits, as_tensors, load_dataset
from rramlib.nn.evaluate import accuracy
from rramlib.nn.models import build_model
from rramlib.nn.train import train

if TYPE_CHECKING:  # a type only: the profiles (and the methods they check) are not part of the model's code
    from rramlib.study.profiles import Profile

__all__ = ["BaseModel", "checkpoint_path", "model_config", "model_key", "device_test_set", "train_base_model"]


@dataclass
class BaseModel:
    """A trained software model with its data and its drift-free test accuracy."""

    model: torch.nn.Module
    splits: DatasetSplits
    accuracy: float
    history: dict
    key: str


def model_config(profile: Profile, splits: DatasetSplits) -> dict:
    """What a profile's trained base model is cached under (with the code of this module): data, model,
    seeds and training, and for a dataset read from a lossy re-encoding (``splits``' source) which pixels it holds.
    :func:`train_base_model` and :mod:`rramlib.nn.ddp` (the same model trained data-parallel) share it."""
    config = {
        "dataset": profile.dataset, "model": profile.model, "data_seed": profile.data_seed,
        "model_seed": profile.model_seed, "n_calib": profile.n_calib,
        "train": dataclasses.asdict(profile.train),
    }
    source = splits.info.get("source", {})
    if source.get("format", "python pickles") != "python pickles":  # same name, other pixels (a lossy re-encoding)
        config["data_source"] = source.get("file_list_sha256", source["format"])
    return config


def model_key(profile: Profile, splits: DatasetSplits) -> str:
    """The cache key (kind ``"model"``) of the profile's trained base model: :func:`model_config`, the code of
    this module (with what it imports) and the numeric environment (:func:`rramlib.core.cache.config_hash`)."""
    return config_hash(model_config(profile, splits), "model")


def checkpoint_path(cache: Cache, key: str) -> Path | None:
    """Where the training of the model entry ``key`` keeps its state between epochs (next to the entry, in the
    cache's ``model`` folder; a suffix other than the entries' ``.pt``); None for a disabled cache."""
    return None if cache.root is None else cache.path("model", key).with_suffix(".ckpt")


def train_base_model(
    profile: Profile, *, data_root: str | None = None, download: bool = False,
    cache: Cache | None = None, progress: bool = True, num_workers: int = 0,
) -> BaseModel:
    """Load the profile's data and train (or load from the cache) its base model.

    The training writes its state after every epoch to :func:`checkpoint_path`, so a call after an interruption
    continues from the last finished epoch (the same weights as an uninterrupted run; ``history["wall_seconds"]``
    sums the epochs' wall times over all calls); the checkpoint is deleted once the model entry is stored.
    ``num_workers``: DataLoader worker processes for training (the result does not depend on it)."""
    cache = cache or Cache(None)
    device = resolve_device(profile.device)
    splits = load_dataset(profile.dataset, data_root, download=download, seed=profile.data_seed,
                          n_calib=profile.n_calib, n_test=profile.n_test, cache=cache)
    config = model_config(profile, splits)
    model = build_model(profile.model, num_classes=splits.num_classes, in_channels=splits.in_channels,
                        seed=profile.model_seed)

    checkpoint = checkpoint_path(cache, config_hash(config, "model"))

    def fit() -> dict:
        history = train(model, splits, profile.train, progress=progress, device=str(device), num_workers=num_workers,
                        checkpoint=checkpoint)
        history["wall_seconds"] = sum(history["epoch_seconds"])
        return {"state_dict": {k: v.cpu() for k, v in model.state_dict().items()}, "history": history}

    entry = cache.get_or_compute("model", config, fit)
    if checkpoint is not None:  # the entry is stored: the training state is no longer needed
        checkpoint.unlink(missing_ok=True)
    model.load_state_dict(entry["state_dict"])
    model.to(device).eval()
    acc = accuracy(model, device_test_set(splits, device), device=str(device))
    return BaseModel(model, splits, acc, entry["history"], config_hash(config, "model"))


def device_test_set(splits: DatasetSplits, device: torch.device):
    """The test split's inputs and labels on ``device``."""
    x, y = as_tensors(splits.test)
    return x.to(device), y.to(device)
