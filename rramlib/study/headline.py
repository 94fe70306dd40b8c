"""The headline comparison: every method at the headline times, on every base model, on both readouts, per image.

The comparison chapter's sweep (:func:`rramlib.study.experiments.run_sweep`) draws accuracy curves for one base
model; the verdict needs more: results that can be *paired* (same base models, chips and images for every method)
over several independently trained base models, so that :mod:`rramlib.study.intervals` can put a 95 % interval
on each method's accuracy and on the difference between two methods. :func:`run_headline` fits every method on
every base seed of the profile (:attr:`~rramlib.study.profiles.Profile.base_seeds`) and readout
(:data:`rramlib.device.analog.READOUTS`) and keeps, per evaluation chip, time and test image, whether the chip
classified the image correctly (:func:`rramlib.study.experiments.correctness`; every fit and chip is cached, so
an interrupted run resumes and the comparison chapter's own sweep shares its entries).

:func:`t1_intervals` turns that into the table the book and the verdict read; :func:`lead_readout` picks the
readout the book leads with, by a stated criterion.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from tqdm import tqdm

from rramlib.core.cache import Cache
from rramlib.core.errors import RramlibError
from rramlib.core.times import parse_time
from rramlib.methods.overhead import OUR_READING
from rramlib.study import intervals
from rramlib.study.analysis import MIN_LOSS_IMAGES
from rramlib.core.torchutil import resolve_device
from rramlib.study.base_model import device_test_set
from rramlib.study.experiments import SweepConfig, correct_predictions, correctness, prepare

__all__ = ["VERA_ROWS", "Headline", "rows_of", "row_config", "comparison_fits", "run_headline", "t1_intervals", "lead_readout", "verdict",
           "READOUT_CRITERION", "CONFIDENCE", "REFERENCE_COLUMNS", "table_retained", "table_standing"]

#: The confidence level of every interval of the headline (shown in the book, never typed).
CONFIDENCE = 0.95

#: VeRA+ is compared twice, once per sharing mode of its vectors: row name -> ``sharing``.
VERA_ROWS = {"vera_plus_layer": "layer", "vera_plus_cross": "cross"}

#: How :func:`lead_readout` picks the readout the book leads with (shown in the book beside the choice).
READOUT_CRITERION = ("the readout on which the uncompensated chip keeps more accuracy at the last headline time: "
                     "the methods are then judged against the strongest baseline that costs nothing")


def rows_of(methods) -> tuple[str, ...]:
    """The comparison's rows for ``methods``: ``vera_plus`` becomes one row per sharing mode (:data:`VERA_ROWS`),
    and ``none`` (the reference of "recovered") comes first if it is missing."""
    methods = tuple(methods)
    rows = [r for m in (methods if "none" in methods else ("none", *methods))
            for r in (VERA_ROWS if m == "vera_plus" else (m,))]
    return tuple(rows)


def row_config(config: SweepConfig, row: str) -> tuple[SweepConfig, str]:
    """The sweep configuration and method name of comparison row ``row`` (:func:`rows_of`)."""
    if row in VERA_ROWS:
        params = {**config.method_params, "vera_plus": {**config.method_params.get("vera_plus", {}),
                                                         "sharing": VERA_ROWS[row]}}
        return dataclasses.replace(config, methods=("vera_plus",), method_params=params), "vera_plus"
    return dataclasses.replace(config, methods=(row,)), row


def comparison_fits(config: SweepConfig, methods, *, base_seeds=None, data_root: str | None = None,
                    cache: Cache | None = None) -> dict[int, tuple]:
    """``{base seed: (software model, {row: fitted method})}``: every comparison row of ``methods`` (:func:`rows_of`)
    fitted on every base seed (default: the profile's) at ``config``'s readout and hyper-parameters -- the fits
    :func:`run_headline` makes, read back from the same cache entries. Every base seed is checked before any
    training or fitting."""
    cache = cache or Cache(None)
    rows = rows_of(methods)
    profile = config.resolved_profile()
    configs = {s: dataclasses.replace(config, base_seed=s)
               for s in (profile.base_seeds if base_seeds is None else base_seeds)}
    out = {}
    for seed, cfg in configs.items():
        exp = prepare(cfg, data_root=data_root, cache=cache)
        out[seed] = (exp.base.model, {row: exp.fit(name, row_cfg, cache)
                                      for row in rows for row_cfg, name in (row_config(cfg, row),)})
    return out


@dataclass
class Headline:
    """Paired per-image results of the headline comparison.

    ``correct[readout][row]``: bools shaped (base seeds, chips, times, images); ``free``: the drift-free software
    model's bools, (base seeds, images); ``storage_bytes[row]``: digital storage (fp32, all drift levels, our
    reading of VeRA+'s projections, :data:`rramlib.methods.overhead.OUR_READING`).
    """

    rows: tuple[str, ...]
    readouts: tuple[str, ...]
    times: tuple[str, ...]
    base_seeds: tuple[int, ...]
    chips: tuple[int, ...]
    correct: dict = field(default_factory=dict)
    free: np.ndarray | None = None
    storage_bytes: dict = field(default_factory=dict)
    drift_free_accuracy: tuple[float, ...] = ()

    def at(self, readout: str, row: str, time: str) -> np.ndarray:
        """(seeds, chips, images) bools of ``row`` on ``readout`` at ``time``."""
        if time not in self.times:
            raise RramlibError(f"headline time {time!r} was not run; run: {list(self.times)}")
        return self.correct[readout][row][:, :, self.times.index(time), :]

    def free_like(self, readout: str, row: str) -> np.ndarray:
        """The drift-free bools broadcast to the (seeds, chips, images) shape of one row at one time."""
        seeds, chips, _, images = self.correct[readout][row].shape
        return np.broadcast_to(self.free[:, None, :], (seeds, chips, images))


def run_headline(config: SweepConfig, methods, *, readouts=("raw", "gdc"), times=("10y",), base_seeds=None,
                 data_root: str | None = None, cache: Cache | None = None, progress: bool = False) -> Headline:
    """Fit every method of ``methods`` on every base seed and readout, and evaluate the chips at ``times``.

    ``config`` gives the profile, preset, mapping and hyper-parameters (its ``readout``, ``base_seed``, ``times``
    and ``methods`` are replaced); ``base_seeds`` default to the profile's; ``data_root``: the dataset's folder. Where a (seed, readout) pair is the
    configuration's own (its readout, its base seed or the profile's first), the chips are evaluated on the
    profile's whole time grid and the headline times read from it, so the comparison chapter's sweep and this
    share their cache entries. The method ``scale`` is left out on the ``gdc`` readout (it is the identity there).
    Every input is checked before any training or fitting.
    """
    cache = cache or Cache(None)
    rows = rows_of(methods)
    profile = config.resolved_profile()
    seeds = tuple(profile.base_seeds if base_seeds is None else base_seeds)
    readouts = tuple(readouts)
    for r in readouts:  # every setting checked before any work
        dataclasses.replace(config, readout=r)
    for s in seeds:
        dataclasses.replace(config, base_seed=s)
    grid = tuple(profile.times)
    missing = [t for t in times if t not in grid]
    if missing:
        raise RramlibError(f"headline times {missing} are not on the profile's time grid {list(grid)}")
    first = config.base_seed if config.base_seed is not None else profile.base_seeds[0]
    chips = tuple(config.chip_seeds())
    out = Headline(rows=rows, readouts=readouts, times=tuple(times), base_seeds=seeds, chips=chips)
    free, accs = [], []
    work = [(r, s) for r in readouts for s in seeds]
    for readout, seed in tqdm(work, desc="headline", unit="model", disable=not progress):
        own = readout == config.readout and seed == first
        cfg = dataclasses.replace(config, readout=readout, base_seed=seed, times=config.times if own else tuple(times))
        exp = prepare(cfg, data_root=data_root, cache=cache, progress=progress)
        device = resolve_device(exp.profile.device)
        test = device_test_set(exp.base.splits, device)
        if readout == readouts[0]:
            free.append(correct_predictions(exp.base.model, test, batch_size=exp.profile.eval_batch_size, device=device))
            accs.append(exp.base.accuracy)
        run_times = tuple(exp.profile.times)
        pick = [run_times.index(t) for t in times]
        for row in rows:
            if readout == "gdc" and row == "scale":
                continue
            row_cfg, name = row_config(cfg, row)
            method = exp.fit(name, row_cfg, cache)
            got = correctness(exp, row_cfg, method, chips, cache)[:, pick, :]
            out.correct.setdefault(readout, {}).setdefault(row, []).append(got)
            if readout == readouts[0] and seed == seeds[0]:
                out.storage_bytes[row] = method.storage().total_bytes("fp32", projections=OUR_READING)
    out.correct = {r: {row: np.stack(v) for row, v in by_row.items()} for r, by_row in out.correct.items()}
    out.free = np.stack(free)
    out.drift_free_accuracy = tuple(accs)
    return out


def lead_readout(headline: Headline, time: str | None = None) -> str:
    """The readout the book leads with (:data:`READOUT_CRITERION`): the one on which ``none`` (the uncompensated
    chip) is more accurate at ``time`` (default: the last headline time); the first readout on a tie."""
    time = time or headline.times[-1]
    return max(headline.readouts, key=lambda r: (headline.at(r, "none", time).mean(), -headline.readouts.index(r)))


def t1_intervals(headline: Headline, *, references=("bn", "vera_plus_cross"), n_boot: int = intervals.N_BOOT,
                 seed: int = 0) -> pd.DataFrame:
    """Table T1 with intervals: one row per readout, time and comparison row.

    Columns: ``acc_mean``/``acc_low``/``acc_high`` (:func:`rramlib.study.intervals.accuracy_interval`);
    ``retained_pct`` and its interval: 100 x (1 + d / drift-free accuracy), d the paired difference of the row and
    the drift-free model on the same images (the drift-free accuracy in the denominator is the mean over base
    seeds, held fixed: its own spread is left out); ``recovered``: (acc - acc_none) / (drift-free - acc_none) on
    the means, NaN where some (seed, chip) lost fewer than :data:`~rramlib.study.analysis.MIN_LOSS_IMAGES` test
    images to drift uncompensated (``drift_loss_images_min``); ``d_<ref>_mean/low/high``: the paired difference
    row - ref for each of ``references`` (NaN for the reference itself or where it is missing); ``storage_bytes``.
    All intervals share the bootstrap ``seed`` (common random numbers).
    """
    settings = dict(confidence=CONFIDENCE, n_boot=n_boot, seed=seed)
    free_mean = float(headline.free.mean())
    records = []
    for readout in headline.readouts:
        rows = headline.correct[readout]
        for time in headline.times:
            none = headline.at(readout, "none", time)
            free = headline.free_like(readout, "none")
            lost = (free.sum(axis=2).astype(int) - none.sum(axis=2)).min()
            for row in headline.rows:
                if row not in rows:
                    continue
                x = headline.at(readout, row, time)
                acc = intervals.accuracy_interval(x, **settings)
                kept = intervals.paired_difference(x, free, **settings)
                loss = free_mean - none.mean()
                rec = {"method": row, "readout": readout, "time": time, "acc_mean": acc.mean, "acc_low": acc.low,
                       "acc_high": acc.high, "retained_pct": 100 * (1 + kept.mean / free_mean),
                       "retained_low": 100 * (1 + kept.low / free_mean),
                       "retained_high": 100 * (1 + kept.high / free_mean),
                       "recovered": (x.mean() - none.mean()) / loss if lost >= MIN_LOSS_IMAGES else float("nan"),
                       "drift_loss_images_min": int(lost),
                       "storage_bytes": headline.storage_bytes.get(row, float("nan"))}
                for ref in references:
                    short = REFERENCE_COLUMNS.get(ref, ref)
                    if ref in rows and ref != row:
                        d = intervals.paired_difference(x, headline.at(readout, ref, time), **settings)
                        rec.update({f"d_{short}_mean": d.mean, f"d_{short}_low": d.low, f"d_{short}_high": d.high})
                    else:
                        rec.update({f"d_{short}_{k}": float("nan") for k in ("mean", "low", "high")})
                records.append(rec)
    return pd.DataFrame.from_records(records)


#: The column stem of each reference of :func:`t1_intervals` (``d_<stem>_mean`` ...); any other reference keeps its name.
REFERENCE_COLUMNS = {"bn": "bn", "vera_plus_cross": "vera", "vera_plus_layer": "vera_layer"}


def _rows_at(t1i: pd.DataFrame | None, readout: str | None, time: str) -> dict:
    if t1i is None or readout is None or not len(t1i):
        return {}
    return t1i[(t1i["readout"] == readout) & (t1i["time"] == time)].set_index("method").to_dict("index")


def table_retained(t1i: pd.DataFrame | None, readout: str | None, time: str, row: str, *,
                   missing: str = intervals.MISSING) -> str:
    """``"97.1 % [96.3, 97.8]"``: the retained share of ``row`` with its interval, read back from a
    :func:`t1_intervals` table (e.g. a recorded one); ``missing`` where the table lacks it."""
    r = _rows_at(t1i, readout, time).get(row)
    if r is None:
        return missing
    return f"{r['retained_pct']:.1f} % [{r['retained_low']:.1f}, {r['retained_high']:.1f}]"


def table_standing(t1i: pd.DataFrame | None, readout: str | None, time: str, subject: str, other: str, *,
                   base_seeds: int, label=str, missing: str = intervals.MISSING) -> str:
    """The :func:`~rramlib.study.intervals.standing` sentence of ``subject`` against ``other``, read back from a
    :func:`t1_intervals` table (e.g. a recorded one): its paired column ``subject - other`` where ``other`` is a
    reference of the table, else ``other - subject`` turned round. ``base_seeds``: how many base models the
    table's intervals span (the sentence says "one base model" for one). ``missing`` where the table lacks both."""
    rows = _rows_at(t1i, readout, time)

    def interval(row, ref, sign):
        stem = REFERENCE_COLUMNS.get(ref, ref)
        r = rows.get(row, {})
        mean, low, high = (r.get(f"d_{stem}_{k}", float("nan")) for k in ("mean", "low", "high"))
        if any(v is None or v != v for v in (mean, low, high)):
            return None
        low, high = (low, high) if sign > 0 else (-high, -low)
        return intervals.Interval(sign * mean, low, high, CONFIDENCE, seeds=base_seeds, chips=0, images=0,
                                  per_seed=(), n_boot=intervals.N_BOOT)

    found = interval(subject, other, 1) or interval(other, subject, -1)
    return missing if found is None else intervals.standing(label(subject), label(other), found)


def verdict(headline: Headline, readout: str, time: str, *, label=str, subject: str = "vera_plus_cross",
            others=("bn", "lora", "scale"), n_boot: int = intervals.N_BOOT, seed: int = 0) -> str:
    """The verdict sentence: how ``subject`` stands against each of ``others`` at ``time`` on ``readout``, each
    clause computed from the paired interval (:func:`rramlib.study.intervals.standing`: ahead, behind, or
    indistinguishable at this resolution). On the ``gdc`` readout, output scaling is the readout itself: its
    results are those of ``none`` there. ``label`` names the rows."""
    if readout not in headline.correct or subject not in headline.correct[readout]:
        return intervals.MISSING
    x = headline.at(readout, subject, time)
    clauses = []
    for other in others:
        row = "none" if (readout == "gdc" and other == "scale") else other
        if row not in headline.correct[readout]:
            clauses.append(f"{label(other)}: {intervals.MISSING}")
            continue
        d = intervals.paired_difference(x, headline.at(readout, row, time), confidence=CONFIDENCE, n_boot=n_boot,
                                        seed=seed)
        clauses.append(intervals.standing(label(subject), label(other), d))
    return "; ".join(clauses)
