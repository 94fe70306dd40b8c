"""The study's claims, with the paper's numbers and where in the book ours are measured.

Paper values come from the abstracts in the study's seeds (VeRA+ 2026, DoRA calibration 2025) or,
where marked ``"digest (unverified)"``, from a second-hand digest of the full text that we could not
check. ``notebook``/``key`` name the results file and number that hold our measurement
(``results/<notebook>.json`` -> ``numbers[key]``); ``None`` means we cannot measure it.
"""
from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Claim", "CLAIMS", "claims_table"]


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


CLAIMS: list[Claim] = [
    Claim("C1", "VeRA+ (cross-layer) keeps this share of the drift-free accuracy after ten years of drift",
          "up to 99.77 %", "VeRA+ abstract (2026)", "03_comparison", "retained_pct_vera_plus_cross_10y", "%",
          "retained = accuracy / drift-free accuracy; cross-layer vectors: the abstract's two vectors per drift level",
          vera="cross-layer"),
    Claim("C2", "VeRA+ (cross-layer) keeps this share of the drift-free accuracy after ten years, across models",
          "97-99 %", "digest (unverified)", "03_comparison", "retained_pct_vera_plus_cross_10y", "%",
          "retained fraction, as the paper's; one model here; the share of the drift loss recovered is a separate "
          "column of notebook 03's T1", vera="cross-layer"),
    Claim("C3", "VeRA+ (cross-layer) needs this many times less storage than BN calibration with one BN set per "
          "drift level", "> 1000x", "VeRA+ abstract (2026)", "04_overhead", "bn_bound_resnet20", "x",
          "ResNet-20: the bound 4·ΣC_BN/(C_max + r), reached per level and never exceeded for any number of levels "
          "(notebook 04 gives the counted ratio and ResNet-50's bound)", vera="cross-layer"),
    Claim("C3b", "VeRA+ (cross-layer) needs this many times less storage than BN recalibration in the field, "
          "counting the calibration images it keeps (the abstract's 'no data replay')", "> 1000x",
          "VeRA+ abstract (2026)", "04_overhead", "ratio_field_bn_over_vera_cross_resnet20", "x",
          "ResNet-20: the images one recalibration reads in rramlib's BN method, 8-bit pixels, against VeRA+ over "
          "all levels; the study's image count is unknown", vera="cross-layer"),
    Claim("C4", "VeRA+ (per-layer) needs this many times less storage than LoRA of the same structure and sharing",
          "about 10x", "digest (unverified)", "04_overhead", "ratio_lora_1x1_over_vera_layer_resnet20", "x",
          "ResNet-20, LoRA with VeRA+'s 1x1 branch at VeRA+'s rank, both per layer (LoRA has no cross-layer mode); "
          "notebook 04 also gives peft's layout and cross-layer VeRA+", vera="per-layer"),
    Claim("C5", "VeRA+ (cross-layer) total storage", "5.15 KB", "digest (unverified)", "04_overhead",
          "total_bytes_vera_cross_resnet20", "kB", "ResNet-20, fp32, all levels; 1 kB = 1000 bytes",
          scale=1e-3, vera="cross-layer"),
    Claim("C6", "VeRA+ (cross-layer) extra compute per inference", "1.9 %", "digest (unverified)", "04_overhead",
          "extra_macs_pct_vera_cross_resnet20", "%",
          "ResNet-20 at the profile's rank (the same for per-layer vectors); notebook 04 gives the rank at which "
          "1.9 % is reached on ResNet-20 and ResNet-50", vera="cross-layer"),
    Claim("C6b", "VeRA+ (per-layer) accuracy after ten years at the largest rank within the study's 1.9 % extra "
          "compute", "not stated", "-", "06_ablations", "acc_rank_within_paper_macs", "%",
          "notebook 04 counts that rank (ResNet-20: small; the digits CNN exceeds 1.9 % even at rank 1, so the digits "
          "profiles have no such rank); notebook 06 trains VeRA+ at it", scale=100, vera="per-layer"),
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
    Claim("C11", "Area and energy overhead of the digital VeRA+ path", "+3.5 % area, +4.5 % energy",
          "digest (unverified)", None, None, "", "needs a circuit model; rramlib has none"),
]


def claims_table(out_dir, profile: str, recorded=None):
    """Table T5: each claim with the paper's number and ours, read from the notebooks' results in ``out_dir``,
    and beside it the recorded study-scale number (``recorded``: a :class:`rramlib.study.recorded.Recorded`,
    default :func:`rramlib.study.recorded.load`), marked STALE where the code changed since, "not recorded" where absent.

    A claim whose notebook has not run reads "not run"; a notebook that ran but stores no number under
    the claim's key raises :class:`~rramlib.core.errors.RramlibError` (keeps :data:`CLAIMS` honest). Returns
    ``(table, ours)`` with ``ours[claim id]`` the scaled numbers that exist.
    """
    import pandas as pd

    from rramlib.core.errors import RramlibError
    from rramlib.study.recorded import load
    from rramlib.present.report import load_results

    recorded = recorded if recorded is not None else load()

    results = {}
    for nb in sorted({c.notebook for c in CLAIMS if c.notebook}):
        try:
            results[nb] = load_results(out_dir, nb)
        except RramlibError:
            results[nb] = None
    rows, ours_by_id = [], {}
    for claim in CLAIMS:
        res = results.get(claim.notebook) if claim.notebook else None
        if res is not None and claim.key not in res["numbers"]:
            raise RramlibError(f"claim {claim.id}: {claim.notebook} stores no number {claim.key!r}")
        ours = res["numbers"].get(claim.key) if res else None
        ours = None if ours is None or ours != ours else ours * claim.scale  # NaN: not measured at this profile
        if ours is not None:
            ours_by_id[claim.id] = ours
        shown = ("not measurable here" if claim.notebook is None else "not run" if res is None else
                 "n/a" if ours is None else f"{ours:.4g} {claim.unit}".strip())
        rows.append({"id": claim.id, "claim": claim.claim, "paper": claim.paper, "source": claim.source, "ours": shown,
                     "notebook": claim.notebook or "-",
                     "command": f"rramlib book --profile {profile}" if claim.notebook else "-",
                     "wall time (s)": round(res["runtime_s"], 1) if res else None,
                     "peak RAM (MiB)": round(res["peak_rss_mb"]) if res else None,
                     recorded.column(): recorded.shown(claim.notebook, claim.key, claim.scale, claim.unit)
                     if claim.notebook else "not measurable here",
                     "study-scale time of the recording run (s)": recorded.cost(claim.notebook, "runtime_s", 1),
                     "study-scale peak RAM of the recording run (MiB)": recorded.cost(claim.notebook, "peak_rss_mb", 0),
                     "note": claim.note})
    return pd.DataFrame(rows), ours_by_id
