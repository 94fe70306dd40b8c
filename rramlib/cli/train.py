"""``rramlib train``: train a profile's base model into the results cache, in one process or data-parallel.

    rramlib train --profile quick [--epochs E] [--precision bf16] [--cache-dir DIR] ...
    torchrun --nproc-per-node N -m rramlib train --profile paper ...     # DistributedDataParallel

Started by torchrun (``RANK`` and ``WORLD_SIZE`` set), the command trains with :func:`rramlib.nn.ddp.train_ddp`;
otherwise with :func:`rramlib.study.base_model.train_base_model`. Both start the same way (:func:`start`) and
store the model under the same key (:func:`rramlib.study.base_model.model_key`), so sweeps and notebooks of the
profile read it from the cache. Both write a checkpoint after every epoch
(:func:`rramlib.study.base_model.checkpoint_path`): run the same command again after an interruption and the
training continues after the last finished epoch. Before training, the command copies into the cache what the
profile's record ships (:func:`restore_shipped`): a fresh checkout trains only the base models it lacks.
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import sys

import torch

from rramlib.core.cache import Cache, default_cache_dir
from rramlib.core.config import add_config_option
from rramlib.core.errors import check_int
from rramlib.core.torchutil import resolve_device
from rramlib.nn.train import TrainConfig
from rramlib.study import recorded
from rramlib.study.base_model import checkpoint_path, model_key, train_base_model
from rramlib.study.experiments import SweepConfig
from rramlib.study.profiles import Profile, get_profile
from rramlib.nn.data import load_dataset
from rramlib.nn.ddp import train_ddp
from rramlib.nn.models import build_model

__all__ = ["add_train_arguments", "profile_overrides", "restore_shipped", "start", "train_command", "under_torchrun"]


def add_train_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``rramlib train``: the profile and what may override it (help and accepted values from the
    config fields, :func:`rramlib.core.config.add_config_option`)."""
    add_config_option(parser, "--profile", SweepConfig, "profile")
    add_config_option(parser, "--dataset", Profile, "dataset", default=None, unset="the profile's")
    add_config_option(parser, "--model", Profile, "model", default=None, unset="the profile's")
    add_config_option(parser, "--epochs", TrainConfig, "epochs", default=None, unset="the profile's", type=int)
    add_config_option(parser, "--precision", TrainConfig, "precision", default=None, unset="the profile's")
    add_config_option(parser, "--device", Profile, "device", default=None, unset="the profile's")
    parser.add_argument("--base-seed", type=int, action="append", default=None, dest="base_seeds",
                        help="train the base model of this seed only (repeatable; default: every one of the "
                             "profile's base_seeds, one after the other)")
    parser.add_argument("--data-root", default=None, help="folder holding the dataset (CIFAR, ImageFolder)")
    parser.add_argument("--download", action="store_true", help="download the dataset into --data-root")
    parser.add_argument("--num-workers", type=int, default=0, help="DataLoader worker processes per training process")
    parser.add_argument("--cache-dir", default=None, help="results cache (default: $RRAMLIB_CACHE or .rramlib_cache)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def profile_overrides(args: argparse.Namespace) -> dict:
    """The profile fields that ``--dataset``, ``--model``, ``--device``, ``--epochs`` and ``--precision`` (where
    the command has it) replace."""
    overrides = {k: v for k, v in {"dataset": args.dataset, "model": args.model, "device": args.device}.items()
                 if v is not None}
    train = {k: v for k, v in {"epochs": args.epochs, "precision": getattr(args, "precision", None)}.items()
             if v is not None}
    if train:
        overrides["train"] = dataclasses.replace(get_profile(args.profile).train, **train)
    return overrides


def under_torchrun() -> bool:
    """Whether this process was started by torchrun (its rank and world size in the environment)."""
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ


def start(args: argparse.Namespace) -> tuple[Profile, torch.device, Cache]:
    """The profile, device and results cache of ``args`` (the options of :func:`add_train_arguments`), every input
    checked before any work. Under torchrun a GPU device is this process's (``LOCAL_RANK``)."""
    check_int("--num-workers", args.num_workers, 0)
    profile = get_profile(args.profile, **profile_overrides(args))
    for seed in getattr(args, "base_seeds", None) or ():
        profile.with_base_seed(seed)  # checks the seed
    device = resolve_device(profile.device)
    if device.type == "cuda" and under_torchrun():
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
        torch.cuda.set_device(device)
    return profile, device, Cache(args.cache_dir or default_cache_dir())


def restore_shipped(profile: Profile, cache: Cache) -> None:
    """Copy what the record of ``profile`` ships into ``cache`` (:func:`rramlib.study.recorded.restore_models`:
    trained base models, checkpoints of unfinished ones), so that a fresh checkout trains only what is missing;
    prints what was copied and why a shipped model was not."""
    if cache.root is None or os.environ.get("RANK", "0") != "0":
        return
    restored = recorded.restore_models(profile.name, cache.root)
    for line in restored.lines(profile.name):
        print(line, file=sys.stderr)


def train_command(args: argparse.Namespace) -> int:
    """``rramlib train``: data-parallel under torchrun, else in this process; prints where the model is. First
    copies in the base models (and training checkpoints) the profile's record ships (:func:`restore_shipped`)."""
    profile, device, cache = start(args)
    restore_shipped(profile, cache)
    for seed in args.base_seeds or profile.base_seeds:
        seeded = profile.with_base_seed(seed)
        if under_torchrun():
            _train_data_parallel(args, seeded, device, cache)
            continue
        base = train_base_model(seeded, data_root=args.data_root, download=args.download, cache=cache,
                                progress=not args.quiet, num_workers=args.num_workers)
        print(f"base model {seeded.model} (base seed {seed}) on {seeded.dataset}: drift-free test accuracy "
              f"{base.accuracy:.4f}; cached in {cache.path('model', base.key)}")
    return 0


def _train_data_parallel(args: argparse.Namespace, profile: Profile, device: torch.device, cache: Cache) -> int:
    """Train the base model in this torchrun process; rank 0 stores it in the cache under
    :func:`rramlib.study.base_model.model_key` and prints its drift-free accuracy."""
    import torch.distributed as dist


    dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    try:
        rank = dist.get_rank()
        for turn in (0, 1):  # rank 0 first, so that only it downloads (and decodes image files into the cache)
            if (rank == 0) == (turn == 0):
                splits = load_dataset(profile.dataset, args.data_root, download=args.download and rank == 0,
                                      seed=profile.data_seed, n_calib=profile.n_calib, n_test=profile.n_test,
                                      cache=cache)
            dist.barrier()
        key = model_key(profile, splits)
        cached = [rank == 0 and cache.load("model", key) is not None]
        dist.broadcast_object_list(cached, src=0)
        if not cached[0]:
            model = build_model(profile.model, num_classes=splits.num_classes, in_channels=splits.in_channels,
                                seed=profile.model_seed)
            checkpoint = checkpoint_path(cache, key)
            history = train_ddp(model, splits, profile.train, device=device, progress=not args.quiet,
                                num_workers=args.num_workers, checkpoint=checkpoint)
            if rank == 0:
                history["wall_seconds"] = sum(history["epoch_seconds"])
                state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
                cache.save("model", key, {"state_dict": state, "history": history})
                if checkpoint is not None:
                    checkpoint.unlink(missing_ok=True)
        dist.barrier()
        if rank == 0:
            base = train_base_model(profile, data_root=args.data_root, cache=cache, progress=False)
            where = cache.path("model", key) if cache.root is not None else "(no cache)"
            print(f"base model {profile.model} on {profile.dataset}: drift-free test accuracy {base.accuracy:.4f}; "
                  f"{'found in' if cached[0] else 'trained into'} {where}")
    finally:
        dist.destroy_process_group()
    return 0
