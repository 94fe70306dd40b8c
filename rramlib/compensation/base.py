"""The one API every compensation method follows, and the drift-injected training loop they share.

A method is fitted offline (``fit(ctx)`` returns self; learned state ends in ``_``), on
training chips whose seeds lie below :data:`~rramlib.experiments.EVAL_CHIP_BASE`.
Afterwards ``at(seed, t)`` returns the network to evaluate for evaluation chip ``seed``
at ``t`` seconds after programming: the chip's drifted weights plus the method's digital
correction for the drift level holding ``t``.
"""
from __future__ import annotations

import abc
import math
from dataclasses import dataclass, field
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from ..analog import AnalogModel
from ..data import DatasetSplits, as_tensors
from ..drift import DriftModel
from ..errors import RramlibError, check_positive, check_type
from ..overhead import Storage, base_macs
from ..schedule import Schedule

__all__ = ["FitContext", "Method", "drift_injected_training"]


@dataclass
class FitContext:
    """Everything a method may use offline: the trained software model, its data and the device model."""

    model: nn.Module
    splits: DatasetSplits
    drift: DriftModel
    schedule: Schedule
    mapping: str | None = None
    per_channel: bool = False
    n_levels: int | None = None
    train_chips: int = 8
    seed: int = 0
    device: str = "cpu"
    progress: bool = False
    _train_tensors: tuple | None = field(default=None, repr=False)

    def analog(self, model: nn.Module | None = None, seed: int = 0) -> AnalogModel:
        """A chip programmed with ``model`` (default: the software model) and this context's device model."""
        return AnalogModel(model if model is not None else self.model, self.drift, seed=seed,
                           mapping=self.mapping, per_channel=self.per_channel, n_levels=self.n_levels)

    def train_tensors(self) -> tuple[torch.Tensor, torch.Tensor]:
        if self._train_tensors is None:
            x, y = as_tensors(self.splits.train)
            self._train_tensors = (x.to(self.device), y.to(self.device))
        return self._train_tensors

    def example(self) -> torch.Tensor:
        return self.train_tensors()[0][:1]


class Method(abc.ABC):
    """Base of all compensation methods (see the module docstring for the life cycle)."""

    name: ClassVar[str]
    #: Hyper-parameters with defaults; subclasses extend it. Values are validated in ``__init__``.
    defaults: ClassVar[dict] = {}
    _POSITIVE = {"steps", "lr", "batch_size", "rank", "epochs", "batches", "n_samples", "budget", "n_probe",
                 "alpha", "sensitivity_chips"}
    _NON_NEGATIVE = {"kd_weight", "finetune_steps"}

    def __init__(self, **params):
        unknown = set(params) - set(self.defaults)
        if unknown:
            raise RramlibError(f"unknown parameter(s) {sorted(unknown)} for method {self.name!r}; "
                               f"known: {sorted(self.defaults)}")
        self.params = {**self.defaults, **params}
        for key, default in self.defaults.items():
            if default is not None and not isinstance(default, bool) and isinstance(default, (int, float)):
                value = self.params[key]
                check_type(f"{self.name}.{key}", value, (int, float) if isinstance(default, float) else int)
        for key in self._POSITIVE & set(self.params):
            check_positive(f"{self.name}.{key}", self.params[key])
        for key in self._NON_NEGATIVE & set(self.params):
            check_positive(f"{self.name}.{key}", self.params[key], allow_zero=True)
        self.analog_: AnalogModel | None = None

    # -------------------------------------------------------------- to implement
    @abc.abstractmethod
    def setup(self, ctx: FitContext) -> None:
        """Build the structure (chip, adapters ...) with untrained parameters."""

    def train(self, ctx: FitContext) -> None:
        """Train the parameters offline (default: nothing to train)."""

    def state_dict(self) -> dict:
        """The learned state to cache (tensors and plain values)."""
        return {}

    def load_state_dict(self, state: dict) -> None:
        """Restore what :meth:`state_dict` returned (after :meth:`setup`)."""

    @abc.abstractmethod
    def storage(self) -> Storage:
        """Values this method keeps in digital memory."""

    def extra_macs(self, example: torch.Tensor) -> int:
        """Extra multiply-accumulates of one inference (default: none)."""
        return 0

    def select(self, t: float) -> None:
        """Activate what the method uses at time ``t`` (e.g. the drift level's parameter set)."""

    # -------------------------------------------------------------- common
    def fit(self, ctx: FitContext) -> Method:
        self.setup(ctx)
        self.train(ctx)
        return self

    def config(self) -> dict:
        """Method name and hyper-parameters (part of cache keys)."""
        return {"method": self.name, **self.params}

    def at(self, seed: int, t: float) -> nn.Module:
        """The network to evaluate for evaluation chip ``seed`` at ``t`` seconds."""
        if self.analog_ is None:
            raise RramlibError(f"method {self.name!r} is not fitted; call fit(ctx) first")
        if self.analog_.seed != seed:
            self.analog_.program(seed)
        model = self.analog_.at(t)
        self.select(t)
        return model

    def macs_ratio(self, example: torch.Tensor) -> float:
        """Extra MACs as a fraction of the base network's MACs."""
        return self.extra_macs(example) / base_macs(self.analog_.model, example)


def drift_injected_training(
    ctx: FitContext,
    analog: AnalogModel,
    parameters: list[nn.Parameter],
    level: int,
    *,
    steps: int,
    lr: float,
    batch_size: int = 64,
    kd_weight: float = 0.0,
    kd_temperature: float = 4.0,
    seed: int = 0,
    desc: str = "train",
) -> list[float]:
    """Train ``parameters`` on chips drifted to times drawn from window ``level`` of the schedule.

    Every step programs a training chip (seed drawn from ``range(ctx.train_chips)``, disjoint from the
    evaluation chips), drifts it to a time drawn log-uniformly from the level's window, and takes one Adam
    step on cross-entropy, plus ``kd_weight`` times the distillation loss (KL divergence at temperature
    ``kd_temperature``, Hinton et al. 2015) towards the drift-free model. Base weights stay frozen; the
    network stays in eval mode (BatchNorm statistics fixed). Returns the loss per step.
    """
    check_positive("steps", steps)
    check_positive("lr", lr)
    if not parameters:
        raise RramlibError("nothing to train")
    gen = torch.Generator().manual_seed(seed)
    x, y = ctx.train_tensors()
    times = ctx.schedule.sample_times(level, steps, gen)
    chips = torch.randint(ctx.train_chips, (steps,), generator=gen).tolist()
    teacher = ctx.model.eval() if kd_weight > 0 else None
    optimizer = torch.optim.Adam(parameters, lr=lr)
    analog.model.eval()
    losses = []
    for t, chip in tqdm(list(zip(times, chips)), desc=desc, disable=not ctx.progress, leave=False):
        if analog.seed != chip:
            analog.program(chip)
        model = analog.at(t)
        idx = torch.randint(len(y), (batch_size,), generator=gen).to(y.device)
        logits = model(x[idx])
        loss = F.cross_entropy(logits, y[idx])
        if teacher is not None:
            with torch.no_grad():
                target = F.log_softmax(teacher(x[idx]) / kd_temperature, dim=1)
            kd = F.kl_div(F.log_softmax(logits / kd_temperature, dim=1), target, log_target=True,
                          reduction="batchmean") * kd_temperature**2
            loss = loss + kd_weight * kd
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
        if not math.isfinite(losses[-1]):
            raise RramlibError(f"{desc}: loss became {losses[-1]} at step {len(losses)}; lower the learning rate")
    return losses


class PerLevelAdapterMethod(Method):
    """A method made of adapters with one parameter set per drift level (VeRA+, LoRA).

    Subclasses give ``adapter_params`` (names of ``defaults`` passed to the adapter factory) and
    :meth:`add_adapters`. Training follows :func:`drift_injected_training`, one level after the other.
    """

    adapter_params: ClassVar[tuple[str, ...]] = ()
    training_defaults: ClassVar[dict] = {"steps": 300, "lr": 5e-3, "batch_size": 64, "kd_weight": 0.0,
                                         "seed": 0}

    @abc.abstractmethod
    def add_adapters(self, model: nn.Module, levels: list[str], **params):
        """Wrap ``model``'s RRAM layers; return the adapter controller."""

    def setup(self, ctx: FitContext) -> None:
        self.analog_ = ctx.analog()
        self.schedule_ = ctx.schedule
        self.adapters_ = self.add_adapters(self.analog_.model, ctx.schedule.names,
                                           **{k: self.params[k] for k in self.adapter_params})
        self.adapters_.to(next(self.analog_.model.parameters()).device)

    def train(self, ctx: FitContext) -> None:
        p = self.params
        self.losses_ = {}
        for level, name in enumerate(ctx.schedule.names):
            self.adapters_.set_level(name)
            self.losses_[name] = drift_injected_training(
                ctx, self.analog_, self.adapters_.level_parameters(name), level, steps=p["steps"], lr=p["lr"],
                batch_size=p["batch_size"], kd_weight=p["kd_weight"], seed=p["seed"] * 1000 + level,
                desc=f"{self.name} {name}")

    def select(self, t: float) -> None:
        self.adapters_.set_level(self.schedule_.name_of(t))

    def state_dict(self) -> dict:
        return {name: {k: v.detach().cpu() for k, v in self.adapters_.level_state_dict(name).items()}
                for name in self.adapters_.levels}

    def load_state_dict(self, state: dict) -> None:
        for name, sd in state.items():
            self.adapters_.load_level_state_dict(name, sd)

    def storage(self) -> Storage:
        return Storage(values_per_level=self.adapters_.values_per_level(), levels=self.schedule_.num_levels,
                       shared_values=self.adapters_.shared_values(), seed_bytes=self.adapters_.shared_seed_bytes())

    def extra_macs(self, example: torch.Tensor) -> int:
        return self.adapters_.extra_macs(example[:1])
