"""Per-method facts (label, colour, marker, fitting, shared note, trained, not for HFN) live in each method class;
every former table keyed by method name reads them through the registry and answers as it did before."""
from dataclasses import dataclass
from typing import ClassVar

import pytest

from rramlib.core.errors import RramlibError
from rramlib.methods.compensation import (FACTS, METHODS, FitContext, Method, MethodConfig, MethodFacts, check_method,
                                          make_method, register)
from rramlib.methods.overhead import Storage
from rramlib.present.plotting import METHOD_COLORS, METHOD_LABELS, METHOD_MARKERS, method_color, row_label
from rramlib.study import analysis
from rramlib.study.hidden_fold import check_hfn_method
from rramlib.study.tuning import trained_methods

# ---------------------------------------------------------------- the tables as they were (commit 3336e9d)
OLD_LABELS = {
    "drift_free": "drift-free", "none": "uncompensated", "scale": "output scaling", "bn": "BN recalibration",
    "lora": "LoRA per level", "dora": "DoRA calibration", "vera_plus": "VeRA+", "noise_aware": "noise-aware training",
    "vera_plus_layer": "VeRA+ (per-layer)", "vera_plus_cross": "VeRA+ (cross-layer)",
    "offline_correction": "full-rank correction per level", "reprogram": "reprogrammed chip (upper line)",
    "ln_refit": "LayerNorm γ/β re-fit (ours, BN's analogue)",  # added with the language models (issue 23)
}
OLD_COLORS = {
    "drift_free": "#000000", "none": "#999999", "scale": "#E69F00", "bn": "#56B4E9", "lora": "#009E73",
    "dora": "#F0E442", "vera_plus": "#D55E00", "vera_plus_layer": "#D55E00", "vera_plus_cross": "#7A2E00",
    "noise_aware": "#0072B2", "offline_correction": "#CC79A7", "reprogram": "#444444", "ln_refit": "#56B4E9",
}
OLD_MARKERS = {"none": "o", "scale": "s", "bn": "^", "lora": "v", "dora": "D", "vera_plus": "*",
               "vera_plus_layer": "*", "vera_plus_cross": "h", "noise_aware": "P", "offline_correction": "X",
               "reprogram": "+", "ln_refit": "<"}
OLD_FITTING = {
    "none": "nothing fitted", "scale": "per chip: readouts at programming and at t",
    "bn": "offline, per level, all chips", "lora": "offline, per level, all chips",
    "vera_plus": "offline, per level, all chips", "dora": "online, per chip (in the field)",
    "noise_aware": "offline, base weights", "offline_correction": "offline, per level, all chips",
    "reprogram": "chip rewritten (upper line)", "ln_refit": "offline, per level, all chips",
}
OLD_SHARED = {
    "none": "—", "scale": "r0 per layer, kept once from programming", "bn": "BN γ/β unchanged (shared)",
    "lora": "nothing: A and B per layer and level",
    "dora": "online, per chip: the chip's DoRA set + calibration inputs and drift-free targets (counted)",
    # VeRA+'s note names both readings of A and B (in SRAM, or regenerated per inference)
    "vera_plus": "A, B: in SRAM, or regenerated per inference from a seed (both readings counted)",
    "noise_aware": "nothing digital (other RRAM weights)",
    "offline_correction": "nothing: a full-rank correction of every weight per level",
    "reprogram": "the software weights, once (to rewrite the chip)",
    "ln_refit": "nothing: one LayerNorm γ/β set per level",
}
OLD_NOT_FOR_HFN = {
    "noise_aware": "trains the weights with drift injected; an HFN's weights are random and never trained",
    "offline_correction": "adds trained full-rank weights to the RRAM's, which turns the HFN into a dense network",
    "ln_refit": "re-fits LayerNorm, which a Hidden-Fold ResNet does not have (it has BatchNorm)",
}
OLD_TRAINED = ["bn", "lora", "dora", "vera_plus", "noise_aware", "offline_correction", "ln_refit"]

#: registry key -> (method class, config class): the config is named after the class
NAMES = {
    "none": ("NoCompensation", "MethodConfig"), "scale": ("OutputScaling", "OutputScalingConfig"),
    "bn": ("BNRecalibration", "BNRecalibrationConfig"), "lora": ("LoRAMethod", "LoRAMethodConfig"),
    "dora": ("DoRACalibration", "DoRACalibrationConfig"), "vera_plus": ("VeraPlusMethod", "VeraPlusMethodConfig"),
    "noise_aware": ("NoiseAware", "NoiseAwareConfig"),
    "offline_correction": ("OfflineCorrection", "OfflineCorrectionConfig"), "reprogram": ("Reprogram", "MethodConfig"),
    "ln_refit": ("LayerNormRefit", "LayerNormRefitConfig"),
}


@pytest.mark.parametrize("name", sorted(METHODS))
def test_every_method_states_every_fact_in_its_own_class(name):
    cls = METHODS[name]
    assert [f for f in FACTS if f not in vars(cls)] == []
    cls.check_facts()
    assert all(isinstance(getattr(cls, f), types) for f, types in FACTS.items())


def test_the_former_tables_answer_as_before():
    assert dict(METHOD_LABELS) == OLD_LABELS
    assert dict(METHOD_COLORS) == OLD_COLORS
    assert dict(METHOD_MARKERS) == OLD_MARKERS
    assert dict(analysis.FITTING) == OLD_FITTING
    assert {n: c.shared_note for n, c in METHODS.items()} == OLD_SHARED  # costs.py's table T2 reads it
    assert {n: c.not_for_hfn for n, c in METHODS.items() if c.not_for_hfn is not None} == OLD_NOT_FOR_HFN
    assert trained_methods() == OLD_TRAINED
    # lookups of names that are no row keep their fallbacks
    assert METHOD_LABELS.get("nope", "nope") == "nope" and method_color("nope") == "#444444"
    assert row_label("vera_plus (cross-layer)") == "VeRA+ (cross-layer)"


def test_check_hfn_method_gives_the_class_reason():
    for name, reason in OLD_NOT_FOR_HFN.items():
        with pytest.raises(RramlibError, match="does not apply to a Hidden-Fold Network") as err:
            check_hfn_method(name)
        assert reason in str(err.value)
    assert [check_hfn_method(n) for n in METHODS if n not in OLD_NOT_FOR_HFN] == [
        n for n in METHODS if n not in OLD_NOT_FOR_HFN]


def test_key_class_and_config_names_agree():
    assert {n: (c.__name__, c.Config.__name__) for n, c in METHODS.items()} == NAMES
    assert all(c.Config is MethodConfig or c.Config.__name__ == c.__name__ + "Config" for c in METHODS.values())
    assert all(c.name == n for n, c in METHODS.items())


def test_trained_means_a_learning_rate_to_tune():
    assert all(c.trained == ("lr" in c.default_params()) for c in METHODS.values())


# ---------------------------------------------------------------- a new method: one class, registered once
@dataclass(frozen=True)
class FakeConfig(MethodConfig):
    owner: ClassVar[str] = "fake"
    lr: float = 0.1


class Fake(Method):
    name = "fake"
    Config = FakeConfig
    label = "fake method"
    color = "#123456"
    marker = "d"
    fitting = "offline, per level, all chips"
    shared_note = "nothing"
    trained = True
    not_for_hfn = "it is fake"

    def setup(self, ctx: FitContext) -> None:
        self.analog_ = ctx.analog()

    def storage(self) -> Storage:
        return Storage(values_per_level=0, levels=1)


@pytest.fixture
def registered():
    """Registers method classes for one test and removes them afterwards."""
    added = []

    def add(cls):
        register(cls)
        added.append(cls.name)
        return cls

    yield add
    for name in added:
        METHODS.pop(name)


def test_a_registered_method_shows_up_everywhere(registered):
    assert "fake" not in METHOD_LABELS
    registered(Fake)
    assert isinstance(make_method("fake", lr=0.2), Fake) and check_method("fake") == "fake"
    assert (METHOD_LABELS["fake"], METHOD_COLORS["fake"], METHOD_MARKERS["fake"]) == ("fake method", "#123456", "d")
    assert method_color("fake") == "#123456" and row_label("fake (variant)") == "fake method (variant)"
    assert analysis.FITTING["fake"] == Fake.fitting
    assert trained_methods() == OLD_TRAINED + ["fake"]
    with pytest.raises(RramlibError, match="it is fake"):
        check_hfn_method("fake")
    assert len(METHOD_LABELS) == len(OLD_LABELS) + 1


def _variant(**attrs):
    return type("Fake", (Fake,), {"name": "fake2", **attrs})


@pytest.mark.parametrize("attrs, message", [
    ({"name": "vera_plus"}, "'vera_plus' is taken"),
    ({"name": "retrain"}, "'retrain' is taken"),
    ({"name": ""}, "no registry name"),
    ({"label": None}, r"wrong type of \['label=None'\]"),
    ({"trained": "yes"}, "wrong type of"),
    ({"not_for_hfn": 0}, "wrong type of"),
    ({"trained": False}, "trained=False but its hyper-parameters have a learning rate"),
    ({"Config": MethodConfig}, "trained=True but its hyper-parameters lack a learning rate"),
    ({"Config": type("OtherConfig", (FakeConfig,), {})}, "config is OtherConfig, not FakeConfig"),
])
def test_register_refuses_an_incomplete_or_clashing_class(attrs, message):
    with pytest.raises(RramlibError, match=message):
        register(_variant(**attrs))
    assert "fake2" not in METHODS and "fake" not in METHODS


def test_register_names_a_missing_fact():
    class Bare(Method):  # states no facts at all
        name = "bare"
        setup = Fake.setup
        storage = Fake.storage

    with pytest.raises(RramlibError, match=r"does not state \['label', 'color', 'marker'"):
        register(Bare)
    assert "bare" not in METHODS


def test_method_facts_view_checks_its_fact_and_rows():
    with pytest.raises(RramlibError, match="fact"):
        MethodFacts("colour")
    with pytest.raises(RramlibError, match=r"\['bn'\] are methods"):
        MethodFacts("label", {"bn": "something else"})
    view = MethodFacts("marker", {"ref": "."})
    assert list(view) == [*METHODS, "ref"] and view["ref"] == "." and view["bn"] == METHODS["bn"].marker
    with pytest.raises(KeyError):
        view["nope"]
