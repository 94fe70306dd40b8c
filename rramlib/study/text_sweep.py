"""Language models under drift: a text profile's classifier on simulated RRAM chips, compensated by the methods.

The image sweeps' pipeline (:mod:`rramlib.study.experiments`) on a text profile (:mod:`rramlib.study.text`): the
trained classifier (cached, kind ``"text_model"``) -> a :class:`~rramlib.methods.compensation.FitContext` -> each
method fitted offline on training chips with :func:`~rramlib.study.experiments.fit_method` (cached, kinds ``"fit"``
and ``"fit_level"``) -> which test sentence every evaluation chip classifies correctly at every time of the grid
(:func:`~rramlib.study.experiments.correctness`, cached per chip, kind ``"sweep"``: an interrupted sweep resumes).
:func:`run_text_sweep` returns the records of :func:`~rramlib.study.experiments.run_sweep`, so the tables of
:mod:`rramlib.study.analysis` read it unchanged, plus the per-sentence correctness (``per_sentence``).

**What is on RRAM.** Every ``nn.Linear`` of the BERT -- attention's query, key, value and output projections, both
feed-forward layers of every block, the pooler and the classifier -- is mapped onto crossbars by
:class:`~rramlib.device.analog.AnalogModel` with the presets, mappings, chips and periphery of the ResNets. The
embeddings and LayerNorm stay digital, as biases and BatchNorm do for the ResNets: an embedding is a table look-up
(one row read per token, no matrix-vector product to compute in place), and LayerNorm normalises every token with
statistics computed at run time from the token itself (element-wise arithmetic, no stored matrix). Attention's two
products of activations (scores and their weighted sum) multiply two run-time tensors, which a crossbar holding
fixed conductances cannot do; they are digital too (:func:`rram_share` counts each part).

Run a text profile on its own with ``python -m rramlib.study.text_sweep --profile NAME`` (:func:`main`).
"""
from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import sys
import time
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from torch import nn

from rramlib.core.cache import Cache, default_cache_dir
from rramlib.core.errors import RramlibError
from rramlib.core.files import atomic_write
from rramlib.core.provenance import run_metadata
from rramlib.core.times import parse_time
from rramlib.core.torchutil import resolve_device
from rramlib.device.analog import rram_layers
from rramlib.methods.compensation import FitContext, make_method
from rramlib.methods.schedule import log_windows
from rramlib.nn.data import as_tensors
from rramlib.study import analysis
from rramlib.study.experiments import Experiment, SweepConfig, correct_predictions, correctness, fit_method
from rramlib.study.text import TEXT_PROFILES, TextProfile, get_text_profile, train_text_model

__all__ = ["TextSweepConfig", "prepare_text", "run_text_sweep", "combine_text_sweeps", "accuracy_by_length", "rram_share", "main"]


@dataclass(frozen=True)
class TextSweepConfig(SweepConfig):
    """A :class:`~rramlib.study.experiments.SweepConfig` whose profile is a text profile
    (:data:`rramlib.study.text.TEXT_PROFILES`); every other field means what it means there (``base_seed`` sets
    the classifier's ``model_seed`` and training seed). The profile's own method hyper-parameters are checked too."""

    profile: str = field(default="cpu", metadata={
        "help": "text profile: data, model, training, times, chips (rramlib.study.text)", "choices": TEXT_PROFILES})

    def _validate(self) -> None:
        for name, params in self.resolved_profile().method_params.items():
            make_method(name, **params)

    def resolved_profile(self) -> TextProfile:
        overrides = dict(self.profile_overrides)
        for name in ("times", "chips", "levels"):
            if getattr(self, name) is not None:
                overrides[name] = tuple(self.times) if name == "times" else getattr(self, name)
        profile = get_text_profile(self.profile, **overrides)
        if self.base_seed is None:
            return profile
        return dataclasses.replace(profile, model_seed=self.base_seed, train=profile.train.replace(seed=self.base_seed))


def prepare_text(config: TextSweepConfig, *, data_root: str | None = None, download: bool = False,
                 cache: Cache | None = None, progress: bool = False) -> Experiment:
    """Train (or load) the classifier of ``config`` and build its fit context and fit cache key: an
    :class:`~rramlib.study.experiments.Experiment` (its ``profile`` a :class:`~rramlib.study.text.TextProfile`, which
    has the fields the experiments' functions read: ``device``, ``times``, ``eval_batch_size``)."""
    if not isinstance(config, TextSweepConfig):
        raise RramlibError(f"config must be a TextSweepConfig, got {type(config).__name__}")
    profile = config.resolved_profile()
    base = train_text_model(profile, data_root=data_root, download=download, cache=cache, progress=progress)
    drift = config.drift_model()
    schedule = log_windows(profile.levels)
    ctx = FitContext(model=base.model, splits=base.splits, drift=drift, schedule=schedule,
                     mapping=config.resolved_mapping(), per_channel=config.per_channel,
                     n_conductance_states=config.n_conductance_states, readout=config.readout,
                     train_chips=profile.train_chips, device=str(resolve_device(profile.device)), progress=progress)
    fit_key = {"text_model": base.key, "preset": config.preset, "drift": drift.params(),
               "mapping": config.resolved_mapping(), "per_channel": config.per_channel,
               "n_conductance_states": config.n_conductance_states, "readout": config.readout,
               "schedule": list(schedule.edges), "train_chips": profile.train_chips}
    return Experiment(profile, base, ctx, fit_key)


def run_text_sweep(config: TextSweepConfig, *, data_root: str | None = None, download: bool = False,
                   cache: Cache | None = None, progress: bool = False) -> dict:
    """Accuracy over the time grid for every method of ``config`` and evaluation chip, sentence by sentence.

    Returns ``{"metadata": ..., "records": ..., "per_sentence": ...}``: metadata and records as
    :func:`~rramlib.study.experiments.run_sweep` gives them (a ``"drift_free"`` record, then one per method, time and
    chip; ``metadata["method_info"]`` holds each method's storage, extra MACs and fit time; ``parameters`` where the
    classifier's parameters live, :func:`rram_share`; ``training`` its training history); ``per_sentence`` holds
    ``times`` (the grid's labels), ``correct`` (method -> bools shaped (chips, times, test sentences)),
    ``drift_free`` (bools per sentence),
    ``labels``, ``tokens`` (each test sentence's length in word pieces, [CLS] and [SEP] included) and ``lines`` (its line in
    the published test file), all in the test split's order.
    """
    start = time.perf_counter()
    cache = cache or Cache(None)
    exp = prepare_text(config, data_root=data_root, download=download, cache=cache, progress=progress)
    profile, base, ctx = exp.profile, exp.base, exp.ctx
    device = resolve_device(profile.device)
    times = [parse_time(t) for t in profile.times]
    chips = config.chip_seeds()
    x, y = as_tensors(base.splits.test)
    free = correct_predictions(base.model, (x, y), batch_size=profile.eval_batch_size, device=device)
    records = [{"method": "drift_free", "preset": config.preset, "time_s": None, "time_label": None, "chip_seed": None,
                "accuracy": base.accuracy, "level": None, "storage_bytes": 0, "extra_macs": 0}]
    info, correct = {}, {}
    example = ctx.example()
    for name in config.methods:
        method = config.method(name)
        fitted = fit_method(method, ctx, exp.fit_key, cache)
        method.analog_.set_crossbar(config.crossbar)
        storage, macs = method.storage(), method.extra_macs(example)
        info[name] = {**method.config(), **fitted, "storage": storage.as_dict(), "extra_macs": macs,
                      "extra_macs_ratio": method.macs_ratio(example)}
        correct[name] = correctness(exp, config, method, chips, cache)
        levels = [ctx.schedule.name_of(t) if hasattr(method, "schedule_") else None for t in times]
        for seed, per_time in zip(chips, correct[name]):
            for t, label, level, hits in zip(times, profile.times, levels, per_time):
                records.append({"method": name, "preset": config.preset, "time_s": t, "time_label": label,
                                "chip_seed": seed, "accuracy": float(hits.mean()), "level": level,
                                "storage_bytes": storage.total_bytes("fp32"), "extra_macs": macs})
    drift = ctx.drift
    metadata = run_metadata(
        profile=profile.name, dataset=profile.data.dataset, model=profile.model, preset=config.preset,
        drift_params=drift.params(), mapping=config.resolved_mapping() or drift.default_mapping,
        methods=list(config.methods), method_info=info, schedule=ctx.schedule.describe(), crossbar=config.crossbar,
        readout=config.readout, chip_seeds=list(chips), drift_free_accuracy=base.accuracy, n_test=len(y),
        parameters=rram_share(base.model), rram_layers=len(rram_layers(base.model)),
        data_source=base.splits.info["source"], config_hash=_fit_identity(exp.fit_key), base_model_key=base.key,
        training=base.history, cache={"hits": cache.hits, "misses": cache.misses},
        wall_time_s=round(time.perf_counter() - start, 3))
    per_sentence = {"times": list(profile.times), "correct": correct, "drift_free": free, "labels": y.numpy(),
                    "tokens": x[:, 1].sum(1).numpy(), "lines": np.asarray(base.splits.info["indices"]["test"])}
    return {"metadata": metadata, "records": records, "per_sentence": per_sentence}


def _fit_identity(fit_key: dict) -> str:
    """SHA-256 of the fit context's key (JSON, sorted): the sweeps that share it share the classifier, the drift
    model and the schedule (:func:`rramlib.study.analysis.combine_sweeps` checks it)."""
    return hashlib.sha256(json.dumps(fit_key, sort_keys=True, default=repr).encode()).hexdigest()


def combine_text_sweeps(main: dict, variants: dict) -> dict:
    """:func:`rramlib.study.analysis.combine_sweeps` of :func:`run_text_sweep` results (``variants[new name] =
    (result, method)``), with the renamed methods' per-sentence correctness added to ``main``'s."""
    combined = analysis.combine_sweeps(main, variants)
    per = dict(main["per_sentence"])
    per["correct"] = {**per["correct"], **{name: r["per_sentence"]["correct"][m] for name, (r, m) in variants.items()}}
    return {**combined, "per_sentence": per}


def accuracy_by_length(result: dict, methods, label: str, bins: int = 4) -> pd.DataFrame:
    """Accuracy by sentence length at time ``label``: the test sentences of :func:`run_text_sweep`'s ``result`` cut
    into ``bins`` groups of about equal size by their number of word pieces (quantiles; ties keep a length in one
    group), and per group its token range, sentence count, drift-free accuracy and each method's mean accuracy over
    the evaluation chips."""
    per = result["per_sentence"]
    if label not in per["times"]:
        raise RramlibError(f"time {label!r} is not in this sweep's grid {per['times']}")
    at = per["times"].index(label)
    groups = pd.qcut(per["tokens"], bins, labels=False, duplicates="drop")
    rows = []
    for g in sorted(set(groups)):
        members = groups == g
        tokens = per["tokens"][members]
        row = {"tokens": f"{tokens.min()}–{tokens.max()}", "sentences": int(members.sum()),
               "drift_free": float(per["drift_free"][members].mean())}
        row.update({m: float(per["correct"][m][:, at, members].mean()) for m in methods})
        rows.append(row)
    return pd.DataFrame(rows)


def rram_share(model: nn.Module) -> dict[str, int]:
    """Where a network's parameters live: ``rram`` (the weights of the layers an
    :class:`~rramlib.device.analog.AnalogModel` maps: every Linear and Conv2d), and digitally ``embeddings``
    (``nn.Embedding`` tables), ``norms`` (LayerNorm and BatchNorm affine parameters) and ``other`` (biases and the
    rest); ``total`` is their sum. Counts shapes only, so a network on the meta device works."""
    rram = {id(m.weight) for _, m in rram_layers(model)}
    counts = {"rram": 0, "embeddings": 0, "norms": 0, "other": 0}
    seen = set()
    for module in model.modules():
        kind = ("embeddings" if isinstance(module, nn.Embedding) else
                "norms" if isinstance(module, (nn.LayerNorm, nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)) else None)
        for p in module.parameters(recurse=False):
            if id(p) in seen:
                continue
            seen.add(id(p))
            counts["rram" if id(p) in rram else kind or "other"] += p.numel()
    counts["total"] = sum(counts.values())
    return counts


def main(argv: list[str] | None = None) -> int:
    """``python -m rramlib.study.text_sweep``: run a text profile's sweep and write its metadata and records as JSON
    (``--out``); one line ``error: ...`` and exit code 2 for bad input."""
    parser = argparse.ArgumentParser(prog="python -m rramlib.study.text_sweep", description=__doc__.split("\n")[0])
    parser.add_argument("--profile", default="cpu", help=f"text profile, one of: {', '.join(TEXT_PROFILES)}")
    parser.add_argument("--preset", default=None, help="drift model (default: the study's reading)")
    parser.add_argument("--methods", default="none,scale,ln_refit,lora,vera_plus,noise_aware,offline_correction,reprogram",
                        help="comma-separated compensation methods")
    parser.add_argument("--data-root", default=None, help="folder holding sst5/ or qqp/ (default: the shipped SST-5)")
    parser.add_argument("--download", action="store_true", help="fetch the dataset through `datasets` if missing")
    parser.add_argument("--cache-dir", default=None, help="results cache (default: $RRAMLIB_CACHE or .rramlib_cache)")
    parser.add_argument("--out", required=True, help="JSON file to write")
    args = parser.parse_args(argv)
    try:
        fields = {"preset": args.preset} if args.preset else {}
        config = TextSweepConfig(profile=args.profile, methods=tuple(m for m in args.methods.split(",") if m), **fields)
        result = run_text_sweep(config, data_root=args.data_root, download=args.download,
                                cache=Cache(args.cache_dir or default_cache_dir()), progress=True)
    except RramlibError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    atomic_write(args.out, json.dumps({k: result[k] for k in ("metadata", "records")}, indent=1, default=str))
    print(f"drift-free accuracy {result['metadata']['drift_free_accuracy']:.4f}; wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
