"""One seeding scheme (rramlib.core.seeding): distinct streams, stable seeds, disjoint chip ranges."""
import itertools

import numpy as np
import pytest
import torch

from rramlib.core.errors import RramlibError
from rramlib.study.experiments import SweepConfig
from rramlib.study.profiles import get_profile
from rramlib.core.seeding import EVAL_CHIP_BASE, PURPOSES, derive_seed, eval_chips, generator, train_chips

GRID = [(root, purpose, *keys)
        for root in range(3)
        for purpose in PURPOSES
        for keys in [(), (0,), (1,), (7,), (0, 0), (0, 1), (1, 0), (2**32,), (0, 2**32), ("level0",), ("level1",),
                     ("level0", "conv1"), ("level0", "conv1.0"), (1, "a"), ("a", 1), ("",)]]


def first_draws(args, n=4):
    return tuple(torch.randint(2**62, (n,), generator=generator(*args)).tolist())


def test_streams_of_different_inputs_never_coincide():
    seeds = [derive_seed(*args) for args in GRID]
    assert len(set(seeds)) == len(GRID)
    draws = [first_draws(args) for args in GRID]
    assert len(set(draws)) == len(GRID)


def test_derived_seeds_never_equal_a_chip_seed():
    """Chips are programmed from their number (< 2**63); derived seeds have the top bit set."""
    assert all(2**63 <= derive_seed(*args) < 2**64 for args in GRID)


def test_same_inputs_same_stream():
    for args in GRID[::7]:
        assert derive_seed(*args) == derive_seed(*args)
        assert torch.equal(torch.rand(5, generator=generator(*args)), torch.rand(5, generator=generator(*args)))


def test_the_old_seed_plus_level_collision_is_gone():
    """seed + level gave seed 1 at level 0 the stream of seed 0 at level 1 (bn fine-tuning, retrain)."""
    for purpose in PURPOSES:
        assert derive_seed(1, purpose, 0) != derive_seed(0, purpose, 1)
        assert first_draws((1, purpose, 0)) != first_draws((0, purpose, 1))
    # and seed * 1000 + level: seed 0 at level 1000 vs seed 1 at level 0
    assert derive_seed(0, "adapter_training", 1000) != derive_seed(1, "adapter_training", 0)


def test_the_derivation_is_numpys_seed_sequence():
    """Documented encoding: spawn key = (purpose number, then per key: type tag, word count, uint32 words)."""
    expected = np.random.SeedSequence(5, spawn_key=(PURPOSES["adapter_training"], 0, 1, 3)).generate_state(1, np.uint64)
    assert derive_seed(5, "adapter_training", 3) == int(expected[0]) | 2**63
    text = int.from_bytes(b"\x01ab", "little")  # one word
    expected = np.random.SeedSequence(0, spawn_key=(PURPOSES["lora_init"], 1, 1, text)).generate_state(1, np.uint64)
    assert derive_seed(0, "lora_init", "ab") == int(expected[0]) | 2**63


def test_purpose_numbers_are_unique_and_positive():
    assert len(set(PURPOSES.values())) == len(PURPOSES) and min(PURPOSES.values()) >= 1


@pytest.mark.parametrize("args,match", [
    ((-1, "augment"), "seed"), ((2**63, "augment"), "seed"), ((True, "augment"), "seed"), ((0.0, "augment"), "seed"),
    ((0, "nonsense"), "purpose"), ((0, "augment", -1), "key"), ((0, "augment", 1.5), "key"),
    ((0, "augment", True), "key"), ((0, "augment", None), "key"),
])
def test_bad_seed_input(args, match):
    with pytest.raises(RramlibError, match=match):
        derive_seed(*args)


def test_training_and_evaluation_chip_ranges_are_disjoint_for_every_count():
    counts = sorted({1, 2, 3, 8, 64, 999, EVAL_CHIP_BASE - 1, EVAL_CHIP_BASE})
    for n_train, n_eval in itertools.product(counts, counts):
        train, evaluation = train_chips(n_train), eval_chips(n_eval)
        assert len(train) == n_train and len(evaluation) == n_eval
        assert max(train) < min(evaluation)  # both are contiguous ranges: this is disjointness
        assert min(train) == 0 and min(evaluation) == EVAL_CHIP_BASE
    for bad in (0, -1, EVAL_CHIP_BASE + 1, 2.0, True):
        with pytest.raises(RramlibError, match="chips"):
            train_chips(bad)
        with pytest.raises(RramlibError, match="chips"):
            eval_chips(bad)


def test_profiles_and_sweeps_use_the_two_ranges():
    for name in ("smoke", "quick", "paper"):
        profile = get_profile(name)
        assert set(SweepConfig(profile=name).chip_seeds()) == set(eval_chips(profile.chips))
    with pytest.raises(RramlibError, match="chips"):
        get_profile("smoke", train_chips=EVAL_CHIP_BASE + 1)
    with pytest.raises(RramlibError, match="chips"):
        get_profile("smoke", chips=0)
