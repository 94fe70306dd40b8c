"""The recorded study-scale build beside this build's numbers: the comparison chapter's T1, F4 and F9 at the
study's scale, drawn from a :class:`~rramlib.study.recorded.Recorded` (which reads the record and judges
whether it is stale; this module only shows it, in the book's figure style).
"""
from __future__ import annotations

import matplotlib.pyplot as plt
import pandas as pd

from rramlib.present.plotting import (FIG_WIDTH, METHOD_LABELS, METHOD_MARKERS, column_layout, method_color,
                                      pareto_plot, time_axis)
from rramlib.study.analysis import with_spread
from rramlib.study.recorded import Recorded

__all__ = ["comparison_table", "figures", "accuracy_curves"]


def comparison_table(rec: Recorded, t1, methods, times) -> pd.DataFrame:
    """T1 beside its recorded counterpart: accuracy and retained % per method and time, this build's
    numbers (``t1``: :func:`rramlib.study.analysis.time_table`) next to the recorded ones of ``rec``."""
    recorded = rec.table("03_comparison", "T1_accuracy")
    stale = " (STALE)" if rec.stale("03_comparison") else ""
    sides = (("this build", t1, ""), (rec.column(), recorded, stale))
    rows = []
    for m in methods:
        for t in times:
            row = {"method": METHOD_LABELS.get(m, m), "time": t}
            for what, mean, std, fmt, factor in (("accuracy", "acc_mean", "acc_std", "{:.3f}", 1),
                                                 ("retained %", "retained", "retained_std", "{:.1f}", 100)):
                for who, frame, mark in sides:
                    sub = None if frame is None else frame[(frame["method"] == m) & (frame["time"] == t)]
                    row[f"{who}: {what}"] = ("not recorded" if sub is None or sub.empty else
                                             with_spread(factor * sub.iloc[0][mean], factor * sub.iloc[0][std],
                                                         fmt) + mark)
            rows.append(row)
    return pd.DataFrame(rows)


def figures(rec: Recorded, methods) -> dict:
    """F4 (accuracy over ten years per method) and F9 (accuracy against storage) drawn from the recorded
    comparison notebook of ``rec``, titled with the record's commit and STALE where stale; ``{}`` when not
    recorded."""
    curves, pareto = rec.table("03_comparison", "F4_accuracy"), rec.table("03_comparison", "F9_pareto")
    free = rec.number("03_comparison", "drift_free_acc")
    params = rec.results.get("03_comparison", {}).get("params", {})
    mark = " — STALE" if rec.stale("03_comparison") else ""
    where = f"recorded, profile {rec.profile}, commit {((rec.provenance or {}).get('git_commit') or '?')[:10]}"
    figs = {}
    if curves is not None and free is not None:
        figs["F4_study_scale"] = accuracy_curves(curves, free, [m for m in methods if m in set(curves["method"])],
                                                 f"Accuracy vs time — {where}{mark}")
    if pareto is not None and free is not None:
        figs["F9_study_scale"] = pareto_plot(
            pareto, free, xlabel="digital storage, all levels (bytes, fp32, log scale)",
            ylabel=f"test accuracy at {params.get('pareto_time', '?')}",
            title=f"Accuracy vs storage — {where}{mark}")
    return figs


def accuracy_curves(table, free: float, methods, title: str):
    """Accuracy (mean ± std over chips) against time per method, with the drift-free line: F4's view of a
    table with the columns of :func:`rramlib.study.analysis.accuracy_table`."""
    fig, ax = plt.subplots(figsize=(FIG_WIDTH, 0.6 * FIG_WIDTH))
    for m in methods:
        d = table[table["method"] == m].sort_values("time_s")
        ax.plot(d["time_s"], d["mean"], marker=METHOD_MARKERS.get(m, "o"), color=method_color(m),
                lw=2.2 if m.startswith("vera_plus") else 1.5, label=METHOD_LABELS.get(m, m), zorder=3)
        ax.fill_between(d["time_s"], d["mean"] - d["std"], d["mean"] + d["std"], color=method_color(m), alpha=0.15,
                        lw=0)
    ax.axhline(free, color="black", ls="--", lw=1.2, label="drift-free")
    grid = table.drop_duplicates("time_label").sort_values("time_s")
    time_axis(ax, dict(zip(grid["time_label"], grid["time_s"])))
    ax.set_ylabel("test accuracy")
    handles, labels = ax.get_legend_handles_labels()
    return column_layout(fig, title, handles, labels)
