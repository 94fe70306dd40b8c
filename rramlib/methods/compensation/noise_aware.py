"""Noise-aware training: fine-tune the software model with drift injected into its weights.

Each training step draws a time log-uniformly over [1 s, 10 years] and a fresh chip, and the
forward pass uses the drifted weights D(W) while the gradient reaches the clean weights
(straight-through: ``W + (D(W) - W).detach()``), as in noise-injection training of analog
networks (e.g. Joshi et al., Nature Communications 2020). The result is a new set of RRAM
weights that is programmed once and then drifts like any other; it stores nothing extra
digitally, but it changes the weights on the chip (no in-field benefit for a chip already
programmed). On a chip read with global drift compensation (readout ``"gdc"``, :data:`rramlib.device.analog.READOUTS`)
the injected weights are rescaled by the readout's α = r0 / r_t as the chip will rescale them, so the network learns
the drift that compensation leaves behind (our choice: train on the readout the chip is deployed with).
"""
from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass, field
from typing import ClassVar

import torch
from torch import nn
from torch.nn.utils import parametrize

from rramlib.device.analog import READOUTS, DriftCompensation, rram_layers
from rramlib.core.errors import check_int, check_positive
from rramlib.methods.overhead import Storage
from rramlib.methods.schedule import log_windows
from rramlib.core.seeding import check_root_seed
from rramlib.nn.train import TrainConfig, train
from rramlib.methods.compensation.base import FitContext, Method, MethodConfig

__all__ = ["NoiseAware", "NoiseAwareConfig", "drift_injectors"]


@dataclass(frozen=True)
class NoiseAwareConfig(MethodConfig):
    """Fine-tuning ``epochs`` at learning rate ``lr``; ``seed`` drives the drift draws and the batch order."""

    owner: ClassVar[str] = "noise_aware"
    epochs: int = field(default=10, metadata={
        "help": "fine-tuning epochs of the trained base model with drift in its weights"})
    lr: float = field(default=0.01, metadata={"help": "peak learning rate of the fine-tuning"})
    seed: int = field(default=0, metadata={"help": "seed of the drift draws and the batch order"})

    def _validate(self) -> None:
        check_int("noise_aware.epochs", self.epochs, 1)
        check_positive("noise_aware.lr", self.lr)
        check_root_seed(self.seed, "noise_aware.seed")


class _InjectDrift(nn.Module):
    """Parametrisation returning the weight as one freshly programmed chip reads it at ``self.time``: the drifted
    weight, times the readout's α (``compensation`` with this layer's ``probe``) when the chip compensates."""

    def __init__(self, drift, mapping, generator, compensation: DriftCompensation | None = None,
                 probe: torch.Tensor | None = None):
        super().__init__()
        self.drift, self.mapping, self.generator = drift, mapping, generator
        self.compensation, self.probe = compensation, probe
        self.time = 0.0

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        g, w_max = self.mapping.to_conductance(w.detach().cpu())
        state = self.drift.program(g, self.generator)
        drifted = self.mapping.to_weight(self.drift.conductance(state, self.time), w_max)
        if self.compensation is not None:  # as AnalogModel's readout: r0 right after programming, r_t now
            r0 = self.compensation.readout(self.mapping.to_weight(self.drift.conductance(state, 0.0), w_max),
                                           self.probe)
            drifted = drifted * self.compensation.alpha(r0, drifted, self.probe)
        return w + (drifted.to(w) - w.detach())


def drift_injectors(model: nn.Module, ctx: FitContext, generator: torch.Generator) -> list[_InjectDrift]:
    """One :class:`_InjectDrift` per RRAM layer of ``model`` (in :func:`~rramlib.device.analog.rram_layers` order),
    drawing from ``generator`` and reading through ``ctx``'s mapping, device model and readout: called on the
    layers' weights in that order, they return what :class:`~rramlib.device.analog.AnalogModel` programmed from
    the same generator state presents (``weights_at``)."""
    chip = ctx.analog(model)  # the mapping and device model this chip will use
    layers = [module for _, module in rram_layers(model)]
    compensation = READOUTS[ctx.readout]
    probes = (compensation.probes([m.weight.detach().cpu() for m in layers]) if compensation is not None
              else [None] * len(layers))  # the chip's own probes: drawn from the same seed, layer after layer
    return [_InjectDrift(chip.drift, chip.mapping, generator, compensation, probe) for probe in probes]


class NoiseAware(Method):
    """A new software model trained with drift in its weights (``model_``), programmed like any other."""

    name = "noise_aware"
    Config = NoiseAwareConfig
    label = "noise-aware training"
    color = "#0072B2"
    marker = "P"
    fitting = "offline, base weights"
    shared_note = "nothing digital (other RRAM weights)"
    trained = True
    not_for_hfn = "trains the weights with drift injected; an HFN's weights are random and never trained"

    def setup(self, ctx: FitContext) -> None:
        self.model_ = copy.deepcopy(ctx.model)
        self.ctx_ = ctx

    def train(self, ctx: FitContext) -> None:
        gen = torch.Generator().manual_seed(self.hparams.seed)  # one stream: drift draws in step order
        injectors = drift_injectors(self.model_, ctx, gen)
        for (_, module), injector in zip(rram_layers(self.model_), injectors):
            parametrize.register_parametrization(module, "weight", injector)
        window = log_windows(1)

        def before_step(model, step):
            t = window.sample_times(0, 1, gen)[0]
            for injector in injectors:
                injector.time = t

        cfg = dataclasses.replace(TrainConfig(), epochs=self.hparams.epochs, lr=self.hparams.lr,
                                  seed=self.hparams.seed)
        try:
            train(self.model_, ctx.splits, cfg, before_step=before_step, progress=ctx.progress, device=ctx.device)
        finally:
            for _, module in rram_layers(self.model_):
                parametrize.remove_parametrizations(module, "weight", leave_parametrized=False)
        self.model_.eval()
        self.analog_ = ctx.analog(self.model_)

    def state_dict(self) -> dict:
        return {"model": {k: v.cpu() for k, v in self.model_.state_dict().items()}}

    def load_state_dict(self, state: dict) -> None:
        self.model_.load_state_dict(state["model"])
        self.model_.eval()
        self.analog_ = self.ctx_.analog(self.model_)

    def storage(self) -> Storage:
        return Storage(values_per_level=0, levels=1)


