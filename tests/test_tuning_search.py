"""The book's search (rramlib.study.tuning.run_search): its space, the same budget for every method, checks before
any work, one cached search shared by the tuning and the comparison chapters, no test split and no evaluation chip,
determinism."""
import ast
import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from rramlib.core.cache import Cache
from rramlib.core.errors import RramlibError
from rramlib.core.seeding import EVAL_CHIP_BASE, VALIDATION_CHIP_BASE, validation_chips
from rramlib.device.analog import AnalogModel
from rramlib.methods.compensation import make_method
from rramlib.methods.compensation.dora_calibration import stratified_pick
from rramlib.study import tuning
from rramlib.study.experiments import SweepConfig
from rramlib.study.profiles import PROFILES
from rramlib.study.tuning import (N_MOVES, SEARCH_MOVES, VAL_CHIPS, Move, check_searches, run_search, search_space,
                                  trained_methods, tuned_method_params, tuning_config, validation_subset)

def _parameters(stem: str) -> dict:
    """The parameters cell of notebook ``stem``: name -> default."""
    nb = json.loads((Path(__file__).parent.parent / "notebooks" / f"{stem}.ipynb").read_text())
    tree = ast.parse("".join(next(c for c in nb["cells"] if c["cell_type"] == "code")["source"]))
    return {t.id: ast.literal_eval(node.value) for node in tree.body for t in node.targets}


#: A search of seconds at smoke: BN and LoRA (two training steps per level), two candidates each.
MOVES = {"bn": (Move("batches", 2),), "lora": (Move("lr", 3),)}


def smoke_config(**fields) -> SweepConfig:
    return SweepConfig(profile="smoke", preset="ibm_pcm", method_params={"lora": {"steps": 2}}, **fields)


# ------------------------------------------------------------------------------------- moves and the space
def test_move_values_golden():
    assert Move("epochs", 1 / 2).apply({"epochs": 3}) == {"epochs": 2}  # integers: rounded half up
    assert Move("batches", 1 / 4).apply({"batches": 1}) == {"batches": 1}  # ... and at least 1
    assert Move("steps", 2).apply({"steps": 40, "lr": 0.1}) == {"steps": 80}
    assert Move("lr", 1 / 3).apply({"lr": 0.01}) == {"lr": 0.00333}  # floats: three significant digits
    assert Move("kd_weight", value=1.0).apply({"kd_weight": 0.0}) == {"kd_weight": 1.0}
    assert (str(Move("lr", 1 / 3)), str(Move("kd_weight", value=1.0))) == ("lr x 0.333", "kd_weight = 1")


@pytest.mark.parametrize("make, match", [
    (lambda: Move("lr"), "exactly one"), (lambda: Move("lr", 2, 1.0), "exactly one"), (lambda: Move("lr", 0), "factor"),
    (lambda: Move("lr", -1.0), "factor"), (lambda: Move("rnak", 2).apply({"rank": 4}), "no hyper-parameter 'rnak'"),
    (lambda: Move("sharing", 2).apply({"sharing": "layer"}), "not a number"),
])
def test_move_errors(make, match):
    with pytest.raises(RramlibError, match=match):
        make()


def test_every_trained_method_searches_the_axes_of_the_issue_with_the_same_budget():
    axes = {m: {move.name for move in moves} for m, moves in SEARCH_MOVES.items()}
    assert axes == {"vera_plus": {"rank", "kd_weight", "lr", "steps"}, "lora": {"rank", "lr"}, "bn": {"batches"},
                    "offline_correction": {"lr", "steps"}, "dora": {"budget", "steps"}, "noise_aware": {"epochs", "lr"}}
    # every trained method of the comparison chapter has a search (LayerNorm's re-fit, for text models, has none)
    compared = _parameters("03_comparison")["methods"]
    assert set(SEARCH_MOVES) == {m for m in compared if m in trained_methods()}
    assert {len(moves) for moves in SEARCH_MOVES.values()} == {N_MOVES}


@pytest.mark.parametrize("profile", sorted(PROFILES))
def test_search_space_is_valid_at_every_profile(profile):
    """Every method: the profile's values first, then one change per move; every candidate constructs, all differ."""
    config = SweepConfig(profile=profile)
    space = search_space(config)
    assert list(space) == list(SEARCH_MOVES)
    for name, candidates in space.items():
        base = config.method(name).params
        assert len(candidates) == 1 + N_MOVES
        assert candidates[0] == {k: base[k] for k in candidates[0]}  # the base values, listed first
        for move, cand in zip(SEARCH_MOVES[name], candidates[1:]):
            assert {k for k in cand if cand[k] != candidates[0][k]} == {move.name}
        params = [make_method(name, **{**base, **c}).params for c in candidates]
        assert len({tuple(sorted(p.items())) for p in params}) == len(candidates)


def test_unequal_candidate_counts_are_refused():
    config = smoke_config()
    with pytest.raises(RramlibError, match="same number of candidates"):
        search_space(config, moves={"bn": (Move("batches", 2),), "lora": (Move("lr", 3), Move("lr", 1 / 3))})
    with pytest.raises(RramlibError, match="same number of candidates"):
        check_searches({"bn": [{"batches": 1}], "lora": [{"lr": 0.1}, {"lr": 0.2}]})


@pytest.mark.parametrize("kwargs, match", [
    ({"methods": ["scale"]}, "no search moves"), ({"methods": []}, "at least one method"),
    ({"moves": {"bn": (Move("batches", 1.01),)}}, "same hyper-parameters"),  # 5 x 1.01 rounds back to 5
    ({"moves": {"bn": (Move("lr", value=-1.0),)}}, "lr"),
])
def test_search_space_errors(kwargs, match):
    with pytest.raises(RramlibError, match=match):
        search_space(smoke_config(), **kwargs)


@pytest.fixture
def no_prepare(monkeypatch):
    """Fails the test if the base model is loaded (for checks that must come first)."""
    def refuse(*args, **kwargs):
        raise AssertionError("loaded the base model before the input was checked")
    monkeypatch.setattr(tuning, "prepare", refuse)


@pytest.mark.parametrize("kwargs, match", [
    ({"val_images": 0}, "val_images"), ({"val_chips": 0}, "validation"), ({"times": ("soon",)}, "time"),
    ({"times": ()}, "at least one time"), ({"methods": ["scale"]}, "no search moves"),
    ({"methods": ["lroa"]}, "method"), ({"readout": "cooked"}, "readout"),
])
def test_bad_input_fails_before_the_base_model_is_loaded(no_prepare, kwargs, match):
    with pytest.raises(RramlibError, match=match):
        run_search(smoke_config(), **{"moves": MOVES, **kwargs})


def test_tuning_config_is_the_first_base_model_on_the_raw_readout():
    config = SweepConfig(profile="cifar", methods=("none", "vera_plus"), base_seed=2, readout="gdc", times=("1d",),
                         chips=3)
    first = PROFILES["cifar"].base_seeds[0]
    searched = tuning_config(config, ["bn", "lora"])
    assert (searched.base_seed, searched.readout, searched.methods) == (first, "raw", ("bn", "lora"))
    assert searched.times is None and searched.chips is None and searched.crossbar == "ideal"
    assert searched.resolved_profile() == PROFILES["cifar"].with_base_seed(first)
    assert tuning_config(config, ["bn"], readout="gdc").readout == "gdc"


def test_validation_subset_is_stratified(base):
    x, y = base.splits.val.tensors
    for everything in (None, len(y), 10**6):
        assert validation_subset(base.splits.val, everything)[1] is y
    xs, ys = validation_subset(base.splits.val, 50)
    idx = stratified_pick(y, 50)
    assert len(ys) == 50 and torch.equal(xs, x[idx]) and torch.equal(ys, y[idx])
    for c in range(10):  # each class within one image of its share
        assert abs(int((ys == c).sum()) - 50 * int((y == c).sum()) / len(y)) < 1
    with pytest.raises(RramlibError):
        validation_subset(base.splits.val, 0)


@pytest.fixture(scope="module")
def base(smoke_cache_in, tmp_path_factory):
    from rramlib.study.base_model import train_base_model
    return train_base_model(PROFILES["smoke"], cache=smoke_cache_in(tmp_path_factory.mktemp("c")), progress=False)


# ------------------------------------------------------------------------------------- the search
def computed_kinds(monkeypatch) -> list[str]:
    """The cache kinds computed (not read) from now on, in order."""
    computed = []
    get_or_compute = Cache.get_or_compute

    def spy(self, kind, config, compute):
        return get_or_compute(self, kind, config, lambda: (computed.append(kind), compute())[1])

    monkeypatch.setattr(Cache, "get_or_compute", spy)
    return computed


def test_the_search_is_cached_whole_and_shared_with_the_comparison(smoke_cache, monkeypatch):
    """The first call fits each candidate once; a second call, from a sweep configuration as the comparison holds
    it (another base seed, readout, method list, times and chips), reads the same search: no fit, no scoring."""
    computed = computed_kinds(monkeypatch)
    first = run_search(smoke_config(), moves=MOVES, val_images=60, cache=smoke_cache)
    assert computed.count("fit") == first.n_fits == 4 and first.n_candidates == 2
    assert computed.count("tuning") == 4 + 1  # each candidate's scores, then the whole search
    comparison = smoke_config(methods=("none", "bn", "lora"), base_seed=3, readout="gdc", times=("1d",), chips=1)
    computed.clear()
    again = run_search(comparison, moves=MOVES, val_images=60, cache=smoke_cache)
    assert not {"fit", "fit_level", "tuning"} & set(computed)
    for name, result in first.results.items():
        np.testing.assert_array_equal(again.results[name].accuracies, result.accuracies)
        assert again.results[name].chosen_index == result.chosen_index
        assert (result.base_index, result.margin) == (0, result.scores[result.chosen_index] - result.scores[0])
    assert (again.base_seed, again.readout, again.val_images) == (0, "raw", 60)
    assert again.wall_time_s == pytest.approx(sum(sum(r.fit_times) + sum(r.eval_times) for r in first.results.values()))
    budget = again.budget()
    assert budget["candidates"].tolist() == [2, 2] and (budget["margin"] >= 0).all()
    # what the comparison applies: the chosen values, as its sweep configuration's method_params
    params = tuned_method_params(comparison, moves=MOVES, val_images=60, cache=smoke_cache)
    applied = comparison.replace(method_params=params)
    assert {m: applied.method(m).params for m in MOVES} == {m: r.params for m, r in first.results.items()}
    assert not {"fit", "fit_level", "tuning"} & set(computed)


class Poison:
    """Stands for the test split: any use of it fails the test."""

    def __getattr__(self, name):
        raise AssertionError(f"the search read the test split ({name})")

    def __len__(self):
        raise AssertionError("the search read the test split (len)")

    def __iter__(self):
        raise AssertionError("the search read the test split (iter)")

    def __getitem__(self, i):
        raise AssertionError("the search read the test split (item)")


def test_the_search_never_reads_the_test_split_or_an_evaluation_chip(smoke_cache, monkeypatch):
    prepare, program = tuning.prepare, AnalogModel.program
    programmed = []

    def poisoned_prepare(*args, **kwargs):
        exp = prepare(*args, **kwargs)
        splits = dataclasses.replace(exp.base.splits, test=Poison())
        exp.ctx.splits, exp.base = splits, dataclasses.replace(exp.base, splits=splits)
        return exp

    def spy_program(self, seed):
        programmed.append(seed)
        return program(self, seed)

    monkeypatch.setattr(tuning, "prepare", poisoned_prepare)
    monkeypatch.setattr(AnalogModel, "program", spy_program)
    run_search(smoke_config(), moves=MOVES, val_images=60, val_chips=2, cache=smoke_cache)
    assert programmed and not [s for s in programmed if EVAL_CHIP_BASE <= s < VALIDATION_CHIP_BASE]
    assert {s for s in programmed if s >= EVAL_CHIP_BASE} == set(validation_chips(2))


def test_the_search_is_deterministic(smoke_cache_in, tmp_path):
    runs = [run_search(smoke_config(), moves=MOVES, val_images=60, cache=smoke_cache_in(tmp_path / name))
            for name in ("a", "b")]  # two caches: computed twice
    for name in MOVES:
        np.testing.assert_array_equal(runs[0].results[name].accuracies, runs[1].results[name].accuracies)
        assert runs[0].results[name].chosen == runs[1].results[name].chosen


def test_the_tuning_notebook_uses_the_module_defaults():
    assert _parameters("13_tuning")["val_chips"] == VAL_CHIPS and _parameters("13_tuning")["tuned_methods"] is None
