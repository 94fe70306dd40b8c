"""Train a profile's base network data-parallel with PyTorch's DistributedDataParallel (DDP).

    torchrun --nproc-per-node N -m rramlib train --profile paper [--epochs E] [--cache-dir DIR] ...
    torchrun --nproc-per-node N -m rramlib.nn.ddp --profile paper ...      # the same

(``rramlib train`` without torchrun trains in one process.)

Every process trains on its share of each global batch; DDP averages the gradients, so the run follows
:func:`rramlib.nn.train.train` step for step on the profile's global batch (``TrainConfig.batch_size``):
the same batch order (from :func:`rramlib.nn.data.make_loader` with the same seed), the same SGD with
Nesterov momentum and per-step cosine learning rate, the same per-sample augmentation streams. Only the
order of floating-point sums differs, so losses and weights agree within float tolerance, not bit for bit.
BatchNorm normalises with the statistics of the whole global batch: ``torch.nn.SyncBatchNorm`` on GPUs,
and on the CPU (where torch offers no SyncBatchNorm) :class:`GlobalBatchNorm`, which all-reduces the
per-process sums the same way. Dropout masks would differ from a single-process run (each process draws
its own); the profiles' networks have none.

Backends: NCCL when the profile's device is a GPU (one GPU per process, ``LOCAL_RANK``), gloo on the CPU.
The trained model is stored in the results cache under the key :func:`rramlib.study.experiments.train_base_model`
uses for the profile (:func:`rramlib.study.experiments.model_key`), so sweeps and notebooks that ask for the
profile's base model load it from there. A model already in the cache is not trained again.
"""
from __future__ import annotations

import argparse
import math
import os
import sys

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Dataset, TensorDataset
from tqdm import tqdm

from rramlib.core.errors import RramlibError

__all__ = ["GlobalBatchNorm", "train_ddp", "train_from_args", "main"]


class _AllReduceSum(torch.autograd.Function):
    """Sum of a tensor over all processes of ``group``; the gradient is summed the same way."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, group) -> torch.Tensor:
        ctx.group = group
        out = x.clone()
        dist.all_reduce(out, group=group)
        return out

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        grad = grad.clone()
        dist.all_reduce(grad, group=ctx.group)
        return grad, None


class GlobalBatchNorm(nn.modules.batchnorm._BatchNorm):
    """BatchNorm whose training statistics cover the global batch of all processes.

    The per-process sums of x and x² and the sample count are summed over processes (:class:`_AllReduceSum`),
    and the backward pass sums the statistics' gradients over processes the same way (the rule of
    ``torch.nn.SyncBatchNorm``; batch mean and variance as in Ioffe & Szegedy 2015, Alg. 1). Running statistics get the unbiased variance, as ``nn.BatchNorm`` does.
    In eval mode it is plain BatchNorm. Same parameter and buffer names as ``nn.BatchNorm2d``.
    """

    group = None  # the process group of the reduction (None: the default group)

    def _check_input_dim(self, x: torch.Tensor) -> None:
        if x.dim() < 2:
            raise ValueError(f"expected at least 2-D input, got {x.dim()}-D")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return F.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias, False, 0.0, self.eps)
        c, dims = x.shape[1], [0, *range(2, x.dim())]
        count = torch.full((1,), x.numel() / c, dtype=x.dtype, device=x.device)
        stats = _AllReduceSum.apply(torch.cat([x.sum(dims), (x * x).sum(dims), count]), self.group)
        n = stats[-1]
        mean = stats[:c] / n
        var = stats[c:2 * c] / n - mean * mean
        with torch.no_grad():
            self.num_batches_tracked += 1
            f = 1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum
            self.running_mean.mul_(1 - f).add_(mean.detach(), alpha=f)
            self.running_var.mul_(1 - f).add_(var.detach() * (n / (n - 1)), alpha=f)
        shape = (1, c) + (1,) * (x.dim() - 2)
        out = (x - mean.view(shape)) * torch.rsqrt(var.view(shape) + self.eps)
        return out * self.weight.view(shape) + self.bias.view(shape) if self.affine else out


def _global_batchnorm(model: nn.Module, group) -> nn.Module:
    """Replace every BatchNorm1d/2d of ``model`` by a :class:`GlobalBatchNorm` holding the same state."""
    for name, child in list(model.named_children()):
        if isinstance(child, (nn.BatchNorm1d, nn.BatchNorm2d)):
            new = GlobalBatchNorm(child.num_features, child.eps, child.momentum, child.affine,
                                  child.track_running_stats).to(child.running_mean.device)
            new.load_state_dict(child.state_dict())
            new.group = group
            setattr(model, name, new)
        else:
            _global_batchnorm(child, group)
    return model


def _global_batches(train_ds: Dataset, cfg) -> DataLoader:
    """A loader of index batches in exactly the order ``rramlib.nn.train.train`` visits ``train_ds``."""
    from rramlib.nn.data import make_loader

    n = len(train_ds)
    index_ds = TensorDataset(torch.arange(n)) if isinstance(train_ds, TensorDataset) else _Indices(n)
    return make_loader(index_ds, cfg.batch_size, shuffle=True, seed=cfg.seed)


class _Indices(Dataset):
    def __init__(self, n: int):
        self.n = n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> int:
        return i


def _shard(batch, rank: int, world: int) -> torch.Tensor:
    idx = batch[0] if isinstance(batch, (tuple, list)) else batch
    return torch.tensor_split(torch.as_tensor(idx), world)[rank]


def train_ddp(model: nn.Module, splits, cfg, *, device: torch.device, progress: bool = True,
              num_workers: int = 0) -> dict:
    """Train ``model`` in place on ``splits.train`` with DDP over the initialised default process group.

    Returns the history of :func:`rramlib.nn.train.train` (global mean training loss per epoch; validation
    accuracy per epoch on rank 0, empty elsewhere). Raises RramlibError when a global batch would leave a
    process without samples.
    """
    from rramlib.nn.evaluate import accuracy
    from rramlib.nn.train import _wants_channels_last

    cfg = cfg.validate()
    rank, world = dist.get_rank(), dist.get_world_size()
    train_ds, val_ds = splits.train, splits.val
    n = len(train_ds)
    smallest = min(cfg.batch_size, n % cfg.batch_size or cfg.batch_size)
    if smallest < world:
        raise RramlibError(f"a global batch of {smallest} samples cannot be shared by {world} processes; "
                           "use fewer processes or another batch size")
    channels_last = _wants_channels_last(model, device)
    model.to(device)
    if channels_last:
        model.to(memory_format=torch.channels_last)
    if device.type == "cuda":
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    else:
        model = _global_batchnorm(model, dist.new_group(backend="gloo"))
    ddp = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    optimizer = torch.optim.SGD(ddp.parameters(), lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.momentum > 0,
                                weight_decay=cfg.weight_decay)
    order = _global_batches(train_ds, cfg)
    total_steps = cfg.epochs * len(order)
    history: dict[str, list[float]] = {"train_loss": [], "val_accuracy": []}
    step = 0
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(cfg.seed)
        for epoch in tqdm(range(cfg.epochs), desc=f"train (DDP x{world})", disable=not progress or rank > 0,
                          leave=False):
            if hasattr(train_ds, "set_epoch"):
                train_ds.set_epoch(epoch, seed=cfg.seed)
            batches = [(_shard(b, rank, world), len(b[0] if isinstance(b, (tuple, list)) else b)) for b in order]
            if isinstance(train_ds, TensorDataset):
                loader = ((*(t[idx] for t in train_ds.tensors),) for idx, _ in batches)
            else:
                loader = DataLoader(train_ds, batch_sampler=[idx.tolist() for idx, _ in batches],
                                    num_workers=num_workers)
            ddp.train()
            loss_sum = torch.zeros((), dtype=torch.float64, device=device)
            for (x, y), (_, n_global) in zip(loader, batches):
                x = x.to(device, non_blocking=True)
                if channels_last and x.dim() == 4:
                    x = x.contiguous(memory_format=fmt)
                y = torch.as_tensor(y).to(device, non_blocking=True)
                for group in optimizer.param_groups:  # the cosine schedule of rramlib.nn.train.train
                    group["lr"] = 0.5 * cfg.lr * (1.0 + math.cos(math.pi * step / total_steps))
                # sum over this process's samples, scaled so that DDP's average over processes is the
                # mean over the global batch, whatever the shard sizes
                loss = F.cross_entropy(ddp(x), y, reduction="sum", label_smoothing=cfg.label_smoothing)
                loss = loss * (world / n_global)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                loss_sum += loss.detach().double() * (n_global / world)
                step += 1
            dist.all_reduce(loss_sum)
            history["train_loss"].append(float(loss_sum) / n)
            if rank == 0 and val_ds is not None:
                history["val_accuracy"].append(accuracy(model, val_ds, device=device))
            if not math.isfinite(history["train_loss"][-1]):
                raise RramlibError(f"training diverged at epoch {epoch} (loss {history['train_loss'][-1]}); lower lr")
    if channels_last:
        model.to(memory_format=torch.contiguous_format)
    return history


def _parser() -> argparse.ArgumentParser:
    from rramlib.cli.main import add_train_arguments

    p = argparse.ArgumentParser(prog="torchrun --nproc-per-node N -m rramlib.nn.ddp",
                                description="Train a profile's base model with DistributedDataParallel into the "
                                            "results cache (run it with torchrun; `-m rramlib train` is the same).")
    add_train_arguments(p)
    return p


def train_from_args(args: argparse.Namespace) -> int:
    """Train the base model of ``args`` (the options of ``rramlib train``) in this torchrun process; rank 0
    stores it in the cache under :func:`rramlib.study.experiments.model_key` and prints its drift-free accuracy."""
    from rramlib.core.cache import Cache, default_cache_dir
    from rramlib.cli.main import profile_overrides
    from rramlib.nn.data import load_dataset
    from rramlib.core.errors import check_int
    from rramlib.study.experiments import model_key, train_base_model
    from rramlib.nn.models import build_model
    from rramlib.study.profiles import get_profile, resolve_device

    if "RANK" not in os.environ or "WORLD_SIZE" not in os.environ:
        raise RramlibError("rramlib.nn.ddp runs under torchrun: torchrun --nproc-per-node N -m rramlib train ...")
    check_int("--num-workers", args.num_workers, 0)
    profile = get_profile(args.profile, **profile_overrides(args))
    profile.train.validate()
    device = resolve_device(profile.device)
    if device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
        torch.cuda.set_device(device)
    dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    try:
        rank = dist.get_rank()
        cache = Cache(args.cache_dir or default_cache_dir())
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
            history = train_ddp(model, splits, profile.train, device=device, progress=not args.quiet,
                                num_workers=args.num_workers)
            if rank == 0:
                state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
                cache.save("model", key, {"state_dict": state, "history": history})
        dist.barrier()
        if rank == 0:
            base = train_base_model(profile, data_root=args.data_root, cache=cache, progress=False)
            where = cache.path("model", key) if cache.root is not None else "(no cache)"
            print(f"base model {profile.model} on {profile.dataset}: drift-free test accuracy {base.accuracy:.4f}; "
                  f"{'found in' if cached[0] else 'trained into'} {where}")
    finally:
        dist.destroy_process_group()
    return 0


def main(argv: list[str] | None = None) -> int:
    """``torchrun ... -m rramlib.nn.ddp [options of rramlib train]``; a bad input ends with one ``error:`` line, exit 2."""
    args = _parser().parse_args(argv)
    try:
        return train_from_args(args)
    except RramlibError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
