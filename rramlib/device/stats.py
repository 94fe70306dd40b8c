"""Device-level statistics of the drift presets, with no network involved (the book's notebook 01).

* :func:`conductance_statistics` — devices programmed to a few target conductances, read over time:
  mean, shift from the target, spread and quantiles per (preset, target, time) (figure F1).
* :func:`weight_errors` — a synthetic Gaussian layer written onto each preset's devices with a single
  device and with a differential pair, read back over time: RMS error, bias and gain relative to the
  true weights (figure F2; the mappings are those of :mod:`rramlib.device.mapping`).
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from rramlib.device.drift import make_drift_model
from rramlib.core.errors import RramlibError
from rramlib.device.mapping import MAPPING_KINDS
from rramlib.core.seeding import generator
from rramlib.core.times import TIME_GRID, YEAR

__all__ = ["CURVE_TIMES", "QUANTILES", "drift_models", "targets_of", "conductance_statistics", "weight_errors",
           "on_grid"]

#: 29 log-spaced times between 1 s and 10 years plus the study's grid: the time axis of F1 and F2.
CURVE_TIMES = np.unique(np.concatenate([np.logspace(0, np.log10(10 * YEAR), 29), list(TIME_GRID.values())]))
#: Quantiles kept per (preset, target, time).
QUANTILES = (0.05, 0.25, 0.5, 0.75, 0.95)


def drift_models(presets, preset: str, drift_scale: float = 1.0, preset_params: dict | None = None) -> dict:
    """``{name: drift model}`` for ``presets`` plus ``preset`` (added at the end if missing).

    ``preset_params`` gives extra parameters per preset (``{"relative_gaussian": {"rd": 0.3}}``); naming a
    preset that is not drawn is an error.
    """
    presets = list(presets) + ([preset] if preset not in presets else [])
    preset_params = preset_params or {}
    stray = sorted(set(preset_params) - set(presets))
    if stray:
        raise RramlibError(f"preset_params names {stray}, which are not in presets {presets}")
    return {p: make_drift_model(p, **{"drift_scale": drift_scale, **preset_params.get(p, {})}) for p in presets}


def targets_of(model, fractions) -> torch.Tensor:
    """Target conductances (µS) at ``fractions`` of the model's own range ``[g_min, g_max]``."""
    return torch.tensor([model.g_min + f * (model.g_max - model.g_min) for f in fractions], dtype=torch.float32)


def on_grid(frame: pd.DataFrame) -> pd.DataFrame:
    """Rows at the programmed state (``0s``) and the study's grid times, with a ``time`` label column."""
    labels = {0.0: "0s", **{v: k for k, v in TIME_GRID.items()}}
    out = frame[frame["time_s"].isin(list(labels))].copy()
    out.insert(out.columns.get_loc("time_s") + 1, "time", out["time_s"].map(labels))
    return out.reset_index(drop=True)


def conductance_statistics(models: dict, fractions, n_devices: int, seed: int = 0, times=CURVE_TIMES):
    """Program ``n_devices`` devices per target fraction on every model and read them at 0 s and ``times``.

    Every preset draws its devices from ``torch.Generator().manual_seed(seed)``. Returns
    ``(states, stats)``: the programmed states per preset, and one row per (preset, target, time) with
    the mean, the shift from the target, the standard deviation (ddof 1) and the :data:`QUANTILES`.
    """
    states, rows = {}, []
    q = np.asarray(QUANTILES)
    for p, model in models.items():
        g_target = targets_of(model, fractions)[:, None].expand(-1, n_devices).contiguous()
        states[p] = model.program(g_target, torch.Generator().manual_seed(seed))
        for t in [0.0, *times]:
            g = model.conductance(states[p], float(t)).numpy().astype(np.float64)
            quant = np.quantile(g, q, axis=1)
            mean, std = g.mean(1), g.std(1, ddof=1)
            for j, f in enumerate(fractions):
                target = g_target[j, 0].item()
                rows.append({"preset": p, "level": f, "g_target": target, "time_s": float(t), "mean": mean[j],
                             "shift": mean[j] - target, "std": std[j],
                             **{f"q{round(100 * qq)}": float(quant[k, j]) for k, qq in enumerate(q)}})
    return states, pd.DataFrame(rows)


def weight_errors(models: dict, n_weights: int, seed: int = 0, times=CURVE_TIMES) -> pd.DataFrame:
    """Weight error of a Gaussian layer on every model and mapping kind over time.

    Weights ``w ~ N(0, 1)`` from the stream ``(seed, "random_weights")``, devices programmed as chip ``seed``
    (:mod:`rramlib.core.seeding`). Per (preset,
    mapping, time): ``rms_error = ‖W(t) − W‖/‖W‖``, ``bias = mean(W(t) − W)/rms(W)``,
    ``gain = ⟨W(t), W⟩/⟨W, W⟩``.
    """
    w = torch.randn(n_weights, generator=generator(seed, "random_weights"))
    w64 = w.double()
    w_rms, w_sq = w64.pow(2).mean().sqrt().item(), w64.pow(2).sum().item()
    rows = []
    for p, model in models.items():
        for kind in MAPPING_KINDS:
            mapping = model.mapping(kind=kind)
            g, w_max = mapping.to_conductance(w)
            state = model.program(g, torch.Generator().manual_seed(seed))
            for t in [0.0, *times]:
                w_t = mapping.to_weight(model.conductance(state, float(t)), w_max).double()
                err = w_t - w64
                rows.append({"preset": p, "mapping": kind, "default": kind == model.default_mapping,
                             "time_s": float(t), "rms_error": err.pow(2).mean().sqrt().item() / w_rms,
                             "bias": err.mean().item() / w_rms, "gain": (w_t @ w64).item() / w_sq})
    return pd.DataFrame(rows)
