"""End-to-end smoke sweeps: drift hurts, results are deterministic, the cache makes reruns cheap."""
import pytest

import rramlib.study.experiments as experiments
from rramlib.core.cache import Cache
from rramlib.core.seeding import EVAL_CHIP_BASE
from rramlib.study.experiments import SweepConfig, run_sweep

# A preset and scale that drift visibly on the smoke model.
VISIBLE = SweepConfig(profile="smoke", preset="relative_gaussian", drift_params={"rd": 0.6})


def mean_accuracy(result, label):
    values = [r["accuracy"] for r in result["records"] if r["method"] == "none" and r["time_label"] == label]
    return sum(values) / len(values)


@pytest.fixture(scope="module")
def smoke_result(smoke_cache_in, tmp_path_factory):
    return run_sweep(VISIBLE, cache=smoke_cache_in(tmp_path_factory.mktemp("cache")), progress=False)


def test_drift_lowers_accuracy_over_ten_years(smoke_result):
    meta = smoke_result["metadata"]
    assert meta["drift_free_accuracy"] > 0.85
    assert mean_accuracy(smoke_result, "10y") < mean_accuracy(smoke_result, "1s") - 0.05
    assert mean_accuracy(smoke_result, "1s") > meta["drift_free_accuracy"] - 0.05


def test_evaluation_chips_are_disjoint_from_training_chips(smoke_cache, monkeypatch):
    """Every chip a fit programs lies below EVAL_CHIP_BASE; every chip the evaluation programs lies at or above
    it (recorded at programming, for a method trained on drifted chips and one re-estimating statistics),
    and the chip numbers of every profile keep the two ranges apart."""
    from rramlib.device.analog import AnalogModel
    from rramlib.study.profiles import PROFILES

    programmed = []
    original = AnalogModel.program
    monkeypatch.setattr(AnalogModel, "program", lambda self, seed: programmed.append(seed) or original(self, seed))
    config = SweepConfig(profile="smoke", preset="ibm_pcm", methods=("vera_plus", "bn"), levels=2,
                         method_params={"vera_plus": {"steps": 4}, "bn": {"batches": 1}})
    exp = experiments.prepare(config, cache=smoke_cache)
    for name in config.methods:
        exp.fit(name, config)
    fitted, evaluated = list(programmed), []
    evaluate = experiments._evaluate_chip

    def recording(*args):
        programmed[:] = []
        out = evaluate(*args)
        evaluated.extend(programmed)
        return out

    monkeypatch.setattr(experiments, "_evaluate_chip", recording)
    result = run_sweep(config, cache=smoke_cache, progress=False)
    assert fitted and max(fitted) < EVAL_CHIP_BASE
    assert set(evaluated) == set(result["metadata"]["chip_seeds"]) and min(evaluated) >= EVAL_CHIP_BASE
    for profile in PROFILES.values():
        chips = SweepConfig(profile=profile.name, preset="ibm_pcm").chip_seeds()
        assert chips == list(range(EVAL_CHIP_BASE, EVAL_CHIP_BASE + profile.chips))
        assert profile.train_chips < EVAL_CHIP_BASE


@pytest.mark.slow
def test_same_seed_same_numbers_without_cache(smoke_result):
    """Trained and swept again from scratch: the same records."""
    again = run_sweep(VISIBLE, cache=Cache(None), progress=False)
    assert again["records"] == smoke_result["records"]


def test_rerun_hits_the_cache_and_interrupted_run_resumes(smoke_cache, monkeypatch):
    cache, root = smoke_cache, smoke_cache.root
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
    resumed = run_sweep(VISIBLE, cache=Cache(root), progress=False)
    assert calls == [EVAL_CHIP_BASE, EVAL_CHIP_BASE + 1, EVAL_CHIP_BASE + 1]  # the first chip was not redone
    warm = Cache(root)
    result = run_sweep(VISIBLE, cache=warm, progress=False)
    assert warm.misses == 0 and warm.hits == 4  # base model + fitted method + 2 chips
    assert result["records"] == resumed["records"]
