"""Profiles: the study-scale profile's settings, the profile's mapping and how sweeps resolve it."""
import pytest

from rramlib.core.errors import RramlibError
from rramlib.study.experiments import SweepConfig
from rramlib.study.profiles import PROFILES, get_profile


def test_cifar_profile_is_the_study_scale_on_a_cpu():
    cifar = PROFILES["cifar"]
    assert (cifar.dataset, cifar.model, cifar.device) == ("cifar10", "resnet20", "cpu")
    assert cifar.chips >= 5 and cifar.n_test is None  # issue 22: five chips, the whole test split
    assert len(cifar.base_seeds) >= 3 and cifar.train.precision == "bf16"
    assert tuple(cifar.times) == tuple(PROFILES["paper"].times)  # the full ten-year grid
    assert cifar.mapping == "differential"


def test_profile_mapping_reaches_the_sweep_unless_the_sweep_names_one():
    assert SweepConfig(profile="smoke", preset="ibm_cmo_reram").resolved_mapping() is None  # preset default
    cfg = SweepConfig(profile="smoke", preset="ibm_cmo_reram", profile_overrides={"mapping": "differential"})
    assert cfg.resolved_mapping() == "differential"
    own = SweepConfig(profile="smoke", preset="ibm_cmo_reram", mapping="single",
                      profile_overrides={"mapping": "differential"})
    assert own.resolved_mapping() == "single"


@pytest.mark.parametrize("field, value, pattern", [("mapping", "triple", "mapping"), ("n_test", 0, "n_test"),
                                                   ("n_test", 2.5, "n_test")])
def test_bad_profile_fields_are_refused(field, value, pattern):
    with pytest.raises(RramlibError, match=pattern):
        get_profile("smoke", **{field: value})


def test_a_profile_validates_itself_however_it_is_built():
    """Profile is a rramlib.core.config.Config: dataclasses.replace checks the copy as get_profile does."""
    import dataclasses

    smoke = PROFILES["smoke"]
    with pytest.raises(RramlibError, match="unknown model 'vgg'"):
        dataclasses.replace(smoke, model="vgg")
    with pytest.raises(RramlibError, match="chips"):
        dataclasses.replace(smoke, chips="3")
    assert dataclasses.replace(smoke, mapping="single").mapping == "single"  # a valid value still passes
    assert get_profile("smoke", n_test=None).n_test is None


def test_base_seeds_set_both_the_initialisation_and_the_batch_order():
    cifar = get_profile("cifar")
    seeded = cifar.with_base_seed(2)
    assert (seeded.model_seed, seeded.train.seed) == (2, 2)
    assert seeded.train.epochs == cifar.train.epochs and seeded.chips == cifar.chips  # nothing else changes
    with pytest.raises(RramlibError, match="base seed"):
        cifar.with_base_seed(-1)


@pytest.mark.parametrize("seeds", [(), (0, 0), (0, -1), [0, 1], (0, 1.5)])
def test_bad_base_seeds_are_refused(seeds):
    with pytest.raises(RramlibError, match="base.seed"):
        get_profile("smoke", base_seeds=seeds)
