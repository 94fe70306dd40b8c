"""Per-level fits (Method.train_level, rramlib.study.experiments.fit_level): the levels of a per-level method fitted
apart -- each in a fresh method, in any order, as a cluster's tasks are -- assemble to exactly the state of one
``method.fit(ctx)``, and an interrupted fit resumes from its cached levels. Per-image correctness of the evaluation
chips (chip_correct, correctness), the chips' readout and the base seed of a sweep."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

import rramlib.study.experiments as experiments
from rramlib.core.cache import Cache, config_hash
from rramlib.core.times import parse_time
from rramlib.methods.compensation import make_method
from rramlib.core.errors import RramlibError
from rramlib.nn.data import as_tensors
from rramlib.nn.evaluate import accuracy, predict_logits
from rramlib.study.base_model import model_key
from rramlib.study.experiments import (SweepConfig, chip_accuracies, chip_correct, correctness, fit_level, fit_method,
                                       prepare)
from rramlib.study.profiles import get_profile

PER_LEVEL = ("vera_plus", "lora", "bn", "offline_correction")
#: Three drift levels, short training (BN with γ/β fine-tuning too), the smoke base model.
CONFIG = SweepConfig(profile="smoke", preset="ibm_pcm", methods=PER_LEVEL, levels=3,
                     method_params={"vera_plus": {"steps": 6}, "lora": {"steps": 6}, "offline_correction": {"steps": 6},
                                    "bn": {"batches": 3, "batch_size": 32, "finetune_steps": 4}})


@pytest.fixture(scope="module")
def exp(smoke_cache_in, tmp_path_factory):
    return prepare(CONFIG, cache=smoke_cache_in(tmp_path_factory.mktemp("model")))


def _tensors(state, path=""):
    """Every tensor of a (nested) state dict, by its path."""
    if isinstance(state, torch.Tensor):
        return {path: state}
    items = state.items() if isinstance(state, dict) else enumerate(state)
    return {k: v for key, value in items for k, v in _tensors(value, f"{path}/{key}").items()}


def _assert_identical(ours: dict, reference: dict) -> None:
    ours, reference = _tensors(ours), _tensors(reference)
    assert list(ours) == list(reference)
    for path, tensor in reference.items():
        assert torch.equal(ours[path], tensor), f"{path} differs"


@pytest.mark.parametrize("name", PER_LEVEL)
def test_levels_fitted_apart_give_the_one_process_fit_bit_for_bit(exp, tmp_path, name):
    assert CONFIG.method(name).trains_per_level()
    reference = CONFIG.method(name).fit(exp.ctx)
    cache = Cache(tmp_path)
    for level in (2, 0, 1):  # each level in a fresh method, out of order, as separate cluster tasks do
        fit_level(CONFIG.method(name), exp.ctx, exp.fit_key, cache, level)
    assert (cache.hits, cache.misses) == (0, 3)
    assembled = CONFIG.method(name)
    fit_method(assembled, exp.ctx, exp.fit_key, cache)
    assert (cache.hits, cache.misses) == (3, 4)  # the three levels read, the whole fit stored
    _assert_identical(assembled.state_dict(), reference.state_dict())
    # the levels really differ (a level loaded into another's slot would show), and the assembled fit evaluates alike
    levels = [_tensors(assembled.level_state_dict(k)) for k in range(3)]
    assert any(not torch.equal(levels[0][p], levels[2][p]) for p in levels[0])
    for t in (1.0, 3e4, 3e8):  # one time in each of the three windows
        x = exp.ctx.example().repeat(4, 1, 1, 1)
        torch.testing.assert_close(assembled.at(10_000, t)(x), reference.at(10_000, t)(x), rtol=0, atol=0)


def test_an_interrupted_fit_resumes_from_its_cached_levels(exp, tmp_path, monkeypatch):
    name = "vera_plus"
    reference = CONFIG.method(name).fit(exp.ctx).state_dict()
    cls = type(CONFIG.method(name))
    trained = []
    original = cls.train_level

    def spy(self, ctx, level):
        trained.append(level)
        return original(self, ctx, level)

    monkeypatch.setattr(cls, "train_level", spy)
    cache = Cache(tmp_path)
    fit_level(CONFIG.method(name), exp.ctx, exp.fit_key, cache, 1)  # the run that was interrupted got this far
    assert trained == [1]
    resumed = CONFIG.method(name)
    fit_method(resumed, exp.ctx, exp.fit_key, cache)
    assert trained == [1, 0, 2]  # level 1 read from the cache, not trained again
    _assert_identical(resumed.state_dict(), reference)
    again = CONFIG.method(name)
    hits = cache.hits
    fit_method(again, exp.ctx, exp.fit_key, cache)
    assert trained == [1, 0, 2] and cache.hits == hits + 1  # the whole fit is one cache entry now
    _assert_identical(again.state_dict(), reference)


def test_fit_level_refuses_what_has_no_such_level(exp):
    with pytest.raises(RramlibError, match="does not train per drift level"):
        fit_level(make_method("scale"), exp.ctx, exp.fit_key, Cache(None), 0)
    for level in (3, -1):
        with pytest.raises(RramlibError, match="drift level"):
            fit_level(CONFIG.method("vera_plus"), exp.ctx, exp.fit_key, Cache(None), level)


def test_switching_times_straddle_every_edge():
    from rramlib.study.experiments import switching_times
    from rramlib.methods.schedule import log_windows
    from rramlib.core.times import parse_time

    schedule = log_windows(4)
    times = switching_times(schedule, ("1s", "1d", "10y"), 5)
    seconds = [parse_time(t) for t in times]
    assert seconds == sorted(seconds) and {"1s", "1d", "10y"} <= set(times)
    for e in schedule.edges[1:-1]:
        assert any(abs(s - 0.93 * e) < 1e-5 * e for s in seconds) and any(abs(s - 1.07 * e) < 1e-5 * e for s in seconds)


# ------------------------------------------------------------------ per-image correctness of the evaluation chips
def test_one_evaluation_gives_per_image_correctness_and_the_accuracies(exp, tmp_path, monkeypatch):
    """chip_correct holds, per time, which test images the chip classifies correctly (the arg-max of the same
    logits, in the test split's order); chip_accuracies is its mean per time, equal to nn.evaluate.accuracy; both
    come from one evaluation and one cache entry. Batches of 97 leave a short last batch, and the smoke test split
    (449 images) is no multiple of 8, so the bit-packing must keep the count."""
    small = dataclasses.replace(exp, profile=exp.profile.replace(eval_batch_size=97))
    method, seed, cache = exp.fit("none", CONFIG), CONFIG.chip_seeds()[0], Cache(tmp_path)
    calls, original = [], experiments._evaluate_chip
    monkeypatch.setattr(experiments, "_evaluate_chip", lambda m, chip, *a: calls.append(chip) or original(m, chip, *a))
    correct = chip_correct(small, CONFIG, method, seed, cache)
    accuracies = chip_accuracies(small, CONFIG, method, seed, cache)
    assert calls == [seed] and (cache.misses, cache.hits) == (1, 1)
    x, y = as_tensors(exp.base.splits.test)
    times = [parse_time(t) for t in exp.profile.times]
    assert len(y) % 8 and correct.dtype == bool and correct.shape == (len(times), len(y))
    for row, acc, t in zip(correct, accuracies, times):
        model = method.at(seed, t)
        assert acc == row.mean() == accuracy(model, (x, y), batch_size=97)
        assert np.array_equal(row, (predict_logits(model, (x, y), batch_size=97).argmax(1) == y).numpy())
    assert not correct.all()  # the drifted chip gets some images wrong


def test_profiles_sharing_a_base_model_keep_their_own_test_splits(exp, tmp_path):
    """Two profiles that share the base model and its fits but not the test split (as ``cifar`` and
    ``cifar_subset`` do) never read each other's per-image results: in one cache, each gets its own images."""
    method, seed, cache = exp.fit("none", CONFIG), CONFIG.chip_seeds()[0], Cache(tmp_path)
    n = len(exp.base.splits.test)
    subset = experiments.prepare(dataclasses.replace(CONFIG, profile_overrides={"n_test": n // 3}), cache=Cache(None))
    assert subset.fit_key == exp.fit_key and len(subset.base.splits.test) == n // 3
    small = chip_correct(subset, CONFIG, method, seed, cache)
    whole = chip_correct(exp, CONFIG, method, seed, cache)
    assert small.shape[1] == n // 3 and whole.shape[1] == n and cache.misses == 2
    assert np.array_equal(correctness(exp, CONFIG, method, [seed], cache)[0], whole)


def test_correctness_stacks_the_chips(exp, tmp_path):
    method, chips, cache = exp.fit("none", CONFIG), CONFIG.chip_seeds(), Cache(tmp_path)
    every = correctness(exp, CONFIG, method, chips, cache)
    assert every.shape == (len(chips), len(exp.profile.times), len(exp.base.splits.test)) and every.dtype == bool
    for chip, seed in zip(every, chips):
        assert np.array_equal(chip, chip_correct(exp, CONFIG, method, seed, cache))
    assert not np.array_equal(every[0], every[1])  # two chips, two patterns of errors
    assert cache.misses == len(chips)  # the per-chip calls were read from the cache
    with pytest.raises(RramlibError, match="at least one evaluation chip"):
        correctness(exp, CONFIG, method, [], cache)


# ------------------------------------------------------------------ the chips' readout
def test_readout_enters_the_fit_key_and_gdc_none_is_raw_global_scale(exp, smoke_cache_in, tmp_path):
    """The readout reaches every chip of the fit context and the fit key (so every fit and sweep key); ``none`` on
    "gdc" chips classifies each image exactly as ``scale`` (global) on "raw" chips (rramlib.device.analog)."""
    config = CONFIG.replace(readout="gdc")
    gdc = prepare(config, cache=smoke_cache_in(tmp_path / "model"))
    assert (exp.ctx.readout, gdc.ctx.readout, CONFIG.readout) == ("raw", "gdc", "raw")
    assert gdc.fit_key == {**exp.fit_key, "readout": "gdc"}
    assert config_hash(gdc.fit_key, "fit") != config_hash(exp.fit_key, "fit")
    cache, seed = Cache(tmp_path / "results"), CONFIG.chip_seeds()[0]
    none_gdc = gdc.fit("none", config, cache)
    assert none_gdc.analog_.readout == "gdc"
    ours = chip_correct(gdc, config, none_gdc, seed, cache)
    assert np.array_equal(ours, chip_correct(exp, CONFIG, exp.fit("scale", CONFIG, cache), seed, cache))
    assert not np.array_equal(ours, chip_correct(exp, CONFIG, exp.fit("none", CONFIG, cache), seed, cache))
    assert cache.misses == 3 + 3  # three fits, three evaluations: the keys differ


def test_a_bad_readout_is_refused_on_construction():
    with pytest.raises(RramlibError, match="unknown readout 'gdc2'; choose one of: gdc, raw"):
        SweepConfig(profile="smoke", readout="gdc2")


# ------------------------------------------------------------------ the base seed of a sweep
def test_base_seed_picks_the_base_model(exp):
    splits, smoke = exp.base.splits, get_profile("smoke", levels=3)
    assert CONFIG.base_seed is None and CONFIG.resolved_profile() == smoke  # None: the profile as it is
    assert model_key(CONFIG.resolved_profile(), splits) == exp.base.key
    profiles = {seed: CONFIG.replace(base_seed=seed).resolved_profile() for seed in (1, 2)}
    assert profiles[2] == smoke.with_base_seed(2) and (profiles[2].model_seed, profiles[2].train.seed) == (2, 2)
    keys = {seed: model_key(profile, splits) for seed, profile in profiles.items()}
    assert len({keys[1], keys[2], exp.base.key}) == 3  # two base seeds, two base models, neither the default
    for bad in (-1, True, 1.5, "1"):
        with pytest.raises(RramlibError, match="base_seed"):
            CONFIG.replace(base_seed=bad)
