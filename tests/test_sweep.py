"""End-to-end smoke sweeps: drift hurts, results are deterministic, the cache makes reruns cheap."""
import pytest

import rramlib.experiments as experiments
from rramlib.cache import Cache
from rramlib.experiments import EVAL_CHIP_BASE, SweepConfig, run_sweep

# A preset and scale that drift visibly on the smoke model.
VISIBLE = SweepConfig(profile="smoke", preset="relative_gaussian", drift_params={"rd": 0.6})


def mean_accuracy(result, label):
    values = [r["accuracy"] for r in result["records"] if r["method"] == "none" and r["time_label"] == label]
    return sum(values) / len(values)


@pytest.fixture(scope="module")
def smoke_result(tmp_path_factory):
    return run_sweep(VISIBLE, cache=Cache(tmp_path_factory.mktemp("cache")), progress=False)


def test_drift_lowers_accuracy_over_ten_years(smoke_result):
    meta = smoke_result["metadata"]
    assert meta["drift_free_accuracy"] > 0.85
    assert mean_accuracy(smoke_result, "10y") < mean_accuracy(smoke_result, "1s") - 0.05
    assert mean_accuracy(smoke_result, "1s") > meta["drift_free_accuracy"] - 0.05


def test_evaluation_chips_are_disjoint_from_training_chips(smoke_result):
    assert smoke_result["metadata"]["chip_seeds"] == [EVAL_CHIP_BASE, EVAL_CHIP_BASE + 1]


def test_same_seed_same_numbers_without_cache(smoke_result):
    again = run_sweep(VISIBLE, cache=Cache(None), progress=False)
    assert again["records"] == smoke_result["records"]


def test_rerun_hits_the_cache_and_interrupted_run_resumes(tmp_path, monkeypatch):
    cache = Cache(tmp_path)
    original = experiments._evaluate_chip
    calls = []

    def interrupted(method, seed, *args):
        calls.append(seed)
        if len(calls) == 2:
            raise KeyboardInterrupt  # the user stops the run on the second chip
        return original(method, seed, *args)

    monkeypatch.setattr(experiments, "_evaluate_chip", interrupted)
    with pytest.raises(KeyboardInterrupt):
        run_sweep(VISIBLE, cache=cache, progress=False)
    monkeypatch.setattr(experiments, "_evaluate_chip", lambda m, seed, *a: calls.append(seed) or original(m, seed, *a))
    resumed = run_sweep(VISIBLE, cache=Cache(tmp_path), progress=False)
    assert calls == [EVAL_CHIP_BASE, EVAL_CHIP_BASE + 1, EVAL_CHIP_BASE + 1]  # the first chip was not redone
    warm = Cache(tmp_path)
    result = run_sweep(VISIBLE, cache=warm, progress=False)
    assert warm.misses == 0 and warm.hits == 4  # base model + fitted method + 2 chips
    assert result["records"] == resumed["records"]
