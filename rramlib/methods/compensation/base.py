"""The one API every compensation method follows, and the drift-injected training loop they share.

Life cycle (scikit-learn's conventions): ``make_method(name, **params)`` validates the hyper-parameters in
the method's config dataclass (``Method.Config``: defaults and checks in one place); ``fit(ctx)`` learns
offline and returns the method (learned state in attributes ending in ``_``), on training chips
(:func:`rramlib.core.seeding.train_chips`), never on evaluation chips, and without changing ``ctx.model``.
Afterwards ``at(chip, t)`` returns the network to evaluate for evaluation chip ``chip`` at ``t`` seconds
after programming: the chip's drifted weights plus the method's digital correction for the drift level
holding ``t``. :meth:`Method.sram_tensors` lists the digital values a fitted method keeps.
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

from rramlib.device.analog import READOUTS, AnalogModel
from rramlib.core.config import Config
from rramlib.nn.data import DatasetSplits, as_tensors
from rramlib.device.drift import DriftModel
from rramlib.core.errors import RramlibError, check_choice, check_int, check_positive
from rramlib.methods.overhead import Storage, base_macs
from rramlib.methods.schedule import Schedule
from rramlib.core.seeding import SCHEME, check_root_seed, generator, train_chips
from rramlib.core.torchutil import eval_mode

__all__ = ["FACTS", "FitContext", "Method", "MethodConfig", "TrainingConfig", "PerLevelAdapterMethod",
           "drift_injected_training"]

#: Key prefixes in :meth:`Method.sram_tensors`: values used at every drift level, and data kept on the chip
#: for calibrating it in the field (which the network itself does not read).
SHARED, CALIBRATION = "shared", "calibration"


@dataclass
class FitContext:
    """Everything a method may use offline: the trained software model, its data and the device model.

    ``readout`` (:data:`rramlib.device.analog.READOUTS`) is how every chip this context programs is read, so a
    method is fitted and evaluated on the same readout (``"gdc"``: aihwkit's global drift compensation).
    """

    model: nn.Module
    splits: DatasetSplits
    drift: DriftModel
    schedule: Schedule
    mapping: str | None = None
    per_channel: bool = False
    n_conductance_states: int | None = None
    readout: str = "raw"
    train_chips: int = 8
    seed: int = 0
    device: str = "cpu"
    progress: bool = False
    _train_tensors: tuple | None = field(default=None, repr=False)

    def __post_init__(self):
        train_chips(self.train_chips)  # validates: the training chips stay below the evaluation chips
        check_choice("readout", self.readout, READOUTS)

    def analog(self, model: nn.Module | None = None, seed: int = 0) -> AnalogModel:
        """A chip programmed with ``model`` (default: the software model) and this context's device model."""
        return AnalogModel(model if model is not None else self.model, self.drift, seed=seed,
                           mapping=self.mapping, per_channel=self.per_channel,
                           n_conductance_states=self.n_conductance_states, readout=self.readout)

    def train_tensors(self) -> tuple[torch.Tensor, torch.Tensor]:
        if self._train_tensors is None:
            x, y = as_tensors(self.splits.train)
            self._train_tensors = (x.to(self.device), y.to(self.device))
        return self._train_tensors

    def example(self) -> torch.Tensor:
        return self.train_tensors()[0][:1]


@dataclass(frozen=True)
class MethodConfig(Config):
    """Base of the per-method hyper-parameter dataclasses (a method without hyper-parameters uses it as is)."""


@dataclass(frozen=True)
class TrainingConfig(MethodConfig):
    """Hyper-parameters of :func:`drift_injected_training` (shared by the methods trained with it)."""

    steps: int = field(default=300, metadata={"help": "Adam steps per drift level, one drifted training chip each"})
    lr: float = field(default=5e-3, metadata={"help": "Adam learning rate"})
    batch_size: int = field(default=64, metadata={"help": "training images per step"})
    kd_weight: float = field(default=0.0, metadata={
        "help": "weight of the distillation loss towards the drift-free model (0: cross-entropy only)"})
    seed: int = field(default=0, metadata={"help": "root seed of the training draws (times, chips, batches)"})

    def _validate(self) -> None:
        check_int(f"{self.owner}.steps", self.steps, 1)
        check_positive(f"{self.owner}.lr", self.lr)
        check_int(f"{self.owner}.batch_size", self.batch_size, 1)
        check_positive(f"{self.owner}.kd_weight", self.kd_weight, allow_zero=True)
        check_root_seed(self.seed, f"{self.owner}.seed")


#: The facts every method class states (class attributes, :meth:`Method.check_facts`): name -> allowed types.
FACTS: dict[str, type | tuple[type, ...]] = {"label": str, "color": str, "marker": str, "fitting": str,
                                             "shared_note": str, "trained": bool, "not_for_hfn": (str, type(None))}


class Method(abc.ABC):
    """Base of all compensation methods (see the module docstring for the life cycle)."""

    name: ClassVar[str]
    #: The hyper-parameter dataclass; ``make_method(name, **params)`` builds it from ``params``.
    Config: ClassVar[type[MethodConfig]] = MethodConfig

    # -------------------------------------------------------------- facts (:data:`FACTS`; every registered method
    # states all of them in its own class, and the study and the book read them from the registry)
    #: The book's name of the method (figures and tables).
    label: ClassVar[str]
    #: Its colour in every figure (Okabe-Ito palette, colour-blind safe; :mod:`rramlib.present.plotting`).
    color: ClassVar[str]
    #: Its matplotlib marker, for figures where colour alone is not enough.
    marker: ClassVar[str]
    #: How it gets its correction (the ``fitted`` column of :mod:`rramlib.study.analysis`'s tables); a method
    #: calibrated on every chip in the field starts with ``"online"``.
    fitting: ClassVar[str]
    #: What it keeps once for all drift levels, or regenerates (the storage table, :mod:`rramlib.study.costs`).
    shared_note: ClassVar[str]
    #: Does it learn with a learning rate ``lr`` that the tuning chapter tunes (:mod:`rramlib.study.tuning`)?
    trained: ClassVar[bool]
    #: Why it does not apply to a Hidden-Fold Network, or ``None`` where it does (:mod:`rramlib.study.hidden_fold`).
    not_for_hfn: ClassVar[str | None]

    @classmethod
    def check_facts(cls) -> None:
        """RramlibError unless the class states every fact of :data:`FACTS` with the right type, and ``trained``
        agrees with its hyper-parameters (a trained method has an ``lr``, the one value the tuning chapter scales)."""
        missing = [f for f in FACTS if not hasattr(cls, f)]
        if missing:
            raise RramlibError(f"method class {cls.__name__} does not state {missing} "
                               f"(every method states {list(FACTS)})")
        wrong = [f"{f}={getattr(cls, f)!r}" for f, types in FACTS.items() if not isinstance(getattr(cls, f), types)]
        if wrong:
            raise RramlibError(f"method class {cls.__name__}: wrong type of {wrong} (types: {FACTS})")
        if cls.trained != ("lr" in cls.default_params()):
            raise RramlibError(f"method class {cls.__name__}: trained={cls.trained} but its hyper-parameters "
                               f"{'lack' if cls.trained else 'have'} a learning rate 'lr'")

    def __init__(self, config: MethodConfig | None = None, **params):
        self.hparams = self.Config.resolve(config, params)
        self.analog_: AnalogModel | None = None

    @property
    def params(self) -> dict:
        """The hyper-parameters by name (a fresh dict)."""
        return self.hparams.as_dict()

    @classmethod
    def default_params(cls) -> dict:
        """The hyper-parameters' defaults by name."""
        return cls.Config().as_dict()

    # -------------------------------------------------------------- to implement
    @abc.abstractmethod
    def setup(self, ctx: FitContext) -> None:
        """Build the structure (chip, adapters ...) with untrained parameters."""

    def train(self, ctx: FitContext) -> None:
        """Train the parameters offline. Default: a per-level method (:meth:`trains_per_level`) trains every
        drift level in turn with :meth:`train_level`, then activates level 0; any other method has nothing to train."""
        if self.trains_per_level():
            for level in range(ctx.schedule.num_levels):
                self.train_level(ctx, level)
            self.select(0.0)

    # -------------------------------------------------------------- per-level methods (one parameter set per level)
    @classmethod
    def trains_per_level(cls) -> bool:
        """Does the method train one independent parameter set per drift level (it overrides :meth:`train_level`)?"""
        return cls.train_level is not Method.train_level

    def train_level(self, ctx: FitContext, level: int) -> None:
        """Train drift level ``level``'s parameter set alone (after :meth:`setup`). The levels must not depend on
        each other: training them in any order, in one object or in separate processes, gives the same state bit
        for bit, so a cluster can fit each level as a task of its own (:func:`rramlib.study.experiments.fit_level`)."""
        raise NotImplementedError(f"method {self.name!r} has no per-level training")

    def level_state_dict(self, level: int) -> dict:
        """The learned state of drift level ``level`` alone (tensors on the CPU), as :meth:`train_level` left it."""
        raise NotImplementedError(f"method {self.name!r} has no per-level state")

    def load_level_state_dict(self, level: int, state: dict) -> None:
        """Restore what :meth:`level_state_dict` returned (after :meth:`setup`); all levels loaded = the full fit."""
        raise NotImplementedError(f"method {self.name!r} has no per-level state")

    def state_dict(self) -> dict:
        """The learned state to cache (tensors and plain values)."""
        return {}

    def load_state_dict(self, state: dict) -> None:
        """Restore what :meth:`state_dict` returned (after :meth:`setup`)."""

    @abc.abstractmethod
    def storage(self) -> Storage:
        """Values this method keeps in digital memory."""

    def _sram_tensors(self) -> dict[str, torch.Tensor]:
        """The tensors behind :meth:`storage`, keyed ``"<drift level>/<name>"`` or ``"shared/<name>"``."""
        return {}

    def extra_macs(self, example: torch.Tensor) -> int:
        """Extra multiply-accumulates of one inference (default: none)."""
        return 0

    def select(self, t: float) -> None:
        """Activate what the method uses at time ``t`` (e.g. the drift level's parameter set)."""

    # -------------------------------------------------------------- common
    def fit(self, ctx: FitContext) -> Method:
        """Learn offline (:meth:`setup` then :meth:`train`); ``ctx.model`` is left as it was. Returns self."""
        self.setup(ctx)
        self.train(ctx)
        return self

    def config(self) -> dict:
        """Method name, hyper-parameters and seeding scheme (part of cache keys)."""
        return {"method": self.name, **self.params, "seeding": SCHEME}

    def _check_fitted(self) -> None:
        if self.analog_ is None:
            raise RramlibError(f"method {self.name!r} is not fitted; call fit(ctx) first")

    def at(self, seed: int, t: float) -> nn.Module:
        """The network to evaluate for evaluation chip ``seed`` at ``t`` seconds after programming.

        Returns the method's own network (``self.analog_.model``): the same module at every call, its
        weights overwritten in place by the next ``at`` call; copy it to keep two chips or times at once.
        """
        self._check_fitted()
        if self.analog_.seed != seed:
            self.analog_.program(seed)
        model = self.analog_.at(t)
        self.select(t)
        return model

    def sram_tensors(self, t: float | None = None) -> dict[str, torch.Tensor]:
        """The digital values the fitted method keeps (live tensors, not copies).

        Keys are ``"<drift level>/<name>"`` for values kept per drift level, ``"shared/<name>"`` for values
        used at every level and ``"calibration/<name>"`` for data an online method keeps to calibrate the chip;
        with ``t`` given, only the values the network reads at ``t`` seconds. The element count of all of them
        equals ``storage().total_values``. Writing into a tensor changes what the network computes once its
        level is active (e.g. to inject faults).
        """
        self._check_fitted()
        tensors = self._sram_tensors()
        if t is None:
            return tensors
        keep = {SHARED, self.schedule_.name_of(t)} if hasattr(self, "schedule_") else {SHARED}
        return {k: v for k, v in tensors.items() if k.split("/", 1)[0] in keep}

    def macs_ratio(self, example: torch.Tensor) -> float:
        """Extra MACs as a fraction of the base network's MACs."""
        return self.extra_macs(example) / base_macs(self.analog_.model, example)


def drift_injected_training(
    ctx: FitContext,
    analog: AnalogModel,
    parameters: list[nn.Parameter],
    level: int,
    generator: torch.Generator,
    *,
    steps: int,
    lr: float,
    batch_size: int = 64,
    kd_weight: float = 0.0,
    kd_temperature: float = 4.0,
    desc: str = "train",
) -> list[float]:
    """Train ``parameters`` on chips drifted to times drawn from window ``level`` of the schedule.

    Every step programs a training chip (drawn from :func:`~rramlib.core.seeding.train_chips`, disjoint from
    the evaluation chips), drifts it to a time drawn log-uniformly from the level's window, and takes one
    Adam step on cross-entropy, plus ``kd_weight`` times the distillation loss (KL divergence at
    temperature ``kd_temperature``, Hinton et al. 2015) towards the drift-free model. All randomness comes
    from ``generator``. Base weights stay frozen; the network stays in eval mode (BatchNorm statistics
    fixed); ``ctx.model`` (the teacher) keeps its training flags. Returns the loss per step.
    """
    check_int("steps", steps, 1)
    check_positive("lr", lr)
    if not parameters:
        raise RramlibError("nothing to train")
    x, y = ctx.train_tensors()
    times = ctx.schedule.sample_times(level, steps, generator)
    chip_numbers = train_chips(ctx.train_chips)
    chips = [chip_numbers[i] for i in torch.randint(len(chip_numbers), (steps,), generator=generator).tolist()]
    optimizer = torch.optim.Adam(parameters, lr=lr)
    analog.model.eval()
    losses = []
    with eval_mode(ctx.model):
        for t, chip in tqdm(list(zip(times, chips)), desc=desc, disable=not ctx.progress, leave=False):
            if analog.seed != chip:
                analog.program(chip)
            model = analog.at(t)
            idx = torch.randint(len(y), (batch_size,), generator=generator).to(y.device)
            logits = model(x[idx])
            loss = F.cross_entropy(logits, y[idx])
            if kd_weight > 0:
                with torch.no_grad():
                    target = F.log_softmax(ctx.model(x[idx]) / kd_temperature, dim=1)
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
    """A method made of adapters with one named adapter (parameter set) per drift level (VeRA+, LoRA).

    Subclasses give ``Config`` (a :class:`TrainingConfig` that also derives from the adapter's config)
    and :meth:`add_adapters`. Training follows :func:`drift_injected_training`, one level after the other,
    level ``k`` drawing from the stream ``(seed, "adapter_training", k)``.
    """

    Config: ClassVar[type[TrainingConfig]] = TrainingConfig

    @abc.abstractmethod
    def add_adapters(self, model: nn.Module, adapter_names: list[str]):
        """Wrap ``model``'s RRAM layers with one named adapter per name; return the adapter controller."""

    def setup(self, ctx: FitContext) -> None:
        self.analog_ = ctx.analog()
        self.schedule_ = ctx.schedule
        self.adapters_ = self.add_adapters(self.analog_.model, ctx.schedule.names)
        self.adapters_.to(next(self.analog_.model.parameters()).device)
        self.losses_: dict[str, list[float]] = {}

    def train_level(self, ctx: FitContext, level: int) -> None:
        p = self.hparams
        name = ctx.schedule.names[level]
        self.adapters_.set_adapter(name)
        self.losses_[name] = drift_injected_training(
            ctx, self.analog_, self.adapters_.adapter_parameters(name), level,
            generator(p.seed, "adapter_training", level), steps=p.steps, lr=p.lr, batch_size=p.batch_size,
            kd_weight=p.kd_weight, desc=f"{self.name} {name}")

    def select(self, t: float) -> None:
        self.adapters_.set_adapter(self.schedule_.name_of(t))

    def level_state_dict(self, level: int) -> dict:
        name = self.schedule_.names[level]
        return {k: v.detach().cpu() for k, v in self.adapters_.adapter_state_dict(name).items()}

    def load_level_state_dict(self, level: int, state: dict) -> None:
        self.adapters_.load_adapter_state_dict(self.schedule_.names[level], state)

    def state_dict(self) -> dict:
        return {name: self.level_state_dict(level) for level, name in enumerate(self.schedule_.names)}

    def load_state_dict(self, state: dict) -> None:
        for name, sd in state.items():
            self.adapters_.load_adapter_state_dict(name, sd)

    def storage(self) -> Storage:
        return Storage(values_per_level=self.adapters_.values_per_adapter(), levels=self.schedule_.num_levels,
                       shared_values=self.adapters_.shared_values(), seed_bytes=self.adapters_.shared_seed_bytes())

    def _sram_tensors(self) -> dict[str, torch.Tensor]:
        return {f"{name}/{k}": v for name in self.adapters_.adapter_names
                for k, v in self.adapters_.adapter_tensors(name).items()}

    def extra_macs(self, example: torch.Tensor) -> int:
        return self.adapters_.extra_macs(example[:1])
