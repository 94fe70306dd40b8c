"""Accuracy and logits of a model on a dataset, fast for in-memory data.

Drift sweeps call these thousands of times, so a ``TensorDataset`` or an ``(x, y)`` pair is evaluated
by slicing its tensors directly (no ``DataLoader``). The model is run in eval mode and every submodule's
train/eval flag is restored afterwards. The model is moved to ``device`` (in place, as ``Module.to``
does); logits come back on the CPU.
"""
from __future__ import annotations

from collections.abc import Iterator

import torch
import torch.nn as nn
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, TensorDataset

from rramlib.core.errors import RramlibError, check_int
from rramlib.core.torchutil import eval_mode

__all__ = ["accuracy", "predict_logits"]


def _batches(data, batch_size: int) -> Iterator[tuple[Tensor, Tensor]]:
    check_int("batch_size", batch_size, minimum=1)
    if isinstance(data, TensorDataset):
        if len(data.tensors) != 2:
            raise RramlibError(f"expected a TensorDataset of (x, y), got {len(data.tensors)} tensors")
        data = data.tensors
    if isinstance(data, (tuple, list)) and len(data) == 2 and all(isinstance(t, Tensor) for t in data):
        x, y = data
        if len(x) != len(y):
            raise RramlibError(f"x has {len(x)} samples but y has {len(y)}")
        for i in range(0, len(x), batch_size):
            yield x[i : i + batch_size], y[i : i + batch_size]
        return
    if isinstance(data, Dataset):
        data = DataLoader(data, batch_size=batch_size, shuffle=False)
    if isinstance(data, DataLoader):
        for x, y in data:
            yield x, torch.as_tensor(y)
        return
    raise RramlibError(f"data must be a Dataset, a DataLoader or an (x, y) pair of tensors, got {type(data).__name__}")


def _forward_all(model: nn.Module, data, batch_size: int, device) -> Iterator[tuple[Tensor, Tensor]]:
    device = torch.device(device)
    model.to(device)
    for x, y in _batches(data, batch_size):
        yield model(x.to(device, non_blocking=True)), y


@torch.no_grad()
def accuracy(model: nn.Module, data, *, batch_size: int = 1024, device="cpu") -> float:
    """Fraction in [0, 1] of samples whose arg-max logit equals the label (model in eval mode)."""
    correct = total = 0
    with eval_mode(model):
        for logits, y in _forward_all(model, data, batch_size, device):
            correct += int((logits.argmax(1).cpu() == y.cpu()).sum())
            total += len(y)
    if total == 0:
        raise RramlibError("accuracy() got an empty dataset")
    return correct / total


@torch.no_grad()
def predict_logits(model: nn.Module, data, *, batch_size: int = 1024, device="cpu") -> Tensor:
    """Logits ``(N, classes)`` for every sample in order, on the CPU (model in eval mode)."""
    with eval_mode(model):
        out = [logits.cpu() for logits, _ in _forward_all(model, data, batch_size, device)]
    if not out:
        raise RramlibError("predict_logits() got an empty dataset")
    return torch.cat(out)
