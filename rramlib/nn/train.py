"""Train a model with SGD (Nesterov momentum) and a cosine learning-rate schedule; resumable.

Everything random in a run depends only on ``TrainConfig.seed``: the batch order (an explicit
generator in :func:`rramlib.nn.data.make_loader`), the augmentation stream (``set_epoch(epoch,
seed=cfg.seed)`` on a :class:`rramlib.nn.data.SeededAugment`), and anything drawing from torch's global
RNG during training (dropout, a ``before_step`` hook), which runs inside ``torch.random.fork_rng``
seeded with ``cfg.seed``. On the CPU the same seed gives bit-identical weights.

One loop (:func:`fit`) serves one process (:func:`train`, batches from :class:`Batches`) and
DistributedDataParallel (:func:`rramlib.nn.ddp.train_ddp`, which brings its own :class:`Batches`).

Resuming: given a ``checkpoint`` path, the loop writes the whole training state there after every finished
epoch (model, optimizer, learning-rate schedule, batch-order generator, torch's RNG states, epoch, history),
atomically and with a SHA-256 checksum, and a later call with the same path continues after the last finished
epoch; the weights it ends with are bit-identical to an uninterrupted run's. The history's ``epoch_seconds``
(the wall time of every finished epoch, validation included) travels in the checkpoint, so its sum is the
training's wall time over all calls. A checkpoint that fails its
checksum or was written for another configuration is ignored with a warning. Deleting it once the result is
stored is the caller's job (:func:`rramlib.study.base_model.train_base_model` does).

Noise-aware training plugs in through ``before_step(model, step)``: it is called before the forward
pass of every optimisation step (``step`` counts from 0 over the whole run). If it returns a callable,
that callable is called after ``backward()`` and before ``optimizer.step()``, e.g. to put the clean
weights back so that the gradient computed at drifted weights updates the clean ones::

    def inject(model, step):
        clean = [p.detach().clone() for p in model.parameters()]
        ...perturb the weights in place...
        def restore():
            with torch.no_grad():
                for p, c in zip(model.parameters(), clean):
                    p.copy_(c)
        return restore
"""
from __future__ import annotations

import contextlib
import logging
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, ClassVar, Iterator

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.data import Dataset
from tqdm import tqdm

from rramlib.core.config import Config
from rramlib.core.errors import RramlibError
from rramlib.core.cache import load_checked, save_checked
from rramlib.nn.data import DatasetSplits, make_loader
from rramlib.nn.evaluate import accuracy

__all__ = ["PRECISIONS", "TrainConfig", "Batches", "fit", "train", "cosine_factor", "cpu_has_bf16"]

log = logging.getLogger(__name__)

#: arithmetic of the forward pass and the loss: float32, or bfloat16 autocast (``torch.autocast``)
PRECISIONS = ("fp32", "bf16")


@dataclass(frozen=True)
class TrainConfig(Config):
    """Hyper-parameters of :func:`train` (validated on construction)."""

    owner: ClassVar[str] = "TrainConfig"
    epochs: int = field(default=30, metadata={"help": "passes over the training set"})
    lr: float = field(default=0.05, metadata={"help": "peak learning rate of the per-step cosine schedule"})
    batch_size: int = field(default=64, metadata={"help": "samples per optimisation step (the global batch under DDP)"})
    weight_decay: float = field(default=5e-4, metadata={"help": "SGD weight decay, on all parameters"})
    momentum: float = field(default=0.9, metadata={"help": "SGD Nesterov momentum (0: plain SGD)"})
    seed: int = field(default=0, metadata={"help": "seed of the batch order, the augmentation and other random draws"})
    label_smoothing: float = field(default=0.0, metadata={"help": "label smoothing of the cross-entropy loss"})
    precision: str = field(default="fp32", metadata={
        "help": "arithmetic of the forward pass and the loss (bf16: torch.autocast to bfloat16)", "choices": PRECISIONS})

    def _validate(self) -> None:
        for name in ("epochs", "batch_size", "seed"):
            v = getattr(self, name)
            if v < (0 if name == "seed" else 1):
                raise RramlibError(f"TrainConfig.{name} must be a {'non-negative' if name == 'seed' else 'positive'} integer, got {v!r}")
        for name, lo, hi in (("lr", 0.0, math.inf), ("weight_decay", 0.0, math.inf), ("momentum", 0.0, 1.0), ("label_smoothing", 0.0, 1.0)):
            v = getattr(self, name)
            if not math.isfinite(v) or not lo <= v < hi or (name == "lr" and v == 0):
                raise RramlibError(f"TrainConfig.{name} must be a number in {'(' if name == 'lr' else '['}{lo}, {hi}), got {v!r}")


def cosine_factor(step: int, total_steps: int) -> float:
    """The learning rate at ``step`` as a fraction of its peak: a cosine from 1 to 0 over ``total_steps``
    (SGDR without restarts, Loshchilov & Hutter 2017, eq. 5 with eta_min = 0), stepped per batch.

    Times the peak, it is bit for bit the ``0.5 * lr * (1 + cos(pi * step / total_steps))`` this module used to
    write by hand: multiplying by 0.5 is exact in binary floating point, whichever side it is on."""
    return 0.5 * (1.0 + math.cos(math.pi * step / total_steps))


def cpu_has_bf16(cpuinfo: str | os.PathLike = "/proc/cpuinfo") -> bool:
    """Whether this CPU computes bfloat16 natively (x86 flags ``avx512_bf16`` or ``amx_bf16`` in ``cpuinfo``).

    bf16 training works on every CPU (:data:`PRECISIONS`), but without these instructions oneDNN emulates it
    and it is slower than fp32. False where ``cpuinfo`` cannot be read (not Linux)."""
    try:
        text = Path(cpuinfo).read_text()
    except OSError:
        return False
    flags = set()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "flags":
            flags.update(value.split())
    return bool(flags & {"avx512_bf16", "amx_bf16"})


def _autocast(precision: str, device: torch.device):
    """The context the forward pass and the loss run in (nothing for fp32)."""
    if precision == "fp32":
        return contextlib.nullcontext()
    if device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise RramlibError(f"precision 'bf16' needs a GPU that computes bfloat16; {torch.cuda.get_device_name(device)} "
                           "does not (use precision 'fp32')")
    return torch.autocast(device.type, dtype=torch.bfloat16)


def _wants_channels_last(model: nn.Module, device: torch.device) -> bool:
    # Measured on 2 CPU cores: ResNet-20 trains ~1.2-1.3x faster in channels_last (our measurement, 2026).
    return device.type == "cpu" and any(isinstance(m, nn.Conv2d) for m in model.modules())


class Batches:
    """What :func:`fit` trains on in one process: the batches of each epoch and how a step's loss is formed.

    :class:`rramlib.nn.ddp.DataParallel` is the same for DistributedDataParallel. ``leader``: this process shows
    progress, validates and writes the checkpoint; ``rank`` of ``processes``."""

    desc = "train"
    leader = True
    rank, processes = 0, 1

    def __init__(self, train_ds: Dataset, cfg: TrainConfig, num_workers: int = 0):
        self.train_ds = train_ds
        self.loader = make_loader(train_ds, cfg.batch_size, shuffle=True, seed=cfg.seed, num_workers=num_workers)

    def __len__(self) -> int:
        """Optimisation steps per epoch."""
        return len(self.loader)

    def wrap(self, model: nn.Module) -> nn.Module:
        """The module the forward pass runs through (set up after the model is on its device and format)."""
        return model

    def epoch(self, epoch: int) -> Iterator[tuple]:
        """``(x, y, n)`` per step, ``n`` the samples of the whole step (all processes)."""
        for x, y in self.loader:
            yield x, y, len(y)

    def loss(self, logits: torch.Tensor, y: torch.Tensor, n: int, cfg: TrainConfig) -> tuple[torch.Tensor, torch.Tensor]:
        """The loss to back-propagate (mean cross-entropy) and this process's share of the epoch's summed loss
        (float64)."""
        loss = F.cross_entropy(logits, y, label_smoothing=cfg.label_smoothing)
        return loss, loss.detach().double() * len(y)

    def epoch_loss(self, loss_sum: torch.Tensor) -> float:
        """The mean training loss of the epoch from this process's ``loss_sum``."""
        return float(loss_sum) / len(self.train_ds)

    def order_generator(self) -> torch.Generator:
        """The generator behind the batch order of ``self.loader`` (:func:`rramlib.nn.data.make_loader`'s)."""
        sampler = self.loader.sampler
        gen = getattr(getattr(sampler, "sampler", sampler), "generator", None)  # a BatchSampler's sampler
        if gen is None:
            raise RramlibError("the training loader has no generator of its batch order to checkpoint")
        return gen

    def gather(self, obj):
        """Every process's ``obj``, by rank (on the leader; one process: ``[obj]``)."""
        return [obj]

    def share(self, obj):
        """The leader's ``obj`` on every process."""
        return obj


_MAGIC = b"rramlib-checkpoint-v1 "


def _write_checkpoint(path: Path, state: dict) -> None:
    """Save ``state`` to ``path`` atomically behind a checksum line (:func:`rramlib.core.cache.save_checked`)."""
    save_checked(path, state, _MAGIC)


def _read_checkpoint(path: Path) -> dict | None:
    """The checkpoint at ``path``; None (with a warning) when absent, damaged or unreadable."""
    try:
        return load_checked(path, _MAGIC, map_location="cpu")
    except Exception as exc:  # a damaged checkpoint is never used
        log.warning("ignoring damaged training checkpoint %s (%s); training from the start", path, exc)
        return None


def _rng_state(device: torch.device) -> dict:
    state = {"cpu": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def _set_rng_state(state: dict, device: torch.device) -> None:
    torch.set_rng_state(state["cpu"])
    if device.type == "cuda":
        torch.cuda.set_rng_state(state["cuda"], device)


def fit(
    model: nn.Module,
    batches: Batches,
    cfg: TrainConfig,
    *,
    val_ds: Dataset | None = None,
    before_step: Callable[[nn.Module, int], Callable[[], None] | None] | None = None,
    progress: bool = True,
    device: torch.device,
    channels_last: bool | None = None,
    checkpoint: str | os.PathLike | None = None,
) -> dict:
    """The training loop of :func:`train` and :func:`rramlib.nn.ddp.train_ddp` (see :func:`train`) over ``batches``.

    A checkpoint is written by the leader (with every process's RNG state) and read by the leader for all; one
    written by another number of processes, or for another configuration, is ignored with a warning."""
    if not isinstance(cfg, TrainConfig):
        raise RramlibError(f"cfg must be a TrainConfig, got {type(cfg).__name__}")
    if before_step is not None and not callable(before_step):
        raise RramlibError(f"before_step must be callable, got {type(before_step).__name__}")
    if channels_last is None:
        channels_last = _wants_channels_last(model, device)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    autocast = _autocast(cfg.precision, device)

    model.to(device)
    if channels_last:
        model.to(memory_format=torch.channels_last)
    history: dict[str, list[float]] = {"train_loss": [], "val_accuracy": [], "epoch_seconds": []}
    try:
        net = batches.wrap(model)
        optimizer = torch.optim.SGD(net.parameters(), lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.momentum > 0,
                                    weight_decay=cfg.weight_decay)
        total_steps = cfg.epochs * len(batches)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: cosine_factor(step, total_steps))
        order = batches.order_generator()
        path = None if checkpoint is None else Path(checkpoint)
        saved = batches.share(_read_checkpoint(path) if path is not None and batches.leader else None)
        identity = {"config": cfg.as_dict(), "steps_per_epoch": len(batches), "processes": batches.processes}
        if saved is not None and saved["identity"] != identity:
            if batches.leader:
                log.warning("ignoring training checkpoint %s: written for %s, not %s", path, saved["identity"], identity)
            saved = None
        start = 0
        if saved is not None:
            model.load_state_dict(saved["model"])
            optimizer.load_state_dict(saved["optimizer"])
            scheduler.load_state_dict(saved["scheduler"])
            order.set_state(saved["order"])
            history, start = saved["history"], saved["epoch"]
            if not batches.leader:  # only the leader validates
                history["val_accuracy"] = []
        step = start * len(batches)
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            torch.manual_seed(cfg.seed)
            if saved is not None:
                _set_rng_state(saved["rng"][batches.rank], device)
            bar = tqdm(range(start, cfg.epochs), desc=batches.desc, disable=not progress or not batches.leader,
                       leave=False)
            for epoch in bar:
                began = time.perf_counter()
                if hasattr(batches.train_ds, "set_epoch"):
                    batches.train_ds.set_epoch(epoch, seed=cfg.seed)
                net.train()
                loss_sum = torch.zeros((), dtype=torch.float64, device=device)
                for x, y, n in batches.epoch(epoch):
                    x = x.to(device, non_blocking=True)
                    if channels_last and x.dim() == 4:
                        x = x.contiguous(memory_format=fmt)
                    y = torch.as_tensor(y).to(device, non_blocking=True)
                    after = before_step(model, step) if before_step is not None else None
                    with autocast:
                        loss, share = batches.loss(net(x), y, n, cfg)
                    optimizer.zero_grad(set_to_none=True)
                    loss.backward()
                    if after is not None:
                        after()
                    optimizer.step()
                    scheduler.step()
                    loss_sum += share
                    step += 1
                history["train_loss"].append(batches.epoch_loss(loss_sum))
                if val_ds is not None and batches.leader:
                    history["val_accuracy"].append(accuracy(model, val_ds, device=device))
                    bar.set_postfix(loss=f"{history['train_loss'][-1]:.3f}", val=f"{history['val_accuracy'][-1]:.3f}")
                else:
                    bar.set_postfix(loss=f"{history['train_loss'][-1]:.3f}")
                if not math.isfinite(history["train_loss"][-1]):
                    raise RramlibError(f"training diverged at epoch {epoch} (loss {history['train_loss'][-1]}); lower lr")
                history["epoch_seconds"].append(time.perf_counter() - began)
                if path is not None:
                    rng = batches.gather(_rng_state(device))
                    if batches.leader:
                        _write_checkpoint(path, {
                            "identity": identity, "epoch": epoch + 1, "history": history, "rng": rng,
                            "model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
                            "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                            "order": order.get_state()})
    finally:
        if channels_last:
            model.to(memory_format=torch.contiguous_format)
    return history


def train(
    model: nn.Module,
    splits_or_train_ds: DatasetSplits | Dataset,
    cfg: TrainConfig | None = None,
    *,
    before_step: Callable[[nn.Module, int], Callable[[], None] | None] | None = None,
    progress: bool = True,
    device="cpu",
    channels_last: bool | None = None,
    num_workers: int = 0,
    checkpoint: str | os.PathLike | None = None,
) -> dict:
    """Train ``model`` in place; return ``{"train_loss": [...], "val_accuracy": [...], "epoch_seconds": [...]}`` per
    epoch.

    ``splits_or_train_ds`` is a :class:`~rramlib.nn.data.DatasetSplits` (train on ``.train``, report
    accuracy on ``.val`` after each epoch) or a training ``Dataset`` alone (``val_accuracy`` stays
    empty). SGD with Nesterov momentum, weight decay on all parameters, learning rate following a
    cosine from ``cfg.lr`` to 0 over all steps (:func:`cosine_factor`, a ``torch.optim.lr_scheduler.LambdaLR``),
    cross-entropy with ``cfg.label_smoothing``, forward pass and loss in ``cfg.precision``.
    ``before_step``: see the module docstring. ``channels_last`` (default: on for conv models on the
    CPU) trains in that memory format, so a ``before_step`` hook then sees channels_last conv weights
    (use ``reshape``, not ``view``); the weights are returned in the ordinary contiguous format.
    ``num_workers`` is passed to the ``DataLoader`` (useful for ImageFolder data).
    ``checkpoint``: a file to write the training state to after every epoch and to resume from (module docstring).
    The model is left in train mode, on ``device``.
    """
    cfg = cfg or TrainConfig()
    if isinstance(splits_or_train_ds, DatasetSplits):
        train_ds, val_ds = splits_or_train_ds.train, splits_or_train_ds.val
    elif isinstance(splits_or_train_ds, Dataset):
        train_ds, val_ds = splits_or_train_ds, None
    else:
        raise RramlibError(
            f"train() needs a DatasetSplits or a Dataset, got {type(splits_or_train_ds).__name__}"
        )
    if len(train_ds) == 0:
        raise RramlibError("train() got an empty training set")
    history = fit(model, Batches(train_ds, cfg, num_workers), cfg, val_ds=val_ds, before_step=before_step,
                  progress=progress, device=torch.device(device), channels_last=channels_last, checkpoint=checkpoint)
    model.train()
    return history
