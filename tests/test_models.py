"""Model shapes, parameter counts, seeded initialisation and bad names."""
from __future__ import annotations

import pytest
import torch
import torch.nn as nn

from rramlib.core.errors import RramlibError
from rramlib.nn.models import MODELS, CifarResNet, build_model, count_parameters

INPUTS = {
    "digits_cnn": (1, 8),
    "digits_mlp": (1, 8),
    "resnet20": (3, 32),
    "resnet32": (3, 32),
    "resnet56": (3, 32),
    "resnet50": (3, 64),  # any size >= 32 works; 224 is the ImageNet size
}


@pytest.mark.parametrize("name", MODELS)
def test_output_shape(name):
    c, hw = INPUTS[name]
    model = build_model(name, num_classes=7, in_channels=c).eval()
    with torch.no_grad():
        out = model(torch.randn(2, c, hw, hw))
    assert out.shape == (2, 7)
    assert torch.isfinite(out).all()


def test_models_constant():
    assert MODELS == ("digits_cnn", "digits_mlp", "resnet20", "resnet32", "resnet56", "resnet50")


@pytest.mark.parametrize(
    "name, expected",
    [
        # option-A (parameter-free) shortcuts as in He et al. 2016
        ("resnet20", 269_722),
        ("resnet32", 464_154),
        ("resnet56", 853_018),
        ("digits_mlp", 64 * 128 + 128 + 128 * 64 + 64 + 64 * 10 + 10),
        ("digits_cnn", 9 * 16 + 32 + 9 * 16 * 32 + 64 + 9 * 32 * 64 + 128 + 64 * 10 + 10),
    ],
)
def test_parameter_counts(name, expected):
    c = INPUTS[name][0]
    assert count_parameters(build_model(name, num_classes=10, in_channels=c)) == expected


def test_resnet20_option_b_has_the_often_quoted_count():
    assert count_parameters(build_model("resnet20", num_classes=10, cifar_shortcut="B")) == 272_474
    with pytest.raises(RramlibError, match="shortcut"):
        build_model("resnet20", num_classes=10, cifar_shortcut="C")


def test_resnet50_is_torchvisions():
    model = build_model("resnet50", num_classes=1000)
    assert count_parameters(model) == 25_557_032
    one = build_model("resnet50", num_classes=5, in_channels=1)
    assert one.conv1.in_channels == 1 and one.fc.out_features == 5


def test_option_a_shortcut_subsamples_and_zero_pads():
    block = CifarResNet(1).layer2[0]  # 16 -> 32 channels, stride 2
    x = torch.randn(2, 16, 8, 8)
    s = block.shortcut(x)
    assert s.shape == (2, 32, 4, 4)
    assert torch.equal(s[:, 8:24], x[:, :, ::2, ::2])
    assert torch.count_nonzero(s[:, :8]) == 0 and torch.count_nonzero(s[:, 24:]) == 0


def test_digits_cnn_structure():
    model = build_model("digits_cnn", num_classes=10, in_channels=1)
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert [(m.in_channels, m.out_channels, m.stride) for m in convs] == [(1, 16, (1, 1)), (16, 32, (2, 2)), (32, 64, (2, 2))]
    assert all(m.bias is None for m in convs)
    assert sum(isinstance(m, nn.BatchNorm2d) for m in model.modules()) == 3
    mlp = build_model("digits_mlp", num_classes=10, in_channels=1)
    assert {type(m) for m in mlp.modules() if len(list(m.parameters(recurse=False)))} == {nn.Linear}


@pytest.mark.parametrize("name", ["digits_cnn", "digits_mlp", "resnet20"])
def test_same_seed_same_weights_and_global_rng_untouched(name):
    c = INPUTS[name][0]
    torch.manual_seed(123)
    expected_next = torch.rand(3)
    torch.manual_seed(123)
    a = build_model(name, num_classes=10, in_channels=c, seed=5)
    assert torch.equal(torch.rand(3), expected_next)  # building did not consume the global RNG
    b = build_model(name, num_classes=10, in_channels=c, seed=5)
    other = build_model(name, num_classes=10, in_channels=c, seed=6)
    sa, sb, so = a.state_dict(), b.state_dict(), other.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert any(not torch.equal(sa[k], so[k]) for k in sa if sa[k].is_floating_point())


@pytest.mark.parametrize(
    "kwargs, pattern",
    [
        (dict(name="vgg16", num_classes=10), "unknown model 'vgg16'; choose one of: digits_cnn"),
        (dict(name="resnet20", num_classes=0), "num_classes must be an integer >= 1"),
        (dict(name="resnet20", num_classes=10, in_channels=0), "in_channels must be an integer >= 1"),
        (dict(name="resnet20", num_classes=10, seed=-1), "seed must be"),
        (dict(name="resnet20", num_classes=10.0), "num_classes must be an integer"),
    ],
)
def test_bad_input_raises(kwargs, pattern):
    kwargs = dict(kwargs)
    name = kwargs.pop("name")
    with pytest.raises(RramlibError, match=pattern):
        build_model(name, **kwargs)


def test_count_parameters_trainable_only():
    model = build_model("digits_mlp", num_classes=10, in_channels=1)
    model[1].weight.requires_grad_(False)
    assert count_parameters(model, trainable_only=True) == count_parameters(model) - 64 * 128
