"""rramlib.study.intervals: the hierarchical bootstrap against closed forms and simulated data of known
difference, its input checks, and the sentences and rankings built on it."""
from __future__ import annotations

from statistics import NormalDist

import numpy as np
import pytest

from rramlib.core.errors import RramlibError
from rramlib.study.analysis import chip_accuracy_array
from rramlib.study.intervals import (MISSING, Interval, accuracy_interval, chip_accuracy_interval,
                                     paired_chip_difference, paired_difference, ranking, standing)

Z95 = NormalDist().inv_cdf(0.975)


def simulate(rng, seeds, chips, images, delta, seed_sd, chip_sd, image_sd):
    """Paired results of two methods whose true mean difference ``a - b`` is ``delta``.

    Method b gets image i right with probability ``q_i + base offsets`` (image easiness q_i ~ U(0.2, 0.8), seed
    and chip offsets ~ U(-0.03, 0.03)); method a with that probability plus ``delta`` plus zero-mean uniform
    offsets per base seed, chip and image of standard deviations ``seed_sd``, ``chip_sd``, ``image_sd``. One
    uniform draw per cell decides both methods (paired, like two corrections of one chip). The probabilities stay
    in [0, 1] for the values used here, so E[a - b] = delta exactly.
    """
    def offset(sd, shape):
        return rng.uniform(-1, 1, shape) * sd * 3**0.5

    p_b = rng.uniform(0.2, 0.8, images) + offset(0.03 / 3**0.5, (seeds, 1, 1)) + offset(0.03 / 3**0.5,
                                                                                      (seeds, chips, 1))
    p_a = p_b + delta + offset(seed_sd, (seeds, 1, 1)) + offset(chip_sd, (seeds, chips, 1)) + offset(image_sd, images)
    assert 0 <= p_a.min() and p_a.max() <= 1
    u = rng.uniform(size=(seeds, chips, images))
    return u < p_a, u < p_b


def coverage(regime, runs, delta=0.02, shape=(3, 5, 400), n_boot=400):
    rng = np.random.default_rng(7)
    hits = 0
    for k in range(runs):
        a, b = simulate(rng, *shape, delta, *regime)
        interval = paired_difference(a, b, n_boot=n_boot, seed=k)
        hits += interval.low <= delta <= interval.high
    return hits / runs


def test_coverage_near_nominal_when_chips_and_images_vary_as_much_as_base_models():
    assert coverage((0.005, 0.005, 0.03), runs=200) >= 0.85


def test_coverage_documented_limits():
    """The module docstring's two caveats, measured: resampling every level over-counts the cell noise (too wide
    where nothing but cells varies), and three base seeds cannot show a large seed-to-seed spread (too narrow)."""
    assert coverage((0.0, 0.0, 0.03), runs=100) >= 0.99
    assert coverage((0.02, 0.002, 0.02), runs=100) < 0.9


def test_deterministic_per_seed():
    a, b = simulate(np.random.default_rng(1), 3, 4, 300, 0.02, 0.005, 0.005, 0.03)
    first = paired_difference(a, b, n_boot=500, seed=3)
    assert paired_difference(a, b, n_boot=500, seed=3) == first
    other = paired_difference(a, b, n_boot=500, seed=4)
    assert (other.low, other.high) != (first.low, first.high)
    assert other.mean == first.mean == pytest.approx(a.mean() - b.mean())


def test_identical_inputs_give_exactly_zero():
    a = np.random.default_rng(2).uniform(size=(3, 5, 200)) < 0.8
    interval = paired_difference(a, a.copy(), n_boot=200)
    assert (interval.mean, interval.low, interval.high) == (0.0, 0.0, 0.0)
    assert interval.holds_zero
    assert accuracy_interval(np.ones((2, 3, 10), bool), n_boot=100).format_accuracy() == "1.000 [1.000, 1.000]"


def test_image_draw_is_shared_by_every_seed_and_chip():
    """Every chip gets the same images right: the spread is that of one test set of n images, p(1 - p)/n,
    whatever the seeds and chips (independent image draws per chip would shrink it by seeds × chips)."""
    n = 4000
    row = np.random.default_rng(3).uniform(size=n) < 0.7
    interval = accuracy_interval(np.broadcast_to(row, (3, 5, n)), n_boot=4000)
    p = row.mean()
    assert (interval.high - interval.low) / (2 * Z95) == pytest.approx((p * (1 - p) / n) ** 0.5, rel=0.1)


def test_seeds_then_chips_within_seeds():
    """Two-stage resampling of per-chip values x[s, c] (Davison & Hinkley 1997, §3.8): the variance of the
    replicate mean is (var0 of the seed means + mean var0 within a seed / chips) / seeds (var0: ddof 0)."""
    rng = np.random.default_rng(4)
    seeds, chips = 60, 40
    x = np.clip(0.8 + rng.normal(0, 0.03, (seeds, 1)) + rng.normal(0, 0.15, (seeds, chips)), 0, 1)
    expected = ((x.mean(1).var() + x.var(1).mean() / chips) / seeds) ** 0.5
    interval = chip_accuracy_interval(x, n_boot=4000)
    assert (interval.high - interval.low) / (2 * Z95) == pytest.approx(expected, rel=0.1)
    assert interval.mean == pytest.approx(x.mean())
    assert interval.images is None and interval.caveat == "test images held fixed"


def test_interval_shrinks_as_images_grow():
    widths = []
    for images in (200, 3200):
        a, b = simulate(np.random.default_rng(5), 3, 5, images, 0.02, 0.0, 0.0, 0.03)
        interval = paired_difference(a, b, n_boot=1000)
        widths.append(interval.high - interval.low)
    assert widths[1] < widths[0] / 2


def test_one_base_seed_is_allowed_and_said():
    a, b = simulate(np.random.default_rng(6), 1, 4, 300, 0.02, 0.0, 0.005, 0.03)
    interval = paired_difference(a, b, n_boot=200)
    assert interval.seeds == 1 and interval.per_seed == (pytest.approx(interval.mean),)
    assert interval.caveat == "one base model"
    assert standing("A", "B", interval).endswith("; one base model)")


def test_per_seed_means():
    a = np.zeros((3, 2, 10), bool)
    a[1, :, :5] = True
    a[2] = True
    assert accuracy_interval(a, n_boot=100).per_seed == (0.0, 0.5, 1.0)


BOOLS = np.ones((3, 2, 10), bool)


@pytest.mark.parametrize("call, message", [
    (lambda: accuracy_interval(BOOLS.astype(int)), "must be a bool array.*dtype int"),
    (lambda: accuracy_interval(BOOLS[0]), r"shaped \(seeds, chips, images\), got shape \(2, 10\)"),
    (lambda: accuracy_interval(BOOLS[:0]), "no base seed"),
    (lambda: accuracy_interval(BOOLS[:, :1]), "1 chip.* at least 2"),
    (lambda: accuracy_interval(BOOLS[:, :, :1]), "1 test image.* at least 2"),
    (lambda: paired_difference(BOOLS, BOOLS[:, :, :9]), r"share one shape.*\(3, 2, 10\).*\(3, 2, 9\)"),
    (lambda: chip_accuracy_interval(BOOLS[0]), "float array of accuracies.*dtype bool"),
    (lambda: chip_accuracy_interval(np.full((2, 3), 1.5)), r"accuracies in \[0, 1\]"),
    (lambda: chip_accuracy_interval(np.full((2, 3), np.nan)), r"accuracies in \[0, 1\]"),
    (lambda: chip_accuracy_interval(np.full((2, 3, 1), 0.5)), r"shaped \(seeds, chips\)"),
    (lambda: paired_chip_difference(np.full((2, 3), 0.5), np.full((3, 3), 0.5)), "share one shape"),
    (lambda: accuracy_interval(BOOLS, confidence=1.0), r"confidence must be a number in \(0, 1\)"),
    (lambda: accuracy_interval(BOOLS, confidence=True), "confidence"),
    (lambda: accuracy_interval(BOOLS, n_boot=39), "n_boot = 39 .* 95 % interval; use at least 40"),
    (lambda: accuracy_interval(BOOLS, seed=-1), "seed"),
    (lambda: standing("A", "B", 0.01), "Interval or None"),
    (lambda: ranking([BOOLS]), "map method names"),
    (lambda: ranking({"a": BOOLS, "b": BOOLS[:, :, :5]}), "one shape"),
])
def test_bad_input_is_refused_by_name(call, message):
    with pytest.raises(RramlibError, match=message):
        call()


def interval(mean, low, high, **kw):
    return Interval(**{"mean": mean, "low": low, "high": high, "confidence": 0.95, "seeds": 3, "chips": 5,
                       "images": 10000, "per_seed": (mean,) * 3, "n_boot": 2000, **kw})


def test_formats():
    assert interval(0.0123, 0.0041, 0.0205).format_pp() == "+1.23 pp [0.41, 2.05]"
    assert interval(-0.00001, -0.004, 0.004).format_pp(1) == "+0.0 pp [-0.4, 0.4]"
    assert interval(0.9124, 0.9051, 0.9183).format_accuracy() == "0.912 [0.905, 0.918]"


@pytest.mark.parametrize("iv, expected", [
    (interval(-0.012, -0.020, -0.004),
     "VeRA+ is behind BN recalibration by 1.2 pp (95 % CI 0.4 to 2.0 pp)"),
    (interval(0.012, 0.004, 0.020),
     "VeRA+ is ahead of BN recalibration by 1.2 pp (95 % CI 0.4 to 2.0 pp)"),
    (interval(0.003, -0.005, 0.011),
     "VeRA+ and BN recalibration are indistinguishable at this resolution (difference +0.3 pp, 95 % CI -0.5 to "
     "1.1 pp)"),
    (interval(0.003, -0.005, 0.011, confidence=0.9, images=None),
     "VeRA+ and BN recalibration are indistinguishable at this resolution (difference +0.3 pp, 90 % CI -0.5 to "
     "1.1 pp; test images held fixed)"),
    (None, MISSING),
])
def test_standing_sentences(iv, expected):
    assert standing("VeRA+", "BN recalibration", iv) == expected


def constructed_results():
    """Four paired methods on one set of cells: A clearly best, B and C a few flips apart (C two cells lower),
    D clearly worst, and E not recorded."""
    rng = np.random.default_rng(8)
    u = rng.uniform(size=(2, 3, 2000))
    b = u < 0.75
    c = b.copy()
    flat = c.reshape(-1)
    right, wrong = np.flatnonzero(flat), np.flatnonzero(~flat)
    flat[rng.choice(right, 20, replace=False)] = False
    flat[rng.choice(wrong, 18, replace=False)] = True
    return {"D": u < 0.6, "C": c, "E": None, "A": u < 0.85, "B": b}


def test_ranking_tiers_hold_the_methods_indistinguishable_from_their_leader():
    result = ranking(constructed_results(), n_boot=500)
    assert result.order == ("A", "B", "C", "D")
    assert result.relations == (">", "≈", ">")
    assert result.groups == (("A",), ("B", "C"), ("D",))
    assert result.missing == ("E",)
    assert str(result) == "A > [B ≈ C] > D; not recorded: E"
    assert result.text(label=str.lower) == "a > [b ≈ c] > d; not recorded: e"
    assert [iv.mean for iv in result.accuracy] == sorted((iv.mean for iv in result.accuracy), reverse=True)
    assert result.steps[1].mean == pytest.approx(2 / (2 * 3 * 2000))  # B - C: C is compared with its tier's leader
    data = constructed_results()
    assert result.steps[2].mean == pytest.approx(data["B"].mean() - data["D"].mean())  # D with its tier's leader B


def test_ranking_compares_with_the_tier_leader_not_the_neighbour():
    """A chain of small steps (each neighbour pair indistinguishable) must not join the two ends when they differ."""
    rng = np.random.default_rng(1)
    results = {name: rng.uniform(size=(1, 5, 4000)) < p for name, p in (("A", 0.80), ("B", 0.794), ("C", 0.788),
                                                                         ("D", 0.782))}
    for a, b in zip("ABC", "BCD"):  # every neighbour pair's interval holds zero: a neighbour chain joins them all
        assert paired_difference(results[a], results[b], n_boot=500).low <= 0
    assert paired_difference(results["A"], results["D"], n_boot=500).low > 0  # the ends differ
    tiers = ranking(results, n_boot=500)
    assert tiers.groups == (("A", "B"), ("C", "D")) and str(tiers) == "[A ≈ B] > [C ≈ D]"
    for group in tiers.groups:  # every member indistinguishable from its leader, every leader below the last
        for m in group[1:]:
            assert paired_difference(results[group[0]], results[m], n_boot=500).low <= 0
    for before, after in zip(tiers.groups, tiers.groups[1:]):
        assert paired_difference(results[before[0]], results[after[0]], n_boot=500).low > 0


def test_ranking_per_chip_and_missing():
    per_chip = {m: (r.mean(axis=2) if r is not None else None) for m, r in constructed_results().items()}
    assert ranking(per_chip, per_chip=True, n_boot=500).order == ("A", "B", "C", "D")
    assert ranking({"A": None}).text() == MISSING
    assert str(ranking({})) == MISSING


def sweep(chips, values):
    records = [{"method": "drift_free", "time_s": None, "time_label": None, "chip_seed": None, "accuracy": 0.9}]
    records += [{"method": m, "time_s": 1.0, "time_label": "1s", "chip_seed": chip, "accuracy": v}
                for m, vs in values.items() for chip, v in zip(chips, vs)]
    return {"metadata": {"drift_free_accuracy": 0.9}, "records": records}


def test_chip_accuracy_array_stacks_base_seeds():
    results = [sweep([10, 11], {"a": [0.5, 0.6], "b": [0.7, 0.8]}), sweep([10, 11], {"a": [0.1, 0.2]})]
    assert chip_accuracy_array(results, "a", "1s").tolist() == [[0.5, 0.6], [0.1, 0.2]]
    with pytest.raises(RramlibError, match="sweep 1 has no method 'b'"):
        chip_accuracy_array(results, "b", "1s")
    with pytest.raises(RramlibError, match="paired"):
        chip_accuracy_array([results[0], sweep([12, 13], {"a": [0.1, 0.2]})], "a", "1s")
