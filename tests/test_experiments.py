"""Per-level fits (Method.train_level, rramlib.study.experiments.fit_level): the levels of a per-level method fitted
apart -- each in a fresh method, in any order, as a cluster's tasks are -- assemble to exactly the state of one
``method.fit(ctx)``, and an interrupted fit resumes from its cached levels."""
from __future__ import annotations

import pytest
import torch

from rramlib.core.cache import Cache
from rramlib.methods.compensation import make_method
from rramlib.core.errors import RramlibError
from rramlib.study.experiments import SweepConfig, fit_level, fit_method, prepare

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
