"""Configs document and validate themselves (rramlib.core.config): help and choices in each field's metadata,
checks on construction, one error naming the field; and one default preset everywhere."""
import ast
import dataclasses
from dataclasses import dataclass, field
from typing import ClassVar

import pytest

import rramlib.methods.adapters  # noqa: F401  (registers the adapter configs)
import rramlib.methods.compensation  # noqa: F401  (and the method configs)
import rramlib.nn.train  # noqa: F401
import rramlib.study.experiments  # noqa: F401
from rramlib.core.config import Config, config_field, config_fields, config_table
from rramlib.core.errors import RramlibError
from rramlib.device.drift import DEFAULT_PRESET, PRESETS
from rramlib.methods.adapters import LoRAConfig, VeraPlusConfig
from rramlib.methods.compensation import (BNRecalibrationConfig, DoRACalibrationConfig, LoRAMethodConfig,
                                          NoiseAwareConfig, OutputScalingConfig, TrainingConfig,
                                          VeraPlusMethodConfig)
from rramlib.nn.train import TrainConfig
from rramlib.study.experiments import SweepConfig
from rramlib.study.profiles import PROFILES, Profile


@dataclass(frozen=True)
class _Toy(Config):
    owner: ClassVar[str] = "toy"
    count: int = field(default=3, metadata={"help": "how many"})
    colour: str = field(default="red", metadata={"help": "which colour", "choices": ("red", "blue")})
    shade: str | None = field(default=None, metadata={"help": "which shade (default: none)", "choices": {"dark": 1}})
    tags: dict = field(default_factory=dict, metadata={"help": "free tags"})

    def _validate(self) -> None:
        if self.count < 1:
            raise RramlibError(f"toy.count must be >= 1, got {self.count}")


@dataclass(frozen=True)
class _ToyChild(_Toy):
    owner: ClassVar[str] = ""
    count: int = 5  # only a new default: keeps the base class's help


def _all_config_classes() -> list[type]:
    found, todo = [], [Config]
    while todo:
        for sub in todo.pop().__subclasses__():
            todo.append(sub)
            if sub.__module__.startswith("rramlib."):
                found.append(sub)
    return list(dict.fromkeys(found))  # a class reached along two bases once


def test_the_convention_covers_the_library_configs():
    classes = set(_all_config_classes())
    assert {SweepConfig, Profile, TrainConfig, LoRAConfig, VeraPlusConfig, DoRACalibrationConfig,
            OutputScalingConfig} <= classes


@pytest.mark.parametrize("cls", _all_config_classes(), ids=lambda c: c.__name__)
def test_every_field_of_every_config_has_help(cls):
    for f in config_fields(cls):
        assert f.help.strip(), f"{cls.__name__}.{f.name} has no help"


@pytest.mark.parametrize("make, label", [
    (lambda: SweepConfig(preset="nonsense"), "unknown preset 'nonsense'"),
    (lambda: SweepConfig(crossbar="nonsense"), "unknown crossbar 'nonsense'"),
    (lambda: SweepConfig(profile="huge"), "unknown profile 'huge'"),
    (lambda: SweepConfig(per_channel=1), "per_channel must be bool"),
    (lambda: dataclasses.replace(PROFILES["smoke"], dataset="mnist"), "unknown dataset 'mnist'"),
    (lambda: dataclasses.replace(PROFILES["smoke"], mapping="triple"), "unknown mapping 'triple'"),
    (lambda: dataclasses.replace(PROFILES["smoke"], eval_batch_size=0), "eval_batch_size"),
    (lambda: LoRAConfig(rank=0), "lora.rank"),
    (lambda: LoRAConfig(conv_branch="3x3"), "unknown lora.conv_branch '3x3'"),
    (lambda: VeraPlusConfig(sharing="all"), "unknown vera_plus.sharing 'all'"),
    (lambda: VeraPlusMethodConfig(steps=0), "vera_plus.steps"),
    (lambda: LoRAMethodConfig(lr=0.0), "lora.lr"),
    (lambda: OutputScalingConfig(mode="row"), "unknown scale.mode 'row'"),
    (lambda: BNRecalibrationConfig(batches=0), "bn.batches"),
    (lambda: DoRACalibrationConfig(budget=0.0), "dora.budget"),
    (lambda: NoiseAwareConfig(epochs=2.5), "noise_aware.epochs"),
    (lambda: TrainConfig(precision="fp8"), "precision"),
])
def test_a_bad_value_is_refused_on_construction_naming_the_field(make, label):
    with pytest.raises(RramlibError) as info:
        make()  # no validate() call: construction checks
    assert label in str(info.value)


def test_base_checks_types_choices_then_each_class_validate():
    assert _Toy().as_dict() == {"count": 3, "colour": "red", "shade": None, "tags": {}}
    assert _Toy(shade="dark").shade == "dark"  # a registry's keys are its choices; None passes for `str | None`
    for kwargs, message in [({"count": "3"}, "toy.count must be int"), ({"count": True}, "toy.count must be int"),
                            ({"colour": "green"}, "unknown toy.colour 'green'; choose one of: blue, red"),
                            ({"shade": "light"}, "unknown toy.shade 'light'"),
                            ({"count": 0}, "toy.count must be >= 1")]:
        with pytest.raises(RramlibError, match=message):
            _Toy(**kwargs)
    with pytest.raises(RramlibError, match="^unknown colour 'green'"):  # an empty owner: bare field names
        _ToyChild(colour="green")
    with pytest.raises(RramlibError, match="toy.count must be >= 1"):  # replace validates the copy
        dataclasses.replace(_Toy(), count=0)
    assert _Toy().validate() == _Toy()


def test_field_listing_gives_defaults_help_and_choices_inherited_by_a_new_default():
    fields = {f.name: f for f in config_fields(_ToyChild)}
    assert list(fields) == ["count", "colour", "shade", "tags"]
    assert (fields["count"].default, fields["count"].help, fields["count"].type) == (5, "how many", "int")
    assert fields["colour"].choices == ("red", "blue") and fields["shade"].choices == ("dark",)
    assert fields["tags"].default == {}
    lora_lr, base_lr = config_field(LoRAMethodConfig, "lr"), config_field(TrainingConfig, "lr")
    assert (lora_lr.default, base_lr.default) == (2e-3, 5e-3) and lora_lr.help == base_lr.help != ""
    with pytest.raises(RramlibError, match="unknown _Toy field 'size'"):
        config_field(_Toy, "size")
    table = config_table(_Toy)
    assert list(table.index) == ["count", "colour", "shade", "tags"]
    assert table.loc["colour", "choices"] == "red, blue" and table.loc["count", "help"] == "how many"


def test_method_defaults_are_unchanged_by_the_metadata():
    """The defaults the book's numbers were computed with (a field's metadata must not move them)."""
    assert LoRAConfig().as_dict() == {"rank": 4, "alpha": 8.0, "init_seed": 0, "conv_branch": "peft"}
    assert VeraPlusConfig().as_dict() == {"rank": 16, "sharing": "layer", "projection_seed": 0, "d_init": 0.1}
    dora = DoRACalibrationConfig()
    assert (dora.rank, dora.alpha, dora.seed, dora.budget, dora.n_samples) == (4, 8.0, 0, 0.0234, 10)
    assert (LoRAMethodConfig().lr, VeraPlusMethodConfig().lr, VeraPlusMethodConfig().steps) == (2e-3, 1e-2, 300)


# ------------------------------------------------------------------------------------------ one default preset
def test_one_default_preset_everywhere():
    from rramlib.cli.main import build_parser

    assert DEFAULT_PRESET in PRESETS
    assert SweepConfig().preset == DEFAULT_PRESET
    assert build_parser().parse_args(["sweep", "--out", "r.json"]).preset == DEFAULT_PRESET


def test_notebooks_that_declare_a_preset_default_to_the_default_preset():
    import nbformat

    from rramlib.book import NOTEBOOK_DIR
    from rramlib.book.parameters import declared_parameters

    declared = {}
    for path in sorted(NOTEBOOK_DIR.glob("[0-9][0-9]_*.ipynb")):
        for d in declared_parameters(nbformat.read(path, as_version=4), details=True):
            if d.name == "preset":
                declared[path.name] = ast.literal_eval(d.default)
    assert declared and set(declared.values()) == {DEFAULT_PRESET}, declared


def test_an_option_from_a_field_shows_its_help_choices_and_default():
    import argparse

    from rramlib.core.config import add_config_option

    parser = argparse.ArgumentParser()
    colour = add_config_option(parser, "--colour", _Toy, "colour")
    count = add_config_option(parser, "--count", _Toy, "count", default=None, unset="the toy's", type=int)
    shade = add_config_option(parser, "--shade", _Toy, "shade", note="50% darker")
    assert (colour.help, colour.default) == ("which colour; one of: red, blue (default: red)", "red")
    assert (count.help, count.default) == ("how many (default: the toy's)", None)
    assert shade.help == "which shade (default: none); 50%% darker; one of: dark"  # % escaped for argparse
    assert parser.parse_args(["--colour", "green"]).colour == "green"  # the config checks it, not argparse
    assert "50% darker" in parser.format_help()
