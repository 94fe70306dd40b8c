"""The networks of the study, built from a name and an explicit seed.

* ``digits_cnn`` / ``digits_mlp`` — small models for the 8x8 digits of the *quick* profile.
* ``resnet20`` / ``resnet32`` / ``resnet56`` — the CIFAR ResNets of He et al., "Deep Residual Learning
  for Image Recognition", CVPR 2016 (§4.2): a 3x3 stem with 16 channels, three stages of ``n`` basic
  blocks with 16/32/64 channels (depth ``6n+2``), option-A shortcuts (stride-2 subsampling and zero
  channel padding, no parameters), global average pooling and one linear layer. ResNet-20 then has
  269 722 parameters (10 classes); the often-quoted 272 474 belongs to option-B (1x1 conv + BN)
  projections at the two downsampling blocks, available as ``cifar_shortcut="B"``.
* ``resnet50`` — torchvision's ImageNet ResNet-50 (He et al. 2016), never with downloaded weights.

Weights are initialised inside ``torch.random.fork_rng`` after ``torch.manual_seed(seed)``, so the same
seed gives the same weights and the caller's global RNG is left untouched.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from rramlib.core.errors import RramlibError, check_choice, check_int

__all__ = ["MODELS", "build_model", "count_parameters", "DigitsCNN", "DigitsMLP", "CifarResNet"]

MODELS = ("digits_cnn", "digits_mlp", "resnet20", "resnet32", "resnet56", "resnet50")

_CIFAR_DEPTH = {"resnet20": 3, "resnet32": 5, "resnet56": 9}  # blocks per stage n, depth 6n+2


class DigitsCNN(nn.Sequential):
    """conv3x3(c->16)+BN+ReLU, conv3x3(16->32, stride 2)+BN+ReLU, conv3x3(32->64, stride 2)+BN+ReLU,
    global average pool, Linear(64->classes). For 8x8 inputs (23.6 k parameters for 10 classes)."""

    def __init__(self, num_classes: int = 10, in_channels: int = 1):
        def block(cin, cout, stride):
            return [nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]

        super().__init__(
            *block(in_channels, 16, 1),
            *block(16, 32, 2),
            *block(32, 64, 2),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Linear(64, num_classes),
        )


class DigitsMLP(nn.Sequential):
    """Flatten, Linear(64*c->128), ReLU, Linear(128->64), ReLU, Linear(64->classes), for 8x8 inputs."""

    def __init__(self, num_classes: int = 10, in_channels: int = 1):
        super().__init__(
            nn.Flatten(),
            nn.Linear(64 * in_channels, 128),
            nn.ReLU(inplace=True),
            nn.Linear(128, 64),
            nn.ReLU(inplace=True),
            nn.Linear(64, num_classes),
        )


class _ShortcutA(nn.Module):
    """Option-A shortcut (He et al. 2016): subsample by 2 and zero-pad the new channels."""

    def __init__(self, in_planes: int, planes: int):
        super().__init__()
        self.pad = planes - in_planes

    def forward(self, x):
        x = x[:, :, ::2, ::2]
        lo = self.pad // 2
        return F.pad(x, (0, 0, 0, 0, lo, self.pad - lo))


class BasicBlock(nn.Module):
    """Two 3x3 conv+BN layers with an identity shortcut, ReLU after the sum.

    Where the shape changes the shortcut is option A (parameter-free, the paper's CIFAR choice) or
    option B (1x1 conv + BN projection, as in several public CIFAR model zoos).
    """

    def __init__(self, in_planes: int, planes: int, stride: int = 1, shortcut: str = "A"):
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        if stride == 1 and in_planes == planes:
            self.shortcut = nn.Identity()
        elif shortcut == "A":
            self.shortcut = _ShortcutA(in_planes, planes)
        else:
            self.shortcut = nn.Sequential(nn.Conv2d(in_planes, planes, 1, stride, bias=False), nn.BatchNorm2d(planes))

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class CifarResNet(nn.Module):
    """CIFAR ResNet of depth ``6n+2`` (He et al. 2016, §4.2).

    With option-A shortcuts (default, as in the paper) ResNet-20 has 269 722 parameters for 10
    classes; with option-B projections (``shortcut="B"``) it has 272 474. Both are "0.27 M".
    """

    def __init__(self, n: int, num_classes: int = 10, in_channels: int = 3, shortcut: str = "A"):
        super().__init__()
        if shortcut not in ("A", "B"):
            raise RramlibError(f"unknown shortcut option {shortcut!r}; choose one of: A, B")
        self.conv1 = nn.Conv2d(in_channels, 16, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        layers, in_planes = [], 16
        for planes, stride in ((16, 1), (32, 2), (64, 2)):
            blocks = []
            for i in range(n):
                blocks.append(BasicBlock(in_planes, planes, stride if i == 0 else 1, shortcut))
                in_planes = planes
            layers.append(nn.Sequential(*blocks))
        self.layer1, self.layer2, self.layer3 = layers
        self.linear = nn.Linear(64, num_classes)
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.kaiming_normal_(m.weight)

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.layer3(self.layer2(self.layer1(out)))
        out = F.adaptive_avg_pool2d(out, 1).flatten(1)
        return self.linear(out)


def build_model(
    name: str, *, num_classes: int, in_channels: int = 3, seed: int = 0, cifar_shortcut: str = "A"
) -> nn.Module:
    """Build model ``name`` (one of :data:`MODELS`) with weights initialised from ``seed``.

    ``cifar_shortcut`` ("A" or "B") selects the CIFAR ResNets' downsampling shortcut (see
    :class:`CifarResNet`); other models ignore it.
    Pass ``in_channels=1`` for the digits models on the digits data (``DatasetSplits.in_channels``).
    Input sizes: 8x8 for ``digits_*``, 32x32 for the CIFAR ResNets, 224x224 (any >= 32) for ``resnet50``.
    """
    check_choice("model", name, MODELS)
    check_int("num_classes", num_classes, minimum=1)
    check_int("in_channels", in_channels, minimum=1)
    check_int("seed", seed, minimum=0)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        if name == "digits_cnn":
            return DigitsCNN(num_classes, in_channels)
        if name == "digits_mlp":
            return DigitsMLP(num_classes, in_channels)
        if name in _CIFAR_DEPTH:
            return CifarResNet(_CIFAR_DEPTH[name], num_classes, in_channels, cifar_shortcut)
        import torchvision

        model = torchvision.models.resnet50(weights=None, num_classes=num_classes)
        if in_channels != 3:
            model.conv1 = nn.Conv2d(in_channels, 64, 7, 2, 3, bias=False)
            nn.init.kaiming_normal_(model.conv1.weight, mode="fan_out", nonlinearity="relu")
        return model


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameter values (all, or only those with ``requires_grad``)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)
