"""Small PyTorch helpers used across the package."""
from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import nn

from rramlib.core.errors import RramlibError

__all__ = ["eval_mode", "resolve_device"]


@contextlib.contextmanager
def eval_mode(*modules: nn.Module) -> Iterator[None]:
    """Eval mode inside the ``with`` block; afterwards every submodule gets its own ``training`` flag back.

    ``module.train(flag)`` would set one flag on the whole tree; restoring each submodule's flag keeps, e.g.,
    a model whose BatchNorm layers were frozen in eval mode while the rest trains exactly as it was.
    """
    flags = [(m, m.training) for module in modules for m in module.modules()]
    for module in modules:
        module.eval()
    try:
        yield
    finally:
        for m, flag in flags:
            m.training = flag


def resolve_device(device: str) -> torch.device:
    """The torch device named ``device``; ``"auto"``: a GPU if there is one, else the CPU."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        return torch.device(device)
    except RuntimeError as exc:
        raise RramlibError(f"unknown device {device!r}: {exc}") from None
