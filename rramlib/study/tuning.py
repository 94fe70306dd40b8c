"""Fair hyper-parameter search: every trained method picks its values on held-out data, with the same budget.

The protocol (our choice; the study's texts do not describe how its baselines were tuned):

1. **Candidates.** A method gets a list of candidate hyper-parameter dicts (:func:`grid` expands a grid),
   each applied over the method's base values (e.g. the profile's). Every method compared gets the same
   number of candidates (:func:`check_searches` refuses otherwise), and every candidate is validated by
   :func:`~rramlib.methods.compensation.make_method` before anything is fitted.
2. **Fit.** Each candidate is fitted offline exactly as in a sweep (:func:`rramlib.study.experiments.fit_method`):
   on training chips (:func:`~rramlib.core.seeding.train_chips`), drift-injected from the context's schedule.
3. **Score.** The mean accuracy on the validation split (``splits.val``, or a class-stratified subset of it:
   :func:`validation_subset`) read through validation chips (:func:`~rramlib.core.seeding.validation_chips`,
   disjoint from the training and the evaluation chips) over a time grid: every (chip, time) pair weighs the
   same. The test split and the evaluation chips are never read, so the choice cannot leak into the reported
   numbers.
4. **Choice.** The highest score; a tie goes to the earlier candidate (so the result is deterministic and
   a default listed first wins ties).

**The book's search** (:func:`run_search`). Its space (:data:`SEARCH_MOVES`, :func:`search_space`) starts from a
sweep configuration's values of every trained method (the profile's: what the comparison would use untuned),
listed first, and adds :data:`N_MOVES` candidates that each change one hyper-parameter of them (a one-factor-at-a-
time design around the base), so every method gets ``1 + N_MOVES`` candidates: the same budget in fits. It runs on
the profile's **first base seed** (:attr:`~rramlib.study.profiles.Profile.base_seeds`; the choice is then applied
to every base seed), on the **raw readout** unless told otherwise, on :data:`VAL_IMAGES` validation images read
through :data:`VAL_CHIPS` validation chips at the profile's times, and is cached whole (kind ``"tuning"``): the
tuning chapter, which shows it, and the comparison chapter, which applies it (:func:`tuned_method_params`), share
one search, whichever runs first. Each fit and each candidate's score is cached too, so an interrupted search
resumes at its first missing fit. Its budget is methods x ``(1 + N_MOVES)`` fits plus as many validation scorings;
:attr:`Search.wall_time_s` sums the seconds of both, as measured when each was computed.

The drift levels themselves are chosen the same way: :func:`greedy_schedule` grows VeRA+'s windows on the
validation split read through validation chips.
"""
from __future__ import annotations

import dataclasses
import itertools
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from rramlib.core.cache import Cache
from rramlib.core.errors import RramlibError, check_int, check_positive, check_type
from rramlib.core.seeding import EVAL_CHIP_BASE, VALIDATION_CHIP_BASE, validation_chips
from rramlib.core.times import TIME_GRID, format_time, parse_time
from rramlib.methods.compensation import METHODS, FitContext, Method, make_method
from rramlib.methods.compensation.dora_calibration import stratified_pick
from rramlib.methods.schedule import Schedule, greedy_windows
from rramlib.nn.data import as_tensors
from rramlib.nn.evaluate import accuracy
from rramlib.study.experiments import SweepConfig, fit_method, prepare

__all__ = ["CRITERION", "Move", "N_MOVES", "SEARCH_MOVES", "Search", "TuningResult", "VAL_CHIPS", "VAL_IMAGES",
           "check_candidates", "check_searches", "describe", "greedy_schedule", "grid", "run_search", "search_space",
           "trained_methods", "tune", "tune_methods", "tuned_method_params", "tuning_config", "validation_accuracies",
           "validation_subset"]

#: What :func:`tune` maximises (shown in the book next to the chosen values).
CRITERION = "mean validation accuracy over validation chips x times"

#: Validation images the book's search scores every candidate on (our choice): a class-stratified subset of the
#: validation split (:func:`validation_subset`; the whole split where it is smaller, as for the digits). Sized for
#: 2 CPU cores at the study scale: every (candidate, validation chip, time) reads this many images through ResNet-20,
#: so the search makes (methods x candidates) x :data:`VAL_CHIPS` x (the profile's times) such reads.
VAL_IMAGES = 1000

#: Validation chips the book's search reads every candidate through (our choice; the notebooks' ``val_chips``).
VAL_CHIPS = 2


def grid(**axes: Sequence) -> list[dict]:
    """The Cartesian product of ``axes`` as candidate dicts, the last axis varying fastest.

    ``grid(lr=[1e-3, 1e-2], steps=[50])`` -> ``[{"lr": 0.001, "steps": 50}, {"lr": 0.01, "steps": 50}]``.
    """
    if not axes:
        raise RramlibError("a grid needs at least one hyper-parameter axis")
    for name, values in axes.items():
        if isinstance(values, (str, bytes)) or not isinstance(values, Sequence) or not values:
            raise RramlibError(f"grid axis {name!r} needs a non-empty list of values, got {values!r}")
    names = list(axes)
    return [dict(zip(names, combo)) for combo in itertools.product(*(axes[n] for n in names))]


def check_candidates(name: str, candidates: Sequence[Mapping], base: Mapping | None = None) -> list[dict]:
    """``candidates`` as plain dicts after validating each over ``base`` with :func:`make_method`.

    Raises :class:`~rramlib.core.errors.RramlibError` for an empty list, a candidate that is not a mapping, an
    unknown method or hyper-parameter name, a bad value, or two candidates that resolve to the same values.
    """
    if isinstance(candidates, Mapping) or not isinstance(candidates, Sequence) or not candidates:
        raise RramlibError(f"tuning {name!r} needs a non-empty list of candidate hyper-parameter dicts "
                           f"(rramlib.study.tuning.grid builds one), got {candidates!r}")
    base = dict(base or {})
    make_method(name, **base)  # the method name and the base values
    out, seen = [], {}
    for i, cand in enumerate(candidates):
        check_type(f"candidate {i} of {name!r}", cand, Mapping)
        params = make_method(name, **{**base, **cand}).params  # unknown names, bad values -> RramlibError
        key = tuple(sorted(params.items()))
        if key in seen:
            raise RramlibError(f"candidates {seen[key]} and {i} of {name!r} are the same hyper-parameters {params}")
        seen[key] = i
        out.append(dict(cand))
    return out


def check_searches(searches: Mapping[str, Sequence[Mapping]],
                   bases: Mapping[str, Mapping] | None = None) -> dict[str, list[dict]]:
    """Every method's candidates checked (:func:`check_candidates` over ``bases[method]``), and the same number of
    them for every method (the same search budget); RramlibError otherwise."""
    if not searches:
        raise RramlibError("give at least one method to tune")
    bases = dict(bases or {})
    checked = {name: check_candidates(name, cands, bases.get(name)) for name, cands in searches.items()}
    budgets = {name: len(c) for name, c in checked.items()}
    if len(set(budgets.values())) > 1:
        raise RramlibError(f"every method needs the same number of candidates (the same search budget), got {budgets}")
    return checked


def describe(candidate: Mapping) -> str:
    """A candidate as text: ``{"lr": 0.01, "steps": 40}`` -> ``"lr=0.01, steps=40"``."""
    return ", ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in candidate.items())


def validation_subset(val, n: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """``(x, y)`` of ``n`` images of the validation split ``val``, class-stratified
    (:func:`~rramlib.methods.compensation.dora_calibration.stratified_pick`: no randomness; the split is itself a
    seeded random draw); the whole split for ``None`` or an ``n`` at least its size."""
    x, y = as_tensors(val)
    if n is None or check_int("validation images", n, 1) >= len(y):
        return x, y
    idx = stratified_pick(y, n)
    return x[idx], y[idx]


@torch.no_grad()
def validation_accuracies(method: Method, val, chips: Sequence[int], times: Sequence[float],
                          device: str = "cpu", batch_size: int = 1024) -> np.ndarray:
    """Accuracy of the fitted ``method`` on ``val`` for each validation chip (rows) and time (columns).

    Refuses chip numbers outside :func:`~rramlib.core.seeding.validation_chips`' range, so a score can never be
    computed on a training or an evaluation chip.
    """
    for chip in chips:
        if not VALIDATION_CHIP_BASE <= chip < VALIDATION_CHIP_BASE + EVAL_CHIP_BASE:
            raise RramlibError(f"chip {chip} is not a validation chip (rramlib.core.seeding.validation_chips)")
    return np.array([[accuracy(method.at(chip, t), val, device=device, batch_size=batch_size) for t in times]
                     for chip in chips])


@dataclass
class TuningResult:
    """The outcome of :func:`tune`: the candidates, their validation scores, their costs and the chosen one."""

    method: str
    base: dict
    candidates: list[dict]
    #: validation accuracy per candidate, validation chip and time: shape (candidates, chips, times)
    accuracies: np.ndarray
    chips: list[int]
    times: list[float]
    chosen_index: int
    #: seconds each candidate's fit took (when it was computed, also if read from the cache since)
    fit_times: list[float]
    #: seconds each candidate's validation scoring took (idem)
    eval_times: list[float]
    #: the candidate equal to ``base`` itself, if one is (the search's reference), else None
    base_index: int | None = None

    @property
    def scores(self) -> np.ndarray:
        """The criterion per candidate (:data:`CRITERION`)."""
        return self.accuracies.mean(axis=(1, 2))

    @property
    def chosen(self) -> dict:
        """The chosen candidate's values (only those the search varied)."""
        return dict(self.candidates[self.chosen_index])

    @property
    def params(self) -> dict:
        """The chosen method's hyper-parameters: base values with the chosen candidate applied."""
        return {**self.base, **self.chosen}

    @property
    def margin(self) -> float:
        """Score of the chosen candidate minus the base candidate's (0 when the base was kept; NaN without one)."""
        if self.base_index is None:
            return float("nan")
        return float(self.scores[self.chosen_index] - self.scores[self.base_index])

    @property
    def cost_s(self) -> float:
        """Seconds the search of this method cost: every fit plus every validation scoring."""
        return float(sum(self.fit_times) + sum(self.eval_times))

    def table(self) -> pd.DataFrame:
        """One row per candidate: its values (as text and one column each), the score, the mean per time, its
        costs, whether it is the base and whether it was chosen."""
        rows = []
        for i, cand in enumerate(self.candidates):
            per_time = self.accuracies[i].mean(axis=0)
            rows.append({"method": self.method, "candidate": i, "values": describe(cand), **cand,
                         "val_accuracy": float(self.scores[i]),
                         **{f"val @ {format_time(t)}": float(a) for t, a in zip(self.times, per_time)},
                         "fit_s": self.fit_times[i], "eval_s": self.eval_times[i],
                         "base": i == self.base_index, "chosen": i == self.chosen_index})
        return pd.DataFrame(rows)

    def to_dict(self) -> dict:
        """Plain values (lists, numbers, text) for the cache; :meth:`from_dict` restores the result."""
        return {**dataclasses.asdict(self), "accuracies": self.accuracies.tolist()}

    @classmethod
    def from_dict(cls, values: Mapping) -> TuningResult:
        return cls(**{**values, "accuracies": np.array(values["accuracies"], dtype=float)})


def tune(
    name: str, candidates: Sequence[Mapping], ctx: FitContext, *, times: Sequence, n_chips: int = 2,
    base: Mapping | None = None, val_images: int | None = None, fit_key: dict | None = None,
    cache: Cache | None = None, batch_size: int = 1024,
) -> TuningResult:
    """Fit every candidate of method ``name`` on ``ctx`` and choose the best on validation data.

    ``times``: the time grid of the score (labels such as ``"1d"`` or seconds); ``n_chips``: validation
    chips :func:`~rramlib.core.seeding.validation_chips` ``(n_chips)``; ``base``: values every candidate starts
    from; ``val_images``: score on this many validation images (:func:`validation_subset`; ``None``: all);
    ``batch_size``: images per forward pass. With a ``cache`` (and the ``fit_key`` that describes ``ctx``, as
    :func:`rramlib.study.experiments.prepare` builds it), fits and scores are cached, so a candidate equal to a
    sweep's configuration reuses that sweep's fit. Everything is checked before the first fit.
    """
    candidates = check_candidates(name, candidates, base)
    base = dict(base or {})
    chips = list(validation_chips(n_chips))
    seconds = [parse_time(t) for t in times]
    if not seconds:
        raise RramlibError("tuning needs at least one time")
    check_int("batch_size", batch_size, 1)
    cache = cache or Cache(None)
    if cache.root is not None and fit_key is None:
        raise RramlibError("give the fit_key that describes ctx (rramlib.study.experiments.prepare) to cache tuning fits")
    val = tuple(t.to(ctx.device) for t in validation_subset(ctx.splits.val, val_images))
    base_params = make_method(name, **base).params
    scores, fit_times, eval_times, base_index = [], [], [], None
    for i, cand in enumerate(candidates):
        method = make_method(name, **{**base, **cand})
        if base_index is None and method.params == base_params:
            base_index = i
        fit_times.append(fit_method(method, ctx, fit_key or {}, cache)["fit_time_s"])
        key = {**(fit_key or {}), **method.config(), "times": seconds, "validation_chips": chips,
               "val_images": len(val[1])}

        def score(m=method):
            start = time.perf_counter()
            acc = validation_accuracies(m, val, chips, seconds, ctx.device, batch_size)
            return {"accuracy": acc.tolist(), "eval_time_s": time.perf_counter() - start}

        entry = cache.get_or_compute("tuning", key, score)
        scores.append(entry["accuracy"])
        eval_times.append(entry["eval_time_s"])
    accuracies = np.array(scores, dtype=float)
    chosen = int(np.argmax(accuracies.mean(axis=(1, 2))))  # first maximum: ties go to the earlier candidate
    return TuningResult(name, base, candidates, accuracies, chips, seconds, chosen, fit_times, eval_times, base_index)


def tune_methods(
    searches: Mapping[str, Sequence[Mapping]], ctx: FitContext, *, bases: Mapping[str, Mapping] | None = None,
    **kwargs,
) -> dict[str, TuningResult]:
    """:func:`tune` for several methods with the same budget: every method must have as many candidates.

    ``searches``: method name -> candidates; ``bases``: method name -> base values; ``kwargs`` go to
    :func:`tune`. All methods' candidates are checked (:func:`check_searches`) before the first fit.
    """
    bases = dict(bases or {})
    checked = check_searches(searches, bases)
    return {name: tune(name, cands, ctx, base=bases.get(name), **kwargs) for name, cands in checked.items()}


def trained_methods() -> list[str]:
    """The methods that learn (fact ``trained`` of the method class: every method the book's search tunes,
    :data:`SEARCH_MOVES`), in registry order."""
    return [name for name, cls in METHODS.items() if cls.trained]


# ------------------------------------------------------------------------------------- the book's search
@dataclass(frozen=True)
class Move:
    """One candidate of a one-axis search: the base values with hyper-parameter ``name`` multiplied by ``factor``
    (an integer rounded half up, at least 1; a float rounded to three significant digits, as shown) or, with
    ``value``, set to that value."""

    name: str
    factor: float | None = None
    value: float | int | None = None

    def __post_init__(self):
        check_type("Move.name", self.name, str)
        if (self.factor is None) == (self.value is None):
            raise RramlibError(f"a move of {self.name!r} needs exactly one of factor and value")
        if self.factor is not None:
            check_positive(f"factor of the move of {self.name!r}", self.factor)

    def apply(self, base: Mapping) -> dict:
        """``{name: new value}`` for the method's ``base`` values."""
        if self.name not in base:
            raise RramlibError(f"no hyper-parameter {self.name!r} to move; known: {sorted(base)}")
        if self.value is not None:
            return {self.name: self.value}
        old = base[self.name]
        if isinstance(old, bool) or not isinstance(old, (int, float)):
            raise RramlibError(f"{self.name!r} = {old!r} is not a number to multiply by {self.factor}")
        new = old * self.factor
        return {self.name: max(1, math.floor(new + 0.5)) if isinstance(old, int) else float(f"{new:.3g}")}

    def __str__(self) -> str:
        return f"{self.name} = {self.value:g}" if self.value is not None else f"{self.name} x {self.factor:.3g}"


#: One-axis changes of each trained method's base values, the book's search space (our choice). The axes are those
#: the study's baselines are most often tuned on: VeRA+'s rank, distillation weight, learning rate and steps; LoRA's
#: rank and learning rate; the images BN recalibration re-estimates its statistics on (``batches`` x
#: ``batch_size``); the full-rank correction's learning rate and steps; DoRA's parameter budget and steps; noise-aware
#: training's epochs and learning rate. Each method gets :data:`N_MOVES` moves (VeRA+ one per axis, the others two
#: per axis: a step down and up), so every method has the same number of candidates, the base values included.
SEARCH_MOVES: dict[str, tuple[Move, ...]] = {
    "vera_plus": (Move("rank", 1 / 4), Move("kd_weight", value=1.0), Move("lr", 1 / 3), Move("steps", 2)),
    "lora": (Move("rank", 1 / 2), Move("rank", 2), Move("lr", 1 / 3), Move("lr", 3)),
    "bn": (Move("batches", 1 / 4), Move("batches", 1 / 2), Move("batches", 2), Move("batches", 4)),
    "offline_correction": (Move("lr", 1 / 3), Move("lr", 3), Move("steps", 1 / 2), Move("steps", 2)),
    "dora": (Move("budget", 1 / 2), Move("budget", 2), Move("steps", 1 / 2), Move("steps", 2)),
    "noise_aware": (Move("epochs", 1 / 2), Move("epochs", 2), Move("lr", 1 / 3), Move("lr", 3)),
}

#: Moves per method in :data:`SEARCH_MOVES`: every method gets ``1 + N_MOVES`` candidates.
N_MOVES = 4


def search_space(config: SweepConfig, methods: Sequence[str] | None = None,
                 moves: Mapping[str, Sequence[Move]] | None = None) -> dict[str, list[dict]]:
    """The candidates of each of ``methods`` (default: every method of ``moves``, default :data:`SEARCH_MOVES`)
    for sweep configuration ``config``: candidate 0 holds the method's values in ``config``
    (:meth:`~rramlib.study.experiments.SweepConfig.method`: the profile's, then the sweep's), each next one
    applies one move to them. Every candidate lists all the hyper-parameters the method's moves change.

    Checked before anything else (:func:`check_searches`): a method without moves, a move of an unknown
    hyper-parameter, a bad or repeated value, or unequal candidate counts raise RramlibError.
    """
    moves = SEARCH_MOVES if moves is None else moves
    methods = list(moves) if methods is None else list(methods)
    if not methods:
        raise RramlibError("give at least one method to tune")
    if missing := [m for m in methods if m not in moves]:
        raise RramlibError(f"no search moves for {missing}; moves are given for {sorted(moves)}")
    searches = {}
    for name in methods:
        base = config.method(name).params
        axes = list(dict.fromkeys(move.name for move in moves[name]))
        start = {axis: base[axis] for axis in axes if axis in base}
        searches[name] = [start] + [{**start, **move.apply(base)} for move in moves[name]]
    return check_searches(searches, {name: config.method(name).params for name in methods})


def tuning_config(config: SweepConfig, methods: Sequence[str], readout: str = "raw") -> SweepConfig:
    """``config`` as the search runs it: on the profile's first base seed, read through ``readout``, fitting
    ``methods``; the times and evaluation chips of ``config`` play no part (the search has its own)."""
    first = config.resolved_profile().base_seeds[0]
    return config.replace(methods=tuple(methods), base_seed=first, readout=readout, times=None, chips=None)


@dataclass
class Search:
    """The outcome of :func:`run_search`: one :class:`TuningResult` per method, and where it was scored."""

    results: dict[str, TuningResult]
    #: the base model's seed the search ran on (the profile's first)
    base_seed: int
    readout: str
    #: validation images each candidate was scored on
    val_images: int

    def method_params(self) -> dict[str, dict]:
        """``{method: chosen hyper-parameters}``: what a sweep's ``method_params`` applies
        (:class:`~rramlib.study.experiments.SweepConfig`)."""
        return {name: r.params for name, r in self.results.items()}

    @property
    def n_candidates(self) -> int:
        """Candidates per method (the same for all)."""
        return len(next(iter(self.results.values())).candidates)

    @property
    def n_fits(self) -> int:
        """Fits the search made: methods x candidates."""
        return sum(len(r.candidates) for r in self.results.values())

    @property
    def wall_time_s(self) -> float:
        """Seconds the whole search cost: the sum of its fit times and validation scoring times."""
        return sum(r.cost_s for r in self.results.values())

    def scores(self) -> pd.DataFrame:
        """Every method's :meth:`TuningResult.table`, one after the other."""
        return pd.concat([r.table() for r in self.results.values()], ignore_index=True)

    def budget(self) -> pd.DataFrame:
        """One row per method: its candidates, fit and scoring seconds, the base and the chosen values and
        scores, the margin of the choice over the base, and whether the base was kept."""
        rows = []
        for name, r in self.results.items():
            rows.append({"method": name, "candidates": len(r.candidates), "fit_s": sum(r.fit_times),
                         "eval_s": sum(r.eval_times), "base values": describe(r.candidates[r.base_index]),
                         "chosen values": describe(r.chosen), "val accuracy (base)": float(r.scores[r.base_index]),
                         "val accuracy (chosen)": float(r.scores[r.chosen_index]), "margin": r.margin,
                         "kept": r.chosen_index == r.base_index})
        return pd.DataFrame(rows)


def run_search(
    config: SweepConfig, *, methods: Sequence[str] | None = None, moves: Mapping[str, Sequence[Move]] | None = None,
    val_images: int | None = VAL_IMAGES, val_chips: int = VAL_CHIPS, times: Sequence | None = None,
    readout: str = "raw", data_root: str | None = None, cache: Cache | None = None,
) -> Search:
    """The book's search (module docstring) for sweep configuration ``config``, or its cached result.

    ``methods`` (default: every method of ``moves``, default :data:`SEARCH_MOVES`) are tuned with
    :func:`search_space`'s candidates on :func:`tuning_config` ``(config)``: the profile's first base seed and
    ``readout``, whatever base seed or readout ``config`` has. Scores: ``val_images`` validation images
    (``None``: all) read through ``val_chips`` validation chips at ``times`` (default: the profile's grid).
    Everything is checked before the base model is loaded. The whole search is one cache entry (kind
    ``"tuning"``), keyed by the fit key, the candidates and the scoring settings; each fit and score is cached
    on its own as well.
    """
    tuned = list(SEARCH_MOVES if moves is None else moves) if methods is None else list(methods)
    tconfig = tuning_config(config, tuned, readout)
    searches = search_space(tconfig, tuned, moves)
    bases = {name: tconfig.method(name).params for name in searches}
    chips = list(validation_chips(val_chips))
    profile = tconfig.resolved_profile()
    seconds = [parse_time(t) for t in (profile.times if times is None else times)]
    if not seconds:
        raise RramlibError("tuning needs at least one time")
    if val_images is not None:
        check_int("val_images", val_images, 1)
    cache = cache or Cache(None)
    exp = prepare(tconfig, data_root=data_root, cache=cache)
    n_val = len(validation_subset(exp.base.splits.val, val_images)[1])
    key = {**exp.fit_key, "search": {name: {"base": make_method(name, **bases[name]).config(), "candidates": cands}
                                     for name, cands in searches.items()},
           "times": seconds, "validation_chips": chips, "val_images": n_val}

    def compute() -> dict:
        results = tune_methods(searches, exp.ctx, bases=bases, times=seconds, n_chips=val_chips, val_images=n_val,
                               fit_key=exp.fit_key, cache=cache, batch_size=profile.eval_batch_size)
        return {name: r.to_dict() for name, r in results.items()}

    entry = cache.get_or_compute("tuning", key, compute)
    return Search({name: TuningResult.from_dict(entry[name]) for name in searches}, base_seed=tconfig.base_seed,
                  readout=readout, val_images=n_val)


def tuned_method_params(config: SweepConfig, **kwargs) -> dict[str, dict]:
    """``{method: chosen hyper-parameters}`` of :func:`run_search` ``(config, **kwargs)`` (cached): pass it as a
    sweep's ``method_params`` to apply the choices, e.g. ``config.replace(method_params=tuned_method_params(config,
    cache=cache))``. Chosen on the profile's first base seed, applied as they are to every base seed."""
    return run_search(config, **kwargs).method_params()


# ------------------------------------------------------------------------------------- drift levels
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
