"""The headline comparison (rramlib.study.headline): paired per-image results over base seeds and readouts, the
T1 table with intervals computed from them, the readout the book leads with and the verdict sentence."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from rramlib.core.cache import Cache
from rramlib.core.errors import RramlibError
from rramlib.study import headline as hl
from rramlib.study import intervals
from rramlib.core.times import parse_time
from rramlib.study.base_model import device_test_set
from rramlib.study.experiments import SweepConfig, chip_correct, correct_predictions, prepare

#: Two base seeds of the smoke profile, a short BN, the smoke time grid (1s, 1d, 10y).
CONFIG = SweepConfig(profile="smoke", preset="ibm_cmo_reram", profile_overrides={"base_seeds": (0, 1)},
                     method_params={"bn": {"batches": 3, "batch_size": 32}})
METHODS = ("none", "scale", "bn")


@pytest.fixture(scope="module")
def run(smoke_cache_in, tmp_path_factory):
    cache = smoke_cache_in(tmp_path_factory.mktemp("headline"))
    return hl.run_headline(CONFIG, METHODS, times=("1d", "10y"), cache=cache), cache


def test_rows_expand_vera_plus_and_put_the_reference_first():
    assert hl.rows_of(("bn", "vera_plus")) == ("none", "bn", "vera_plus_layer", "vera_plus_cross")
    config, name = hl.row_config(CONFIG, "vera_plus_cross")
    assert name == "vera_plus" and config.method("vera_plus").params["sharing"] == "cross"


def test_results_are_paired_over_seeds_chips_times_and_images(run):
    out, _ = run
    n_test = len(prepare(CONFIG).base.splits.test)
    assert out.base_seeds == (0, 1) and out.readouts == ("raw", "gdc")
    for readout in out.readouts:
        for row, x in out.correct[readout].items():
            assert x.dtype == bool and x.shape == (2, CONFIG.resolved_profile().chips, 2, n_test), (readout, row)
    assert "scale" not in out.correct["gdc"]  # the identity on that readout
    # on the gdc readout, the uncompensated chip is output scaling on the raw one, image by image
    assert np.array_equal(out.correct["gdc"]["none"], out.correct["raw"]["scale"])
    # the drift-free rows are the base models' accuracies, and the two base models differ
    assert np.allclose(out.free.mean(axis=1), out.drift_free_accuracy)
    assert not np.array_equal(out.free[0], out.free[1])


def test_the_configurations_own_seed_shares_the_comparison_sweeps_cache_entries(run):
    """Seed 0 on the raw readout is evaluated on the profile's whole grid: the very entries of the chapter's sweep."""
    out, cache = run
    exp = prepare(CONFIG, cache=cache)
    method = exp.fit("bn", dataclasses.replace(CONFIG, methods=("bn",)), cache)
    hits = cache.hits
    grid = list(CONFIG.resolved_profile().times)
    for c, chip in enumerate(out.chips):
        whole = chip_correct(exp, CONFIG, method, chip, cache)
        assert np.array_equal(out.correct["raw"]["bn"][0, c], whole[[grid.index("1d"), grid.index("10y")]])
    assert cache.hits == hits + len(out.chips)  # read back, not evaluated again


def test_comparison_fits_are_the_headlines_fits_read_back(run):
    out, cache = run
    misses = cache.misses
    fits = hl.comparison_fits(CONFIG, METHODS, cache=cache)
    assert cache.misses == misses  # nothing trained or fitted again
    assert sorted(fits) == [0, 1] and all(tuple(f[1]) == hl.rows_of(METHODS) for f in fits.values())
    exp = prepare(dataclasses.replace(CONFIG, base_seed=1), cache=cache)
    model, methods = fits[1]
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), exp.base.model.state_dict().values()))
    t = parse_time("10y")
    for c, chip in enumerate(out.chips):  # base seed 1's BN, read on each chip at ten years, as the headline read it
        got = correct_predictions(methods["bn"].at(chip, t), device_test_set(exp.base.splits, "cpu"))
        assert np.array_equal(got, out.correct["raw"]["bn"][1, c, 1])
    with pytest.raises(RramlibError, match="base_seed"):  # every seed checked before seed 0 is loaded
        hl.comparison_fits(CONFIG, METHODS, base_seeds=(0, -1), cache=Cache(None))


def test_t1_intervals_are_computed_from_the_paired_results(run):
    out, _ = run
    t1 = hl.t1_intervals(out, n_boot=200)
    row = t1[(t1.method == "bn") & (t1.readout == "raw") & (t1.time == "10y")].iloc[0]
    x = out.at("raw", "bn", "10y")
    assert row.acc_mean == pytest.approx(x.mean())
    acc = intervals.accuracy_interval(x, n_boot=200)
    assert (row.acc_low, row.acc_high) == (acc.low, acc.high)
    free = out.free.mean()
    assert row.retained_pct == pytest.approx(100 * x.mean() / free)
    assert np.isnan(row.d_bn_mean)  # no difference with itself
    none = t1[(t1.method == "none") & (t1.readout == "raw") & (t1.time == "10y")].iloc[0]
    d = intervals.paired_difference(out.at("raw", "none", "10y"), x, n_boot=200)
    assert (none.d_bn_mean, none.d_bn_low, none.d_bn_high) == pytest.approx((d.mean, d.low, d.high))
    assert set(t1.readout) == {"raw", "gdc"} and not ((t1.readout == "gdc") & (t1.method == "scale")).any()


def test_lead_readout_follows_the_stated_criterion(run):
    out, _ = run
    means = {r: out.at(r, "none", "10y").mean() for r in out.readouts}
    assert hl.lead_readout(out) == max(means, key=means.get)
    flipped = dataclasses.replace(out, correct={"raw": out.correct["gdc"], "gdc": out.correct["raw"]})
    assert hl.lead_readout(flipped) != hl.lead_readout(out) or means["raw"] == means["gdc"]


def test_verdict_clauses_follow_the_intervals(run):
    out, _ = run
    text = hl.verdict(out, "raw", "10y", subject="bn", others=("none", "scale"), n_boot=200)
    for other in ("none", "scale"):
        d = intervals.paired_difference(out.at("raw", "bn", "10y"), out.at("raw", other, "10y"), n_boot=200)
        assert intervals.standing("bn", other, d) in text
    # on gdc, output scaling is the readout itself: its clause compares with the uncompensated chip
    gdc = hl.verdict(out, "gdc", "10y", subject="bn", others=("scale",), n_boot=200)
    d = intervals.paired_difference(out.at("gdc", "bn", "10y"), out.at("gdc", "none", "10y"), n_boot=200)
    assert gdc == intervals.standing("bn", "scale", d)
    assert hl.verdict(out, "raw", "10y", subject="vera_plus_cross") == intervals.MISSING


def test_sentences_read_back_from_a_t1_table_are_those_of_the_paired_results(run):
    """A recorded T1 table gives back the retained share and the standing sentences the paired results give:
    from the reference's own column (none - bn), and turned round from the other's (bn against none)."""
    out, _ = run
    t1 = hl.t1_intervals(out, references=("bn", "scale"), n_boot=200)
    x, bn = out.at("raw", "none", "10y"), out.at("raw", "bn", "10y")
    d = intervals.paired_difference(x, bn, n_boot=200)
    assert hl.table_standing(t1, "raw", "10y", "none", "bn", base_seeds=2) == intervals.standing("none", "bn", d)
    flipped = intervals.paired_difference(bn, x, n_boot=200)
    back = hl.table_standing(t1, "raw", "10y", "bn", "none", base_seeds=2)
    assert back == intervals.standing("bn", "none", flipped)
    row = t1[(t1.method == "bn") & (t1.readout == "raw") & (t1.time == "10y")].iloc[0]
    assert hl.table_retained(t1, "raw", "10y", "bn") == (f"{row.retained_pct:.1f} % [{row.retained_low:.1f}, "
                                                         f"{row.retained_high:.1f}]")
    one = hl.table_standing(t1, "raw", "10y", "none", "bn", base_seeds=1)
    assert one.endswith("; one base model)")
    for missing in (hl.table_standing(None, "raw", "10y", "none", "bn", base_seeds=2),
                    hl.table_standing(t1, "raw", "10y", "none", "lora", base_seeds=2),
                    hl.table_retained(t1, None, "10y", "bn")):
        assert missing == intervals.MISSING


def test_bad_inputs_are_refused_before_any_work(monkeypatch):
    def no_work(*a, **k):
        raise AssertionError("prepare must not run")

    monkeypatch.setattr(hl, "prepare", no_work)
    with pytest.raises(RramlibError, match="not on the profile's time grid"):
        hl.run_headline(CONFIG, METHODS, times=("1y",))
    with pytest.raises(RramlibError, match="readout"):
        hl.run_headline(CONFIG, METHODS, readouts=("raw", "cooked"))
    with pytest.raises(RramlibError, match="base_seed"):
        hl.run_headline(CONFIG, METHODS, base_seeds=(0, -1))
