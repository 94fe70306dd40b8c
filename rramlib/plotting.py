"""One figure style for the whole book: colours, labels and the log time axis."""
from __future__ import annotations

import matplotlib.pyplot as plt

from .times import TIME_GRID

__all__ = ["METHOD_LABELS", "METHOD_COLORS", "METHOD_MARKERS", "PRESET_LABELS", "use_style", "time_axis", "method_color",
           "row_label", "byte_label", "place_labels", "pareto_plot", "conductance_bands", "conductance_histograms",
           "shift_and_spread", "weight_error_curves", "mark_extrapolation", "ablation_label", "ablation_plot"]

METHOD_LABELS = {
    "drift_free": "drift-free", "none": "uncompensated", "scale": "output scaling", "bn": "BN recalibration",
    "lora": "LoRA per level", "dora": "DoRA calibration", "vera_plus": "VeRA+", "noise_aware": "noise-aware training",
    "retrain": "full-rank correction per level", "reprogram": "reprogrammed chip",
}
PRESET_LABELS = {
    "relative_gaussian": "relative Gaussian", "ibm_cmo_reram": "IBM CMO ReRAM", "ibm_pcm": "IBM PCM-like",
    "measured": "measured table (NeuRRAM)",
}
# colour-blind-safe (Okabe-Ito), one fixed colour per method across every figure
METHOD_COLORS = {
    "drift_free": "#000000", "none": "#999999", "scale": "#E69F00", "bn": "#56B4E9", "lora": "#009E73",
    "dora": "#F0E442", "vera_plus": "#D55E00", "noise_aware": "#0072B2", "retrain": "#CC79A7", "reprogram": "#444444",
}


#: one marker per method, for figures where colour alone is not enough
METHOD_MARKERS = {"none": "o", "scale": "s", "bn": "^", "lora": "v", "dora": "D", "vera_plus": "*",
                  "noise_aware": "P", "retrain": "X", "reprogram": "+"}


def use_style() -> None:
    """Apply the book's style (seaborn whitegrid, readable sizes)."""
    import seaborn as sns

    sns.set_theme(style="whitegrid", context="notebook", palette="colorblind")
    plt.rcParams.update({"figure.dpi": 110, "savefig.dpi": 150, "figure.figsize": (6.4, 4.0),
                         "axes.titlesize": "medium", "legend.fontsize": "small"})


def row_label(row: str) -> str:
    """Book label of a table row ``"name (variant)"``: the method's label, the variant kept in parentheses."""
    name, _, variant = row.partition(" (")
    return METHOD_LABELS.get(name, name) + (f" ({variant}" if variant else "")


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


# ------------------------------------------------------------------------------------ device figures (F1, F2)
def _preset_title(p: str, main: str | None) -> str:
    return PRESET_LABELS.get(p, p) + (" (later chapters)" if p == main else "")


def _target_colors(fractions) -> dict:
    import numpy as np

    return dict(zip(fractions, plt.cm.viridis(np.linspace(0.05, 0.85, len(fractions)))))


def mark_extrapolation(ax, model, t_end: float) -> None:
    """Shade the times beyond a table-based preset's last time (where it extrapolates in ln t)."""
    table = getattr(model, "table", None)
    if table is not None and table.times[-1].item() < t_end:
        ax.axvspan(table.times[-1].item(), t_end, color="0.5", alpha=0.12, lw=0)
        ax.text(table.times[-1].item() * 1.5, 0.97, "extrapolated", transform=ax.get_xaxis_transform(),
                va="top", fontsize="x-small", color="0.3")


def _target_legend(fig, ax) -> None:
    handles, labels = ax.get_legend_handles_labels()
    fig.legend(handles, labels, title="target: fraction of [g_min, g_max]", loc="upper center",
               bbox_to_anchor=(0.5, 0.955), ncol=len(labels), fontsize="small", title_fontsize="small", frameon=False)


def _curves(stats, p, f):
    return stats[(stats["preset"] == p) & (stats["level"] == f) & (stats["time_s"] > 0)]


def conductance_bands(stats, models: dict, fractions, main: str | None = None):
    """F1: median, 25–75 % and 5–95 % bands of each target's conductance over time, one panel per preset."""
    n = len(models)
    ncols = min(n, 2)
    nrows = -(-n // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(5.2 * ncols, 3.6 * nrows), squeeze=False)
    for ax in axes.flat[n:]:
        ax.set_visible(False)
    colors, t_end = _target_colors(fractions), stats["time_s"].max()
    for ax, (p, model) in zip(axes.flat, models.items()):
        for f in fractions:
            s, c = _curves(stats, p, f), colors[f]
            ax.fill_between(s["time_s"], s["q5"], s["q95"], color=c, alpha=0.2, lw=0)
            ax.fill_between(s["time_s"], s["q25"], s["q75"], color=c, alpha=0.45, lw=0)
            ax.plot(s["time_s"], s["q50"], color=c, lw=1.5, label=f"{f:g}")
            ax.axhline(s["g_target"].iloc[0], color=c, ls=":", lw=0.8)
        mark_extrapolation(ax, model, t_end)
        time_axis(ax)
        ax.tick_params(axis="x", labelrotation=45)
        ax.set_ylabel("conductance G (µS)")
        ax.set_title(_preset_title(p, main))
    fig.suptitle("F1: conductance distributions (median, 25–75 %, 5–95 %; dotted: targets)")
    fig.tight_layout(rect=(0, 0, 1, 0.93))
    _target_legend(fig, axes.flat[0])
    return fig


def conductance_histograms(models: dict, states: dict, fractions, times: dict, main: str | None = None):
    """F1: histograms of the programmed devices of each preset (rows) at ``times`` (columns, label -> s)."""
    import numpy as np

    from .device_stats import targets_of

    colors = _target_colors(fractions)
    fig, axes = plt.subplots(len(models), len(times), figsize=(3.4 * len(times), 2.5 * len(models)), squeeze=False)
    for row, (p, model) in zip(axes, models.items()):
        targets = targets_of(model, fractions)
        g_all = {label: model.conductance(states[p], t) for label, t in times.items()}
        bins = np.linspace(min(g.min().item() for g in g_all.values()), max(g.max().item() for g in g_all.values()), 121)
        for ax, (label, g) in zip(row, g_all.items()):
            for j, f in enumerate(fractions):
                ax.hist(g[j].numpy(), bins=bins, color=colors[f], alpha=0.6, density=True, histtype="stepfilled",
                        label=f"{f:g}")
                ax.axvline(targets[j].item(), color=colors[f], ls=":", lw=0.8)
            ax.set_title(f"{_preset_title(p, main)}, t = {label}", fontsize="small")
            ax.set_xlabel("conductance G (µS)")
        row[0].set_ylabel("density (1/µS)")
    fig.suptitle("F1: conductance histograms (dotted: targets)")
    fig.tight_layout(rect=(0, 0, 1, 0.95 if len(models) > 2 else 0.88))
    _target_legend(fig, axes[0, 0])
    return fig


def shift_and_spread(stats, models: dict, fractions, main: str | None = None):
    """F1: mean shift ⟨G⟩ − G_target (top) and spread σ(G) (bottom) against time, one column per preset."""
    colors, t_end = _target_colors(fractions), stats["time_s"].max()
    fig, axes = plt.subplots(2, len(models), figsize=(3.6 * len(models), 5.6), squeeze=False, sharex=True)
    for col, (p, model) in enumerate(models.items()):
        for f in fractions:
            s = _curves(stats, p, f)
            axes[0, col].plot(s["time_s"], s["shift"], color=colors[f], lw=1.5, label=f"{f:g}")
            axes[1, col].plot(s["time_s"], s["std"], color=colors[f], lw=1.5, label=f"{f:g}")
        axes[0, col].set_title(_preset_title(p, main))
        axes[0, col].axhline(0, color="k", lw=0.6)
        for ax in axes[:, col]:
            mark_extrapolation(ax, model, t_end)
            time_axis(ax)
        axes[0, col].set_xlabel("")
        axes[1, col].tick_params(axis="x", labelrotation=45)
    axes[0, 0].set_ylabel("mean shift ⟨G⟩ − G_target (µS)")
    axes[1, 0].set_ylabel("spread σ(G) (µS)")
    fig.suptitle("F1: mean shift and spread of G vs time")
    fig.tight_layout(rect=(0, 0, 1, 0.9))
    _target_legend(fig, axes[0, 0])
    return fig


def weight_error_curves(errors, models: dict, main: str | None = None):
    """F2: RMS error, bias and gain of the read-back weights against time, single device vs differential pair."""
    from .mapping import MAPPING_KINDS

    style = {"single": dict(color="#D55E00", ls="--"), "differential": dict(color="#0072B2", ls="-")}
    rows = (("rms_error", "RMS error ‖W(t) − W‖ / ‖W‖"), ("bias", "bias mean(W(t) − W) / rms(W)"),
            ("gain", "gain ⟨W(t), W⟩ / ⟨W, W⟩"))
    t_end = errors["time_s"].max()
    fig, axes = plt.subplots(len(rows), len(models), figsize=(3.6 * len(models), 7.6), squeeze=False, sharex=True)
    for col, (p, model) in enumerate(models.items()):
        for kind in MAPPING_KINDS:
            s = errors[(errors["preset"] == p) & (errors["mapping"] == kind) & (errors["time_s"] > 0)]
            label = kind + (" (preset default)" if kind == model.default_mapping else "")
            for ax, (name, _) in zip(axes[:, col], rows):
                ax.plot(s["time_s"], s[name], lw=1.6, label=label, **style[kind])
        axes[0, col].set_title(_preset_title(p, main))
        axes[1, col].axhline(0, color="k", lw=0.6)
        axes[2, col].axhline(1, color="k", lw=0.6)
        for ax in axes[:, col]:
            mark_extrapolation(ax, model, t_end)
            time_axis(ax)
            ax.set_xlabel("")
        axes[-1, col].set_xlabel("time after programming")
        axes[-1, col].tick_params(axis="x", labelrotation=45)
        axes[0, col].legend(fontsize="x-small")
    for ax, (_, label) in zip(axes[:, 0], rows):
        ax.set_ylabel(label, fontsize="small")
    fig.suptitle("F2: weight error vs time, single device vs differential pair")
    fig.tight_layout()
    return fig


# ------------------------------------------------------------------------------------ accuracy vs storage (F9)
def byte_label(b: float) -> str:
    """``1.5 kB``, ``2 MB``, ``12 B`` (1 kB = 1000 bytes)."""
    for unit, size in (("MB", 1e6), ("kB", 1e3)):
        if b >= size:
            return f"{b / size:g} {unit}"
    return f"{b:g} B"


#: label positions tried around a point: (dx, dy) in points and the text alignment
_SPOTS = [(8, 4, "left", "bottom"), (8, -4, "left", "top"), (-8, 4, "right", "bottom"), (-8, -4, "right", "top"),
          (0, 10, "center", "bottom"), (0, -10, "center", "top")]


def place_labels(ax, xs, ys, texts, order=None, fontsize: float = 8) -> list:
    """Label points so that no label overlaps a marker or an earlier label.

    For each point (in ``order``) six positions around it are tried, below-first for points in the top
    quarter of the axes; the first free one is kept, else the first. Returns the text artists.
    """
    import numpy as np
    from matplotlib.transforms import Bbox

    fig = ax.figure
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    points = ax.transData.transform(np.column_stack([xs, ys]))
    placed = [Bbox.from_extents(px - 7, py - 7, px + 7, py + 7) for px, py in points]  # keep off the markers
    y0, y1 = ax.get_ylim()
    artists = []
    for i in (range(len(xs)) if order is None else order):
        spots = _SPOTS if ys[i] <= y0 + 0.75 * (y1 - y0) else [_SPOTS[k] for k in (1, 3, 5, 0, 2, 4)]
        for dx, dy, ha, va in spots:
            text = ax.annotate(texts[i], (xs[i], ys[i]), textcoords="offset points", xytext=(dx, dy), ha=ha, va=va,
                               fontsize=fontsize)
            box = text.get_window_extent(renderer).expanded(1.05, 1.15)
            if not any(box.overlaps(b) for b in placed):
                break
            text.remove()
        else:
            text = ax.annotate(texts[i], (xs[i], ys[i]), textcoords="offset points", xytext=(8, 4), fontsize=fontsize)
            box = text.get_window_extent(renderer)
        placed.append(box)
        artists.append(text)
    return artists


def pareto_plot(pareto, free: float, xlabel: str, ylabel: str, title: str):
    """F9: accuracy (mean ± std) against storage per method on a log axis, with the Pareto front.

    ``pareto`` has the columns of :func:`rramlib.analysis.pareto_table`. Methods that store nothing sit at
    the left edge, on a tick labelled "0".
    """
    import numpy as np

    from .analysis import pareto_front

    storage, acc = pareto["storage_bytes_fp32"], pareto["acc_mean"]
    positive = storage[storage > 0]
    zero_x = 10 ** (np.floor(np.log10(positive.min())) - 1) if len(positive) else 1.0
    x = storage.where(storage > 0, zero_x)
    fig, ax = plt.subplots(figsize=(7.6, 4.8))
    front = pareto_front(x, acc)
    fx, fy = [x.iloc[i] for i in front] + [x.max() * 3], [acc.iloc[i] for i in front] + [acc.iloc[front[-1]]]
    ax.step(fx, fy, where="post", color="#888888", lw=1, alpha=0.6, zorder=1, label="Pareto front")
    for i, r in pareto.iterrows():
        ax.errorbar(x[i], r["acc_mean"], yerr=r["acc_std"], fmt=METHOD_MARKERS.get(r["method"], "o"),
                    color=method_color(r["method"]), ms=11 if r["method"] == "vera_plus" else 8, mec="#333333",
                    mew=0.6, capsize=3, zorder=3)
    ax.axhline(free, color="black", ls="--", lw=1.0, label="drift-free")
    ax.set_xscale("log")
    lo, hi = min((acc - pareto["acc_std"]).min(), free), max((acc + pareto["acc_std"]).max(), free)
    ax.set_ylim(lo - 0.08 * (hi - lo), hi + 0.12 * (hi - lo))
    ticks = [zero_x] + [10 ** d for d in np.arange(np.log10(zero_x) + 1, np.ceil(np.log10(x.max() * 3)) + 1)]
    ax.set_xticks(ticks)
    ax.set_xticklabels(["0"] + [byte_label(t) for t in ticks[1:]])
    ax.minorticks_off()
    ax.set_xlim(zero_x / 2.5, x.max() * 3)
    ax.set(xlabel=xlabel, ylabel=ylabel, title=title)
    ax.legend(loc="lower right", frameon=False)
    order = np.lexsort((-acc.to_numpy(), x.to_numpy()))
    place_labels(ax, x.to_numpy(), acc.to_numpy(), [METHOD_LABELS.get(m, m) for m in pareto["method"]], order)
    return fig


# ------------------------------------------------------------------------------------ ablations (F6)
ABLATION_TITLES = {"rank": "rank r", "sharing": "sharing of λ_b, λ_d", "loss": "training loss"}
_ABLATION_COLORS = {"rank": "#D55E00", "sharing": "#0072B2", "loss": "#009E73"}


def ablation_label(factor: str, value) -> str:
    """How a value of a VeRA+ ablation factor is written on the axis: ``r = 4``, ``cross-layer``, ``CE + 1·KD``."""
    if factor == "rank":
        return f"r = {value}"
    if factor == "sharing":
        return "per-layer" if value == "layer" else "cross-layer"
    return "CE only" if value == 0 else f"CE + {value:g}·KD"


def ablation_plot(f6, refs, free: float, ylabel: str, title: str):
    """F6: accuracy (± std) per variant, one panel per factor, baseline ringed, storage under each variant;
    drift-free and reference methods (``refs``: method, acc_mean, storage_bytes_fp32) as horizontal lines."""
    import numpy as np

    factors = list(dict.fromkeys(f6["factor"]))
    fig, axes = plt.subplots(1, len(factors), figsize=(3.4 * len(factors) + 2.6, 4.6), sharey=True, squeeze=False)
    lows = list(f6["acc_mean"] - f6["acc_std"]) + [free] + [a for m, a in zip(refs.get("method", []),
                                                                             refs.get("acc_mean", [])) if m != "none"]
    y_lo, y_hi = min(lows), max(list(f6["acc_mean"] + f6["acc_std"]) + [free])
    pad = 0.15 * (y_hi - y_lo) + 1e-3
    y_lo, y_hi = y_lo - pad, y_hi + pad
    for ax, factor in zip(axes[0], factors):
        d = f6[f6["factor"] == factor].reset_index(drop=True)
        xs = np.arange(len(d))
        ax.errorbar(xs, d["acc_mean"], yerr=d["acc_std"], fmt="o", color=_ABLATION_COLORS.get(factor, "0.3"), ms=9,
                    capsize=4, ecolor="#333333", mec="#333333", mew=0.6, zorder=3)
        base = d["baseline"].to_numpy(dtype=bool)
        ax.plot(xs[base], d["acc_mean"][base], "o", ms=16, mfc="none", mec="black", mew=1.6, zorder=4)
        for x, r in zip(xs, d.itertuples()):
            ax.text(x, r.acc_mean + r.acc_std + 0.02 * (y_hi - y_lo), f"{r.acc_mean:.3f}", ha="center", fontsize=8)
        ax.set_xticks(xs)
        ax.set_xticklabels([f"{r.value}\n{r.storage_bytes_fp32:,.0f} B" for r in d.itertuples()], fontsize=8.5)
        ax.set_title(ABLATION_TITLES.get(factor, factor))
        ax.axhline(free, color="black", ls="--", lw=1.1)
        for r in refs.itertuples():
            if y_lo <= r.acc_mean <= y_hi:
                ax.axhline(r.acc_mean, color=method_color(r.method), ls=":", lw=1.4)
        ax.set_xlim(-0.6, len(d) - 0.4)
    axes[0][0].set_ylim(y_lo, y_hi)
    axes[0][0].set_ylabel(ylabel)
    handles = [plt.Line2D([], [], color="black", ls="--", label=f"drift-free ({free:.3f})")]
    for r in refs.itertuples():
        off = "" if y_lo <= r.acc_mean <= y_hi else ", off scale"
        handles.append(plt.Line2D([], [], color=method_color(r.method), ls=":", lw=1.4, label=(
            f"{METHOD_LABELS.get(r.method, r.method)} ({r.acc_mean:.3f}{off}; {r.storage_bytes_fp32:,.0f} B)")))
    handles.append(plt.Line2D([], [], ls="none", marker="o", ms=12, mfc="none", mec="black", mew=1.6,
                              label="baseline VeRA+"))
    axes[0][-1].legend(handles=handles, loc="center left", bbox_to_anchor=(1.02, 0.5), frameon=False, fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


# ------------------------------------------------------------------------------------ accuracy per preset (F3)
#: one fixed, colour-blind-safe colour per preset (Okabe-Ito)
PRESET_COLORS = {"relative_gaussian": "#0072B2", "ibm_cmo_reram": "#E69F00", "ibm_pcm": "#009E73",
                 "measured": "#CC79A7"}


def preset_accuracy(table, frame, free: float, chance: float, times: dict | None, main: str | None, title: str):
    """F3: accuracy against time per preset: mean (line), ± std (band), single chips (thin lines), with the
    drift-free and chance levels; the right panel zooms into the top ten points of accuracy.

    ``table``: :func:`rramlib.analysis.accuracy_table` rows with a ``preset`` column; ``frame``: the chip
    records with a ``preset`` column; ``times``: axis ticks (label -> seconds).
    """
    presets = list(dict.fromkeys(table["preset"]))
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.4))
    for ax in axes:
        for name in presets:
            s, c, is_main = table[table["preset"] == name], PRESET_COLORS.get(name, "0.3"), name == main
            for _, chip in frame[frame["preset"] == name].groupby("chip_seed"):
                ax.plot(chip["time_s"], chip["accuracy"], color=c, lw=0.6, alpha=0.35)
            ax.fill_between(s["time_s"], s["mean"] - s["std"], s["mean"] + s["std"], color=c, alpha=0.25, lw=0)
            ax.plot(s["time_s"], s["mean"], color=c, marker="o", ms=5 if is_main else 4, lw=3.2 if is_main else 1.8,
                    label=PRESET_LABELS.get(name, name) + (" (later chapters)" if is_main else ""),
                    zorder=3 if is_main else 2)
        ax.axhline(free, color="k", ls="--", lw=1.2, label="drift-free")
        time_axis(ax, times)
        ax.set_ylabel("test accuracy")
    axes[0].axhline(chance, color="0.4", ls=":", lw=1, label="chance")
    axes[0].set_ylim(0, 1.02)
    axes[0].legend(loc="lower left", fontsize="small")
    axes[0].set_title("full range")
    axes[1].set_ylim(free - 0.1, min(1.0, free + 0.02))
    axes[1].set_title("zoom: the top 10 points of accuracy")
    fig.suptitle(title)
    fig.tight_layout(rect=(0, 0.04, 1, 1))
    return fig


def drift_scale_plot(scale_table, free: float, label: str):
    """F3 (optional): accuracy at time ``label`` (mean ± std over chips) against ``drift_scale``, per preset."""
    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    for name in dict.fromkeys(scale_table["preset"]):
        s = scale_table[scale_table["preset"] == name]
        ax.errorbar(s["drift_scale"], s["mean"], yerr=s["std"], color=PRESET_COLORS.get(name, "0.3"), marker="o",
                    capsize=3, label=PRESET_LABELS.get(name, name))
    ax.axhline(free, color="k", ls="--", lw=1.2, label="drift-free")
    ax.set(xlabel="drift_scale (× the published drift)", ylabel=f"test accuracy at {label}", ylim=(0, 1.02),
           title=f"F3: accuracy at {label} vs drift strength (mean ± std over chips)")
    ax.legend(loc="best", fontsize="small")
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    return fig


# ------------------------------------------------------------------------------------ scheduling (F5)
def switching_plot(table, windows, free: float, title: str):
    """F5 (left): uncompensated and VeRA+ accuracy (mean ± std) on a fine time grid, with the window edges
    of the schedule (dotted) and each window's level and time span written above it.

    ``windows``: rows with ``level``, ``start_s``, ``end_s`` (``Schedule.describe()``).
    """
    import math

    from .schedule import T_END, T_START
    from .times import format_time

    fig, ax = plt.subplots(figsize=(8.6, 4.8))
    for m in ("none", "vera_plus"):
        d = table[table["method"] == m].sort_values("time_s")
        ax.plot(d["time_s"], d["mean"], color=method_color(m), lw=2 if m == "vera_plus" else 1.4, marker=".",
                label=METHOD_LABELS[m])
        ax.fill_between(d["time_s"], d["mean"] - d["std"], d["mean"] + d["std"], color=method_color(m), alpha=0.18,
                        lw=0)
    ax.axhline(free, color="black", ls="--", lw=1.1, label="drift-free")
    time_axis(ax)
    ax.set_xlim(T_START / 1.6, T_END * 1.6)
    lo, hi = ax.get_ylim()
    ax.set_ylim(lo, hi + 0.1 * (hi - lo))
    for w in list(windows.itertuples())[1:]:
        ax.axvline(w.start_s, color="#555555", ls=":", lw=1.2)
    for w in windows.itertuples():
        ax.text(math.sqrt(max(w.start_s, T_START) * w.end_s), hi + 0.05 * (hi - lo),
                f"{w.level}\n{format_time(w.start_s)}–{format_time(w.end_s)}", ha="center", va="center",
                fontsize=7.5, color="#333333")
    ax.set_ylabel("test accuracy")
    ax.set_title(title, fontsize=10)
    ax.legend(loc="lower left", frameon=False)
    fig.tight_layout()
    return fig


def levels_plot(k_table, free: float, title: str):
    """F5 (right): VeRA+ accuracy (mean ± std) against the number of levels K at a few times, with the
    uncompensated accuracy at each time (dotted, or listed as off scale) and each K's storage under it."""
    import numpy as np

    times, ks = list(dict.fromkeys(k_table["time"])), sorted(set(k_table["K"]))
    fig, ax = plt.subplots(figsize=(8.2, 4.6))
    y_lo = min((k_table["acc_mean"] - k_table["acc_std"]).min(), free)
    y_hi = max((k_table["acc_mean"] + k_table["acc_std"]).max(), free)
    pad = 0.2 * (y_hi - y_lo) + 2e-3
    y_lo, y_hi = y_lo - pad, y_hi + pad
    for color, t in zip(plt.get_cmap("viridis")(np.linspace(0.1, 0.8, len(times))), times):
        d = k_table[k_table["time"] == t]
        ax.errorbar(d["K"], d["acc_mean"], yerr=d["acc_std"], marker="o", capsize=3, color=color, lw=1.8,
                    label=f"VeRA+ at {t}")
        u = d["uncompensated"].iloc[0]
        if y_lo <= u <= y_hi:
            ax.axhline(u, color=color, ls=":", lw=1.2)
        ax.plot([], [], color=color, ls=":", lw=1.2,
                label=f"uncompensated at {t}: {u:.3f}" + ("" if y_lo <= u <= y_hi else " (off scale)"))
    ax.axhline(free, color="black", ls="--", lw=1.1, label=f"drift-free: {free:.3f}")
    ax.set_ylim(y_lo, y_hi)
    ax.set_xscale("log", base=2)
    ax.set_xticks(ks)
    ax.set_xticklabels([f"{k}\n{k_table[k_table['K'] == k]['storage_bytes_fp32'].iloc[0]:,.0f} B" for k in ks])
    ax.minorticks_off()
    ax.set(xlabel="number of drift levels K (and total storage, fp32)", ylabel="test accuracy")
    ax.set_title(title, fontsize=10)
    ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False, fontsize=8)
    fig.tight_layout()
    return fig


# ------------------------------------------------------------------------------------ measured drift (F7)
def drift_table_plot(table, extra_times, title: str):
    """F7 (table): the spread (and, when the table has one, the mean shift) of ``G − G_target`` against the
    target conductance at the table's times (solid) and as extrapolated at ``extra_times`` (dashed)."""
    import numpy as np

    from .times import format_time

    times, g = table.times.tolist(), table.g.numpy()
    colors = plt.cm.viridis(np.linspace(0.0, 0.85, len(times)))
    extra_colors = plt.cm.Reds(np.linspace(0.5, 0.9, max(1, len(extra_times))))
    has_shift = bool(table.mean_shift.abs().max() > 0)  # a zero-mean table gets no mean-shift panel
    fig, (axes,) = plt.subplots(1, 2 if has_shift else 1, figsize=(12.5 if has_shift else 8.5, 4.2), squeeze=False)
    curves = [(table.mean_shift[k], table.std[k], c, "-", 2, f"{format_time(t)} (table)")
              for k, (t, c) in enumerate(zip(times, colors))]
    curves += [(*table.interpolate(table.g, t), c, "--", 1.6, f"{format_time(t)} (extrapolated)")
               for t, c in zip(extra_times, extra_colors)]
    for mean, std, c, ls, lw, label in curves:
        axes[0].plot(g, std.numpy(), color=c, lw=lw, ls=ls, label=label)
        if has_shift:
            axes[1].plot(g, mean.numpy(), color=c, lw=lw, ls=ls)
    axes[0].set_ylabel("spread σ of G − G_target (µS)")
    if has_shift:
        axes[1].set_ylabel("mean shift of G − G_target (µS)")
        axes[1].axhline(0, color="k", lw=0.6)
    else:
        axes[0].set_title("the table's mean shift is 0 µS at every level and time", fontsize="small")
    for ax in axes:
        ax.set_xlabel("target conductance G_target (µS)")
    axes[-1].legend(fontsize="small", title="time after programming", title_fontsize="small", loc="upper left",
                    bbox_to_anchor=(1.02, 1.0))
    fig.suptitle(title, fontsize="medium")
    fig.tight_layout(rect=(0, 0.04, 1, 1))
    return fig
