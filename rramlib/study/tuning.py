"""Fair hyper-parameter search: every trained method picks its values on held-out data, with the same budget.

The protocol (our choice; the study's texts do not describe how its baselines were tuned):

1. **Candidates.** A method gets a list of candidate hyper-parameter dicts (:func:`grid` expands a grid),
   each applied over the method's base values (e.g. the profile's). Every method compared gets the same
   number of candidates (:func:`tune_methods` refuses otherwise), and every candidate is validated by
   :func:`~rramlib.methods.compensation.make_method` before anything is fitted.
2. **Fit.** Each candidate is fitted offline exactly as in a sweep (:func:`rramlib.study.experiments.fit_method`):
   on training chips (:func:`~rramlib.core.seeding.train_chips`), drift-injected from the context's schedule.
3. **Score.** The mean accuracy on the validation split (``splits.val``) read through validation chips
   (:func:`~rramlib.core.seeding.validation_chips`, disjoint from the training and the evaluation chips) over
   a time grid: every (chip, time) pair weighs the same. The test split and the evaluation chips are never
   read, so the choice cannot leak into the reported numbers.
4. **Choice.** The highest score; a tie goes to the earlier candidate (so the result is deterministic and
   a default listed first wins ties).

The drift levels themselves are chosen the same way: :func:`greedy_schedule` grows VeRA+'s windows on the
validation split read through validation chips.
"""
from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from rramlib.core.cache import Cache
from rramlib.methods.compensation import METHODS, FitContext, Method, TrainingConfig, make_method
from rramlib.nn.data import as_tensors
from rramlib.core.errors import RramlibError, check_type
from rramlib.nn.evaluate import accuracy
from rramlib.core.seeding import EVAL_CHIP_BASE, VALIDATION_CHIP_BASE, validation_chips
from rramlib.core.times import TIME_GRID, format_time, parse_time
from rramlib.methods.schedule import Schedule, greedy_windows
from rramlib.study.experiments import SweepConfig, fit_method, prepare

__all__ = ["CRITERION", "TuningResult", "grid", "check_candidates", "validation_accuracies", "tune",
           "tune_methods", "trained_methods", "describe", "default_candidates", "LR_FACTORS", "greedy_schedule"]

#: What :func:`tune` maximises (shown in the book next to the chosen values).
CRITERION = "mean validation accuracy over validation chips x times"

#: The book's default search: each trained method's learning rate times these factors: the base value (first,
#: so that it wins ties), a third of it and three times it. Three candidates per method: the same budget for all.
LR_FACTORS = (1.0, 1 / 3, 3.0)


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


def describe(candidate: Mapping) -> str:
    """A candidate as text: ``{"lr": 0.01, "steps": 40}`` -> ``"lr=0.01, steps=40"``."""
    return ", ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in candidate.items())


@torch.no_grad()
def validation_accuracies(method: Method, val, chips: Sequence[int], times: Sequence[float],
                          device: str = "cpu") -> np.ndarray:
    """Accuracy of the fitted ``method`` on ``val`` for each validation chip (rows) and time (columns).

    Refuses chip numbers outside :func:`~rramlib.core.seeding.validation_chips`' range, so a score can never be
    computed on a training or an evaluation chip.
    """
    for chip in chips:
        if not VALIDATION_CHIP_BASE <= chip < VALIDATION_CHIP_BASE + EVAL_CHIP_BASE:
            raise RramlibError(f"chip {chip} is not a validation chip (rramlib.core.seeding.validation_chips)")
    return np.array([[accuracy(method.at(chip, t), val, device=device) for t in times] for chip in chips])


@dataclass
class TuningResult:
    """The outcome of :func:`tune`: the candidates, their validation scores and the chosen one."""

    method: str
    base: dict
    candidates: list[dict]
    #: validation accuracy per candidate, validation chip and time: shape (candidates, chips, times)
    accuracies: np.ndarray
    chips: list[int]
    times: list[float]
    chosen_index: int

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

    def table(self) -> pd.DataFrame:
        """One row per candidate: its values (as text and one column each), the score, the mean per time and
        whether it was chosen."""
        rows = []
        for i, cand in enumerate(self.candidates):
            per_time = self.accuracies[i].mean(axis=0)
            rows.append({"method": self.method, "candidate": i, "values": describe(cand), **cand,
                         "val_accuracy": float(self.scores[i]),
                         **{f"val @ {format_time(t)}": float(a) for t, a in zip(self.times, per_time)},
                         "chosen": i == self.chosen_index})
        return pd.DataFrame(rows)


def tune(
    name: str, candidates: Sequence[Mapping], ctx: FitContext, *, times: Sequence, n_chips: int = 2,
    base: Mapping | None = None, fit_key: dict | None = None, cache: Cache | None = None,
) -> TuningResult:
    """Fit every candidate of method ``name`` on ``ctx`` and choose the best on validation data.

    ``times``: the time grid of the score (labels such as ``"1d"`` or seconds); ``n_chips``: validation
    chips :func:`~rramlib.core.seeding.validation_chips` ``(n_chips)``; ``base``: values every candidate starts
    from. With a ``cache`` (and the ``fit_key`` that describes ``ctx``, as
    :func:`rramlib.study.experiments.prepare` builds it), fits and scores are cached, so a candidate equal to a
    sweep's configuration reuses that sweep's fit. Everything is checked before the first fit.
    """
    candidates = check_candidates(name, candidates, base)
    base = dict(base or {})
    chips = list(validation_chips(n_chips))
    seconds = [parse_time(t) for t in times]
    if not seconds:
        raise RramlibError("tuning needs at least one time")
    cache = cache or Cache(None)
    if cache.root is not None and fit_key is None:
        raise RramlibError("give the fit_key that describes ctx (rramlib.study.experiments.prepare) to cache tuning fits")
    val = tuple(t.to(ctx.device) for t in as_tensors(ctx.splits.val))
    scores = []
    for cand in candidates:
        method = make_method(name, **{**base, **cand})
        fit_method(method, ctx, fit_key or {}, cache)
        key = {**(fit_key or {}), **method.config(), "times": seconds, "validation_chips": chips}
        scores.append(cache.get_or_compute("tuning", key, lambda m=method: {
            "accuracy": validation_accuracies(m, val, chips, seconds, ctx.device).tolist()})["accuracy"])
    accuracies = np.array(scores, dtype=float)
    chosen = int(np.argmax(accuracies.mean(axis=(1, 2))))  # first maximum: ties go to the earlier candidate
    return TuningResult(name, base, candidates, accuracies, chips, seconds, chosen)


def tune_methods(
    searches: Mapping[str, Sequence[Mapping]], ctx: FitContext, *, bases: Mapping[str, Mapping] | None = None,
    **kwargs,
) -> dict[str, TuningResult]:
    """:func:`tune` for several methods with the same budget: every method must have as many candidates.

    ``searches``: method name -> candidates; ``bases``: method name -> base values; ``kwargs`` go to
    :func:`tune`. All methods' candidates are checked before the first fit.
    """
    if not searches:
        raise RramlibError("give at least one method to tune")
    bases = dict(bases or {})
    checked = {name: check_candidates(name, cands, bases.get(name)) for name, cands in searches.items()}
    budgets = {name: len(c) for name, c in checked.items()}
    if len(set(budgets.values())) > 1:
        raise RramlibError(f"every method needs the same number of candidates (the same search budget), got {budgets}")
    return {name: tune(name, cands, ctx, base=bases.get(name), **kwargs) for name, cands in checked.items()}


def trained_methods() -> list[str]:
    """The methods that learn with a learning rate (fact ``trained`` of the method class: every method
    :func:`default_candidates` can tune), in registry order."""
    return [name for name, cls in METHODS.items() if cls.trained]


def default_candidates(name: str, base: Mapping | None = None, factors: Sequence[float] = LR_FACTORS,
                       finetune_steps: int = TrainingConfig.steps) -> list[dict]:
    """The book's search for method ``name``: its learning rate (``base``'s, else the default) times ``factors``
    (rounded to three significant digits).

    BN recalibration learns only when it fine-tunes γ/β; with ``finetune_steps = 0`` in ``base`` its
    learning rate would change nothing, so its first candidate is the base (statistics only) and the others
    fine-tune γ/β for ``finetune_steps`` steps at the scaled rates (as many candidates as ``factors``).
    With the default ``factors`` the first candidate is always ``base``'s own setting. A method without a
    learning rate cannot be tuned this way.
    """
    params = make_method(name, **dict(base or {})).params
    if "lr" not in params:
        raise RramlibError(f"method {name!r} has no learning rate to tune; give its candidates explicitly")
    lrs = [float(f"{params['lr'] * f:.3g}") for f in factors]  # three significant digits, as shown
    if name == "bn" and params.get("finetune_steps", 0) == 0:
        return [{"finetune_steps": 0}] + [{"finetune_steps": finetune_steps, "lr": lr} for lr in lrs[1:]]
    return [{"lr": lr} for lr in lrs]


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
