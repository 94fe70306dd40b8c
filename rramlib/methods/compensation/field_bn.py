"""BatchNorm recalibrated in the field: the chip re-estimates its BN statistics from images it keeps.

The ``bn`` method (:mod:`~rramlib.methods.compensation.bn`) stores one BN set per drift level, estimated
offline on training chips. Recalibrating *in the field* instead (the reading of the VeRA+
abstract's "no data replay" under which BN must keep data) re-estimates every BatchNorm layer's running
mean and variance on the chip being used, at the time it is read, from ``N`` input images stored on the
chip; nothing is stored per level, but the images are. :func:`recalibrate_in_field` does one recalibration;
:func:`field_bn_accuracy` measures its accuracy on evaluation chips for several image counts ``N``.

The estimate is the same as the ``bn`` method's: running statistics reset, momentum ``None`` (a cumulative
average over the batches, PyTorch's ``BatchNorm`` semantics), batches of ``batch_size`` images in order.
The ``N`` stored images are the first ``N`` of the given set (our choice: the chip keeps a fixed set).
"""
from __future__ import annotations

import copy

import torch
from torch import nn

from rramlib.core.errors import RramlibError, check_int
from rramlib.nn.evaluate import accuracy

__all__ = ["recalibrate_in_field", "field_bn_accuracy"]

_BN = nn.modules.batchnorm._BatchNorm


@torch.no_grad()
def recalibrate_in_field(model: nn.Module, images: torch.Tensor, batch_size: int = 128) -> nn.Module:
    """Re-estimate every BatchNorm layer's running mean and variance of ``model`` (in place) from ``images``.

    ``model`` is the network as the chip reads it now (e.g. ``AnalogModel.at(t)``); only its BN statistics
    change (γ/β and every other tensor stay). Returns ``model``, in eval mode.
    """
    check_int("batch_size", batch_size, 1)
    layers = [m for m in model.modules() if isinstance(m, _BN)]
    if not layers:
        raise RramlibError("field BN recalibration needs a model with BatchNorm layers")
    if len(images) < 2:
        raise RramlibError(f"field BN recalibration needs at least 2 images to estimate a variance, got {len(images)}")
    momenta = [m.momentum for m in layers]
    model.eval()
    for m in layers:
        m.reset_running_stats()
        m.momentum = None
        m.train()
    try:
        for start in range(0, len(images), batch_size):
            batch = images[start:start + batch_size]
            if len(batch) < 2:  # a lone last image has no batch variance: it joins no estimate
                break
            model(batch)
    finally:
        for m, momentum in zip(layers, momenta):
            m.momentum = momentum
            m.eval()
    return model


def field_bn_accuracy(analog, images: torch.Tensor, counts, time_s: float, chips, test, *,
                      batch_size: int = 128, eval_batch_size: int = 1024) -> list[dict]:
    """Accuracy of BN recalibrated in the field from the first ``N`` of ``images``, for each ``N`` of ``counts``,
    on each evaluation chip of ``chips`` read at ``time_s`` seconds after programming.

    ``analog``: an :class:`~rramlib.device.analog.AnalogModel` programmed with the trained network; ``test``: an
    ``(x, y)`` pair. Every recalibration starts from the chip's network as read at ``time_s`` (a copy), so the
    counts do not influence each other. Returns one record per (chip, N): ``chip_seed``, ``n_images``,
    ``accuracy``.
    """

    counts = [check_int("n_images", n, 2) for n in counts]
    if max(counts) > len(images):
        raise RramlibError(f"{max(counts)} stored images asked for, only {len(images)} given")
    records = []
    for seed in chips:
        analog.program(seed)
        drifted = analog.at(time_s)
        for n in counts:
            model = copy.deepcopy(drifted)
            recalibrate_in_field(model, images[:n], batch_size)
            records.append({"chip_seed": seed, "n_images": n,
                            "accuracy": accuracy(model, test, batch_size=eval_batch_size)})
    return records
