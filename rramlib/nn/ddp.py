"""Train a profile's base network data-parallel with PyTorch's DistributedDataParallel (DDP).

    torchrun --nproc-per-node N -m rramlib train --profile paper [--epochs E] [--cache-dir DIR] ...

(:mod:`rramlib.cli.train`; ``rramlib train`` without torchrun trains in one process.) This module holds only what
is particular to DDP -- the process group's batch shares (:class:`DataParallel`), BatchNorm over the global
batch (:class:`GlobalBatchNorm`) -- and runs the training loop of one process, :func:`rramlib.nn.train.fit`.

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
The trained model is stored in the results cache under the key :func:`rramlib.study.base_model.train_base_model`
uses for the profile (:func:`rramlib.study.base_model.model_key`), so sweeps and notebooks that ask for the
profile's base model load it from there. A model already in the cache is not trained again.
"""
from __future__ import annotations

import os

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Dataset, TensorDataset

from rramlib.core.errors import RramlibError
from rramlib.nn.data import make_loader
from rramlib.nn.train import Batches, TrainConfig, fit

__all__ = ["DataParallel", "GlobalBatchNorm", "train_ddp"]


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


class DataParallel(Batches):
    """The :class:`rramlib.nn.train.Batches` of a DDP process over the initialised default process group.

    ``self.loader`` yields global batches of indices in exactly the order :func:`rramlib.nn.train.train` visits
    the training set (:func:`rramlib.nn.data.make_loader` with the same seed); each process takes its
    contiguous share of every global batch (``torch.tensor_split``)."""

    def __init__(self, train_ds: Dataset, cfg, device: torch.device, num_workers: int = 0):
        self.rank, self.processes = dist.get_rank(), dist.get_world_size()
        self.leader, self.desc = self.rank == 0, f"train (DDP x{self.processes})"
        self.train_ds, self.device, self.num_workers = train_ds, device, num_workers
        n = len(train_ds)
        smallest = min(cfg.batch_size, n % cfg.batch_size or cfg.batch_size)
        if smallest < self.processes:
            raise RramlibError(f"a global batch of {smallest} samples cannot be shared by {self.processes} processes; "
                               "use fewer processes or another batch size")
        index_ds = TensorDataset(torch.arange(n)) if isinstance(train_ds, TensorDataset) else _Indices(n)
        self.loader = make_loader(index_ds, cfg.batch_size, shuffle=True, seed=cfg.seed)

    def wrap(self, model: nn.Module) -> nn.Module:
        """BatchNorm over the global batch (SyncBatchNorm on GPUs, :class:`GlobalBatchNorm` on the CPU), in
        place, then the DDP wrapper."""
        if self.device.type == "cuda":
            model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
        else:
            model = _global_batchnorm(model, dist.new_group(backend="gloo"))
        return DistributedDataParallel(model, device_ids=[self.device.index] if self.device.type == "cuda" else None)

    def epoch(self, epoch: int):
        batches = [(_shard(b, self.rank, self.processes), len(b[0] if isinstance(b, (tuple, list)) else b))
                   for b in self.loader]
        if isinstance(self.train_ds, TensorDataset):
            loader = ((*(t[idx] for t in self.train_ds.tensors),) for idx, _ in batches)
        else:
            loader = DataLoader(self.train_ds, batch_sampler=[idx.tolist() for idx, _ in batches],
                                num_workers=self.num_workers)
        for (x, y), (_, n_global) in zip(loader, batches):
            yield x, y, n_global

    def loss(self, logits, y, n, cfg):
        """The sum over this process's samples, scaled so that DDP's average over processes is the mean over
        the global batch of ``n`` samples, whatever the shard sizes."""
        loss = F.cross_entropy(logits, y, reduction="sum", label_smoothing=cfg.label_smoothing)
        loss = loss * (self.processes / n)
        return loss, loss.detach().double() * (n / self.processes)

    def epoch_loss(self, loss_sum: torch.Tensor) -> float:
        dist.all_reduce(loss_sum)
        return float(loss_sum) / len(self.train_ds)

    def gather(self, obj):
        out = [None] * self.processes
        dist.all_gather_object(out, obj)
        return out

    def share(self, obj):
        box = [obj]
        dist.broadcast_object_list(box, src=0)
        return box[0]


def train_ddp(model: nn.Module, splits, cfg: TrainConfig, *, device: torch.device, progress: bool = True,
              num_workers: int = 0, checkpoint: str | os.PathLike | None = None) -> dict:
    """Train ``model`` in place on ``splits.train`` with DDP over the initialised default process group.

    The loop is :func:`rramlib.nn.train.fit`'s (so ``cfg.precision`` and ``checkpoint``, written by rank 0 and
    read by rank 0 for all, work as there). Returns the history of :func:`rramlib.nn.train.train` (global mean
    training loss per epoch; validation accuracy per epoch on rank 0, empty elsewhere). Raises RramlibError when a
    global batch would leave a process without samples. The model keeps its global BatchNorm layers.
    """
    return fit(model, DataParallel(splits.train, cfg, device, num_workers), cfg, val_ds=splits.val,
               progress=progress, device=device, checkpoint=checkpoint)
