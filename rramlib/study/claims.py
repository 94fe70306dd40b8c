"""The study's claims, with the paper's numbers and where in the book ours are measured.

Paper values come from the abstracts in the study's seeds (VeRA+ 2026, DoRA calibration 2025) or,
where marked ``"digest (unverified)"``, from a second-hand digest of the full text that we could not
check. ``notebook``/``key`` name the results file and number that hold our measurement
(``results/<notebook>.json`` -> ``numbers[key]``); ``None`` means we cannot measure it. A row about VeRA+'s
storage or work counts its shared projections A and B under our reading of the study's "reuses shared
projection matrices" (kept in SRAM, :data:`rramlib.methods.overhead.OUR_READING`) and gives, in ``other_key``, the
number under the other reading (regenerated at every inference from the seed). Every row names the profile its
chapter ran at (:func:`rramlib.study.scope.chapter_profile`), which in a study-scale build differs by chapter.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd

from rramlib.core.errors import RramlibError
from rramlib.core.files import load_results
from rramlib.core.times import parse_time
from rramlib.nn.data import as_tensors
from rramlib.nn.evaluate import accuracy
from rramlib.study.recorded import load
from rramlib.study.experiments import chip_accuracies
from rramlib.study.scope import chapter_profile

__all__ = ["Claim", "CLAIMS", "SETTINGS_TABLE", "SETTINGS_COLUMNS", "SETTINGS_CHAPTERS", "claims_table", "measured",
           "own_baseline", "settings_summary", "vera_settings"]

#: The table every chapter that runs VeRA+ out to ten years stores (one row per setting it ran), so that the claims
#: page can report the study's "up to" as what it is: a maximum over settings, with their median beside it.
SETTINGS_TABLE = "vera_plus_settings_10y"
#: Its columns: the setting in words, then what defines it, then VeRA+'s retained share of the drift-free
#: accuracy at ten years (%).
SETTINGS_COLUMNS = ("setting", "sharing", "readout", "preset", "levels", "tuned", "retained_pct")
#: The chapters that store it (the comparison, scheduling and measured-drift chapters).
SETTINGS_CHAPTERS = ("03_comparison", "05_scheduling", "07_measured_drift")


@dataclass(frozen=True)
class Claim:
    id: str
    claim: str            # our paraphrase
    paper: str            # the paper's number, as stated
    source: str           # where the paper's number comes from
    notebook: str | None  # notebook that measures ours
    key: str | None       # number key in that notebook's results
    unit: str = ""
    note: str = ""
    scale: float = 1.0    # ours = numbers[key] * scale (e.g. a fraction shown in %)
    vera: str | None = None  # the one VeRA+ variant every quantity of the row uses: "cross-layer" or "per-layer"
    other_key: str | None = None  # the same number with A and B regenerated per inference (the other reading)
    interval: bool = False  # numbers ``<key>_low`` and ``<key>_high`` hold its confidence interval
    over_settings: bool = False  # ours is the maximum of column ``key`` of SETTINGS_TABLE over every chapter


CLAIMS: list[Claim] = [
    Claim("C1", "VeRA+ keeps up to this share of the drift-free accuracy after ten years of drift: the maximum over "
          "every setting the book ran it in", "up to 99.77 %", "VeRA+ abstract (2026)", "03_comparison",
          "retained_pct", "%",
          "a maximum, as the paper's 'up to': over the settings of the comparison (both vector sharings, both "
          "readouts), the scheduling chapter (numbers of drift levels K) and the measured-drift chapter; the median "
          "and the setting of the maximum are given beside it", over_settings=True),
    Claim("C2", "VeRA+ (cross-layer) keeps this share of the drift-free accuracy after ten years, across models",
          "97-99 %", "digest (unverified)", "03_comparison", "lead_retained_pct_vera_plus_cross_10y", "%",
          "retained fraction, as the paper's, over every base model and chip of the comparison on the readout it "
          "leads with, with its confidence interval; one architecture here; the share of the drift loss recovered "
          "is a separate column of notebook 03's T1", vera="cross-layer", interval=True),
    Claim("C3", "VeRA+ (cross-layer) needs this many times less storage than BN calibration with one BN set per "
          "drift level", "> 1000x", "VeRA+ abstract (2026)", "04_overhead", "ratio_bn_over_vera_cross_sram_resnet20",
          "x", "ResNet-20, fp32, all levels, against the bn method the comparison runs (its two statistics per "
          "channel); notebook 04 gives the bound with four values per channel (a BN variant not run) as a note",
          vera="cross-layer", other_key="ratio_bn_over_vera_cross_regenerated_resnet20"),
    Claim("C3b", "VeRA+ (cross-layer) needs this many times less storage than BN recalibrated in the field from "
          "the fewest stored images with which it reaches VeRA+'s accuracy (the abstract's 'no data replay')",
          "> 1000x", "VeRA+ abstract (2026)", "04_overhead", "ratio_field_bn_over_vera_cross_sram", "x",
          "the profile's network, field-BN accuracy measured on the evaluation chips at ten years for a sweep of "
          "image counts (8-bit pixels, as every method's stored images); n/a: no count of the sweep reaches "
          "VeRA+'s accuracy (notebook 04 shows the curve)", vera="cross-layer",
          other_key="ratio_field_bn_over_vera_cross_regenerated"),
    Claim("C4", "VeRA+ (per-layer) needs this many times less storage than LoRA of the same structure and sharing",
          "about 10x", "digest (unverified)", "04_overhead", "ratio_lora_1x1_over_vera_layer_sram_resnet20", "x",
          "ResNet-20, LoRA with VeRA+'s 1x1 branch at VeRA+'s rank, both per layer (LoRA has no cross-layer mode); "
          "notebook 04 also gives peft's layout and cross-layer VeRA+", vera="per-layer",
          other_key="ratio_lora_1x1_over_vera_layer_regenerated_resnet20"),
    Claim("C5", "VeRA+ (cross-layer) total storage", "5.15 KB", "digest (unverified)", "04_overhead",
          "total_bytes_vera_cross_sram_resnet20", "kB", "ResNet-20, fp32, all levels; kB: thousands of bytes",
          scale=1e-3, vera="cross-layer", other_key="total_bytes_vera_cross_regenerated_resnet20"),
    Claim("C6", "VeRA+ (cross-layer) extra compute per inference", "1.9 %", "digest (unverified)", "04_overhead",
          "extra_macs_pct_vera_cross_resnet20", "%",
          "ResNet-20 at the profile's rank (the same for per-layer vectors); regenerating A and B at every inference "
          "adds one draw and one MAC per value (the other reading); notebook 04 gives the rank at which the digest's "
          "share is reached on ResNet-20 and ResNet-50", vera="cross-layer",
          other_key="extra_macs_pct_regenerated_vera_cross_resnet20"),
    Claim("C6b", "VeRA+ (per-layer) accuracy after ten years at the largest rank within the study's 1.9 % extra "
          "compute", "not stated", "-", "06_ablations", "acc_rank_within_paper_macs", "%",
          "notebook 04 counts that rank (the digits CNN exceeds the digest's share even at rank 1, so the digits "
          "profiles have no such rank); notebook 06 trains VeRA+ at it and says whether it is one of its ranks",
          scale=100, vera="per-layer"),
    Claim("C7", "Under one week of measured drift, VeRA+ (per-layer) stays close to drift-free accuracy",
          "close to drift-free", "VeRA+ abstract (2026)", "07_measured_drift", "vera_plus_retained_pct_horizon", "%",
          "our table is the public NeuRRAM one; the study's own 1T1R measurements are private; notebook 07 runs "
          "VeRA+ with the profile's per-layer vectors", vera="per-layer"),
    Claim("C8", "DoRA calibration uses this many calibration samples", "10", "DoRA abstract (2025)",
          "08_dora_calibration", "dora_samples", "",
          "DoRA calibration is online and per chip: it trains on every chip in the field"),
    Claim("C9", "DoRA calibration updates this share of the parameters", "2.34 %", "DoRA abstract (2025)",
          "08_dora_calibration", "dora_fraction_updated_pct", "%",
          "on ResNet-50; the digits profiles use a larger budget (see notebook 08); online, per chip"),
    Claim("C10", "DoRA calibration restores accuracy (ResNet-50, ImageNet-1K)", "69.53 %",
          "DoRA abstract (2025)", "08_dora_calibration", "dora_recovered_pct_10y", "%",
          "reading 'restoration' as the share of the drift loss recovered; notebook 08 gives both readings; "
          "online, per chip"),
    Claim("C3-LM", "BERT-base: storage of the LayerNorm re-fit per drift level (our analogue of BN recalibration "
          "for a network without BatchNorm) over that of VeRA+ (cross-layer)", "> 1000x (against BN, ResNets)",
          "VeRA+ abstract (2026)", "14_language_models", "ratio_cross_bert_base_ln_refit", "x",
          "counted from the architecture (no training), fp32, all levels, A and B in SRAM; BERT has no BatchNorm, so "
          "the study's BN comparison has no direct counterpart: this is the nearest one we can count",
          vera="cross-layer"),
    Claim("C4-LM", "BERT-base: LoRA at VeRA+'s rank needs this many times the storage of VeRA+ (per-layer)",
          "about 10x", "digest (unverified)", "14_language_models", "ratio_layer_bert_base_lora_vera_rank", "x",
          "counted from the architecture, every nn.Linear adapted, fp32, all levels", vera="per-layer"),
    Claim("C6-LM", "BERT-base: VeRA+ (cross-layer) extra compute per inference", "1.9 %", "digest (unverified)",
          "14_language_models", "macs_pct_bert_base_vera_plus_cross_layer", "%",
          "MACs of the digital path over those of the network's linear layers, per token of a 128-token sequence "
          "(attention's activation products not counted)", vera="cross-layer"),
    Claim("C11", "Area and energy overhead of the digital VeRA+ path", "+3.5 % area, +4.5 % energy",
          "digest (unverified)", None, None, "", "needs a circuit model; rramlib has none"),
]


def vera_settings(results: Mapping[str, Mapping | None]) -> pd.DataFrame:
    """Every chapter's :data:`SETTINGS_TABLE` rows (``results``: notebook -> results dict, or None where it did
    not run), with a ``notebook`` column; empty where none stores it. A table without the
    :data:`SETTINGS_COLUMNS` raises :class:`~rramlib.core.errors.RramlibError`."""
    frames = []
    for notebook, res in sorted(results.items()):
        rows = (res or {}).get("tables", {}).get(SETTINGS_TABLE)
        if rows is None:
            continue
        frame = pd.DataFrame(rows, columns=None if rows else list(SETTINGS_COLUMNS))
        if missing := [c for c in SETTINGS_COLUMNS if c not in frame.columns]:
            raise RramlibError(f"{notebook}'s table {SETTINGS_TABLE} lacks the columns {missing}")
        frames.append(frame[list(SETTINGS_COLUMNS)].assign(notebook=notebook))
    return (pd.concat(frames, ignore_index=True) if frames
            else pd.DataFrame(columns=[*SETTINGS_COLUMNS, "notebook"]))


def settings_summary(settings: pd.DataFrame, column: str = "retained_pct") -> dict | None:
    """The maximum of ``column`` over ``settings`` (:func:`vera_settings`, NaN rows left out), the setting and
    chapter that gave it, the median and the number of settings; None without a measured setting."""
    measured_rows = settings[settings[column].notna()] if len(settings) else settings
    if not len(measured_rows):
        return None
    best = measured_rows.loc[measured_rows[column].astype(float).idxmax()]
    return {"max": float(best[column]), "setting": str(best["setting"]), "notebook": str(best["notebook"]),
            "median": float(measured_rows[column].astype(float).median()), "n": len(measured_rows)}


def measured(claim: Claim, results: Mapping[str, Mapping | None], *,
             strict: bool = True) -> tuple[float | None, str | None]:
    """``(value, text)`` of ``claim`` in ``results`` (notebook -> results dict): the scaled number and how the
    claims page shows it -- with its interval (``claim.interval``), or as the maximum over the settings with
    their median (``claim.over_settings``). ``(None, None)`` where the claim's notebook did not run;
    ``(None, "n/a")`` where it ran but could not measure it (NaN, or no setting). A notebook that ran but
    stores no such number raises :class:`~rramlib.core.errors.RramlibError` (keeps :data:`CLAIMS` honest), or
    with ``strict=False`` (a record made by older code) gives ``(None, None)``."""
    if claim.notebook is None or results.get(claim.notebook) is None:
        return None, None
    if claim.over_settings:
        summary = settings_summary(vera_settings(results), claim.key)
        if summary is None:
            return None, "n/a"
        value = summary["max"] * claim.scale
        return value, (f"{_num(value, claim.unit)} (maximum of {summary['n']} settings, at: {summary['setting']}, "
                       f"{summary['notebook']}; median {_num(summary['median'] * claim.scale, claim.unit)})")
    numbers = results[claim.notebook].get("numbers", {})
    if claim.key not in numbers:
        if not strict:
            return None, None
        raise RramlibError(f"claim {claim.id}: {claim.notebook} stores no number {claim.key!r}")
    value = numbers[claim.key]
    if value is None or value != value:  # NaN: not measured at this profile
        return None, "n/a"
    value *= claim.scale
    text = _num(value, claim.unit)
    if claim.interval:
        low, high = (numbers.get(f"{claim.key}_{end}") for end in ("low", "high"))
        if (low is None or high is None) and not strict:
            return None, None
        if low is None or high is None:
            raise RramlibError(f"claim {claim.id}: {claim.notebook} stores no interval for {claim.key!r}")
        text += f" [{low * claim.scale:.4g}, {high * claim.scale:.4g}]"
    return value, text


def _num(value: float, unit: str) -> str:
    return f"{value:.4g} {unit}".strip()


def claims_table(out_dir, profile: str, recorded=None):
    """Table T5: each claim with the paper's number and ours, read from the notebooks' results in ``out_dir``,
    and beside it the recorded study-scale number (``recorded``: a :class:`rramlib.study.recorded.Recorded`,
    default :func:`rramlib.study.recorded.load`), marked STALE where the code changed since, "not recorded" where absent.

    A claim whose notebook has not run reads "not run"; a notebook that ran but stores no number under
    the claim's key raises :class:`~rramlib.core.errors.RramlibError` (keeps :data:`CLAIMS` honest). Column
    ``profile`` is the profile the claim's chapter ran at in a book built at ``profile``
    (:func:`~rramlib.study.scope.chapter_profile`); ``ours, projections regenerated`` the number under the other
    reading of VeRA+'s projections (``other_key``). Returns ``(table, ours)`` with ``ours[claim id]`` the scaled
    numbers that exist.
    """
    recorded = recorded if recorded is not None else load()

    results = {}
    for nb in sorted({c.notebook for c in CLAIMS if c.notebook} | set(SETTINGS_CHAPTERS)):
        try:
            results[nb] = load_results(out_dir, nb)
        except RramlibError:
            results[nb] = None
    def show(claim, res, text):
        return "not measurable here" if claim.notebook is None else "not run" if res is None else text

    def study_scale(claim):
        if claim.notebook is None:
            return "not measurable here"
        _, text = measured(claim, recorded.results, strict=False)
        if text is None:  # the record's own words: not recorded, unreadable, this build, not in the record
            return recorded.absent()
        return text + (" (STALE)" if recorded.stale(claim.notebook) else "")

    rows, ours_by_id = [], {}
    for claim in CLAIMS:
        res = results.get(claim.notebook) if claim.notebook else None
        ours, text = measured(claim, results)
        if ours is not None:
            ours_by_id[claim.id] = ours
        other = (show(claim, res, measured(dataclasses.replace(claim, key=claim.other_key, interval=False),
                                           results)[1]) if claim.other_key else "—")
        rows.append({"id": claim.id, "claim": claim.claim, "paper": claim.paper, "source": claim.source,
                     "ours": show(claim, res, text), "ours, projections regenerated": other,
                     "notebook": claim.notebook or "-",
                     "profile": chapter_profile(profile, claim.notebook) if claim.notebook else "-",
                     "command": f"rramlib book --profile {profile}" if claim.notebook else "-",
                     "wall time (s)": round(res["runtime_s"], 1) if res else None,
                     "peak RAM (MiB)": round(res["peak_rss_mb"]) if res else None,
                     recorded.column(): study_scale(claim),
                     "study-scale wall time of the chapter (s)": recorded.cost(claim.notebook, "runtime_s", 1),
                     "study-scale peak RAM of the chapter (MiB)": recorded.cost(claim.notebook, "peak_rss_mb", 0),
                     "note": claim.note})
    return pd.DataFrame(rows), ours_by_id


def own_baseline(exp, config, method, chips, cache, labels):
    """A method that programs weights of its own (noise-aware training fine-tunes the base network further) divided
    by its own drift-free accuracy as well as by the base model's: per time label of ``labels``, the mean
    accuracy over evaluation ``chips`` (:func:`rramlib.study.experiments.chip_accuracies`, cached like the
    comparison's), the base model's and the method's own drift-free (software) accuracy, and the retained
    percentage against each. ``method``: fitted, with its software network in ``model_``."""
    times = [parse_time(t) for t in exp.profile.times]
    per_chip = np.array([chip_accuracies(exp, config, method, seed, cache) for seed in chips])
    base_free = exp.base.accuracy
    own_free = accuracy(method.model_, as_tensors(exp.base.splits.test), device=exp.ctx.device)
    rows = []
    for label in labels:
        acc = float(per_chip[:, times.index(parse_time(label))].mean())
        rows.append({"time": label, "accuracy": acc, "base drift-free": base_free, "own drift-free": own_free,
                     "retained % (base drift-free)": 100 * acc / base_free,
                     "retained % (own drift-free)": 100 * acc / own_free})
    return pd.DataFrame(rows)
