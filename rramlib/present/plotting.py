"""One figure style for the whole book: colours, labels, the log time axis, and figures that fit the text column."""
from __future__ import annotations

import matplotlib.pyplot as plt

from rramlib.core.times import TIME_GRID, format_time
from rramlib.methods.compensation import MethodFacts
from rramlib.device.mapping import MAPPING_KINDS
from rramlib.device.stats import targets_of
from rramlib.methods.schedule import T_END, T_START
from rramlib.study.analysis import pareto_front

__all__ = ["METHOD_LABELS", "METHOD_COLORS", "METHOD_MARKERS", "PRESET_LABELS", "NETWORK_COLORS", "use_style",
           "time_axis", "method_color", "row_label", "byte_label", "place_labels", "pareto_plot", "conductance_bands",
           "conductance_histograms", "shift_and_spread", "weight_error_curves", "mark_extrapolation",
           "ablation_label", "ablation_plot", "DPI", "COLUMN_PX", "BODY_PX", "FIG_WIDTH", "SMALL", "column_layout",
           "wrap_text", "displayed_text_px", "panel_grid"]

# Label, colour and marker of every method are the method class's own (label, color, marker); here only the rows
# that are not methods: the drift-free reference line, and VeRA+ split by sharing mode (03_comparison).
# Colours: colour-blind-safe (Okabe-Ito), one fixed colour per method across every figure.
METHOD_LABELS = MethodFacts("label", {"drift_free": "drift-free", "vera_plus_layer": "VeRA+ (per-layer)",
                                      "vera_plus_cross": "VeRA+ (cross-layer)"})
METHOD_COLORS = MethodFacts("color", {"drift_free": "#000000", "vera_plus_layer": "#D55E00",
                                      "vera_plus_cross": "#7A2E00"})
#: one marker per method, for figures where colour alone is not enough
METHOD_MARKERS = MethodFacts("marker", {"vera_plus_layer": "*", "vera_plus_cross": "h"})
PRESET_LABELS = {
    "relative_gaussian": "relative Gaussian", "ibm_cmo_reram": "IBM CMO ReRAM", "ibm_pcm": "IBM PCM-like",
    "measured": "measured table (NeuRRAM)",
}

# How the book shows a figure: the notebook's inline PNG, drawn at ``figure.dpi`` and cropped to its tight
# bounding box (IPython's inline backend), is shown at its own size in a text column of COLUMN_PX CSS pixels
# (the book theme at a 1400 px wide window), shrunk to the column when wider, beside body text of BODY_PX.
# tests/test_browser.py checks these two numbers in a real browser.
DPI = 110
COLUMN_PX = 784
BODY_PX = 16
#: figure width (inches) that fits the column at DPI with the tight bounding box's 0.1 in padding each side
FIG_WIDTH = 6.9
#: the smallest font size (points) in any figure: 11 pt at DPI is 16.8 px, just above BODY_PX
SMALL = 11


def use_style() -> None:
    """Apply the book's style (seaborn whitegrid, notebook context: labels 12 pt, ticks and legends 11 pt)."""
    import seaborn as sns

    sns.set_theme(style="whitegrid", context="notebook", palette="colorblind")
    plt.rcParams.update({"figure.dpi": DPI, "savefig.dpi": 150, "figure.figsize": (FIG_WIDTH, 4.0),
                         "axes.titlesize": "medium", "legend.fontsize": SMALL, "legend.title_fontsize": SMALL})


def displayed_text_px(fig, column_px: int = COLUMN_PX) -> list[tuple[float, str]]:
    """Height in CSS px of every visible text of ``fig`` as the book shows it, smallest first: (px, text).

    A text of s points drawn at ``fig.dpi`` is s·dpi/72 px high in the PNG; the page shows the PNG (cropped to
    its tight bounding box, as the inline backend does) at its own width w, or shrunk by column_px / w when w
    is wider than the column.
    """
    import io
    import struct

    from matplotlib.text import Text

    png = io.BytesIO()
    fig.savefig(png, format="png", dpi=fig.dpi, bbox_inches="tight")
    width = struct.unpack(">I", png.getvalue()[16:20])[0]  # the PNG header's IHDR width
    scale = min(1.0, column_px / width)
    return sorted((t.get_fontsize() * fig.dpi / 72 * scale, t.get_text()) for t in fig.findobj(Text)
                  if t.get_text().strip() and t.get_visible() and (t.axes is None or t.axes.get_visible()))


def wrap_text(text: str, width_px: float, fontsize, renderer) -> str:
    """``text`` with line breaks so that no line is wider than ``width_px`` at ``fontsize`` (greedy by words)."""
    from matplotlib.font_manager import FontProperties

    prop = FontProperties(size=fontsize)

    def fits(line: str) -> bool:
        return renderer.get_text_width_height_descent(line, prop, ismath=False)[0] <= width_px

    lines = []
    for paragraph in text.split("\n"):
        line = ""
        for word in paragraph.split(" "):
            if line and not fits(f"{line} {word}"):
                lines.append(line)
                line = word
            else:
                line = f"{line} {word}" if line else word
        lines.append(line)
    return "\n".join(lines)


def panel_grid(n: int, panel_height: float, ncols: int = 2, **kwargs):
    """A figure of the column's width with ``n`` panels in rows of ``ncols`` (spare panels hidden), each
    ``panel_height`` inches high plus room for a title and legend; returns the figure and the 2-D axes array."""
    ncols = min(n, ncols)
    nrows = -(-n // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(FIG_WIDTH, panel_height * nrows + 1.3), squeeze=False, **kwargs)
    for ax in axes.flat[n:]:
        ax.set_visible(False)
    return fig, axes


def column_layout(fig, title: str | None = None, handles=None, labels=None, legend_title: str | None = None):
    """Lay ``fig`` out for the book's text column, top to bottom: ``title`` wrapped to the figure's width, the
    legend (``handles``, with ``labels`` or their own labels) across the figure in as many columns as fit, then
    the panels (tight layout), with each panel's titles wrapped to the panel's width. Returns ``fig``."""
    from matplotlib.font_manager import FontProperties

    renderer = fig.canvas.get_renderer()
    width, height = fig.bbox.width, fig.bbox.height
    gap = 6 / height
    top, text = 1.0, None
    if title:
        size = FontProperties(size=plt.rcParams["figure.titlesize"]).get_size_in_points()
        text = fig.suptitle(wrap_text(title, 0.97 * width, size, renderer), y=1 - gap / 2, va="top")
        text.set_in_layout(False)  # placed here: tight_layout must not reserve room for it a second time
        top -= text.get_window_extent(renderer).height / height + gap
    if handles:
        labels = [h.get_label() for h in handles] if labels is None else labels
        for ncol in range(len(handles), 0, -1):
            legend = fig.legend(handles, labels, loc="upper center", bbox_to_anchor=(0.5, top), ncol=ncol,
                                frameon=False, title=legend_title)
            if ncol == 1 or legend.get_window_extent(renderer).width <= 0.98 * width:
                break
            legend.remove()
        top -= legend.get_window_extent(renderer).height / height + gap / 2
    fig.tight_layout(rect=(0, 0, 1, top))
    wrapped = False
    for ax in fig.axes:
        for loc in ("left", "center", "right"):
            title, size = ax.get_title(loc), ax.title.get_fontsize()
            if ax.get_visible() and title and wrap_text(title, ax.bbox.width, size, renderer) != title:
                ax.set_title(wrap_text(title, ax.bbox.width, size, renderer), loc=loc, fontsize=size)
                wrapped = True
    if wrapped:
        fig.tight_layout(rect=(0, 0, 1, top))
    if text is not None:
        text.set_in_layout(True)  # inside the saved figure's tight bounding box
    return fig


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


def mark_extrapolation(ax, model, t_end: float, text: bool = True) -> None:
    """Shade the times beyond a table-based preset's last time (where it extrapolates in ln t)."""
    table = getattr(model, "table", None)
    if table is not None and table.times[-1].item() < t_end:
        ax.axvspan(table.times[-1].item(), t_end, color="0.5", alpha=0.12, lw=0)
        if text:
            ax.text(table.times[-1].item() * 1.5, 0.97, "extrapolated", transform=ax.get_xaxis_transform(),
                    va="top", fontsize=SMALL, color="0.3")


def _target_legend(fig, ax, title: str) -> None:
    handles, labels = ax.get_legend_handles_labels()
    column_layout(fig, title, handles, labels, legend_title="target: fraction of [g_min, g_max]")


def _curves(stats, p, f):
    return stats[(stats["preset"] == p) & (stats["level"] == f) & (stats["time_s"] > 0)]


def _row_label(p: str, main: str | None, what: str = "") -> str:
    """A preset's name as a row's y label, on two lines when long."""
    import textwrap

    return textwrap.fill(_preset_title(p, main), 18) + (f"\n{what}" if what else "")


def conductance_bands(stats, models: dict, fractions, main: str | None = None):
    """F1: median, 25–75 % and 5–95 % bands of each target's conductance over time, one panel per preset
    (two columns)."""
    fig, axes = panel_grid(len(models), 3.1)
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
        ax.tick_params(axis="x", labelrotation=60)
        ax.set_xlabel("")
        if ax in axes[:, 0]:
            ax.set_ylabel("G (µS)")
        ax.set_title(_preset_title(p, main))
    _target_legend(fig, axes.flat[0], "F1: conductance distributions against time after programming (median, "
                                      "25–75 %, 5–95 %; dotted: targets)")
    return fig


def conductance_histograms(models: dict, states: dict, fractions, times: dict, main: str | None = None):
    """F1: histograms (densities) of the programmed devices of each preset (rows) at ``times`` (columns,
    label -> s)."""
    import numpy as np

    colors = _target_colors(fractions)
    fig, axes = plt.subplots(len(models), len(times), figsize=(FIG_WIDTH, 1.9 * len(models) + 1.6), squeeze=False,
                             sharey="row")
    for r, (row, (p, model)) in enumerate(zip(axes, models.items())):
        targets = targets_of(model, fractions)
        g_all = {label: model.conductance(states[p], t) for label, t in times.items()}
        bins = np.linspace(min(g.min().item() for g in g_all.values()), max(g.max().item() for g in g_all.values()), 121)
        for ax, (label, g) in zip(row, g_all.items()):
            for j, f in enumerate(fractions):
                ax.hist(g[j].numpy(), bins=bins, color=colors[f], alpha=0.6, density=True, histtype="stepfilled",
                        label=f"{f:g}")
                ax.axvline(targets[j].item(), color=colors[f], ls=":", lw=0.8)
            ax.locator_params(axis="x", nbins=4)
            ax.tick_params(axis="y", labelleft=False)
            if r == 0:
                ax.set_title(f"t = {label}")
        row[0].set_ylabel(_row_label(p, main))
    for ax in axes[-1]:
        ax.set_xlabel("G (µS)")
    _target_legend(fig, axes[0, 0], "F1: conductance histograms (density) per preset and time (dotted: targets)")
    return fig


def shift_and_spread(stats, models: dict, fractions, main: str | None = None):
    """F1: mean shift ⟨G⟩ − G_target (left) and spread σ(G) (right) against time, one row per preset."""
    colors, t_end = _target_colors(fractions), stats["time_s"].max()
    fig, axes = plt.subplots(len(models), 2, figsize=(FIG_WIDTH, 2.1 * len(models) + 2.2), squeeze=False,
                             sharex=True)
    for row, (p, model) in zip(axes, models.items()):
        for f in fractions:
            s = _curves(stats, p, f)
            row[0].plot(s["time_s"], s["shift"], color=colors[f], lw=1.5, label=f"{f:g}")
            row[1].plot(s["time_s"], s["std"], color=colors[f], lw=1.5, label=f"{f:g}")
        row[0].axhline(0, color="k", lw=0.6)
        row[0].set_ylabel(_row_label(p, main))
        for ax in row:
            mark_extrapolation(ax, model, t_end, text=False)
            time_axis(ax)
            ax.set_xlabel("")
    axes[0, 0].set_title("mean shift ⟨G⟩ − G_target (µS)")
    axes[0, 1].set_title("spread σ(G) (µS)")
    for ax in axes[-1]:
        ax.tick_params(axis="x", labelrotation=60)
    extrapolates = any(getattr(m, "table", None) is not None for m in models.values())
    _target_legend(fig, axes[0, 0], "F1: mean shift and spread of G against time after programming"
                   + (" (grey: extrapolated)" if extrapolates else ""))
    return fig


#: line style of each weight mapping in F2
MAPPING_STYLES = {"single": dict(ls="--"), "differential": dict(ls="-")}


def weight_error_curves(errors, models: dict, main: str | None = None):
    """F2: RMS error, bias and gain of the read-back weights against time (one panel each, stacked); colour:
    preset, line style: single device (dashed) or differential pair (solid)."""
    rows = (("rms_error", "RMS error", "RMS error ‖W(t) − W‖ / ‖W‖"), ("bias", "bias", "bias mean(W(t) − W) / rms(W)"),
            ("gain", "gain", "gain ⟨W(t), W⟩ / ⟨W, W⟩"))
    t_end = errors["time_s"].max()
    fig, axes = plt.subplots(len(rows), 1, figsize=(FIG_WIDTH, 2.5 * len(rows) + 2.0), sharex=True)
    handles = []
    for p, model in models.items():
        color = PRESET_COLORS.get(p, "0.3")
        for kind in MAPPING_KINDS:
            s = errors[(errors["preset"] == p) & (errors["mapping"] == kind) & (errors["time_s"] > 0)]
            for ax, (name, _, _) in zip(axes, rows):
                ax.plot(s["time_s"], s[name], lw=2.2 if kind == model.default_mapping else 1.3, color=color,
                        **MAPPING_STYLES[kind])
        handles.append(plt.Line2D([], [], color=color, lw=2.2, label=f"{_preset_title(p, main)} ({model.default_mapping})"))
    handles += [plt.Line2D([], [], color="0.2", label=f"{kind} mapping", **MAPPING_STYLES[kind]) for kind in MAPPING_KINDS]
    for ax, (_, short, long) in zip(axes, rows):
        for model in models.values():
            mark_extrapolation(ax, model, t_end, text=False)
        time_axis(ax)
        ax.set_xlabel("")
        ax.set_ylabel(short)
        ax.set_title(long, loc="left")
    axes[1].axhline(0, color="k", lw=0.6)
    axes[2].axhline(1, color="k", lw=0.6)
    axes[-1].set_xlabel("time after programming")
    column_layout(fig, "F2: weight error against time, single device vs differential pair (thick: the preset's "
                       "default mapping, in parentheses)", handles)
    return fig


# ------------------------------------------------------------------------------------ accuracy vs storage (F9)
def byte_label(b: float) -> str:
    """``1.5 kB``, ``2.35 MB``, ``12 B``: three significant digits at most (1 kB = 1000 bytes)."""
    for unit, size in (("MB", 1e6), ("kB", 1e3)):
        if b >= size:
            return f"{b / size:.3g} {unit}"
    return f"{b:.3g} B"


#: label positions tried around a point: (dx, dy) in points and the text alignment
_SPOTS = [(8, 4, "left", "bottom"), (8, -4, "left", "top"), (-8, 4, "right", "bottom"), (-8, -4, "right", "top"),
          (0, 10, "center", "bottom"), (0, -10, "center", "top"), (8, 18, "left", "bottom"), (8, -18, "left", "top"),
          (-8, 18, "right", "bottom"), (-8, -18, "right", "top"), (0, 26, "center", "bottom"), (0, -26, "center", "top")]


def _two_lines(text: str) -> str:
    """``text`` broken at the space nearest its middle (unchanged without a space)."""
    spaces = [k for k, c in enumerate(text) if c == " "]
    if not spaces:
        return text
    k = min(spaces, key=lambda k: abs(k - len(text) / 2))
    return text[:k] + "\n" + text[k + 1:]


def place_labels(ax, xs, ys, texts, order=None, fontsize: float = SMALL) -> list:
    """Label points so that no label overlaps a marker or an earlier label, or sticks out of the axes sideways
    (which would widen the figure beyond the book's column).

    For each point (in ``order``) twelve positions around it are tried, nearest first and below-first for
    points in the top quarter of the axes, with the label on one line, then on two; the first free one inside
    the axes is kept, else the first inside, else the first. Returns the text artists.
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
        spots = _SPOTS if ys[i] <= y0 + 0.75 * (y1 - y0) else sorted(_SPOTS, key=lambda spot: spot[1] > 0)
        fallback = None
        # the label on one line, then (a long one) on two
        for label, (dx, dy, ha, va) in [(t, spot) for t in dict.fromkeys([texts[i], _two_lines(texts[i])])
                                        for spot in spots]:
            text = ax.annotate(label, (xs[i], ys[i]), textcoords="offset points", xytext=(dx, dy), ha=ha, va=va,
                               fontsize=fontsize)
            box = text.get_window_extent(renderer).expanded(1.05, 1.15)
            inside = ax.bbox.x0 <= box.x0 and box.x1 <= ax.bbox.x1
            if inside and not any(box.overlaps(b) for b in placed):
                break
            fallback = fallback or (inside and (label, dx, dy, ha, va))
            text.remove()
        else:
            label, dx, dy, ha, va = fallback or (texts[i], *spots[0])
            text = ax.annotate(label, (xs[i], ys[i]), textcoords="offset points", xytext=(dx, dy), ha=ha, va=va,
                               fontsize=fontsize)
            box = text.get_window_extent(renderer)
        placed.append(box)
        artists.append(text)
    return artists


def pareto_plot(pareto, free: float, xlabel: str, ylabel: str, title: str):
    """F9: accuracy (mean ± std) against storage per method on a log axis, with the Pareto front.

    ``pareto`` has the columns of :func:`rramlib.study.analysis.pareto_table`. Methods that store nothing sit at
    the left edge, on a tick labelled "0".
    """
    import numpy as np

    storage, acc = pareto["storage_bytes_fp32"], pareto["acc_mean"]
    positive = storage[storage > 0]
    zero_x = 10 ** (np.floor(np.log10(positive.min())) - 1) if len(positive) else 1.0
    x = storage.where(storage > 0, zero_x)
    fig, ax = plt.subplots(figsize=(FIG_WIDTH, 5.0))
    front = pareto_front(x, acc)
    fx, fy = [x.iloc[i] for i in front] + [x.max() * 3], [acc.iloc[i] for i in front] + [acc.iloc[front[-1]]]
    ax.step(fx, fy, where="post", color="#888888", lw=1, alpha=0.6, zorder=1, label="Pareto front")
    for i, r in pareto.iterrows():
        ax.errorbar(x[i], r["acc_mean"], yerr=r["acc_std"], fmt=METHOD_MARKERS.get(r["method"], "o"),
                    color=method_color(r["method"]), ms=11 if r["method"].startswith("vera_plus") else 8, mec="#333333",
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
    ax.set(xlabel=xlabel, ylabel=ylabel)
    ax.legend(loc="lower right", frameon=False)
    column_layout(fig, title)
    order = np.lexsort((-acc.to_numpy(), x.to_numpy()))
    online = pareto["fitted"].str.startswith("online") if "fitted" in pareto else [False] * len(pareto)
    labels = [METHOD_LABELS.get(m, m) + (" (online, per chip)" if o else "") for m, o in zip(pareto["method"], online)]
    place_labels(ax, x.to_numpy(), acc.to_numpy(), labels, order)
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
    """F6: accuracy (± std) per variant, one panel per factor (stacked), baseline ringed, storage under each
    variant; drift-free and reference methods (``refs``: method, acc_mean, storage_bytes_fp32) as horizontal
    lines."""
    import numpy as np

    factors = list(dict.fromkeys(f6["factor"]))
    fig, axes = plt.subplots(len(factors), 1, figsize=(FIG_WIDTH, 2.6 * len(factors) + 2.4), sharey=True,
                             squeeze=False)
    lows = list(f6["acc_mean"] - f6["acc_std"]) + [free] + [a for m, a in zip(refs.get("method", []),
                                                                             refs.get("acc_mean", [])) if m != "none"]
    y_lo, y_hi = min(lows), max(list(f6["acc_mean"] + f6["acc_std"]) + [free])
    pad = 0.15 * (y_hi - y_lo) + 1e-3
    y_lo, y_hi = y_lo - pad, y_hi + 2 * pad
    for ax, factor in zip(axes[:, 0], factors):
        d = f6[f6["factor"] == factor].reset_index(drop=True)
        xs = np.arange(len(d))
        ax.errorbar(xs, d["acc_mean"], yerr=d["acc_std"], fmt="o", color=_ABLATION_COLORS.get(factor, "0.3"), ms=9,
                    capsize=4, ecolor="#333333", mec="#333333", mew=0.6, zorder=3)
        base = d["baseline"].to_numpy(dtype=bool)
        ax.plot(xs[base], d["acc_mean"][base], "o", ms=16, mfc="none", mec="black", mew=1.6, zorder=4)
        for x, r in zip(xs, d.itertuples()):
            ax.annotate(f"{r.acc_mean:.3f}", (x, r.acc_mean), xytext=(13, 0), textcoords="offset points", ha="left",
                        va="center", fontsize=SMALL)
        ax.set_xticks(xs)
        ax.set_xticklabels([f"{r.value}\n{r.storage_bytes_fp32:,.0f} B" for r in d.itertuples()])
        ax.set_title(ABLATION_TITLES.get(factor, factor), loc="left")
        ax.axhline(free, color="black", ls="--", lw=1.1)
        for r in refs.itertuples():
            if y_lo <= r.acc_mean <= y_hi:
                ax.axhline(r.acc_mean, color=method_color(r.method), ls=":", lw=1.4)
        ax.set_xlim(-0.5, len(d) - 0.3)
        ax.set_ylabel(ylabel if len(factors) == 1 else "")
    axes[0][0].set_ylim(y_lo, y_hi)
    if len(factors) > 1:
        fig.supylabel(ylabel, fontsize=plt.rcParams["axes.labelsize"])
    handles = [plt.Line2D([], [], color="black", ls="--", label=f"drift-free ({free:.3f})")]
    for r in refs.itertuples():
        off = "" if y_lo <= r.acc_mean <= y_hi else ", off scale"
        handles.append(plt.Line2D([], [], color=method_color(r.method), ls=":", lw=1.4, label=(
            f"{METHOD_LABELS.get(r.method, r.method)} ({r.acc_mean:.3f}{off}; {r.storage_bytes_fp32:,.0f} B)")))
    handles.append(plt.Line2D([], [], ls="none", marker="o", ms=12, mfc="none", mec="black", mew=1.6,
                              label="baseline VeRA+"))
    column_layout(fig, title, handles)
    return fig


# ------------------------------------------------------------------------------------ accuracy per preset (F3)
#: one fixed, colour-blind-safe colour per preset (Okabe-Ito)
PRESET_COLORS = {"relative_gaussian": "#0072B2", "ibm_cmo_reram": "#E69F00", "ibm_pcm": "#009E73",
                 "measured": "#CC79A7"}
#: The two networks of the Hidden-Fold chapter (Okabe-Ito vermilion and blue).
NETWORK_COLORS = {"HFN": "#D55E00", "dense": "#0072B2"}


def preset_accuracy(table, frame, free: float, chance: float, times: dict | None, main: str | None, title: str):
    """F3: accuracy against time per preset: mean (line), ± std (band), single chips (thin lines), with the
    drift-free and chance levels; the lower panel zooms into the top ten points of accuracy.

    ``table``: :func:`rramlib.study.analysis.accuracy_table` rows with a ``preset`` column; ``frame``: the chip
    records with a ``preset`` column; ``times``: axis ticks (label -> seconds).
    """
    presets = list(dict.fromkeys(table["preset"]))
    fig, axes = plt.subplots(2, 1, figsize=(FIG_WIDTH, 8.0), sharex=True)
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
    axes[0].set_title("full range", loc="left")
    axes[0].set_xlabel("")
    axes[1].set_ylim(free - 0.1, min(1.0, free + 0.02))
    axes[1].set_title("zoom: the top 10 points of accuracy", loc="left")
    handles, labels = axes[0].get_legend_handles_labels()
    column_layout(fig, title, handles, labels)
    return fig


def drift_scale_plot(scale_table, free: float, label: str):
    """F3 (optional): accuracy at time ``label`` (mean ± std over chips) against ``drift_scale``, per preset."""
    fig, ax = plt.subplots(figsize=(FIG_WIDTH, 4.4))
    for name in dict.fromkeys(scale_table["preset"]):
        s = scale_table[scale_table["preset"] == name]
        ax.errorbar(s["drift_scale"], s["mean"], yerr=s["std"], color=PRESET_COLORS.get(name, "0.3"), marker="o",
                    capsize=3, label=PRESET_LABELS.get(name, name))
    ax.axhline(free, color="k", ls="--", lw=1.2, label="drift-free")
    ax.set(xlabel="drift_scale (× the published drift)", ylabel=f"test accuracy at {label}", ylim=(0, 1.02))
    handles, labels = ax.get_legend_handles_labels()
    return column_layout(fig, f"F3: accuracy at {label} vs drift strength (mean ± std over chips)", handles, labels)


# ------------------------------------------------------------------------------------ scheduling (F5)
def switching_plot(table, windows, free: float, title: str):
    """F5 (left): uncompensated and VeRA+ accuracy (mean ± std) on a fine time grid, with the window edges
    of the schedule (dotted) and each window's level and time span written above it.

    ``windows``: rows with ``level``, ``start_s``, ``end_s`` (``Schedule.describe()``).
    """
    import math

    fig, ax = plt.subplots(figsize=(FIG_WIDTH, 5.0))
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
    ax.set_ylim(lo, hi + 0.16 * (hi - lo))
    for w in list(windows.itertuples())[1:]:
        ax.axvline(w.start_s, color="#555555", ls=":", lw=1.2)
    for w in windows.itertuples():
        ax.text(math.sqrt(max(w.start_s, T_START) * w.end_s), hi + 0.08 * (hi - lo),
                f"{w.level}\n{format_time(w.start_s)}–\n{format_time(w.end_s)}", ha="center", va="center",
                fontsize=SMALL, color="#333333", linespacing=1.0)
    ax.set_ylabel("test accuracy")
    handles, labels = ax.get_legend_handles_labels()
    return column_layout(fig, title, handles, labels)


def levels_plot(k_table, free: float, title: str):
    """F5 (right): VeRA+ accuracy (mean ± std) against the number of levels K at a few times, with the
    uncompensated accuracy at each time (dotted, or listed as off scale) and each K's storage under it."""
    import numpy as np

    times, ks = list(dict.fromkeys(k_table["time"])), sorted(set(k_table["K"]))
    fig, ax = plt.subplots(figsize=(FIG_WIDTH, 5.0))
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
    handles, labels = ax.get_legend_handles_labels()
    return column_layout(fig, title, handles, labels)


# ------------------------------------------------------------------------------------ measured drift (F7)
def drift_table_plot(table, extra_times, title: str):
    """F7 (table): the spread (and, when the table has one, the mean shift) of ``G − G_target`` against the
    target conductance at the table's times (solid) and as extrapolated at ``extra_times`` (dashed)."""
    import numpy as np

    times, g = table.times.tolist(), table.g.numpy()
    colors = plt.cm.viridis(np.linspace(0.0, 0.85, len(times)))
    extra_colors = plt.cm.Reds(np.linspace(0.5, 0.9, max(1, len(extra_times))))
    has_shift = bool(table.mean_shift.abs().max() > 0)  # a zero-mean table gets no mean-shift panel
    fig, axes = plt.subplots(2 if has_shift else 1, 1, figsize=(FIG_WIDTH, 6.8 if has_shift else 4.4), sharex=True,
                             squeeze=False)
    axes = axes[:, 0]
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
        axes[0].set_title("the table's mean shift is 0 µS at every level and time", loc="left")
    axes[-1].set_xlabel("target conductance G_target (µS)")
    handles, labels = axes[0].get_legend_handles_labels()
    return column_layout(fig, title, handles, labels, legend_title="time after programming")
