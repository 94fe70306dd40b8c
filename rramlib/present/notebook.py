"""One set-up for every book notebook: parameters, time grid, cache and report.

Every notebook starts the same way::

    # parameters cell (tagged ``parameters``; papermill injects new values after it)
    profile = "quick"
    ...
    # next cell
    from rramlib.present.notebook import start
    nb = start("03_comparison", profile=profile, out_dir=out_dir, ...)   # every parameter, by name

:func:`start` normalises each parameter (papermill's ``-p`` passes lists as text), fills the
profile-dependent defaults (``None`` values) and checks all of them against :data:`PARAMETERS`, the one
table that says what a parameter name means anywhere in the book, before any heavy work. Bad input raises
:class:`~rramlib.core.errors.RramlibError`. It then applies the figure style and opens the notebook's
:class:`~rramlib.present.report.Report` and the shared results cache.

A notebook reaches its data, trained models and fits only through the :class:`Notebook`'s methods
(:meth:`~Notebook.sweep`, :meth:`~Notebook.prepare`, :meth:`~Notebook.fitted`, :meth:`~Notebook.greedy_schedule`,
:meth:`~Notebook.base_model`, :meth:`~Notebook.train_pair`): each passes the data folder (:meth:`~Notebook.data_root`)
and the cache itself, so ``make book PROFILE=paper DATA_ROOT=DIR`` reaches every chapter (a test checks that no
notebook calls the underlying functions directly).
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any, Callable

from rramlib.core.errors import RramlibError, check_choice, check_int, check_positive, check_type
from rramlib.core.cache import Cache, default_cache_dir
from rramlib.core.times import parse_time
from rramlib.device.crossbar import CROSSBARS
from rramlib.device.drift import DEFAULT_PRESET, PRESETS
from rramlib.device.faults import FORMATS
from rramlib.methods.compensation import check_method
from rramlib.nn.models import MODELS
from rramlib.present.plotting import use_style
from rramlib.present.report import Report
from rramlib.study import cluster
from rramlib.study.base_model import train_base_model
from rramlib.study.experiments import SweepConfig, prepare, run_sweep
from rramlib.study.hidden_fold import train_pair
from rramlib.study.profiles import PROFILES, get_profile
from rramlib.study.headline import comparison_fits, run_headline
from rramlib.study.tuning import SEARCH_MOVES, greedy_schedule, run_search, tuned_method_params

__all__ = ["PARAMETERS", "Notebook", "as_list", "start"]


def as_list(value) -> list:
    """A list-valued parameter as a list: ``None`` -> ``[]``, a scalar -> ``[value]``, a tuple -> a list, and
    the text of a list or tuple -> its entries.

    papermill's ``-p name '[1, 2]'`` passes the text ``"[1, 2]"``. It is read as a Python literal
    (:func:`ast.literal_eval`: ``"('a(b)', 2)"`` keeps the parentheses inside its string); text that is not one,
    such as the bare words of ``"[vera_plus, bn]"`` or ``"(1d, 10y)"``, is read as a YAML list.
    """
    if isinstance(value, str) and value.strip()[:1] in "[(":
        value = _parse_list(value.strip())
    if value is None:
        return []
    return list(value) if isinstance(value, (list, tuple)) else [value]


def _parse_list(text: str) -> list | tuple:
    import ast

    import yaml

    try:
        return ast.literal_eval(text)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        pass
    try:  # bare words: a YAML flow list (a tuple's outer parentheses read as brackets)
        value = yaml.safe_load("[" + text[1:-1] + "]" if text[0] == "(" and text[-1] == ")" else text)
    except yaml.YAMLError as exc:
        raise RramlibError(f"cannot read the list {text!r}: {exc}") from None
    if not isinstance(value, list):
        raise RramlibError(f"cannot read the list {text!r}: not a list of values")
    return value


# ------------------------------------------------------------------------------------------- checks
def _profile(v, name="profile"):
    return check_choice("profile", v, PROFILES)


def _preset(v, name="preset"):
    return check_choice("preset", v, PRESETS)


def _method(v, name="method"):
    return check_method(v)


def _model(v, name="model"):
    return check_choice("model", v, MODELS)


def _time(v, name="time"):
    parse_time(v)
    return v


def _int(low: int) -> Callable:
    return lambda v, name="value": check_int(name, v, minimum=low)


def _nonneg(v, name="value"):
    return check_positive(name, v, allow_zero=True)


def _fraction(v, name="value"):
    v = check_positive(name, v)
    if v > 1:
        raise RramlibError(f"{name} must be a fraction in (0, 1], got {v}")
    return v


def _unit(v, name="value"):
    check_type(name, v, (int, float))
    if not 0 <= v <= 1:
        raise RramlibError(f"{name} must be a fraction in [0, 1], got {v}")
    return float(v)


def _str(v, name="value"):
    return check_type(name, v, str)


def _optional_str(v, name="value"):
    return v if v is None else check_type(name, v, str)


def _bool(v, name="value"):
    return check_type(name, v, bool)


def _dict(v, name="value"):
    return check_type(name, v, dict)


def _one_of(*choices) -> Callable:
    return lambda v, name="value": check_choice(name, v, choices)


def _format(v, name="format"):
    return check_choice(name, v, FORMATS)


def _sharing(v, name="sharing"):
    return check_choice(name, v, ("layer", "cross"))


def _crossbar(v, name="crossbar"):
    return check_choice(name, v, CROSSBARS)


def _scheduler(v, name="scheduler"):
    """None (sweeps run in the notebook's process) or a Dask scheduler address, e.g. ``tcp://host:8786``."""
    import re

    address = r"(tcp|tls|ucx|inproc|ws|wss)://\S+|[^\s:/]+:\d+"  # Dask's protocol://host:port, or host:port
    if v is not None and not (isinstance(v, str) and re.fullmatch(address, v)):
        raise RramlibError(f"{name} must be the address of a Dask scheduler, such as tcp://host:8786, or None; "
                           f"got {v!r}")
    return v


@dataclass(frozen=True)
class Parameter:
    """What a notebook parameter name means: a check per value, list or not, a default per profile."""

    check: Callable
    is_list: bool = False
    default: Callable[[str], Any] | None = None  # profile name -> value used when the parameter is None
    empty_ok: bool = True


def _by_profile(smoke, other):
    return lambda profile: smoke if profile == "smoke" else other


#: Every parameter of every book notebook. One name means one thing throughout the book.
PARAMETERS: dict[str, Parameter] = {
    "profile": Parameter(_profile),
    "out_dir": Parameter(_str),
    "data_root": Parameter(_optional_str),
    "official_path": Parameter(_optional_str),  # lossless CIFAR-10 test images (rramlib.study.lossless)
    "preset": Parameter(_preset),
    "presets": Parameter(_preset, is_list=True, empty_ok=False),
    "preset_params": Parameter(_dict),
    "drift_scale": Parameter(_nonneg),
    "drift_scales": Parameter(_nonneg, is_list=True),
    "crossbar": Parameter(_crossbar),
    "scheduler": Parameter(_scheduler),  # where sweeps run (rramlib.study.cluster); results do not depend on it
    "dac_bits": Parameter(_int(2), is_list=True, default=_by_profile([5, 7], [4, 5, 6, 7, 8]), empty_ok=False),
    "adc_bits": Parameter(_int(2), is_list=True, default=_by_profile([7, 9], [5, 6, 7, 8, 9, 10]), empty_ok=False),
    "out_noises": Parameter(_nonneg, is_list=True, default=_by_profile([0.0, 0.06], [0.0, 0.03, 0.06, 0.12, 0.24]),
                            empty_ok=False),
    "table": Parameter(_optional_str),
    "seed": Parameter(_int(0)),
    "g_targets": Parameter(_unit, is_list=True, empty_ok=False),
    "n_devices": Parameter(_int(100), default=_by_profile(10_000, 100_000)),
    "n_weights": Parameter(_int(100), default=_by_profile(10_000, 100_000)),
    "hist_times": Parameter(_time, is_list=True, empty_ok=False),
    "methods": Parameter(_method, is_list=True, empty_ok=False),
    "reference_methods": Parameter(_method, is_list=True),
    "table_times": Parameter(_time, is_list=True, empty_ok=False),
    "pareto_time": Parameter(_time),
    "eval_time": Parameter(_time),
    "time": Parameter(_time),
    "horizon": Parameter(_time),
    "k_times": Parameter(_time, is_list=True, empty_ok=False),
    "levels": Parameter(lambda v, name="levels": v if v is None else check_int(name, v, minimum=1)),
    "levels_list": Parameter(_int(1), is_list=True, default=_by_profile([1, 2], [1, 2, 4, 8]), empty_ok=False),
    "dense_points": Parameter(_int(2), default=_by_profile(7, 25)),
    "run_greedy": Parameter(_bool),
    "greedy_tolerance": Parameter(_nonneg),
    "val_chips": Parameter(_int(1)),  # validation chips (rramlib.core.seeding.validation_chips) that choose hyper-parameters
    "tuned_methods": Parameter(_method, is_list=True, default=lambda profile: list(SEARCH_MOVES), empty_ok=False),
    "readouts": Parameter(_one_of("raw", "gdc"), is_list=True, empty_ok=False),  # rramlib.device.analog.READOUTS
    "apply_tuning": Parameter(_bool),  # use the Tuning chapter's choices (rramlib.study.tuning.tuned_method_params)
    "extra_models": Parameter(_model, is_list=True),
    "extra_profile": Parameter(_profile),
    "mac_models": Parameter(_model, is_list=True),
    "ranks": Parameter(_int(1), is_list=True, empty_ok=False),
    "sharings": Parameter(_sharing, is_list=True, empty_ok=False),
    "kd_weights": Parameter(_nonneg, is_list=True, empty_ok=False),
    "samples": Parameter(_int(1), is_list=True, empty_ok=False),
    "field_images": Parameter(_int(2), is_list=True, empty_ok=False),  # images kept for BN recalibrated in the field
    "budgets": Parameter(_fraction, is_list=True, empty_ok=False),
    "chip": Parameter(_int(0)),
    "n_params": Parameter(_int(1), default=_by_profile(4, 20)),
    "formats": Parameter(_format, is_list=True, empty_ok=False),
    "protect_bits": Parameter(_int(0), is_list=True),
    "range_mode": Parameter(_one_of("zero", "clamp")),
    "depth_models": Parameter(_model, is_list=True, default=lambda p: ["resnet20", "resnet32", "resnet56"]
                              if p == "paper" else []),
}


def check_parameters(params: dict) -> dict:
    """Normalised, checked copies of notebook parameters (see :data:`PARAMETERS`); ``profile`` first."""
    unknown = sorted(set(params) - set(PARAMETERS))
    if unknown:
        raise RramlibError(f"unknown notebook parameter(s) {unknown}; known: {sorted(PARAMETERS)}")
    profile = _profile(params.get("profile", "quick"))
    out = {}
    for name, value in params.items():
        spec = PARAMETERS[name]
        if value is None and spec.default is not None:
            value = spec.default(profile)
        if spec.is_list:
            value = as_list(value)
            if not value and not spec.empty_ok:
                raise RramlibError(f"{name} needs at least one value")
            value = [spec.check(v, f"{name} entry") for v in value]
        else:
            value = spec.check(value, name)
        out[name] = value
    return out


class Notebook:
    """A running book notebook: its checked parameters ``p``, profile, report and cache."""

    def __init__(self, name: str, params: dict):
        self.name = name
        self.p = SimpleNamespace(**params)
        self.profile = get_profile(params.get("profile", "quick"))
        shown = {k: ("(given)" if k in ("data_root", "official_path") and v is not None else v) for k, v in params.items()
                 if k != "scheduler"}  # where the sweeps ran does not change a result
        self.report = Report(name, params=shown, out_dir=params.get("out_dir", "results"))
        self.cache = Cache(default_cache_dir())

    def grid(self, *labels: str) -> tuple[str, ...] | None:
        """The profile's time grid plus ``labels`` it lacks, in time order; ``None`` if it has them all
        (then sweeps share their cache entries with every notebook that uses the plain grid)."""
        times = list(self.profile.times)
        missing = [t for t in labels if parse_time(t) not in {parse_time(s) for s in times}]
        if not missing:
            return None
        return tuple(sorted(dict.fromkeys(times + missing), key=parse_time))

    def config(self, methods=("none",), *, profile: str | None = None, preset: str | None = None,
               drift_params: dict | None = None, **fields):
        """A :class:`~rramlib.study.experiments.SweepConfig` on this notebook's profile, preset and drift scale
        (``profile``, ``preset`` and ``drift_params`` replace them)."""
        p = vars(self.p)
        drift = {"drift_scale": p.get("drift_scale", 1.0), **(drift_params or {})}
        if "crossbar" in p:
            fields.setdefault("crossbar", p["crossbar"])
        return SweepConfig(profile=profile or self.profile.name, preset=preset or p.get("preset", DEFAULT_PRESET),
                           methods=tuple(methods), drift_params=drift, **fields)

    def sweep(self, config, *, schedule=None) -> dict:
        """:func:`~rramlib.study.experiments.run_sweep` through the shared cache, with its fits and evaluations computed on
        the Dask cluster at the ``scheduler`` parameter if one is given (:func:`rramlib.study.cluster.run_sweep`: the same
        records); ``schedule`` replaces the profile's drift levels. The result's key goes in the footers."""
        scheduler = getattr(self.p, "scheduler", None)
        if scheduler is None:
            result = run_sweep(config, schedule=schedule, data_root=self.data_root(), cache=self.cache, progress=False)
        else:
            with cluster.connect(scheduler=scheduler) as client:
                result = cluster.run_sweep(config, client, schedule=schedule, data_root=self.data_root(),
                                           cache=self.cache, progress=False)
        return self.report.uses(result)

    def prepare(self, config, *, schedule=None):
        """:func:`~rramlib.study.experiments.prepare` (the base model, fit context and fit key of ``config``) with
        this notebook's data folder and cache."""
        return prepare(config, schedule=schedule, data_root=self.data_root(), cache=self.cache)

    def fitted(self, config, names) -> tuple:
        """``(base model, {name: fitted method})`` of ``config``: the fits :meth:`sweep` makes (the same cache
        entries), for a notebook that uses the fitted methods themselves."""
        exp = self.prepare(config)
        return exp.base, {name: exp.fit(name, config, self.cache) for name in names}

    def greedy_schedule(self, config, tolerance: float, *, n_chips: int, candidates=None) -> tuple:
        """:func:`~rramlib.study.tuning.greedy_schedule` (VeRA+ windows grown greedily, and the windows tried)
        with this notebook's data folder and cache."""
        return greedy_schedule(config, tolerance, candidates=candidates, n_chips=n_chips, data_root=self.data_root(),
                               cache=self.cache)

    def tuned(self, config, **kwargs) -> dict:
        """The hyper-parameters the tuning chapter's search chose for ``config``'s profile and preset
        (:func:`~rramlib.study.tuning.tuned_method_params`: one search on validation data, cached and shared by every
        notebook that asks), with this notebook's data folder and cache."""
        return tuned_method_params(config, data_root=self.data_root(), cache=self.cache, **kwargs)

    def search(self, config, **kwargs):
        """:func:`~rramlib.study.tuning.run_search` (the search itself, with its candidates, scores and budget) with
        this notebook's data folder and cache."""
        return run_search(config, data_root=self.data_root(), cache=self.cache, **kwargs)

    def headline(self, config, methods, *, readouts, times):
        """:func:`~rramlib.study.headline.run_headline` (every method on every base seed and readout, per image) with
        this notebook's data folder and cache."""
        return run_headline(config, methods, readouts=readouts, times=times, data_root=self.data_root(),
                            cache=self.cache)

    def comparison_fits(self, config, methods) -> dict:
        """:func:`~rramlib.study.headline.comparison_fits` (every comparison row fitted on every base seed, the
        cache entries of :meth:`headline`) with this notebook's data folder and cache."""
        return comparison_fits(config, methods, data_root=self.data_root(), cache=self.cache)

    def train_pair(self):
        """The Hidden-Fold Network and dense network of this notebook's profile
        (:func:`~rramlib.study.hidden_fold.train_pair`, cached), trained on the profile's device."""
        return train_pair(self.profile.name, cache=self.cache, data_root=self.data_root(), device=self.profile.device)

    def base_model(self, profile=None):
        """The profile's trained base model (:func:`~rramlib.study.base_model.train_base_model`, cached)."""
        profile = profile or self.profile
        base = train_base_model(profile, data_root=self.data_root(), cache=self.cache, progress=False)
        self.report.data_source({"dataset": profile.dataset, **base.splits.info.get("source", {})})
        return base

    def data_root(self) -> str | None:
        """The ``data_root`` parameter, else ``$RRAMLIB_DATA_ROOT`` (so every notebook finds the CIFAR folder of
        ``make book PROFILE=cifar DATA_ROOT=...``, whether it declares ``data_root`` or not)."""
        import os

        return getattr(self.p, "data_root", None) or os.environ.get("RRAMLIB_DATA_ROOT") or None

    def parameter_table(self):
        """The parameters in use as a two-column table (stored as the report's ``parameters`` table)."""
        import pandas as pd

        frame = pd.DataFrame({"parameter": list(self.report.params),
                              "value": [str(v) for v in self.report.params.values()]})
        return self.report.table("parameters", frame, glue=False)


def start(name: str, **params) -> Notebook:
    """Check ``params`` (every parameter of the notebook, by name), apply the book's figure style and
    return the :class:`Notebook` holding them (``nb.p``), its report and the shared cache."""
    from tqdm import TqdmWarning

    checked = check_parameters(params)
    if checked.get("scheduler") is not None:  # unreachable: one clear error now, before any heavy work

        with cluster.connect(scheduler=checked["scheduler"]):
            pass
    warnings.simplefilter("ignore", TqdmWarning)  # "IProgress not found": notebooks show no progress bars
    use_style()
    return Notebook(name, checked)
