"""Fair tuning: candidates checked before fitting, scores on validation chips and the validation split only,
the choice rule, the same budget per method; DoRA's stratified calibration samples; greedy windows."""
import numpy as np
import pytest
import torch

from rramlib.study import tuning
from rramlib.device.analog import AnalogModel
from rramlib.core.cache import Cache
from rramlib.methods.compensation import FitContext, Method, make_method
from rramlib.methods.compensation.dora_calibration import stratified_pick
from rramlib.device.drift import make_drift_model
from rramlib.core.errors import RramlibError
from rramlib.nn.evaluate import accuracy
from rramlib.study.base_model import train_base_model
from rramlib.study.experiments import SweepConfig, prepare
from rramlib.study.profiles import get_profile
from rramlib.methods.schedule import log_windows
from rramlib.core.seeding import EVAL_CHIP_BASE, VALIDATION_CHIP_BASE, validation_chips
from rramlib.core.times import TIME_GRID
from rramlib.study.tuning import (CRITERION, TuningResult, describe, greedy_schedule, grid, tune, tune_methods,
                                  validation_accuracies, validation_subset)

TIMES = ("1s", "10y")


@pytest.fixture(scope="module")
def base(smoke_cache_in, tmp_path_factory):
    return train_base_model(get_profile("smoke"), cache=smoke_cache_in(tmp_path_factory.mktemp("c")), progress=False)


def context(base):
    return FitContext(model=base.model, splits=base.splits, drift=make_drift_model("ibm_pcm"),
                      schedule=log_windows(1), train_chips=2)


@pytest.fixture
def no_fit(monkeypatch):
    """Fails the test if anything is fitted (for checks that must come first)."""
    def refuse(self, ctx):
        raise AssertionError("fitted before the input was checked")
    monkeypatch.setattr(Method, "fit", refuse)


# ------------------------------------------------------------------------------------- stratified pick
def test_stratified_pick_golden():
    labels = torch.tensor([0, 0, 0, 0, 1, 1, 2, 2, 2, 2])
    # shares 2, 1, 2 (exact): the first members of each class in split order
    assert stratified_pick(labels, 5).tolist() == [0, 1, 4, 6, 7]
    # shares 1.2, 0.6, 1.2: floors 1, 0, 1, the one left goes to the largest remainder (class 1)
    assert stratified_pick(labels, 3).tolist() == [0, 4, 6]
    # shares 0.4, 0.2, 0.4: remainders tie between classes 0 and 2, the lower label wins
    assert stratified_pick(labels, 1).tolist() == [0]
    assert stratified_pick(labels, 10).tolist() == list(range(10))


@pytest.mark.parametrize("n", [1, 3, 7, 10, 23, 50])
def test_stratified_pick_counts_are_within_one_of_the_share(n):
    labels = torch.randint(5, (60,), generator=torch.Generator().manual_seed(n))
    idx = stratified_pick(labels, n)
    assert len(idx) == n == len(set(idx.tolist())) and idx.tolist() == sorted(idx.tolist())
    for c in range(5):
        share = n * int((labels == c).sum()) / len(labels)
        assert abs(int((labels[idx] == c).sum()) - share) < 1


def test_stratified_pick_errors():
    for n in (0, 11, 2.0):
        with pytest.raises(RramlibError):
            stratified_pick(torch.arange(10) % 2, n)


def test_dora_calibrates_on_one_image_per_class(base):
    """The smoke calibration split holds 5 digits of each class, sorted by index: the first 10 are not
    stratified, DoRA's 10 samples are (one per class) and are exactly the images it stores."""
    x, y = base.splits.calib.tensors
    assert len(set(y[:10].tolist())) < 10  # the old "first 10" would have missed classes
    dora = make_method("dora", steps=1, budget=0.1).fit(context(base))
    assert torch.equal(dora.calib_inputs_, x[stratified_pick(y, 10)])
    assert sorted(y[stratified_pick(y, 10)].tolist()) == list(range(10))


# ------------------------------------------------------------------------------------- checks first
def test_describe():
    assert describe({"lr": 1 / 300, "steps": 40, "sharing": "cross"}) == "lr=0.00333333, steps=40, sharing=cross"


def test_grid_expands_in_order():
    assert grid(lr=[1, 2], steps=[5, 6]) == [{"lr": 1, "steps": 5}, {"lr": 1, "steps": 6},
                                             {"lr": 2, "steps": 5}, {"lr": 2, "steps": 6}]
    for bad in ({}, {"lr": []}, {"lr": "0.1"}, {"lr": 0.1}):
        with pytest.raises(RramlibError):
            grid(**bad)


@pytest.mark.parametrize("candidates, match", [
    ([], "non-empty"), ({"lr": [0.1]}, "non-empty"), ([{"lr": 0.1}, {"rnak": 4}], "unknown parameter"),
    ([{"lr": -1.0}], "lr"), ([{"lr": 0.01}, {"lr": 0.01}], "same hyper-parameters"), ([3], "candidate 0"),
])
def test_bad_candidates_fail_before_any_fit(base, no_fit, candidates, match):
    with pytest.raises(RramlibError, match=match):
        tune("vera_plus", candidates, context(base), times=TIMES)


def test_bad_method_times_and_chips_fail_before_any_fit(base, no_fit):
    ctx = context(base)
    with pytest.raises(RramlibError, match="method"):
        tune("vera_plsu", [{"lr": 0.1}], ctx, times=TIMES)
    with pytest.raises(RramlibError, match="time"):
        tune("vera_plus", [{"lr": 0.1}], ctx, times=("soon",))
    with pytest.raises(RramlibError, match="validation"):
        tune("vera_plus", [{"lr": 0.1}], ctx, times=TIMES, n_chips=0)
    with pytest.raises(RramlibError, match="fit_key"):
        tune("vera_plus", [{"lr": 0.1}], ctx, times=TIMES, cache=Cache("/nonexistent"))


def test_unequal_budgets_fail_before_any_fit(base, no_fit):
    with pytest.raises(RramlibError, match="same number of candidates"):
        tune_methods({"vera_plus": [{"lr": 0.1}, {"lr": 0.2}], "lora": [{"lr": 0.1}]}, context(base), times=TIMES)
    with pytest.raises(RramlibError, match="unknown parameter"):  # every method is checked before any fit
        tune_methods({"vera_plus": [{"lr": 0.1}], "lora": [{"sharing": "cross"}]}, context(base), times=TIMES)


# ------------------------------------------------------------------------------------- the search
@pytest.fixture(scope="module")
def result(base):
    return tune("vera_plus", [{"lr": 1e-2}, {"lr": 1e-1}], context(base), times=TIMES, n_chips=2,
                base={"steps": 3})


def test_scores_are_validation_accuracy_on_validation_chips(result, base):
    """Refit the chosen candidate and recompute every score directly: validation split, validation chips."""
    assert result.chips == list(validation_chips(2)) and result.accuracies.shape == (2, 2, 2)
    method = make_method("vera_plus", **result.params).fit(context(base))
    direct = [[accuracy(method.at(c, TIME_GRID[t]), base.splits.val) for t in TIMES] for c in result.chips]
    np.testing.assert_allclose(result.accuracies[result.chosen_index], direct)
    assert result.chosen_index == int(np.argmax(result.scores))
    assert result.params == {"steps": 3, **result.chosen}
    table = result.table()
    assert table["chosen"].tolist() == [i == result.chosen_index for i in range(2)]
    np.testing.assert_allclose(table["val_accuracy"], result.accuracies.mean(axis=(1, 2)))
    assert list(table.columns[:4]) == ["method", "candidate", "values", "lr"] and "val @ 10y" in table
    assert table["values"].tolist() == ["lr=0.01", "lr=0.1"]
    assert result.base_index == 0 and table["base"].tolist() == [True, False]  # lr 0.01 is VeRA+'s own
    assert result.margin == result.scores[result.chosen_index] - result.scores[0]
    assert len(result.fit_times) == len(result.eval_times) == 2 and min(result.fit_times + result.eval_times) > 0
    assert result.cost_s == sum(result.fit_times) + sum(result.eval_times)


def test_result_round_trips_through_plain_values(result):
    values = result.to_dict()
    assert isinstance(values["accuracies"], list)
    again = TuningResult.from_dict(values)
    np.testing.assert_array_equal(again.accuracies, result.accuracies)
    assert again.to_dict() == values and again.params == result.params


def test_tuning_is_deterministic(result, base):
    again = tune("vera_plus", [{"lr": 1e-2}, {"lr": 1e-1}], context(base), times=TIMES, base={"steps": 3})
    np.testing.assert_array_equal(again.accuracies, result.accuracies)


def test_tuning_never_reads_test_data_or_evaluation_chips(base, monkeypatch):
    programmed, scored = [], []
    program = AnalogModel.program

    def spy_program(self, seed):
        programmed.append(seed)
        return program(self, seed)

    def spy_accuracy(model, data, **kw):
        scored.append(data[1])
        return accuracy(model, data, **kw)

    monkeypatch.setattr(AnalogModel, "program", spy_program)
    monkeypatch.setattr(tuning, "accuracy", spy_accuracy)
    tune("lora", [{"lr": 1e-3}], context(base), times=TIMES, base={"steps": 2}, val_images=30)
    assert programmed and all(s < EVAL_CHIP_BASE or s >= VALIDATION_CHIP_BASE for s in programmed)
    assert {s for s in programmed if s >= EVAL_CHIP_BASE} == set(validation_chips(2))
    val_labels = validation_subset(base.splits.val, 30)[1]  # 30 images of the validation split
    assert len(scored) == 4 and all(torch.equal(y, val_labels) for y in scored)


def test_choice_is_the_best_mean_and_ties_go_to_the_earlier(base, monkeypatch):
    scores = iter([[[0.5, 0.7]], [[0.9, 0.3]], [[0.2, 0.9]]])  # means 0.6, 0.6, 0.55
    monkeypatch.setattr(tuning, "validation_accuracies", lambda *a, **k: np.array(next(scores)))
    res = tune("bn", [{"batches": 1}, {"batches": 2}, {"batches": 3}], context(base), times=TIMES, n_chips=1)
    assert res.chosen_index == 0 and res.chosen == {"batches": 1}
    np.testing.assert_allclose(res.scores, [0.6, 0.6, 0.55])
    assert "validation" in CRITERION


def test_validation_accuracies_refuse_other_chips(result, base):
    method = make_method("none").fit(context(base))
    for chip in (0, EVAL_CHIP_BASE):
        with pytest.raises(RramlibError, match="not a validation chip"):
            validation_accuracies(method, base.splits.val, [chip], [1.0])


def test_cached_tuning_reuses_fits_and_scores(base, smoke_cache):
    cache = smoke_cache
    exp = prepare(SweepConfig(profile="smoke", preset="ibm_pcm", methods=("none",), levels=1), cache=cache)
    first = tune("bn", [{"batches": 2}], exp.ctx, times=TIMES, fit_key=exp.fit_key, cache=cache)
    misses = cache.misses
    again = tune("bn", [{"batches": 2}], exp.ctx, times=TIMES, fit_key=exp.fit_key, cache=cache)
    assert cache.misses == misses and cache.hits >= 2
    np.testing.assert_array_equal(first.accuracies, again.accuracies)


# ------------------------------------------------------------------------------------- greedy windows
def test_greedy_windows_are_scored_on_validation_chips(smoke_cache, monkeypatch):
    seen = []
    at = Method.at

    def spy_at(self, seed, t):
        seen.append(seed)
        return at(self, seed, t)

    monkeypatch.setattr(Method, "at", spy_at)
    config = SweepConfig(profile="smoke", preset="ibm_pcm", methods=("vera_plus",),
                         method_params={"vera_plus": {"steps": 2}})
    schedule, calls = greedy_schedule(config, 1.0, candidates=[1.0, TIME_GRID["1d"], TIME_GRID["10y"]],
                                      n_chips=3, cache=smoke_cache)
    assert schedule.edges == (1.0, TIME_GRID["10y"])  # tolerance 1: one window covers everything
    assert seen and set(seen) == set(validation_chips(3)) and len(calls) == 1
