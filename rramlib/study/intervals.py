"""Error bars that can rank methods: bootstrap intervals for a method's accuracy and for the paired difference of
two methods, and the sentences and rankings computed from them.

**Data.** At one time after programming, a method's results are a bool array ``correct`` shaped
``(seeds, chips, images)``: base-model seed × evaluation chip × test image, True where that chip (programmed with
that base model) classified that image correctly. Chips are *nested* in base seeds (a chip programmed with another
base model is another draw); images are *crossed* (every seed and chip sees the same test images). Two methods
compared are *paired*: same base models, same chip seeds, same images. Where only accuracies per chip were
recorded, ``(seeds, chips)`` arrays of accuracies take the ``chip_`` entries (:func:`chip_accuracy_interval`,
:func:`paired_chip_difference`); those hold the test images fixed.

**Estimator.** The statistic is the plain mean over every (seed, chip, image) cell: accuracy, or the mean of
``a - b`` for a paired difference. One bootstrap replicate draws, with replacement,

* ``seeds`` base seeds out of the seeds;
* for each drawn seed, ``chips`` of *its* chips (two-stage resampling of nested data, Davison & Hinkley 1997,
  *Bootstrap Methods and their Application*, §3.8; a seed drawn twice gets two independent chip draws);
* ``images`` test images, **one draw per replicate shared by every seed and chip**, since images are crossed with
  them (the reweighting bootstrap of crossed arrays: McCullagh 2000, *Bernoulli* 6:285; Owen 2007, *Ann. Appl.
  Stat.* 1:386; Owen & Eckles 2012, *Ann. Appl. Stat.* 6:895).

A replicate is a weighted mean: with ``w[s, c]`` the number of times chip ``c`` of seed ``s`` is drawn and ``v[i]``
the number of times image ``i`` is drawn, ``θ* = Σ w[s,c] v[i] x[s,c,i] / (seeds·chips·images)``, computed for a
block of replicates as one matrix product of the image counts with the per-(seed, chip) rows. The interval is the
percentile interval: the ``(1 - confidence)/2`` and ``(1 + confidence)/2`` quantiles of the replicates (Efron &
Tibshirani 1993, *An Introduction to the Bootstrap*, ch. 13; linear interpolation between order statistics).

**What it covers, and what not.** The interval is about the population the data sample: base models trained by
the same recipe with other seeds, other chips of the same drift model, other test images from the same
distribution. It says nothing about other datasets, architectures, drift models or hyper-parameters. Two known
biases pull in opposite directions:

* resampling a level of ``n`` units shrinks that level's variance by ``(n - 1)/n`` (Davison & Hinkley §3.8): with
  three base seeds the seed level keeps two thirds of its variance, and three values cannot tell how much the
  difference truly varies between base models. Where the difference changes much from one base model to another
  the interval is too narrow; read :attr:`Interval.per_seed` (the statistic per base seed) before trusting it.
* resampling at every level counts the lower levels' variance again at each level above (Davison & Hinkley
  §3.8 for nested levels, McCullagh 2000 for crossed ones), which widens the interval where chips and images
  dominate.

``tests/test_intervals.py`` measures the coverage on simulated data of known difference in both regimes.

**Counts.** Every base seed needs at least :data:`MIN_CHIPS` chips and the test set at least :data:`MIN_IMAGES`
images; fewer is refused. One base seed is allowed: the interval is then about that base model only, and
:attr:`Interval.caveat` (quoted by :func:`standing`) says so.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from numbers import Real

import numpy as np
import torch

from rramlib.core.errors import RramlibError, check_int, check_seed

__all__ = ["N_BOOT", "MIN_CHIPS", "MIN_IMAGES", "MISSING", "Interval", "accuracy_interval", "paired_difference",
           "chip_accuracy_interval", "paired_chip_difference", "standing", "Ranking", "ranking"]

#: Bootstrap replicates by default: for percentile intervals Efron & Tibshirani (1993) advise on the order of 1000 or
#: more, far above the few hundred a standard error needs (our choice within that advice).
N_BOOT = 2000
#: The fewest evaluation chips per base seed: one chip per seed would leave no chip-to-chip spread to resample.
MIN_CHIPS = 2
#: The fewest test images: one image would leave no image-to-image spread to resample.
MIN_IMAGES = 2
#: What :func:`standing` and :meth:`Ranking.text` say for a comparison without data.
MISSING = "not recorded"
#: Image counts held in memory at once (replicates × images); bounds the memory, not the result.
_BLOCK = 2**20


@dataclass(frozen=True)
class Interval:
    """A mean (accuracy, or accuracy difference ``a - b``, as a fraction) with its bootstrap interval
    ``[low, high]`` at ``confidence``, the counts it was computed from and the mean per base seed.

    ``images`` is None where the test images were not resampled (per-chip accuracies).
    """

    mean: float
    low: float
    high: float
    confidence: float
    seeds: int
    chips: int
    images: int | None
    per_seed: tuple[float, ...]
    n_boot: int

    @property
    def holds_zero(self) -> bool:
        """Whether the interval contains 0 (a difference that the data cannot tell from none)."""
        return self.low <= 0.0 <= self.high

    @property
    def caveat(self) -> str:
        """What the interval leaves out of the population it speaks for: "one base model" with a single seed,
        "test images held fixed" for per-chip accuracies, both joined by ", "; "" for neither."""
        parts = (["one base model"] if self.seeds == 1 else []) + (["test images held fixed"]
                                                                    if self.images is None else [])
        return ", ".join(parts)

    def format_pp(self, digits: int = 2) -> str:
        """``"+1.23 pp [0.41, 2.05]"``: mean and interval in percentage points (100 × fraction), signed mean."""
        return f"{_num(self.mean, digits, sign=True)} pp [{_num(self.low, digits)}, {_num(self.high, digits)}]"

    def format_accuracy(self, digits: int = 3) -> str:
        """``"0.912 [0.905, 0.918]"``: mean and interval as fractions."""
        f = lambda v: f"{round(v, digits) + 0.0:.{digits}f}"  # noqa: E731  (+ 0.0: no "-0.000")
        return f"{f(self.mean)} [{f(self.low)}, {f(self.high)}]"


def accuracy_interval(correct, *, confidence: float = 0.95, n_boot: int = N_BOOT, seed: int = 0) -> Interval:
    """Mean accuracy of ``correct`` (bool, ``(seeds, chips, images)``) with its hierarchical bootstrap interval
    (module docstring: seeds, chips within seeds, one shared image draw per replicate; percentile interval)."""
    x = _correct("correct", correct)
    return _bootstrap(x.astype(np.float64), True, *_settings(confidence, n_boot, seed))


def paired_difference(a, b, *, confidence: float = 0.95, n_boot: int = N_BOOT, seed: int = 0) -> Interval:
    """Mean of ``a - b`` (accuracy of method a minus that of method b) over paired results ``a``, ``b`` (bool,
    same ``(seeds, chips, images)`` shape), with its hierarchical bootstrap interval: one replicate draws the
    same seeds, chips and images for both methods (module docstring). Identical inputs give exactly ``[0, 0]``."""
    x, y = _correct("a", a), _correct("b", b)
    _same_shape(x, y)
    return _bootstrap(x.astype(np.float64) - y.astype(np.float64), True, *_settings(confidence, n_boot, seed))


def chip_accuracy_interval(accuracy, *, confidence: float = 0.95, n_boot: int = N_BOOT, seed: int = 0) -> Interval:
    """:func:`accuracy_interval` from accuracies per chip (floats in [0, 1], ``(seeds, chips)``): seeds and chips
    within seeds are resampled, the test images are held fixed (``images`` None, :attr:`Interval.caveat`)."""
    x = _accuracies("accuracy", accuracy)
    return _bootstrap(x[:, :, None], False, *_settings(confidence, n_boot, seed))


def paired_chip_difference(a, b, *, confidence: float = 0.95, n_boot: int = N_BOOT, seed: int = 0) -> Interval:
    """:func:`paired_difference` from accuracies per chip (floats in [0, 1], same ``(seeds, chips)`` shape),
    the test images held fixed."""
    x, y = _accuracies("a", a), _accuracies("b", b)
    _same_shape(x, y)
    return _bootstrap((x - y)[:, :, None], False, *_settings(confidence, n_boot, seed))


def standing(subject: str, other: str, interval: Interval | None, *, digits: int = 1,
             missing: str = MISSING) -> str:
    """How ``subject`` stands against ``other``, from ``interval`` = the paired difference ``subject - other``
    (:func:`paired_difference`), in percentage points with ``digits`` decimals:

    * interval above 0: "<subject> is ahead of <other> by 1.2 pp (95 % CI 0.4 to 2.0 pp)";
    * interval below 0: "<subject> is behind <other> by 1.2 pp (95 % CI 0.4 to 2.0 pp)" (the gap and its interval
      counted as ``other - subject``);
    * interval holding 0: "<subject> and <other> are indistinguishable at this resolution (difference +0.3 pp,
      95 % CI -0.5 to 1.1 pp)".

    The interval's :attr:`~Interval.caveat`, if any, ends the parenthesis after "; ". ``missing`` without an
    interval (None).
    """
    if interval is None:
        return missing
    if not isinstance(interval, Interval):
        raise RramlibError(f"standing: interval must be an Interval or None, got {type(interval).__name__}")
    ci = f"{_level(interval.confidence)} % CI"
    note = f"; {interval.caveat}" if interval.caveat else ""
    mean, low, high = interval.mean, interval.low, interval.high
    if low > 0:
        return (f"{subject} is ahead of {other} by {_num(mean, digits)} pp "
                f"({ci} {_num(low, digits)} to {_num(high, digits)} pp{note})")
    if high < 0:
        return (f"{subject} is behind {other} by {_num(-mean, digits)} pp "
                f"({ci} {_num(-high, digits)} to {_num(-low, digits)} pp{note})")
    return (f"{subject} and {other} are indistinguishable at this resolution (difference "
            f"{_num(mean, digits, sign=True)} pp, {ci} {_num(low, digits)} to {_num(high, digits)} pp{note})")


@dataclass(frozen=True)
class Ranking:
    """Methods ordered by mean accuracy, best first, in tiers.

    ``order``: the recorded methods; ``accuracy``: their accuracy intervals (same order); ``steps[k]``: the paired
    difference between the best method of the tier that ``order[k + 1]`` was compared with and ``order[k + 1]``;
    ``missing``: the methods given without results.

    **Tier rule.** The best method leads the first tier. Each next method, in order of mean accuracy, is compared
    with the current tier's leader: it joins the tier ("≈") when the paired interval of the difference holds 0,
    else it leads a new tier (">"). So every method of a tier is indistinguishable from its leader at this
    resolution, and every tier's leader is below the previous tier's leader. Comparing with the leader and not
    with the neighbour keeps a chain of small steps from joining two methods that differ (A ≈ B and B ≈ C while
    A > C).
    """

    order: tuple[str, ...]
    accuracy: tuple[Interval, ...]
    steps: tuple[Interval, ...]
    missing: tuple[str, ...]

    @property
    def relations(self) -> tuple[str, ...]:
        """">" (leads a new tier) or "≈" (joins the tier) for each method after the first (the tier rule)."""
        return tuple(">" if step.low > 0 else "≈" for step in self.steps)

    @property
    def groups(self) -> tuple[tuple[str, ...], ...]:
        """The tiers, best first, each led by its best method."""
        groups = [[m] for m in self.order[:1]]
        for relation, m in zip(self.relations, self.order[1:]):
            if relation == "≈":
                groups[-1].append(m)
            else:
                groups.append([m])
        return tuple(tuple(g) for g in groups)

    def text(self, label: Callable[[str], str] = str, missing: str = MISSING) -> str:
        """``"[A ≈ B] > C; not recorded: D"``: the tiers, a tier of several in square brackets (method labels have
        parentheses of their own; ``label`` names the methods); ``missing`` alone where no method was recorded."""
        if not self.order:
            return missing
        tiers = [" ≈ ".join(label(m) for m in g) for g in self.groups]
        line = " > ".join(f"[{t}]" if len(g) > 1 else t for t, g in zip(tiers, self.groups))
        return line + (f"; {missing}: {', '.join(label(m) for m in self.missing)}" if self.missing else "")

    def __str__(self) -> str:
        return self.text()


def ranking(results: Mapping[str, object], *, per_chip: bool = False, confidence: float = 0.95,
            n_boot: int = N_BOOT, seed: int = 0) -> Ranking:
    """Rank the methods of ``results`` (name -> paired results, or None where not recorded) by mean accuracy,
    best first (equal means keep the order given), in tiers: each method is compared with its tier's leader by
    :func:`paired_difference` (the tier rule of :class:`Ranking`).

    Results are bool ``(seeds, chips, images)`` arrays, or with ``per_chip`` accuracies ``(seeds, chips)``
    (:func:`chip_accuracy_interval`, :func:`paired_chip_difference`); all must have one shape. Every interval uses
    the same ``seed`` (common random numbers across comparisons). Cost: one bootstrap per method and one per
    method after the first.
    """
    if not isinstance(results, Mapping):
        raise RramlibError(f"ranking: results must map method names to results, got {type(results).__name__}")
    accuracy, difference = ((chip_accuracy_interval, paired_chip_difference) if per_chip
                            else (accuracy_interval, paired_difference))
    check = _accuracies if per_chip else _correct
    present = {m: check(f"results[{m!r}]", r) for m, r in results.items() if r is not None}
    shapes = {m: r.shape for m, r in present.items()}
    if len(set(shapes.values())) > 1:
        raise RramlibError(f"ranking: paired results must share one shape, got {shapes}")
    _settings(confidence, n_boot, seed)
    settings = dict(confidence=confidence, n_boot=n_boot, seed=seed)
    intervals = {m: accuracy(r, **settings) for m, r in present.items()}
    order = sorted(present, key=lambda m: -intervals[m].mean)
    steps, leader = [], order[0] if order else None
    for m in order[1:]:
        step = difference(present[leader], present[m], **settings)
        steps.append(step)
        if step.low > 0:  # below the leader: m leads the next tier
            leader = m
    return Ranking(order=tuple(order), accuracy=tuple(intervals[m] for m in order), steps=tuple(steps),
                   missing=tuple(m for m, r in results.items() if r is None))


# ---------------------------------------------------------------------------------------------------------------

def _bootstrap(x: np.ndarray, images: bool, confidence: float, n_boot: int, seed: int) -> Interval:
    """The estimator of the module docstring on values ``x`` shaped ``(seeds, chips, images)``; ``images``:
    whether the last axis is resampled."""
    s, c, n = x.shape
    gen = torch.Generator().manual_seed(seed)
    rows = torch.from_numpy(np.ascontiguousarray(x.reshape(s * c, n)))
    sums = rows.sum(1)
    replicates = torch.empty(n_boot, dtype=torch.float64)
    block = max(1, _BLOCK // n)
    for start in range(0, n_boot, block):
        r = min(block, n_boot - start)
        drawn_seeds = torch.randint(s, (r, s, 1), generator=gen)
        drawn_chips = torch.randint(c, (r, s, c), generator=gen)
        w = _counts((drawn_seeds * c + drawn_chips).reshape(r, s * c), s * c)
        if images:
            v = _counts(torch.randint(n, (r, n), generator=gen), n)
            per_unit = v @ rows.T
        else:
            per_unit = sums.expand(r, -1)
        replicates[start:start + r] = (w * per_unit).sum(1) / (s * c * n)
    low, high = np.quantile(replicates.numpy(), [(1 - confidence) / 2, (1 + confidence) / 2])
    return Interval(mean=float(x.mean()), low=float(low), high=float(high), confidence=confidence, seeds=s,
                    chips=c, images=n if images else None,
                    per_seed=tuple(float(m) for m in x.mean(axis=(1, 2))), n_boot=n_boot)


def _counts(drawn: torch.Tensor, k: int) -> torch.Tensor:
    """Per row of ``drawn`` (indices in ``[0, k)``), how often each index was drawn: float64 ``(rows, k)``."""
    r = drawn.shape[0]
    offset = torch.arange(r).unsqueeze(1) * k
    return torch.bincount((drawn + offset).reshape(-1), minlength=r * k).reshape(r, k).to(torch.float64)


def _settings(confidence, n_boot, seed) -> tuple[float, int, int]:
    """Checked ``(confidence, n_boot, seed)``: confidence in (0, 1); enough replicates to leave at least one
    beyond each end of the interval (``n_boot · (1 - confidence) / 2 >= 1``); a seed for ``manual_seed``."""
    if isinstance(confidence, bool) or not isinstance(confidence, Real) or not 0 < float(confidence) < 1:
        raise RramlibError(f"confidence must be a number in (0, 1), got {confidence!r}")
    confidence = float(confidence)
    check_int("n_boot", n_boot, 1)
    fewest = math.ceil(round(2 / (1 - confidence), 9))
    if n_boot < fewest:
        raise RramlibError(f"n_boot = {n_boot} leaves no replicate beyond the ends of a {_level(confidence)} % "
                           f"interval; use at least {fewest}")
    return confidence, n_boot, check_seed("seed", seed)


def _correct(name: str, array) -> np.ndarray:
    """``array`` as a bool ``(seeds, chips, images)`` array, else RramlibError naming what is wrong."""
    x = np.asarray(array)
    if x.dtype != np.bool_:
        raise RramlibError(f"{name} must be a bool array (True where a chip classified a test image correctly), "
                           f"got dtype {x.dtype}")
    if x.ndim != 3:
        raise RramlibError(f"{name} must be shaped (seeds, chips, images), got shape {x.shape}")
    _check_counts(name, x.shape)
    if x.shape[2] < MIN_IMAGES:
        raise RramlibError(f"{name} has {x.shape[2]} test image(s); at least {MIN_IMAGES} are needed to resample "
                           f"images")
    return x


def _accuracies(name: str, array) -> np.ndarray:
    """``array`` as a float64 ``(seeds, chips)`` array of accuracies in [0, 1], else RramlibError."""
    x = np.asarray(array)
    if not np.issubdtype(x.dtype, np.floating):
        raise RramlibError(f"{name} must be a float array of accuracies per chip, got dtype {x.dtype}")
    if x.ndim != 2:
        raise RramlibError(f"{name} must be shaped (seeds, chips), got shape {x.shape}")
    _check_counts(name, x.shape)
    outside = ~((x >= 0) & (x <= 1))
    if outside.any():
        raise RramlibError(f"{name} must hold accuracies in [0, 1], got {int(outside.sum())} value(s) outside "
                           f"(NaN included), e.g. {x[outside].flat[0]!r}")
    return x.astype(np.float64)


def _check_counts(name: str, shape: tuple[int, ...]) -> None:
    if shape[0] < 1:
        raise RramlibError(f"{name} has no base seed (shape {shape})")
    if shape[1] < MIN_CHIPS:
        raise RramlibError(f"{name} has {shape[1]} chip(s) per base seed; at least {MIN_CHIPS} are needed to "
                           f"resample chips (shape {shape})")


def _same_shape(a: np.ndarray, b: np.ndarray) -> None:
    if a.shape != b.shape:
        raise RramlibError(f"paired results must share one shape (same seeds, chips and images), got a {a.shape} "
                           f"and b {b.shape}")


def _num(fraction: float, digits: int, sign: bool = False) -> str:
    """``fraction`` in percentage points with ``digits`` decimals (never "-0.0")."""
    value = round(100 * fraction, digits) + 0.0
    return f"{value:+.{digits}f}" if sign else f"{value:.{digits}f}"


def _level(confidence: float) -> str:
    """95 for 0.95, 97.5 for 0.975."""
    return f"{round(100 * confidence, 6):g}"
