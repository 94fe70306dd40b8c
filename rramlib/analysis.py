"""Tidy tables from sweep results: accuracy per method and time, retained and recovered fractions."""
from __future__ import annotations

import pandas as pd

__all__ = ["to_frame", "accuracy_table", "drift_free_accuracy"]


def to_frame(result: dict) -> pd.DataFrame:
    """One row per (method, time, chip) record of a :func:`~rramlib.experiments.run_sweep` result."""
    frame = pd.DataFrame(result["records"])
    return frame[frame["method"] != "drift_free"].reset_index(drop=True)


def drift_free_accuracy(result: dict) -> float:
    return float(result["metadata"]["drift_free_accuracy"])


def accuracy_table(result: dict) -> pd.DataFrame:
    """Mean, spread (std over chips), min and max accuracy per method and time, plus two ratios.

    * ``retained`` = mean accuracy / drift-free accuracy (the study's "% of drift-free accuracy").
    * ``recovered`` = (mean - uncompensated mean) / (drift-free - uncompensated mean) at the same time:
      the fraction of the drift-induced loss won back (NaN where drift cost nothing).
    """
    frame = to_frame(result)
    free = drift_free_accuracy(result)
    table = (frame.groupby(["method", "time_s", "time_label"], sort=False)["accuracy"]
             .agg(mean="mean", std="std", min="min", max="max", chips="count").reset_index())
    table["std"] = table["std"].fillna(0.0)
    table["retained"] = table["mean"] / free
    none = table[table["method"] == "none"].set_index("time_s")["mean"]
    loss = free - table["time_s"].map(none)
    table["recovered"] = ((table["mean"] - table["time_s"].map(none)) / loss).where(loss > 1e-12)
    return table
