"""Profiles (smoke / quick / paper) and the cached experiment runners built on them.

One place defines what each profile trains and evaluates. A run is described by a
:class:`SweepConfig`; everything it computes is cached by content (see
:mod:`rramlib.cache`): the trained base model once per (dataset, model, training
config), and the sweep results per (method, chip), so an interrupted sweep resumes
where it stopped.

Chip seeds: evaluation chips are ``EVAL_CHIP_BASE + i``; anything that trains or
calibrates on drifted chips draws its chips below ``EVAL_CHIP_BASE``, so the two sets
never overlap.
"""
from __future__ import annotations

import dataclasses
import platform
import resource
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from tqdm import tqdm

from . import __version__
from .analog import AnalogModel
from .cache import Cache, config_hash
from .compensation import METHODS, FitContext, Method, make_method
from .data import DATASETS, DatasetSplits, as_tensors, load_dataset
from .drift import PRESETS, make_drift_model
from .errors import RramlibError, check_choice, check_type
from .evaluate import accuracy
from .schedule import Schedule, log_windows
from .mapping import Mapping
from .models import MODELS, build_model
from .times import TIME_GRID, parse_time
from .train import TrainConfig, train

__all__ = [
    "EVAL_CHIP_BASE", "METHODS", "PROFILES", "Profile", "SweepConfig", "BaseModel",
    "get_profile", "train_base_model", "run_sweep", "run_metadata", "Experiment", "prepare", "fit_method",
]

#: Seeds of evaluation chips start here; training/calibration chips use seeds below it.
EVAL_CHIP_BASE = 10_000



@dataclass(frozen=True)
class Profile:
    """What a profile trains and evaluates. Override any field with :func:`get_profile`."""

    name: str
    dataset: str
    model: str
    train: TrainConfig
    times: tuple[str, ...] = tuple(TIME_GRID)
    chips: int = 5
    data_seed: int = 0
    model_seed: int = 0
    n_calib: int = 100
    device: str = "cpu"
    levels: int = 4
    train_chips: int = 8
    method_params: dict = field(default_factory=dict)
    description: str = ""

    def __post_init__(self):
        check_choice("dataset", self.dataset, DATASETS)
        check_choice("model", self.model, MODELS)
        check_type("chips", self.chips, int)
        if self.chips < 1:
            raise RramlibError(f"chips must be >= 1, got {self.chips}")
        for t in self.times:
            parse_time(t)
        for name, params in self.method_params.items():
            make_method(name, **params)  # validates names and hyper-parameters


#: The DoRA-calibration study adapts 2.34 % of ResNet-50's parameters. On the 23 k-parameter digits CNN that
#: budget cannot hold a single one of the drift-sensitive convolutions (rank 4), so the digits profiles use 10 %
#: (our choice; notebook 08 sweeps the budget, 2.34 % included).
_DIGITS_DORA = {"budget": 0.10}

#: Shorter offline training for the smoke profile (tests and CI).
_SMOKE_METHODS = {
    "vera_plus": {"steps": 40}, "lora": {"steps": 40}, "retrain": {"steps": 40}, "noise_aware": {"epochs": 2},
    "bn": {"batches": 5}, "dora": {"steps": 20, **_DIGITS_DORA},
}

PROFILES: dict[str, Profile] = {
    "smoke": Profile(
        name="smoke", dataset="digits", model="digits_cnn",
        train=TrainConfig(epochs=4, lr=0.05, batch_size=64),
        times=("1s", "1d", "10y"), chips=2, n_calib=50, levels=2, train_chips=4,
        method_params=_SMOKE_METHODS, description="seconds per run; for tests and CI",
    ),
    "quick": Profile(
        name="quick", dataset="digits", model="digits_cnn",
        train=TrainConfig(epochs=30, lr=0.05, batch_size=64),
        chips=5, method_params={"dora": _DIGITS_DORA},
        description="default: scikit-learn digits, minutes on 2 CPU cores",
    ),
    "paper": Profile(
        name="paper", dataset="cifar10", model="resnet20",
        train=TrainConfig(epochs=160, lr=0.1, batch_size=128, weight_decay=1e-4),
        chips=10, n_calib=1000, device="auto",
        description="CIFAR ResNets as in the study; GPU recommended",
    ),
}


def get_profile(name: str, **overrides) -> Profile:
    """The named profile with ``overrides`` applied (unknown profile or field -> RramlibError)."""
    base = PROFILES[check_choice("profile", name, PROFILES)]
    fields = {f.name for f in dataclasses.fields(Profile)}
    unknown = set(overrides) - fields
    if unknown:
        raise RramlibError(f"unknown profile field(s) {sorted(unknown)}; known: {sorted(fields)}")
    return dataclasses.replace(base, **overrides)


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        return torch.device(device)
    except RuntimeError as exc:
        raise RramlibError(f"unknown device {device!r}: {exc}") from None


@dataclass
class BaseModel:
    """A trained software model with its data and its drift-free test accuracy."""

    model: torch.nn.Module
    splits: DatasetSplits
    accuracy: float
    history: dict
    key: str


def _model_config(profile: Profile) -> dict:
    return {
        "dataset": profile.dataset, "model": profile.model, "data_seed": profile.data_seed,
        "model_seed": profile.model_seed, "n_calib": profile.n_calib,
        "train": dataclasses.asdict(profile.train),
    }


def train_base_model(
    profile: Profile, *, data_root: str | None = None, download: bool = False,
    cache: Cache | None = None, progress: bool = True,
) -> BaseModel:
    """Load the profile's data and train (or load from the cache) its base model."""
    cache = cache or Cache(None)
    device = resolve_device(profile.device)
    splits = load_dataset(profile.dataset, data_root, download=download, seed=profile.data_seed,
                          n_calib=profile.n_calib)
    config = _model_config(profile)
    model = build_model(profile.model, num_classes=splits.num_classes, in_channels=splits.in_channels,
                        seed=profile.model_seed)

    def fit() -> dict:
        history = train(model, splits, profile.train, progress=progress, device=str(device))
        return {"state_dict": {k: v.cpu() for k, v in model.state_dict().items()}, "history": history}

    entry = cache.get_or_compute("model", config, fit)
    model.load_state_dict(entry["state_dict"])
    model.to(device).eval()
    acc = accuracy(model, _test_tensors(splits, device), device=str(device))
    return BaseModel(model, splits, acc, entry["history"], config_hash(config))


def _test_tensors(splits: DatasetSplits, device: torch.device):
    x, y = as_tensors(splits.test)
    return x.to(device), y.to(device)


@dataclass(frozen=True)
class SweepConfig:
    """One drift sweep: a preset on a profile's model, over times x chips, for some methods."""

    profile: str = "quick"
    preset: str = "relative_gaussian"
    methods: tuple[str, ...] = ("none",)
    drift_params: dict = field(default_factory=dict)
    method_params: dict = field(default_factory=dict)
    mapping: str | None = None
    per_channel: bool = False
    n_levels: int | None = None
    times: tuple[str, ...] | None = None
    chips: int | None = None
    levels: int | None = None
    profile_overrides: dict = field(default_factory=dict)

    def __post_init__(self):
        # Every check here is cheap and runs before data loading or training.
        check_choice("preset", self.preset, PRESETS)
        if not self.methods:
            raise RramlibError("give at least one method")
        for m in self.methods:
            check_choice("method", m, METHODS)
        for m in self.method_params:
            check_choice("method", m, METHODS)
        drift = make_drift_model(self.preset, **self.drift_params)  # validates the preset parameters
        Mapping(g_min=drift.g_min, g_max=drift.g_max, kind=self.mapping or drift.default_mapping,
                per_channel=self.per_channel, n_levels=self.n_levels)
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

    def method(self, name: str) -> Method:
        """Method ``name`` with the profile's hyper-parameters, then this sweep's."""
        params = {**self.resolved_profile().method_params.get(name, {}), **self.method_params.get(name, {})}
        return make_method(name, **params)

    def chip_seeds(self) -> list[int]:
        return [EVAL_CHIP_BASE + i for i in range(self.resolved_profile().chips)]


def git_commit() -> str | None:
    """The commit of the source tree rramlib is imported from, when it is a git checkout."""
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent, capture_output=True,
                             text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far, in MiB."""
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / 1024 if sys.platform != "darwin" else rss / 2**20


def run_metadata(**extra) -> dict:
    """Provenance recorded in every results file."""
    return {
        "rramlib_version": __version__, "git_commit": git_commit(), "torch_version": torch.__version__,
        "python": platform.python_version(), "peak_rss_mb": round(peak_rss_mb(), 1), **extra,
    }


def _evaluate_chip(method: Method, seed: int, times: list[float], test, device) -> list[float]:
    return [accuracy(method.at(seed, t), test, device=str(device)) for t in times]


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
    ctx = FitContext(model=base.model, splits=base.splits, drift=drift, schedule=schedule, mapping=config.mapping,
                     per_channel=config.per_channel, n_levels=config.n_levels, train_chips=profile.train_chips,
                     device=str(resolve_device(profile.device)), progress=progress)
    fit_key = {
        "base_model": base.key, "preset": config.preset, "drift": drift.params(), "mapping": config.mapping,
        "per_channel": config.per_channel, "n_levels": config.n_levels, "schedule": list(schedule.edges),
        "train_chips": profile.train_chips,
    }
    return Experiment(profile, base, ctx, fit_key)


def fit_method(method: Method, ctx: FitContext, key: dict, cache: Cache) -> dict:
    """Fit ``method`` offline, or restore its fitted state from the cache; returns fit information."""
    def compute():
        start = time.perf_counter()
        method.fit(ctx)
        return {"state": method.state_dict(), "fit_time_s": time.perf_counter() - start}

    entry = cache.get_or_compute("fit", {**key, **method.config()}, compute)
    if method.analog_ is None:  # restored from the cache
        method.setup(ctx)
        method.load_state_dict(entry["state"])
    return {"fit_time_s": entry["fit_time_s"]}


def run_sweep(
    config: SweepConfig, *, data_root: str | None = None, download: bool = False,
    cache: Cache | None = None, progress: bool = True,
) -> dict:
    """Accuracy over the time grid for every method and evaluation chip.

    Returns ``{"metadata": {...}, "records": [...]}``; each record has method, preset, time_s,
    time_label, chip_seed, accuracy, the active drift level, storage_bytes (fp32, all levels) and
    extra_macs. The drift-free accuracy is in the metadata and as one record with method ``"drift_free"``.
    Per-method storage, compute and fit time are in ``metadata["method_info"]``.
    """
    start = time.perf_counter()
    cache = cache or Cache(None)
    exp = prepare(config, data_root=data_root, download=download, cache=cache, progress=progress)
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
        storage = method.storage()
        macs = method.extra_macs(example)
        methods_meta[name] = {**method.config(), **info, "storage": storage.as_dict(), "extra_macs": macs,
                              "extra_macs_ratio": method.macs_ratio(example)}
        if hasattr(method, "fraction_updated"):
            methods_meta[name]["fraction_updated"] = method.fraction_updated()
        levels = [schedule.name_of(t) if hasattr(method, "schedule_") else None for t in times]
        for seed in tqdm(config.chip_seeds(), desc=f"{name} on {config.preset}", disable=not progress, unit="chip"):
            key = {**fit_key, **method.config(), "times": times, "chip_seed": seed}
            result = cache.get_or_compute("sweep", key, lambda: {"accuracy": _evaluate_chip(method, seed, times, test,
                                                                                             device)})
            for t, label, level, acc in zip(times, profile.times, levels, result["accuracy"]):
                records.append({"method": name, "preset": config.preset, "time_s": t, "time_label": label,
                                "chip_seed": seed, "accuracy": acc, "level": level,
                                "storage_bytes": storage.total_bytes("fp32"), "extra_macs": macs})
    metadata = run_metadata(
        profile=profile.name, dataset=profile.dataset, model=profile.model, preset=config.preset,
        drift_params=drift.params(), mapping=config.mapping or drift.default_mapping,
        methods=list(config.methods), method_info=methods_meta, schedule=schedule.describe(),
        chip_seeds=config.chip_seeds(), drift_free_accuracy=base.accuracy,
        config_hash=config_hash(fit_key), base_model_key=base.key,
        cache={"hits": cache.hits, "misses": cache.misses},
        wall_time_s=round(time.perf_counter() - start, 3),
    )
    return {"metadata": metadata, "records": records}
