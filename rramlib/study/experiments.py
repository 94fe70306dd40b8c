"""The cached experiment runners: the trained base model, fitted methods and drift sweeps.

A run is described by a :class:`SweepConfig` on a profile (:mod:`rramlib.study.profiles`); everything it
computes is cached by content (see :mod:`rramlib.core.cache`): the trained base model once per (dataset,
model, training config), each fitted method once per fit configuration (so notebooks that ask for the
same fit share it), and the sweep results per (method, chip), so an interrupted sweep resumes where it
stopped. Provenance (versions, commit, machine) comes from :mod:`rramlib.core.provenance`.
"""
from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field

import torch
from tqdm import tqdm

from rramlib.core.cache import Cache, config_hash, source_digest
from rramlib.methods.compensation import METHODS, FitContext, Method, check_method, make_method
from rramlib.device.crossbar import CROSSBARS, make_crossbar
from rramlib.nn.data import DatasetSplits, as_tensors, load_dataset
from rramlib.device.drift import PRESETS, make_drift_model
from rramlib.core.errors import RramlibError, check_choice, check_int
from rramlib.nn.evaluate import accuracy
from rramlib.device.mapping import Mapping
from rramlib.nn.models import build_model
from rramlib.study.profiles import EVAL_CHIP_BASE, PROFILES, Profile, get_profile, resolve_device
from rramlib.core.provenance import run_metadata
from rramlib.methods.schedule import Schedule, log_windows
from rramlib.core.seeding import eval_chips, validation_chips
from rramlib.core.times import parse_time
from rramlib.nn.train import train

__all__ = [
    "EVAL_CHIP_BASE", "METHODS", "PROFILES", "Profile", "SweepConfig", "BaseModel",
    "get_profile", "model_config", "model_key", "train_base_model", "run_sweep", "run_metadata", "Experiment",
    "prepare", "fit_method", "fit_level", "chip_accuracies", "greedy_schedule", "switching_times",
]


#: The modules a trained base model depends on (with what they import): its cache key follows only their
#: code, so the hour-long study-scale training survives edits of the methods, the sweeps or the book.
MODEL_SOURCES = ("nn.data", "nn.models", "nn.train")


@dataclass
class BaseModel:
    """A trained software model with its data and its drift-free test accuracy."""

    model: torch.nn.Module
    splits: DatasetSplits
    accuracy: float
    history: dict
    key: str


def model_config(profile: Profile, splits: DatasetSplits) -> dict:
    """What a profile's trained base model is cached under (with the code of :data:`MODEL_SOURCES`): data, model,
    seeds and training, and for a dataset read from a lossy re-encoding (``splits``' source) which pixels it holds.
    :func:`train_base_model` and :mod:`rramlib.nn.ddp` (the same model trained data-parallel) share it."""
    config = {
        "dataset": profile.dataset, "model": profile.model, "data_seed": profile.data_seed,
        "model_seed": profile.model_seed, "n_calib": profile.n_calib,
        "train": dataclasses.asdict(profile.train),
    }
    source = splits.info.get("source", {})
    if source.get("format", "python pickles") != "python pickles":  # same name, other pixels (a lossy re-encoding)
        config["data_source"] = source.get("file_list_sha256", source["format"])
    return config


def model_key(profile: Profile, splits: DatasetSplits) -> str:
    """The cache key (kind ``"model"``) of the profile's trained base model: :func:`model_config` and the code of
    :data:`MODEL_SOURCES`."""
    return config_hash(model_config(profile, splits), sources=source_digest(modules=MODEL_SOURCES))


def train_base_model(
    profile: Profile, *, data_root: str | None = None, download: bool = False,
    cache: Cache | None = None, progress: bool = True, num_workers: int = 0,
) -> BaseModel:
    """Load the profile's data and train (or load from the cache) its base model.

    ``num_workers``: DataLoader worker processes for training (the result does not depend on it)."""
    cache = cache or Cache(None)
    device = resolve_device(profile.device)
    splits = load_dataset(profile.dataset, data_root, download=download, seed=profile.data_seed,
                          n_calib=profile.n_calib, n_test=profile.n_test, cache=cache)
    config = model_config(profile, splits)
    model = build_model(profile.model, num_classes=splits.num_classes, in_channels=splits.in_channels,
                        seed=profile.model_seed)

    def fit() -> dict:
        start = time.perf_counter()
        history = train(model, splits, profile.train, progress=progress, device=str(device), num_workers=num_workers)
        history["wall_seconds"] = time.perf_counter() - start
        return {"state_dict": {k: v.cpu() for k, v in model.state_dict().items()}, "history": history}

    entry = cache.get_or_compute("model", config, fit, sources=source_digest(modules=MODEL_SOURCES))
    model.load_state_dict(entry["state_dict"])
    model.to(device).eval()
    acc = accuracy(model, _test_tensors(splits, device), device=str(device))
    return BaseModel(model, splits, acc, entry["history"], config_hash(config))


def _test_tensors(splits: DatasetSplits, device: torch.device):
    x, y = as_tensors(splits.test)
    return x.to(device), y.to(device)


@dataclass(frozen=True)
class SweepConfig:
    """One drift sweep: a preset on a profile's model, over times x chips, for some methods.

    ``crossbar`` names the periphery (:data:`rramlib.device.crossbar.CROSSBARS`) the *evaluation* chips are read
    through; methods are fitted offline on the exact product either way, so a fit serves every crossbar.
    ``"ideal"`` (the default) is the exact product and leaves every cache key as it was.
    """

    profile: str = "quick"
    preset: str = "relative_gaussian"
    methods: tuple[str, ...] = ("none",)
    drift_params: dict = field(default_factory=dict)
    method_params: dict = field(default_factory=dict)
    mapping: str | None = None
    per_channel: bool = False
    n_conductance_states: int | None = None
    times: tuple[str, ...] | None = None
    chips: int | None = None
    levels: int | None = None
    profile_overrides: dict = field(default_factory=dict)
    crossbar: str = "ideal"

    def __post_init__(self):
        # Every check here is cheap and runs before data loading or training.
        check_choice("preset", self.preset, PRESETS)
        check_choice("crossbar", self.crossbar, CROSSBARS)
        if not self.methods:
            raise RramlibError("give at least one method")
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
        return get_profile(self.profile, **overrides)

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


def _evaluate_chip(method: Method, seed: int, times: list[float], test, device, batch_size: int) -> list[float]:
    return [accuracy(method.at(seed, t), test, device=str(device), batch_size=batch_size) for t in times]


def chip_accuracies(exp: "Experiment", config: SweepConfig, method: Method, seed: int, cache: Cache,
                    test=None) -> list[float]:
    """Accuracy of evaluation chip ``seed`` under the fitted ``method`` at each of the profile's times.

    Cached per (fit, method, times, chip, crossbar): the unit of work a sweep runs in-process or as one
    cluster task (:mod:`rramlib.study.cluster`). ``test``: the test tensors on the device, if already at hand.
    """
    device = resolve_device(exp.profile.device)
    times = [parse_time(t) for t in exp.profile.times]
    test = test if test is not None else _test_tensors(exp.base.splits, device)
    key = {**exp.fit_key, **method.config(), "times": times, "chip_seed": seed, **config.crossbar_key()}
    batch = exp.profile.eval_batch_size
    return cache.get_or_compute("sweep", key, lambda: {"accuracy": _evaluate_chip(method, seed, times, test, device,
                                                                                   batch)})["accuracy"]


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
    ctx = FitContext(model=base.model, splits=base.splits, drift=drift, schedule=schedule, mapping=config.resolved_mapping(),
                     per_channel=config.per_channel, n_conductance_states=config.n_conductance_states,
                     train_chips=profile.train_chips,
                     device=str(resolve_device(profile.device)), progress=progress)
    fit_key = {
        "base_model": base.key, "preset": config.preset, "drift": drift.params(), "mapping": config.resolved_mapping(),
        "per_channel": config.per_channel, "n_conductance_states": config.n_conductance_states,
        "schedule": list(schedule.edges),
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
    test = _test_tensors(base.splits, device)
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
        chip_seeds=config.chip_seeds(), drift_free_accuracy=base.accuracy,
        data_source=base.splits.info.get("source"),
        config_hash=config_hash(fit_key), base_model_key=base.key,
        cache={"hits": cache.hits, "misses": cache.misses},
        wall_time_s=round(time.perf_counter() - start, 3),
    )
    return {"metadata": metadata, "records": records}


def greedy_schedule(
    config: SweepConfig, tolerance: float, *, candidates=None, n_chips: int = 2, data_root: str | None = None,
    cache: Cache | None = None,
) -> tuple[Schedule, list[dict]]:
    """VeRA+ drift levels grown greedily (:func:`rramlib.methods.schedule.greedy_windows`) for ``config``.

    The quality of a window ``(lo, hi)`` is the accuracy at ``hi`` on the validation split of one VeRA+ set
    fitted for the whole window (on training chips, cached like any fit), mean over ``n_chips`` validation
    chips (:func:`~rramlib.core.seeding.validation_chips`, held out from training and evaluation), minus the
    drift-free validation accuracy: windows are chosen without the training chips' own drift, the evaluation
    chips or the test set. ``candidates`` defaults to the study's time grid. Returns the schedule and one
    record per window tried.
    """
    from rramlib.methods.schedule import greedy_windows
    from rramlib.core.times import TIME_GRID, format_time
    from rramlib.study.tuning import validation_accuracies

    chips = list(validation_chips(n_chips))  # checked before any training
    exp = prepare(config, data_root=data_root, cache=cache)
    val = as_tensors(exp.base.splits.val)
    free_val = accuracy(exp.base.model, val)
    calls = []

    def quality(lo: float, hi: float) -> float:
        method = prepare(config, schedule=Schedule((lo, hi)), data_root=data_root, cache=cache).fit(
            "vera_plus", config, cache)
        score = float(validation_accuracies(method, val, chips, [hi]).mean()) - free_val
        calls.append({"window": f"{format_time(lo)}–{format_time(hi)}", "accuracy - drift-free (val)": score})
        return score

    schedule = greedy_windows(quality, sorted(candidates or TIME_GRID.values()), tolerance)
    return schedule, calls


def switching_times(schedule: Schedule, labels, points: int) -> tuple[str, ...]:
    """A time grid to watch a schedule switch: ``points`` log-spaced times over [1 s, 10 y], the times of
    ``labels``, and 0.93x and 1.07x of every inner window edge. Grid times keep their labels, the others
    become ``"%.6g"`` seconds."""
    import numpy as np

    from rramlib.methods.schedule import T_END, T_START

    grid = {parse_time(t): t for t in reversed(list(labels))}
    dense = set(np.geomspace(T_START, T_END, points).tolist()) | set(grid)
    dense |= {e * f for e in schedule.edges[1:-1] for f in (0.93, 1.07)}
    named = [(s, next((lab for t, lab in grid.items() if abs(t - s) <= 1e-9 * s), None)) for s in sorted(dense)]
    return tuple(lab if lab is not None else f"{s:.6g}" for s, lab in named)
