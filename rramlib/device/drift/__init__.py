"""Device drift models (the book's "Device models" chapter): programming once per chip, then conductances at any time t.

Presets (each class docstring gives its equations and sources):

* ``relative_gaussian`` -- ``G = G_t (1 + RD(t) z)``, Dong et al. 2025 (quoted second-hand);
* ``ibm_cmo_reram`` -- IBM CMO/HfOx ReRAM, aihwkit ``ReRamCMONoiseModel`` (single device);
* ``ibm_pcm`` -- IBM PCM-like model, aihwkit ``PCMLikeNoiseModel`` (Nandakumar et al. 2019);
* ``measured`` -- a CSV table of drift statistics; default NeuRRAM (Wan et al., Nature 2022).

Use::

    model = make_drift_model("ibm_pcm", drift_scale=2.0)
    state = model.program(g_target, torch.Generator().manual_seed(chip))
    g_1y = model.conductance(state, YEAR)
"""
from __future__ import annotations

import inspect

from rramlib.core.errors import RramlibError, check_choice
from rramlib.device.drift.base import DriftModel
from rramlib.device.drift.ibm_cmo_reram import IbmCmoReram
from rramlib.device.drift.ibm_pcm import IbmPcm
from rramlib.device.drift.measured import NEURRAM_CSV, DriftTable, Measured, neurram_table
from rramlib.device.drift.relative_gaussian import RelativeGaussian

__all__ = ["DEFAULT_PRESET", "DriftModel", "PRESETS", "make_drift_model", "preset_parameters", "RelativeGaussian",
           "IbmCmoReram", "IbmPcm", "Measured", "DriftTable", "neurram_table", "NEURRAM_CSV"]

#: preset name -> class
PRESETS: dict[str, type[DriftModel]] = {
    cls.name: cls for cls in (RelativeGaussian, IbmCmoReram, IbmPcm, Measured)
}

#: The preset used where none is named: by :class:`rramlib.study.experiments.SweepConfig`, ``rramlib sweep`` and
#: the notebooks' ``preset`` parameter. IBM's CMO/HfOx ReRAM, the device the book studies.
DEFAULT_PRESET = IbmCmoReram.name


def preset_parameters(name: str) -> dict[str, object]:
    """The parameters of a preset and their defaults."""
    cls = PRESETS[check_choice("preset", name, PRESETS)]
    return {p.name: p.default for p in inspect.signature(cls.__init__).parameters.values()
            if p.kind is inspect.Parameter.KEYWORD_ONLY}


def make_drift_model(name: str, **params: object) -> DriftModel:
    """Build a preset by name; unknown names or parameters, and bad values, raise :class:`RramlibError`."""
    known = preset_parameters(name)
    unknown = sorted(set(params) - set(known))
    if unknown:
        raise RramlibError(f"unknown parameter(s) {', '.join(unknown)} for drift preset {name!r}; "
                           f"valid: {', '.join(known)}")
    return PRESETS[name](**params)
