"""Compensation methods behind one API (see :class:`~rramlib.methods.compensation.base.Method`).

==================  ===============================================================  =========================
name                what it does                                                     stores per level
==================  ===============================================================  =========================
none                drifted chip as it is                                            nothing
scale               aihwkit-style global / per-column output rescaling               (r0 per layer)
bn                  BatchNorm statistics (and γ/β) re-estimated per drift level      one BN set
lora                LoRA A_k, B_k per layer and level (peft or VeRA+'s 1x1 branch)   A, B
vera_plus           VeRA+: λ_b, λ_d per level over shared seeded projections         two vectors
dora                DoRA calibration of each chip in the field, 10 samples (online)  DoRA params + calib. data
noise_aware         base model trained with drift injected                           nothing
offline_correction  one full-rank weight correction per level for every chip         whole model
reprogram           upper line: the chip rewritten with the software weights at t    whole model (once)
==================  ===============================================================  =========================

``offline_correction`` was registered as ``retrain`` before; it is not an oracle (a method fitted to each
chip can beat it): the upper line is ``reprogram``.
"""
from __future__ import annotations

from rramlib.core.errors import RramlibError, check_choice
from rramlib.methods.compensation.base import FitContext, Method, MethodConfig, PerLevelAdapterMethod, TrainingConfig, drift_injected_training
from rramlib.methods.compensation.bn import BNRecalibration, BNRecalibrationConfig
from rramlib.methods.compensation.dora_calibration import DoRACalibration, DoRACalibrationConfig
from rramlib.methods.compensation.lora import LoRAMethod, LoRAMethodConfig
from rramlib.methods.compensation.noise_aware import NoiseAwareConfig, NoiseAwareTraining
from rramlib.methods.compensation.none import NoCompensation
from rramlib.methods.compensation.offline_correction import FullRankCorrection, OfflineCorrectionConfig
from rramlib.methods.compensation.reprogram import Reprogram
from rramlib.methods.compensation.scale import OutputScaling, OutputScalingConfig
from rramlib.methods.compensation.vera_plus import VeraPlusMethod, VeraPlusMethodConfig

METHODS: dict[str, type[Method]] = {
    cls.name: cls
    for cls in (NoCompensation, OutputScaling, BNRecalibration, LoRAMethod, DoRACalibration, VeraPlusMethod,
                NoiseAwareTraining, FullRankCorrection, Reprogram)
}


#: Registry names that were renamed: old name -> new name (the old one is refused with a pointer to the new).
RENAMED = {"retrain": "offline_correction"}


def check_method(name: object) -> str:
    """``name`` if it is a registered method; an old name gets an error naming its replacement."""
    if isinstance(name, str) and name in RENAMED:
        raise RramlibError(f"method {name!r} is now called {RENAMED[name]!r} (one full-rank weight correction per "
                           f"drift level, shared by all chips: not an oracle; the upper line is 'reprogram')")
    return check_choice("method", name, METHODS)


def make_method(name: str, **params) -> Method:
    """A method by name with its hyper-parameters (unknown name or parameter, bad value -> RramlibError)."""
    return METHODS[check_method(name)](**params)


__all__ = ["METHODS", "RENAMED", "check_method", "FitContext", "Method", "MethodConfig", "PerLevelAdapterMethod",
           "TrainingConfig", "drift_injected_training", "make_method", "BNRecalibrationConfig", "DoRACalibrationConfig",
           "LoRAMethodConfig", "NoiseAwareConfig", "OfflineCorrectionConfig", "OutputScalingConfig",
           "VeraPlusMethodConfig"]
