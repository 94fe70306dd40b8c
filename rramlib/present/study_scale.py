"""The recorded study-scale build beside this build's numbers: the comparison chapter's T1, F4 and F9 at the
study's scale, drawn from a :class:`~rramlib.study.recorded.Recorded` (which reads the record and judges
whether it is stale; this module only shows it, in the book's figure style), and the two passages of the book's
static pages that the builder writes from the record (:func:`answer_first` for the first page,
:func:`record_page` for *Reproducing*).

**The first page's contract with the comparison chapter** (:data:`COMPARISON`): its results hold the table
:data:`INTERVALS` with the columns ``method, readout, time, acc_mean, acc_low, acc_high, retained_pct,
retained_low, retained_high, recovered, storage_bytes`` (accuracies as fractions, retained in % of drift-free,
intervals at :data:`CONFIDENCE`, storage in bytes), and the numbers :data:`VERDICT` (a sentence) and
:data:`VERDICT_READOUT` (the readout the book leads with).
"""
from __future__ import annotations

import math
from collections.abc import Mapping

import matplotlib.pyplot as plt
import pandas as pd

from rramlib.core.errors import RramlibError
from rramlib.core.times import parse_time
from rramlib.present.plotting import (FIG_WIDTH, METHOD_LABELS, METHOD_MARKERS, byte_label, column_layout,
                                      method_color, pareto_plot, time_axis)
from rramlib.study import headline
from rramlib.study.analysis import with_spread
from rramlib.study.recorded import Recorded, cpu_text

__all__ = ["COMPARISON", "CONFIDENCE", "INTERVALS", "VERDICT", "VERDICT_READOUT", "comparison_table", "figures",
           "accuracy_curves", "answer_first", "readout_tables", "recorded_answer", "record_page"]

#: The comparison chapter, whose results the first page reads.
COMPARISON = "03_comparison"
#: Its table of accuracies with intervals, per method, readout and time (columns: the module docstring).
INTERVALS = "T1_intervals"
#: Its number holding the verdict sentence, and the one naming the readout the book leads with.
VERDICT, VERDICT_READOUT = "verdict", "verdict_readout"
#: The confidence of the intervals of :data:`INTERVALS` (part of the contract: the chapter computes them so).
CONFIDENCE = headline.CONFIDENCE


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


# ------------------------------------------------------------------------------------ passages of static pages
def _cell(text) -> str:
    """Text for a markdown table cell: pipes escaped, line breaks removed."""
    return " ".join(str(text).split()).replace("|", "\\|")


def _missing(value) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _number(value, fmt: str) -> str:
    """``value`` formatted, or ``"n/a"`` where it is missing or NaN."""
    return "n/a" if _missing(value) else fmt.format(value)


def _interval(row: Mapping, mean: str, low: str, high: str, fmt: str) -> str:
    """``"98.1 (97.0 to 99.0)"``: a mean with its interval."""
    return f"{_number(row.get(mean), fmt)} ({_number(row.get(low), fmt)} to {_number(row.get(high), fmt)})"


def _seconds(label: str) -> float:
    """A time label's seconds (:func:`rramlib.core.times.parse_time`); minus infinity for one it cannot read."""
    try:
        return parse_time(label)
    except RramlibError:
        return -math.inf


def _sentence(text: str) -> str:
    text = text.strip()
    return text[:1].upper() + text[1:] + ("" if text.endswith(".") else ".")


def answer_first(results: Mapping | None, source: str) -> str:
    """What the study-scale build found, as the book's first page opens (MyST markdown): for the readout the
    comparison leads with (:data:`VERDICT_READOUT`) at the latest time of :data:`INTERVALS`, per method the retained
    accuracy and the accuracy with their intervals and the storage; then the verdict (:data:`VERDICT`); then
    ``source``, the line that says where the numbers come from (a record's caption).

    ``results``: the comparison chapter's results (``None``: nothing to show, ``source`` says why). Where they lack
    the table, the verdict or the readout's rows, one sentence says so instead."""
    if results is None:
        return _sentence(source) + "\n"
    numbers, tables = results.get("numbers") or {}, results.get("tables") or {}
    verdict, readout = numbers.get(VERDICT), numbers.get(VERDICT_READOUT)
    rows = [r for r in tables.get(INTERVALS) or [] if isinstance(r, Mapping) and r.get("readout") == readout]
    if not (rows and verdict and readout):
        lacking = ", ".join(k for k, there in ((INTERVALS, rows), (VERDICT, verdict), (VERDICT_READOUT, readout))
                            if not there)
        return (f"The study-scale answer is not here yet: the results of its comparison ({COMPARISON}) lack "
                f"{lacking}, which a record made with the current comparison chapter holds ({source}).\n")
    latest = max(dict.fromkeys(str(r.get("time")) for r in rows), key=_seconds)
    level = f"{100 * CONFIDENCE:g} %"
    lines = [f"**What the study-scale build found**, {latest} after programming, chips read {readout}:", "",
             f"| method | retained, % of drift-free ({level} interval) | accuracy ({level} interval) | storage |",
             "|:--|--:|--:|--:|"]
    for row in (r for r in rows if str(r.get("time")) == latest):
        storage, method = row.get("storage_bytes"), str(row.get("method"))
        lines.append(f"| {_cell(METHOD_LABELS.get(method, method))} "
                     f"| {_interval(row, 'retained_pct', 'retained_low', 'retained_high', '{:.1f}')} "
                     f"| {_interval(row, 'acc_mean', 'acc_low', 'acc_high', '{:.3f}')} "
                     f"| {'n/a' if _missing(storage) else byte_label(storage)} |")
    lines += ["", _sentence(str(verdict)), "", f"Source: {source}.", ""]
    return "\n".join(lines)


def _pp(row: Mapping, stem: str) -> str:
    """``"-0.70 (-0.93 to -0.45)"``: the paired difference ``d_<stem>`` of a T1 row in percentage points; ``-``
    where it has none (the reference's own row)."""
    scaled = {k: None if _missing(row.get(f"d_{stem}_{k}")) else 100 * row[f"d_{stem}_{k}"]
              for k in ("mean", "low", "high")}
    return "-" if scaled["mean"] is None else _interval(scaled, "mean", "low", "high", "{:+.2f}")


def readout_tables(results: Mapping | None) -> str:
    """Every readout's table T1 at the latest time of :data:`INTERVALS`, the readout the book leads with first
    (markdown): per method the accuracy and the retained share with their intervals, recovered, the paired
    differences method - BN and method - cross-layer VeRA+ in points with their intervals, and the storage; after
    each table, its readout's verdict (the number ``verdict_<readout>``). Empty where the results lack the table."""
    numbers, tables = (results or {}).get("numbers") or {}, (results or {}).get("tables") or {}
    rows = [r for r in tables.get(INTERVALS) or [] if isinstance(r, Mapping)]
    if not rows:
        return ""
    latest = max(dict.fromkeys(str(r.get("time")) for r in rows), key=_seconds)
    readouts = list(dict.fromkeys(str(r.get("readout")) for r in rows))
    lead = numbers.get(VERDICT_READOUT)
    readouts.sort(key=lambda r: r != lead)
    level = f"{100 * CONFIDENCE:g} %"
    lines = []
    for readout in readouts:
        lines += [f"**{readout} readout, {latest} after programming**"
                  f"{', the readout the book leads with' if readout == lead else ''} ({level} intervals; vs: the "
                  f"paired difference, method minus the reference, in points):", "",
                  "| method | accuracy | retained, % of drift-free | recovered | vs BN | vs VeRA+ (cross-layer) "
                  "| storage |", "|:--|--:|--:|--:|--:|--:|--:|"]
        for row in (r for r in rows if str(r.get("readout")) == readout and str(r.get("time")) == latest):
            method, storage = str(row.get("method")), row.get("storage_bytes")
            lines.append(f"| {_cell(METHOD_LABELS.get(method, method))} "
                         f"| {_interval(row, 'acc_mean', 'acc_low', 'acc_high', '{:.4f}')} "
                         f"| {_interval(row, 'retained_pct', 'retained_low', 'retained_high', '{:.1f}')} "
                         f"| {_number(row.get('recovered'), '{:.2f}')} | {_pp(row, 'bn')} | {_pp(row, 'vera')} "
                         f"| {'n/a' if _missing(storage) else byte_label(storage)} |")
        verdict = numbers.get(f"verdict_{readout}")
        lines += ["", *([_sentence(str(verdict)), ""] if verdict else [])]
    return "\n".join(lines)


def recorded_answer(rec: Recorded) -> str:
    """:func:`answer_first` from the record ``rec``, with its caption as the source (STALE and why, or which file
    cannot be read)."""
    return answer_first(rec.results.get(COMPARISON, {}) if rec.exists else None, rec.caption(COMPARISON))


def _duration(seconds) -> str:
    if seconds is None:
        return "n/a"
    return f"{seconds / 3600:.2f} h" if seconds >= 3600 else f"{seconds:.0f} s"


def _numerics_text(numerics: Mapping | None) -> str:
    """``"torch 2.4.1, 2 threads, no instruction cap"``: a :func:`rramlib.core.numerics.numeric_environment`."""
    numerics = numerics or {}
    cap = ", ".join(f"{k}={v}" for k, v in sorted((numerics.get("instructions") or {}).items()))
    return (f"torch {numerics.get('torch', '?')}, {numerics.get('threads', '?')} threads, "
            + (f"capped: {cap}" if cap else "no instruction cap"))


def record_page(rec: Recorded) -> str:
    """What the record holds, for the *Reproducing* page (MyST markdown): its caption; the wall time, CPU time and
    peak memory of every notebook of the recorded build in the execution that computed its results (the first,
    uncached one: a recording run that finds a notebook cached does not execute it again); every shipped base
    model (seed, cache entry, precision, epochs, training time, drift-free validation accuracy, numeric
    environment); the libraries and the CPU. Parts an older record lacks are said to be missing."""
    if not rec.exists:
        return _sentence(rec.caption()) + "\n"
    prov = rec.provenance
    lines = [_sentence(rec.caption()), ""]
    build = prov.get("build") if isinstance(prov.get("build"), Mapping) else None
    executions = (build or {}).get("notebooks") or {
        name: {"profile": entry.get("profile", rec.profile), "wall_s": entry.get("builder_wall_s"),
               "cpu_s": entry.get("cpu_s"), "peak_rss_mb": entry.get("peak_rss_mb")}
        for name, entry in prov["notebooks"].items()}
    lines += ["**Time and memory of the recorded build**, per notebook, in the execution that computed its results"
              + (f" ({build['jobs']} notebook(s) at once)" if build and build.get("jobs") else "") + ":", "",
              "| notebook | ran at | recorded | wall time (s) | of it, unfinished executions | CPU time (s) "
              "| peak memory (MiB) |",
              "|:--|:--|:--|--:|--:|--:|--:|"]
    for name, entry in sorted(executions.items()):
        lines.append(f"| {_cell(name)} | {_cell(entry.get('profile', '?'))} "
                     f"| {'yes' if name in prov['notebooks'] else 'no'} | {_number(entry.get('wall_s'), '{:.1f}')} "
                     f"| {_number(entry.get('unfinished_runs'), '{:d}')} "
                     f"| {_number(entry.get('cpu_s'), '{:.1f}')} | {_number(entry.get('peak_rss_mb'), '{:.0f}')} |")
    walls = [e.get("wall_s") for e in executions.values() if e.get("wall_s") is not None]
    peaks = [e.get("peak_rss_mb") for e in executions.values() if e.get("peak_rss_mb") is not None]
    lines += [f"| all, one after another | | | {_number(sum(walls) if walls else None, '{:.0f}')} | | "
              f"| {_number(max(peaks) if peaks else None, '{:.0f}')} |", "",
              "A chapter whose execution was interrupted (a session's end, a failing cell) resumed from the results "
              "cache: its wall time adds the unfinished executions' as far as the builder had noted them when they "
              "stopped (rramlib.book.execute.UnfinishedRuns); its CPU time and peak memory are the finishing "
              "execution's.", ""]
    models = prov.get("base_models")
    if models is None:
        lines += ["This record does not describe its base models (it predates their provenance).", ""]
    else:
        lines += [f"**Base models** shipped with the record (`recorded/{rec.profile}/cache/model/`), trained in "
                  f"{prov.get('base_model_precision', '?')}:", "",
                  "| base seed | cache entry | epochs | training wall time | median epoch | drift-free validation "
                  "accuracy | drift-free test accuracy | numeric environment |", "|--:|:--|--:|--:|--:|--:|--:|:--|"]
        for m in models:
            test = rec.number("03_comparison", f"drift_free_acc_base_seed_{m.get('base_seed')}")
            lines.append(f"| {m.get('base_seed')} | `{str(m.get('key', '?'))[:12]}` | {m.get('epochs', '?')} "
                         f"| {_duration(m.get('wall_s'))} | {_number(m.get('epoch_s_median'), '{:.1f} s')} "
                         f"| {_number(m.get('val_accuracy'), '{:.4f}')} "
                         f"| {_number(test, '{:.4f}')} | {_cell(_numerics_text(m.get('numerics')))} |")
        summed = all(m.get("wall_s_all_calls") for m in models)
        lines += ["", "The training wall time sums the wall times of every epoch, over every call of a training "
                  "interrupted and resumed from its last finished epoch; an epoch that shared the cores with other "
                  "work, or was paused, counts in full, so the median epoch times the epochs is what an undisturbed "
                  "training takes." if summed else
                  "A training interrupted and resumed from its last finished epoch counts its wall time from the "
                  "resume: the column gives the last call's time, not the whole training's.", ""]
    libraries = ", ".join(f"{k} {v}" for k, v in (prov.get("libraries") or {}).items()) or "not in this record"
    machine = prov.get("machine") or {}
    lines += [f"**Libraries**: {libraries}. **Machine**: {machine.get('cores', '?')} cores of "
              f"{machine.get('cpu', '?')}; {cpu_text(prov.get('cpu'))}.",
              ""]
    return "\n".join(lines)
