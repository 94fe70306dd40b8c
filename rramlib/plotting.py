"""One figure style for the whole book: colours, labels and the log time axis."""
from __future__ import annotations

import matplotlib.pyplot as plt

from .times import TIME_GRID

__all__ = ["METHOD_LABELS", "METHOD_COLORS", "PRESET_LABELS", "use_style", "time_axis", "method_color"]

METHOD_LABELS = {
    "drift_free": "drift-free", "none": "uncompensated", "scale": "output scaling", "bn": "BN recalibration",
    "lora": "LoRA per level", "dora": "DoRA calibration", "vera_plus": "VeRA+", "noise_aware": "noise-aware training",
    "retrain": "retraining (oracle)",
}
PRESET_LABELS = {
    "relative_gaussian": "relative Gaussian", "ibm_cmo_reram": "IBM CMO ReRAM", "ibm_pcm": "IBM PCM-like",
    "measured": "measured table (NeuRRAM)",
}
# colour-blind-safe (Okabe-Ito), one fixed colour per method across every figure
METHOD_COLORS = {
    "drift_free": "#000000", "none": "#999999", "scale": "#E69F00", "bn": "#56B4E9", "lora": "#009E73",
    "dora": "#F0E442", "vera_plus": "#D55E00", "noise_aware": "#0072B2", "retrain": "#CC79A7",
}


def use_style() -> None:
    """Apply the book's style (seaborn whitegrid, readable sizes)."""
    import seaborn as sns

    sns.set_theme(style="whitegrid", context="notebook", palette="colorblind")
    plt.rcParams.update({"figure.dpi": 110, "savefig.dpi": 150, "figure.figsize": (6.4, 4.0),
                         "axes.titlesize": "medium", "legend.fontsize": "small"})


def method_color(name: str) -> str:
    return METHOD_COLORS.get(name, "#444444")


def time_axis(ax, labels: dict[str, float] | None = None) -> None:
    """Log time axis ticked at the study's grid (1 s ... 10 years)."""
    labels = labels or TIME_GRID
    ax.set_xscale("log")
    ax.set_xticks(list(labels.values()))
    ax.set_xticklabels(list(labels.keys()))
    ax.minorticks_off()
    ax.set_xlabel("time after programming")
