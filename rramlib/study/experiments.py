"""The cached experiment runners: the trained base model, fitted methods and drift sweeps.

A run is described by a :class:`SweepConfig` on a profile (:mod:`rramlib.study.profiles`); everything it
computes is cached by content (see :mod:`rramlib.core.cache`): the trained base model once per (dataset,
model, training config), each fitted method once per fit configuration (so notebooks that ask for the
same fit share it), and the sweep results per (method, chip), so an interrupted sweep resumes where it
stopped. Provenance (versions, commit, machine) comes from :mod:`rramlib.core.provenance`.

An evaluation chip's cache entry keeps, per time, which test images it classified correctly
(:func:`chip_correct`, :func:`correctness`: for paired statistics over the same images); its accuracies
(:func:`chip_accuracies`) are their means.
"""
from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np
import torch
from tqdm import tqdm

from rramlib.core.cache import Cache, config_hash
from rramlib.core.config import Config
from rramlib.methods.compensation import FitContext, Method, check_method, make_method
from rramlib.device.crossbar import CROSSBARS, make_crossbar
from rramlib.device.drift import DEFAULT_PRESET, PRESETS, make_drift_model
from rramlib.core.errors import RramlibError, check_int
from rramlib.device.analog import READOUTS
from rramlib.nn.data import as_tensors
from rramlib.nn.evaluate import accuracy, predict_logits
from rramlib.device.mapping import MAPPING_KINDS, Mapping
from rramlib.core.torchutil import resolve_device
from rramlib.study.base_model import BaseModel, device_test_set, train_base_model
from rramlib.study.profiles import PROFILES, Profile, get_profile
from rramlib.core.provenance import run_metadata
from rramlib.methods.schedule import T_END, T_START, Schedule, log_windows
from rramlib.core.seeding import eval_chips
from rramlib.core.times import parse_time

__all__ = [
    "SweepConfig", "run_sweep", "Experiment", "prepare", "fit_method", "fit_level", "chip_accuracies", "chip_correct",
    "correct_predictions", "correctness", "crossbar_sweep", "switching_times",
]


@dataclass(frozen=True)
class SweepConfig(Config):
    """One drift sweep: a preset on a profile's model, over times x chips, for some methods.

    ``crossbar`` names the periphery (:data:`rramlib.device.crossbar.CROSSBARS`) the *evaluation* chips are read
    through; methods are fitted offline on the exact product either way, so a fit serves every crossbar.
    ``"ideal"`` (the default) is the exact product and leaves every cache key as it was.

    ``readout`` is how every chip, training and evaluation alike, is read (:data:`rramlib.device.analog.READOUTS`):
    methods are fitted *and* evaluated on it, and it is part of the fit key (so of every fit and sweep cache key).
    On ``"gdc"`` (aihwkit's global drift compensation) the method ``scale`` in its global mode is the identity.
    ``base_seed`` picks one of the independently trained base models (:meth:`Profile.with_base_seed
    <rramlib.study.profiles.Profile.with_base_seed>`, applied after ``profile_overrides``).
    """

    owner: ClassVar[str] = ""
    profile: str = field(default="quick", metadata={
        "help": "what to train and evaluate: dataset, model, times, chips (see `rramlib profiles`)",
        "choices": PROFILES})
    preset: str = field(default=DEFAULT_PRESET, metadata={
        "help": "drift model of the chips (see `rramlib presets`)", "choices": PRESETS})
    methods: tuple[str, ...] = field(default=("none",), metadata={
        "help": "compensation methods to fit and evaluate (see `rramlib methods`)"})
    drift_params: dict = field(default_factory=dict, metadata={
        "help": "the preset's parameters by name, e.g. {\"drift_scale\": 2.0} (see `rramlib presets`)"})
    method_params: dict = field(default_factory=dict, metadata={
        "help": "methods' hyper-parameters, {method: {name: value}}, over the profile's (see `rramlib methods`)"})
    mapping: str | None = field(default=None, metadata={
        "help": "weight-to-conductance mapping (default: the profile's, else the preset's)", "choices": MAPPING_KINDS})
    per_channel: bool = field(default=False, metadata={
        "help": "scale weights per output channel instead of per layer"})
    n_conductance_states: int | None = field(default=None, metadata={
        "help": "quantise conductances to this many equally spaced states (default: continuous)"})
    times: tuple[str, ...] | None = field(default=None, metadata={
        "help": "times after programming, e.g. 1s or 10y (default: the profile's grid)"})
    chips: int | None = field(default=None, metadata={"help": "number of evaluation chips (default: the profile's)"})
    levels: int | None = field(default=None, metadata={
        "help": "number of drift levels K, the time windows per-level methods fit (default: the profile's)"})
    profile_overrides: dict = field(default_factory=dict, metadata={
        "help": "profile fields to replace, by name (see rramlib.study.profiles.Profile)"})
    crossbar: str = field(default="ideal", metadata={
        "help": "periphery the evaluation chips are read through (see rramlib.device.crossbar)",
        "choices": CROSSBARS})
    readout: str = field(default="raw", metadata={
        "help": "how every chip's outputs are read, for fitting and evaluation alike: raw, or gdc (aihwkit's global "
                "drift compensation, see rramlib.device.analog)", "choices": READOUTS})
    base_seed: int | None = field(default=None, metadata={
        "help": "seed of the base model: its initialisation and training draws (default: the profile's)"})

    def _validate(self) -> None:
        # Every check here is cheap and runs before data loading or training; names and types are checked
        # before (Config.validate: each field's declared type and choices).
        if not self.methods:
            raise RramlibError("give at least one method")
        if self.base_seed is not None:
            check_int("base_seed", self.base_seed, minimum=0)
        for m in self.methods:
            check_method(m)
        for m in self.method_params:
            check_method(m)
        drift = make_drift_model(self.preset, **self.drift_params)  # validates the preset parameters
        Mapping(g_min=drift.g_min, g_max=drift.g_max, kind=self.resolved_mapping() or drift.default_mapping,
                per_channel=self.per_channel, n_conductance_states=self.n_conductance_states)
        profile = self.resolved_profile()
        log_windows(profile.levels)
        for m in self.methods:
            self.method(m)
        for t in self.times or ():
            parse_time(t)

    def resolved_profile(self) -> Profile:
        overrides = dict(self.profile_overrides)
        if self.times is not None:
            overrides["times"] = tuple(self.times)
        if self.chips is not None:
            overrides["chips"] = self.chips
        if self.levels is not None:
            overrides["levels"] = self.levels
        profile = get_profile(self.profile, **overrides)
        return profile if self.base_seed is None else profile.with_base_seed(self.base_seed)

    def drift_model(self):
        return make_drift_model(self.preset, **self.drift_params)

    def resolved_mapping(self) -> str | None:
        """This sweep's mapping, else the profile's (None: the preset's own default mapping)."""
        return self.mapping or self.resolved_profile().mapping

    def method(self, name: str) -> Method:
        """Method ``name`` with the profile's hyper-parameters, then this sweep's."""
        params = {**self.resolved_profile().method_params.get(name, {}), **self.method_params.get(name, {})}
        return make_method(name, **params)

    def chip_seeds(self) -> list[int]:
        return list(eval_chips(self.resolved_profile().chips))

    def crossbar_key(self) -> dict:
        """The crossbar's part of a result's cache key: nothing for ``"ideal"``, else all its settings."""
        return {} if self.crossbar == "ideal" else {"crossbar": make_crossbar(self.crossbar).params()}


def correct_predictions(model, data, *, batch_size: int = 1024, device="cpu") -> np.ndarray:
    """Per sample of ``data`` (an ``(x, y)`` pair or a dataset), whether ``model``'s arg-max logit is its label:
    bools in the data's order, from :func:`rramlib.nn.evaluate.predict_logits` (eval mode, batches of
    ``batch_size``), so their mean is :func:`rramlib.nn.evaluate.accuracy` on the same network and data."""
    x, y = data if isinstance(data, (tuple, list)) else as_tensors(data)
    return (predict_logits(model, (x, y), batch_size=batch_size, device=device).argmax(1) == y.cpu()).numpy()


def _evaluate_chip(method: Method, seed: int, times: list[float], test, device, batch_size: int) -> np.ndarray:
    """Which test images chip ``seed`` classifies correctly under ``method``: bools (times, images)."""
    return np.stack([correct_predictions(method.at(seed, t), test, batch_size=batch_size, device=device)
                     for t in times])


def chip_correct(exp: "Experiment", config: SweepConfig, method: Method, seed: int, cache: Cache,
                 test=None) -> np.ndarray:
    """Which test images evaluation chip ``seed`` classifies correctly under the fitted ``method`` at each of the
    profile's times: bools shaped (times, test images), in the test split's order.

    Cached per (fit, method, times, chip, crossbar, test split), bit-packed (``np.packbits`` per time): the unit of
    work a sweep runs in-process or as one cluster task (:mod:`rramlib.study.cluster`). The test split is named by
    the profile's ``n_test`` (with the data and its seed, which the base model's key holds, it fixes the images):
    profiles that share a base model and its fits, such as ``cifar`` and ``cifar_subset``, read different test
    images (a text profile reads its whole test split: None). ``test``: the
    test tensors on the device, if already at hand.
    """
    device = resolve_device(exp.profile.device)
    times = [parse_time(t) for t in exp.profile.times]
    key = {**exp.fit_key, **method.config(), "times": times, "chip_seed": seed, "n_test": exp.profile.n_test,
           **config.crossbar_key()}

    def compute() -> dict:
        data = test if test is not None else device_test_set(exp.base.splits, device)
        correct = _evaluate_chip(method, seed, times, data, device, exp.profile.eval_batch_size)
        return {"correct": torch.from_numpy(np.packbits(correct, axis=1)), "images": correct.shape[1]}

    entry = cache.get_or_compute("sweep", key, compute)
    return np.unpackbits(entry["correct"].numpy(), axis=1, count=entry["images"]).astype(bool)


def chip_accuracies(exp: "Experiment", config: SweepConfig, method: Method, seed: int, cache: Cache,
                    test=None) -> list[float]:
    """Accuracy of evaluation chip ``seed`` under the fitted ``method`` at each of the profile's times: the mean
    of :func:`chip_correct` per time (read from the same cache entry), equal to
    :func:`rramlib.nn.evaluate.accuracy` on the same network and data."""
    return [float(row.mean()) for row in chip_correct(exp, config, method, seed, cache, test)]


def correctness(exp: "Experiment", config: SweepConfig, method: Method, chips, cache: Cache) -> np.ndarray:
    """:func:`chip_correct` of every evaluation chip seed in ``chips``: bools shaped (chips, times, test images)."""
    chips = list(chips)
    if not chips:
        raise RramlibError("give at least one evaluation chip")
    test = device_test_set(exp.base.splits, resolve_device(exp.profile.device))
    return np.stack([chip_correct(exp, config, method, seed, cache, test) for seed in chips])


def crossbar_sweep(method, crossbars: dict, times: dict, chips, data) -> list[dict]:
    """Accuracy of a fitted method's evaluation chips read through each crossbar, at each time.

    ``method``: a fitted :class:`~rramlib.methods.compensation.Method`; ``crossbars``: label ->
    :class:`~rramlib.device.crossbar.Crossbar` or preset name; ``times``: label -> seconds; ``chips``: evaluation
    chip seeds; ``data``: an ``(x, y)`` pair.
    The method is fitted once; only the periphery of its chips changes (restored afterwards). Returns one
    record per (crossbar, chip, time) with the accuracy.
    """
    crossbars = {label: make_crossbar(xb) for label, xb in crossbars.items()}  # all checked before any work
    analog = method.analog_
    if analog is None:
        raise RramlibError(f"method {method.name!r} is not fitted; call fit(ctx) first")
    previous = analog.crossbar
    records = []
    try:
        for label, xb in crossbars.items():
            analog.set_crossbar(xb)
            for seed in chips:
                for time_label, t in times.items():
                    records.append({"crossbar": label, "method": method.name, "chip_seed": seed,
                                    "time_label": time_label, "time_s": t,
                                    "accuracy": accuracy(method.at(seed, t), data)})
    finally:
        analog.set_crossbar(previous)
    return records


@dataclass
class Experiment:
    """What a sweep configuration fits its methods with: the trained model, the fit context, the cache key."""

    profile: Profile
    base: BaseModel
    ctx: FitContext
    fit_key: dict

    def fit(self, name: str, config: SweepConfig, cache: Cache | None = None) -> Method:
        """Method ``name`` with ``config``'s hyper-parameters, fitted (or restored from the cache)."""
        method = config.method(name)
        fit_method(method, self.ctx, self.fit_key, cache or Cache(None))
        method.analog_.set_crossbar(config.crossbar)
        return method


def prepare(
    config: SweepConfig, *, schedule: Schedule | None = None, data_root: str | None = None,
    download: bool = False, cache: Cache | None = None, progress: bool = False,
) -> Experiment:
    """Train (or load) the base model of ``config`` and build its fit context and fit cache key.

    ``schedule`` replaces the profile's log-spaced drift levels (e.g. greedy windows).
    """
    profile = config.resolved_profile()
    base = train_base_model(profile, data_root=data_root, download=download, cache=cache, progress=progress)
    drift = config.drift_model()
    schedule = schedule or log_windows(profile.levels)
    ctx = FitContext(model=base.model, splits=base.splits, drift=drift, schedule=schedule,
                     mapping=config.resolved_mapping(), per_channel=config.per_channel,
                     n_conductance_states=config.n_conductance_states, readout=config.readout,
                     train_chips=profile.train_chips, device=str(resolve_device(profile.device)), progress=progress)
    fit_key = {
        "base_model": base.key, "preset": config.preset, "drift": drift.params(), "mapping": config.resolved_mapping(),
        "per_channel": config.per_channel, "n_conductance_states": config.n_conductance_states,
        "readout": config.readout, "schedule": list(schedule.edges),
        "train_chips": profile.train_chips,
    }
    return Experiment(profile, base, ctx, fit_key)


def fit_method(method: Method, ctx: FitContext, key: dict, cache: Cache) -> dict:
    """Fit ``method`` offline, or restore its fitted state from the cache; returns fit information.

    A per-level method (:meth:`~rramlib.methods.compensation.Method.trains_per_level`) is fitted level by level with
    :func:`fit_level`, each level cached on its own: an interrupted fit resumes at its first missing level, and a
    cluster fits the levels as separate tasks (:mod:`rramlib.study.cluster`). The levels' states, assembled, are the
    state of one ``method.fit(ctx)`` bit for bit (the levels are independent), and are cached as the whole fit.
    """
    def compute():
        start = time.perf_counter()
        if not method.trains_per_level():
            method.fit(ctx)
            return {"state": method.state_dict(), "fit_time_s": time.perf_counter() - start}
        levels = [fit_level(method, ctx, key, cache, level) for level in range(ctx.schedule.num_levels)]
        if method.analog_ is None:  # every level came from the cache
            method.setup(ctx)
        for level, entry in enumerate(levels):
            method.load_level_state_dict(level, entry["state"])
        method.select(0.0)  # as Method.train leaves it
        return {"state": method.state_dict(), "fit_time_s": sum(entry["fit_time_s"] for entry in levels)}

    entry = cache.get_or_compute("fit", {**key, **method.config()}, compute)
    if method.analog_ is None:  # restored from the cache
        method.setup(ctx)
        method.load_state_dict(entry["state"])
    return {"fit_time_s": entry["fit_time_s"]}


def fit_level(method: Method, ctx: FitContext, key: dict, cache: Cache, level: int) -> dict:
    """Drift level ``level`` of the per-level ``method`` (set up first if it is not), trained alone or read from
    the cache: ``{"state": method.level_state_dict(level), "fit_time_s": ...}``, keyed as the method's fit plus
    the level. The unit of work of a cluster's fit (:mod:`rramlib.study.cluster`)."""
    if not method.trains_per_level():
        raise RramlibError(f"method {method.name!r} does not train per drift level")
    if check_int("drift level", level, 0) >= ctx.schedule.num_levels:
        raise RramlibError(f"drift level {level} does not exist: the schedule has {ctx.schedule.num_levels} levels")

    def compute():
        start = time.perf_counter()
        if method.analog_ is None:
            method.setup(ctx)
        method.train_level(ctx, level)
        return {"state": method.level_state_dict(level), "fit_time_s": time.perf_counter() - start}

    return cache.get_or_compute("fit_level", {**key, **method.config(), "drift_level": level}, compute)


def run_sweep(
    config: SweepConfig, *, schedule: Schedule | None = None, data_root: str | None = None, download: bool = False,
    cache: Cache | None = None, progress: bool = True,
) -> dict:
    """Accuracy over the time grid for every method and evaluation chip.

    ``schedule`` replaces the profile's log-spaced drift levels (e.g. greedy windows); it is part of the
    fit and cache keys.

    Returns ``{"metadata": {...}, "records": [...]}``; each record has method, preset, time_s,
    time_label, chip_seed, accuracy, the active drift level, storage_bytes (fp32, all levels) and
    extra_macs. The drift-free accuracy is in the metadata and as one record with method ``"drift_free"``.
    Per-method storage, compute and fit time are in ``metadata["method_info"]``.
    """
    start = time.perf_counter()
    cache = cache or Cache(None)
    exp = prepare(config, schedule=schedule, data_root=data_root, download=download, cache=cache,
                  progress=progress)
    profile, base, ctx, fit_key, schedule = exp.profile, exp.base, exp.ctx, exp.fit_key, exp.ctx.schedule
    device = resolve_device(profile.device)
    drift = ctx.drift
    times = [parse_time(t) for t in profile.times]
    test = device_test_set(base.splits, device)
    records = [{"method": "drift_free", "preset": config.preset, "time_s": None, "time_label": None,
                "chip_seed": None, "accuracy": base.accuracy, "level": None, "storage_bytes": 0, "extra_macs": 0}]
    methods_meta = {}
    example = ctx.example()
    for name in config.methods:
        method = config.method(name)
        info = fit_method(method, ctx, fit_key, cache)
        method.analog_.set_crossbar(config.crossbar)
        storage = method.storage()
        macs = method.extra_macs(example)
        methods_meta[name] = {**method.config(), **info, "storage": storage.as_dict(), "extra_macs": macs,
                              "extra_macs_ratio": method.macs_ratio(example)}
        if hasattr(method, "fraction_updated"):
            methods_meta[name]["fraction_updated"] = method.fraction_updated()
        levels = [schedule.name_of(t) if hasattr(method, "schedule_") else None for t in times]
        for seed in tqdm(config.chip_seeds(), desc=f"{name} on {config.preset}", disable=not progress, unit="chip"):
            accuracies = chip_accuracies(exp, config, method, seed, cache, test)
            for t, label, level, acc in zip(times, profile.times, levels, accuracies):
                records.append({"method": name, "preset": config.preset, "time_s": t, "time_label": label,
                                "chip_seed": seed, "accuracy": acc, "level": level,
                                "storage_bytes": storage.total_bytes("fp32"), "extra_macs": macs})
    metadata = run_metadata(
        profile=profile.name, dataset=profile.dataset, model=profile.model, preset=config.preset,
        drift_params=drift.params(), mapping=config.resolved_mapping() or drift.default_mapping,
        methods=list(config.methods), method_info=methods_meta, schedule=schedule.describe(), crossbar=config.crossbar,
        readout=config.readout, base_seed=config.base_seed, model_seed=profile.model_seed,
        chip_seeds=config.chip_seeds(), drift_free_accuracy=base.accuracy,
        data_source=base.splits.info.get("source"),
        config_hash=config_hash(fit_key, "fit"), base_model_key=base.key,
        cache={"hits": cache.hits, "misses": cache.misses},
        wall_time_s=round(time.perf_counter() - start, 3),
    )
    return {"metadata": metadata, "records": records}


def switching_times(schedule: Schedule, labels, points: int) -> tuple[str, ...]:
    """A time grid to watch a schedule switch: ``points`` log-spaced times over [1 s, 10 y], the times of
    ``labels``, and 0.93x and 1.07x of every inner window edge. Grid times keep their labels, the others
    become ``"%.6g"`` seconds."""
    grid = {parse_time(t): t for t in reversed(list(labels))}
    dense = set(np.geomspace(T_START, T_END, points).tolist()) | set(grid)
    dense |= {e * f for e in schedule.edges[1:-1] for f in (0.93, 1.07)}
    named = [(s, next((lab for t, lab in grid.items() if abs(t - s) <= 1e-9 * s), None)) for s in sorted(dense)]
    return tuple(lab if lab is not None else f"{s:.6g}" for s, lab in named)
