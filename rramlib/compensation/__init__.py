"""Compensation methods behind one API (see :class:`~rramlib.compensation.base.Method`).

=============  ===============================================================  ===============
name           what it does                                                     stores per level
=============  ===============================================================  ===============
none           drifted chip as it is                                            nothing
scale          aihwkit-style global / per-column output rescaling              (r0 per layer)
bn             BatchNorm statistics (and γ/β) re-estimated per drift level      one BN set
lora           LoRA A_k, B_k per layer and level (peft or VeRA+'s 1x1 branch)   A, B
vera_plus      VeRA+: λ_b, λ_d per level over shared seeded projections         two vectors
dora           DoRA calibration of each chip in the field, 10 samples (online)  DoRA params + calib. data
noise_aware    base model trained with drift injected                           nothing
retrain        full-rank weight correction per level, shared by all chips       whole model
reprogram      upper line: the chip rewritten with the software weights at t    whole model (once)
=============  ===============================================================  ===============
"""
from __future__ import annotations

from ..errors import check_choice
from .base import FitContext, Method, MethodConfig, PerLevelAdapterMethod, TrainingConfig, drift_injected_training
from .bn import BNRecalibration, BNRecalibrationConfig
from .dora_calibration import DoRACalibration, DoRACalibrationConfig
from .lora import LoRAMethod, LoRAMethodConfig
from .noise_aware import NoiseAwareConfig, NoiseAwareTraining
from .none import NoCompensation
from .reprogram import Reprogram
from .retrain import FullRankCorrection, RetrainConfig
from .scale import OutputScaling, OutputScalingConfig
from .vera_plus import VeraPlusMethod, VeraPlusMethodConfig

METHODS: dict[str, type[Method]] = {
    cls.name: cls
    for cls in (NoCompensation, OutputScaling, BNRecalibration, LoRAMethod, DoRACalibration, VeraPlusMethod,
                NoiseAwareTraining, FullRankCorrection, Reprogram)
}


def make_method(name: str, **params) -> Method:
    """A method by name with its hyper-parameters (unknown name or parameter, bad value -> RramlibError)."""
    return METHODS[check_choice("method", name, METHODS)](**params)


__all__ = ["METHODS", "FitContext", "Method", "MethodConfig", "PerLevelAdapterMethod", "TrainingConfig",
           "drift_injected_training", "make_method", "BNRecalibrationConfig", "DoRACalibrationConfig",
           "LoRAMethodConfig", "NoiseAwareConfig", "OutputScalingConfig", "RetrainConfig", "VeraPlusMethodConfig"]
