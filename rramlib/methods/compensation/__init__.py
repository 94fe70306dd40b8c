"""Compensation methods behind one API (see :class:`~rramlib.methods.compensation.base.Method`).

==================  ===============================================================  =========================
name                what it does                                                     stores per level
==================  ===============================================================  =========================
none                drifted chip as it is                                            nothing
scale               aihwkit-style global / per-column output rescaling               (r0 per layer)
bn                  BatchNorm statistics (and γ/β) re-estimated per drift level      one BN set
ln_refit            LayerNorm γ/β re-fitted per drift level (ours: BN's analogue)    one LayerNorm γ/β set
lora                LoRA A_k, B_k per layer and level (peft or VeRA+'s 1x1 branch)   A, B
vera_plus           VeRA+: λ_b, λ_d per level over shared seeded projections         two vectors
dora                DoRA calibration of each chip in the field, 10 samples (online)  DoRA params + calib. data
noise_aware         base model trained with drift injected                           nothing
offline_correction  one full-rank weight correction per level for every chip         whole model
reprogram           upper line: the chip rewritten with the software weights at t    whole model (once)
==================  ===============================================================  =========================

Each method class states its own facts (:data:`FACTS`: book label, colour, marker, how it is fitted, what it
keeps shared, whether the tuning chapter trains it, why it does not apply to a Hidden-Fold Network), checked by
:func:`register`; tables by method name read them through :data:`METHODS` (:class:`MethodFacts`), so a new
method's facts are written once, in its class. Registry key, class and config agree (``offline_correction``:
``OfflineCorrection``, ``OfflineCorrectionConfig``).

``offline_correction`` was registered as ``retrain`` before; it is not an oracle (a method fitted to each
chip can beat it): the upper line is ``reprogram``.
"""
from __future__ import annotations

from collections.abc import Iterator, Mapping

from rramlib.core.errors import RramlibError, check_choice
from rramlib.methods.compensation.base import (FACTS, FitContext, Method, MethodConfig, PerLevelAdapterMethod,
                                              TrainingConfig, drift_injected_training)
from rramlib.methods.compensation.bn import BNRecalibration, BNRecalibrationConfig
from rramlib.methods.compensation.dora_calibration import DoRACalibration, DoRACalibrationConfig
from rramlib.methods.compensation.layernorm import LayerNormRefit, LayerNormRefitConfig
from rramlib.methods.compensation.lora import LoRAMethod, LoRAMethodConfig
from rramlib.methods.compensation.noise_aware import NoiseAware, NoiseAwareConfig
from rramlib.methods.compensation.none import NoCompensation
from rramlib.methods.compensation.offline_correction import OfflineCorrection, OfflineCorrectionConfig
from rramlib.methods.compensation.reprogram import Reprogram
from rramlib.methods.compensation.scale import OutputScaling, OutputScalingConfig
from rramlib.methods.compensation.vera_plus import VeraPlusMethod, VeraPlusMethodConfig

#: Registry name -> method class; each class states its own facts (label, colour, ...: :data:`FACTS`).
METHODS: dict[str, type[Method]] = {}


def register(cls: type[Method]) -> type[Method]:
    """Add method class ``cls`` to :data:`METHODS` under ``cls.name``, after checking that it states every
    fact (:meth:`Method.check_facts`) and that its config is named after it (``<class>Config``). Returns ``cls``."""
    name = getattr(cls, "name", None)
    if not isinstance(name, str) or not name:
        raise RramlibError(f"method class {cls.__name__} has no registry name (class attribute 'name')")
    if name in METHODS or name in RENAMED:
        raise RramlibError(f"method name {name!r} is taken")
    cls.check_facts()
    if cls.Config is not MethodConfig and cls.Config.__name__ != f"{cls.__name__}Config":
        raise RramlibError(f"method class {cls.__name__}'s config is {cls.Config.__name__}, "
                           f"not {cls.__name__}Config")
    METHODS[name] = cls
    return cls


#: Registry names that were renamed: old name -> new name (the old one is refused with a pointer to the new).
RENAMED = {"retrain": "offline_correction"}

for _cls in (NoCompensation, OutputScaling, BNRecalibration, LoRAMethod, DoRACalibration, VeraPlusMethod, NoiseAware,
             OfflineCorrection, Reprogram, LayerNormRefit):
    register(_cls)


def check_method(name: object) -> str:
    """``name`` if it is a registered method; an old name gets an error naming its replacement."""
    if isinstance(name, str) and name in RENAMED:
        raise RramlibError(f"method {name!r} is now called {RENAMED[name]!r} (one full-rank weight correction per "
                           f"drift level, shared by all chips: not an oracle; the upper line is 'reprogram')")
    return check_choice("method", name, METHODS)


class MethodFacts(Mapping):
    """One fact (:data:`FACTS`) by name: ``MethodFacts("label")["vera_plus"]`` is ``METHODS["vera_plus"].label``,
    read at every lookup (a method registered later shows up at once); then ``others``, the rows of the book's
    figures and tables that are not methods (e.g. the drift-free reference line), under names no method has."""

    def __init__(self, fact: str, others: Mapping[str, object] | None = None):
        self.fact = check_choice("fact", fact, FACTS)
        self.others = dict(others or {})
        if taken := sorted(set(self.others) & set(METHODS)):
            raise RramlibError(f"{taken} are methods: their {fact} is the method class's own")

    def __getitem__(self, name: str):
        return getattr(METHODS[name], self.fact) if name in METHODS else self.others[name]

    def __iter__(self) -> Iterator[str]:
        return iter([*METHODS, *(k for k in self.others if k not in METHODS)])

    def __len__(self) -> int:
        return len([*iter(self)])


def make_method(name: str, **params) -> Method:
    """A method by name with its hyper-parameters (unknown name or parameter, bad value -> RramlibError)."""
    return METHODS[check_method(name)](**params)


__all__ = ["METHODS", "RENAMED", "FACTS", "MethodFacts", "register", "check_method", "FitContext", "Method",
           "MethodConfig", "PerLevelAdapterMethod", "TrainingConfig", "drift_injected_training", "make_method",
           "BNRecalibrationConfig", "DoRACalibrationConfig", "LayerNormRefitConfig", "LoRAMethodConfig", "NoiseAwareConfig",
           "OfflineCorrectionConfig", "OutputScalingConfig", "VeraPlusMethodConfig"]
