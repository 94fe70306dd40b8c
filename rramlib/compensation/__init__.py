"""Compensation methods behind one API (see :class:`~rramlib.compensation.base.Method`).

=============  ===============================================================  ===============
name           what it does                                                     stores per level
=============  ===============================================================  ===============
none           drifted chip as it is                                            nothing
scale          aihwkit-style global / per-column output rescaling              (r0 per layer)
bn             BatchNorm statistics (and γ/β) re-estimated per drift level      one BN set
lora           LoRA A_k, B_k per layer and level                                A, B
vera_plus      VeRA+: λ_b, λ_d per level over shared seeded projections         two vectors
dora           DoRA calibration of the chip with 10 samples (feature KD)        DoRA params
noise_aware    base model trained with drift injected                           nothing
retrain        oracle: full weight correction per level (= rewriting RRAM)     whole model
=============  ===============================================================  ===============
"""
from __future__ import annotations

from ..errors import check_choice
from .base import FitContext, Method, PerLevelAdapterMethod, drift_injected_training
from .bn import BNRecalibration
from .dora_calibration import DoRACalibration
from .lora import LoRAMethod
from .noise_aware import NoiseAwareTraining
from .none import NoCompensation
from .retrain import RetrainOracle
from .scale import OutputScaling
from .vera_plus import VeraPlusMethod

METHODS: dict[str, type[Method]] = {
    cls.name: cls
    for cls in (NoCompensation, OutputScaling, BNRecalibration, LoRAMethod, DoRACalibration, VeraPlusMethod,
                NoiseAwareTraining, RetrainOracle)
}


def make_method(name: str, **params) -> Method:
    """A method by name with its hyper-parameters (unknown name or parameter -> RramlibError)."""
    return METHODS[check_choice("method", name, METHODS)](**params)


__all__ = ["METHODS", "FitContext", "Method", "PerLevelAdapterMethod", "drift_injected_training", "make_method"]
