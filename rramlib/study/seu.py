"""Single-event upsets in the SRAM state of a fitted compensation method (the book's SEU chapter).

The network of evaluation chip ``chip_seed`` at time ``t`` reads the method's digital state
(:meth:`~rramlib.methods.compensation.Method.sram_tensors` at ``t``: the active level's vectors or matrices, the
loaded BN set, the DoRA adapters after calibration). :func:`single_flip_records` flips one stored bit at a
time in a seeded sample of those values (the same number per layer) through
:func:`rramlib.device.faults.sensitivity` and records the accuracy drop, with and without remedies.
"""
from __future__ import annotations

import math

import torch

from rramlib.nn.evaluate import accuracy
from rramlib.device.faults import Remedy, sensitivity

__all__ = ["sram_layers", "single_flip_records"]


def sram_layers(method, t: float) -> dict[str, dict[str, torch.Tensor]]:
    """The live tensors the network reads at ``t``, grouped by layer: ``{layer: {"<layer>.<tensor>": tensor}}``
    (a tensor shared across layers is its own group)."""
    layers: dict[str, dict[str, torch.Tensor]] = {}
    for key, tensor in method.sram_tensors(t).items():
        name = key.split("/", 1)[1]
        layer = name.rsplit(".", 1)[0]
        layers.setdefault(layer, {})[name] = tensor
    return layers


def single_flip_records(name: str, method, chip_seed: int, t: float, test, fmt: str, remedies: dict[str, Remedy],
                        n_params: int, seed: int) -> tuple[float, list[dict], list[int]]:
    """Single-flip records of one fitted method: ``n_params`` stored values split evenly over its layers, every
    bit of ``fmt``, each remedy. Returns ``(accuracy without fault, records, sizes of the stored tensors)``.

    Each layer samples its values from its own stream ``(seed, "fault_sites", *tensor names)``
    (:func:`rramlib.device.faults.sensitivity`, :mod:`rramlib.core.seeding`).
    """
    model = method.at(chip_seed, t)
    evaluate = lambda: accuracy(model, test)  # noqa: E731
    baseline = evaluate()
    layers = sram_layers(method, t)
    per_layer = max(1, math.ceil(n_params / len(layers)))
    rows = []
    for layer, tensors in layers.items():
        for r in sensitivity(evaluate, tensors, fmt, n_params=per_layer, seed=seed, remedies=remedies,
                             baseline=baseline):
            rows.append({"method": name, "layer": layer, "format": fmt, **r})
    sizes = [t_.numel() for tensors in layers.values() for t_ in tensors.values()]
    return baseline, rows, sizes
