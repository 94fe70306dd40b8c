"""Hidden-Fold Networks (HFN) on drifting RRAM: random weights, a learned supermask, folded stages.

López García-Arias, Hashimoto, Motomura, Yu, "Hidden-Fold Networks: Random Recurrent Residuals Using
Sparse Supermasks", BMVC 2021 (arXiv 2111.12330). Only the abstract and the authors' public configs are
known to us (DESIGN §8); every other choice is a named parameter here, listed in the book's *unknowns* page.

* **Supermask layers** (edge-popup, Ramanujan et al., CVPR 2020): the weights are *signed constants*
  ``±c`` with ``c = sqrt(2 / fan_in)`` (Kaiming gain for ReLU; ``fan_in·k`` with ``scale_fan``), their
  signs drawn from a seed and never stored or trained (a non-persistent buffer). Each weight has a trainable
  score; the forward pass uses ``W ⊙ m`` with ``m`` = 1 on the ``round(k·n)`` largest ``|score|`` of the
  layer (``k = 0.3`` by default), and the gradient of ``m`` goes straight through to the scores.
* **Folding**: in a folded stage the first (stride/projection) block stays and the other ``n-1`` blocks
  become one block applied ``n-1`` times (one weight tensor), with its own BatchNorm at every iteration.
  BatchNorm is non-affine throughout (``bn_affine``), as in the authors' configs outside the folded blocks.
* **Crossbar**: :func:`materialise` turns an HFN into a plain network whose Conv2d/Linear weights are the
  effective weights ``W ⊙ m ∈ {-c, 0, +c}``; :class:`~rramlib.device.analog.AnalogModel` maps them as usual, so on
  a differential pair a kept weight is one device at ``g_max`` and its partner at ``g_min`` (``w_max = c``),
  and a pruned weight is a pair left at ``g_min`` on both sides. The mask itself is digital.
* **Memory**: :func:`hfn_memory` (mask bits, seed, BatchNorm values) against :func:`dense_memory` (every
  stored value), with the :class:`~rramlib.methods.overhead.Storage` conventions of the compensation methods.

The same :class:`HFNResNet` with ``supermask=False, fold=False`` is the dense, trained, unfolded network of
the same layout, the comparison the HFN paper makes (an HFN against the ResNet it was folded from).
"""
from __future__ import annotations

import copy
import dataclasses
import math
import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rramlib.device.analog import AnalogModel, rram_layers
from rramlib.core.cache import Cache, config_hash
from rramlib.methods.compensation import FitContext, Method, make_method
from rramlib.device.drift import DriftModel, make_drift_model
from rramlib.nn.data import as_tensors, load_dataset
from rramlib.core.errors import RramlibError, check_choice, check_type
from rramlib.nn.evaluate import accuracy
from rramlib.methods.overhead import PRECISION_BITS, Storage
from rramlib.methods.schedule import log_windows
from rramlib.core.seeding import generator
from rramlib.nn.train import TrainConfig, train

__all__ = [
    "HFN_ARCHS", "HFNArch", "SupermaskConv2d", "SupermaskLinear", "HFNResNet", "build_hfn", "supermask_layers",
    "materialise", "HFNMemory", "hfn_memory", "dense_memory", "SEED_BYTES", "accuracy_over_time",
    "HFNProfile", "HFN_PROFILES", "TrainedPair", "train_pair", "fit_compensation", "PAPER_CLAIMS",
    "crossbar_layout", "NOT_FOR_HFN", "check_hfn_method", "weight_noise_accuracy",
]

#: The HFN paper's own headline numbers, from its abstract (arXiv 2111.12330): memory of the dense ResNet
#: over that of the HFN of equivalent (CIFAR-100, ResNet-50) or similar (ImageNet, ResNet-34) accuracy.
#: Its accounting rule is unknown to us.
PAPER_CLAIMS = {"memory_ratio_cifar100_resnet50": 38.5, "memory_ratio_imagenet_resnet34": 26.8}

#: Bytes of the one seed from which every layer's random signs are regenerated (a 64-bit integer).
SEED_BYTES = 8


# ------------------------------------------------------------------------------------------ supermask
class _TopKStraightThrough(torch.autograd.Function):
    """1 on the ``n_keep`` largest entries, 0 elsewhere; backward passes the gradient through unchanged
    (edge-popup's straight-through estimator, Ramanujan et al. 2020, §3)."""

    @staticmethod
    def forward(ctx, scores: Tensor, n_keep: int) -> Tensor:
        flat = torch.zeros(scores.numel(), dtype=scores.dtype, device=scores.device)
        flat[scores.reshape(-1).topk(n_keep).indices] = 1
        return flat.view(scores.shape)

    @staticmethod
    def backward(ctx, grad: Tensor):
        return grad, None


class _Supermask(nn.Module):
    """Shared part of the supermask layers: signed-constant weights from a seed, scores, top-k mask."""

    def _init_supermask(self, shape: tuple[int, ...], fan_in: int, *, k: float, seed: int, index: int,
                        scale_fan: bool) -> None:
        if isinstance(k, bool) or not isinstance(k, (int, float)) or not 0 < k <= 1:
            raise RramlibError(f"supermask density k must be in (0, 1], got {k!r}")
        self.k, self.seed, self.index, self.scale_fan = float(k), seed, index, scale_fan
        self.n_keep = max(1, round(self.k * math.prod(shape)))
        self.register_buffer("weight", self.signed_constant(shape, fan_in, k, seed, index, scale_fan),
                             persistent=False)
        scores = torch.empty(shape)
        bound = 1.0 / math.sqrt(fan_in)  # = kaiming_uniform_(a=sqrt(5)), edge-popup's score init
        scores.uniform_(-bound, bound, generator=generator(seed, "supermask_scores", index))
        self.scores = nn.Parameter(scores)

    @staticmethod
    def signed_constant(shape, fan_in: int, k: float, seed: int, index: int, scale_fan: bool) -> Tensor:
        """``±c`` with random signs from stream ``(seed, "supermask_weights", index)``; ``c = sqrt(2/fan)``."""
        fan = fan_in * k if scale_fan else fan_in
        signs = torch.randint(0, 2, shape, generator=generator(seed, "supermask_weights", index)) * 2 - 1
        return signs.to(torch.float32) * math.sqrt(2.0 / fan)

    def mask(self) -> Tensor:
        """The binary mask (with the straight-through gradient to the scores)."""
        return _TopKStraightThrough.apply(self.scores.abs(), self.n_keep)

    def effective_weight(self) -> Tensor:
        """``W ⊙ m``: what the layer computes with, and what goes on the crossbar."""
        return self.weight * self.mask()

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, k={self.k}, n_keep={self.n_keep}, seed={self.seed}, index={self.index}"


class SupermaskConv2d(_Supermask):
    """A bias-free Conv2d with frozen signed-constant weights and a learned top-k supermask."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1, padding: int = 0,
                 *, k: float = 0.3, seed: int = 0, index: int = 0, scale_fan: bool = False):
        super().__init__()
        self.in_channels, self.out_channels, self.kernel_size = in_channels, out_channels, kernel_size
        self.stride, self.padding = stride, padding
        self._init_supermask((out_channels, in_channels, kernel_size, kernel_size), in_channels * kernel_size**2,
                             k=k, seed=seed, index=index, scale_fan=scale_fan)

    def forward(self, x: Tensor) -> Tensor:
        return F.conv2d(x, self.effective_weight(), None, self.stride, self.padding)

    def plain(self) -> nn.Conv2d:
        """An ``nn.Conv2d`` holding the effective weight (detached)."""
        conv = nn.Conv2d(self.in_channels, self.out_channels, self.kernel_size, self.stride, self.padding, bias=False)
        with torch.no_grad():
            conv.weight.copy_(self.effective_weight())
        return conv.to(self.weight.device)


class SupermaskLinear(_Supermask):
    """A bias-free Linear layer with frozen signed-constant weights and a learned top-k supermask."""

    def __init__(self, in_features: int, out_features: int, *, k: float = 0.3, seed: int = 0, index: int = 0,
                 scale_fan: bool = False):
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self._init_supermask((out_features, in_features), in_features, k=k, seed=seed, index=index,
                             scale_fan=scale_fan)

    def forward(self, x: Tensor) -> Tensor:
        return F.linear(x, self.effective_weight())

    def plain(self) -> nn.Linear:
        """An ``nn.Linear`` holding the effective weight (detached)."""
        linear = nn.Linear(self.in_features, self.out_features, bias=False)
        with torch.no_grad():
            linear.weight.copy_(self.effective_weight())
        return linear.to(self.weight.device)


_SUPERMASK = (SupermaskConv2d, SupermaskLinear)


def supermask_layers(model: nn.Module) -> list[tuple[str, _Supermask]]:
    """(name, layer) of every distinct supermask layer (a folded layer once), in registration order."""
    return [(n, m) for n, m in model.named_modules() if isinstance(m, _SUPERMASK)]


# ------------------------------------------------------------------------------------------ architecture
@dataclass(frozen=True)
class HFNArch:
    """A ResNet layout of basic blocks (He et al. 2016) and which of its stages are folded.

    widths / blocks : channels and number of blocks of each stage (the first stage keeps the stem's
    resolution, the others halve it); folded : indices of the folded stages; k : supermask density;
    bn_affine : BatchNorm with γ/β (default off, as in the authors' configs); scale_fan : edge-popup's
    ``c = sqrt(2 / (k·fan_in))`` instead of ``sqrt(2 / fan_in)``.
    """

    widths: tuple[int, ...]
    blocks: tuple[int, ...]
    folded: tuple[int, ...]
    k: float = 0.3
    bn_affine: bool = False
    scale_fan: bool = False

    def __post_init__(self):
        if not self.widths or len(self.widths) != len(self.blocks):
            raise RramlibError(f"widths {self.widths} and blocks {self.blocks} need one entry per stage")
        for name, values in (("widths", self.widths), ("blocks", self.blocks)):
            for v in values:
                if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                    raise RramlibError(f"{name} must be positive integers, got {values}")
        for s in self.folded:
            if isinstance(s, bool) or not isinstance(s, int) or not 0 <= s < len(self.widths):
                raise RramlibError(f"folded stage {s!r} does not exist; stages are 0..{len(self.widths) - 1}")
        if isinstance(self.k, bool) or not isinstance(self.k, (int, float)) or not 0 < self.k <= 1:
            raise RramlibError(f"supermask density k must be in (0, 1], got {self.k!r}")
        check_type("bn_affine", self.bn_affine, bool)
        check_type("scale_fan", self.scale_fan, bool)


#: Named layouts. ``hfn_digits``: two folded stages for the 8x8 digits (quick profile). ``hfn_cifar``: the
#: ResNet-34 stage layout (3, 4, 6, 3 basic blocks) with stages 3 and 4 folded, as the authors fold the last
#: two stages (they fold a bottleneck ResNet; basic blocks are our choice), for 32x32 CIFAR inputs.
HFN_ARCHS: dict[str, HFNArch] = {
    "hfn_digits": HFNArch(widths=(16, 32), blocks=(3, 3), folded=(0, 1)),
    "hfn_cifar": HFNArch(widths=(64, 128, 256, 512), blocks=(3, 4, 6, 3), folded=(2, 3)),
}


class _Builder:
    """Makes the layers of one network: supermask layers numbered in order (their seed streams), or dense
    layers initialised Kaiming-normal from one seeded generator."""

    def __init__(self, arch: HFNArch, seed: int, supermask: bool):
        self.arch, self.seed, self.supermask, self.count = arch, seed, supermask, 0
        self.gen = torch.Generator().manual_seed(seed)

    def conv(self, cin: int, cout: int, kernel: int, stride: int) -> nn.Module:
        if self.supermask:
            self.count += 1
            return SupermaskConv2d(cin, cout, kernel, stride, kernel // 2, k=self.arch.k, seed=self.seed,
                                   index=self.count - 1, scale_fan=self.arch.scale_fan)
        conv = nn.Conv2d(cin, cout, kernel, stride, kernel // 2, bias=False)
        with torch.no_grad():
            conv.weight.normal_(0, math.sqrt(2.0 / (cin * kernel**2)), generator=self.gen)
        return conv

    def linear(self, fin: int, fout: int) -> nn.Module:
        if self.supermask:
            self.count += 1
            return SupermaskLinear(fin, fout, k=self.arch.k, seed=self.seed, index=self.count - 1,
                                   scale_fan=self.arch.scale_fan)
        linear = nn.Linear(fin, fout)
        with torch.no_grad():
            linear.weight.normal_(0, math.sqrt(1.0 / fin), generator=self.gen)
            linear.bias.zero_()
        return linear

    def bn(self, channels: int) -> nn.BatchNorm2d:
        return nn.BatchNorm2d(channels, affine=self.arch.bn_affine or not self.supermask)


class HFNBlock(nn.Module):
    """Basic residual block; ``iterations`` > 1 gives it one BatchNorm pair per iteration (a folded block).

    The projection shortcut (1x1 conv + BN) is used where the shape changes, as in the HFN configs' ResNets.
    """

    def __init__(self, build: _Builder, cin: int, cout: int, stride: int, iterations: int = 1):
        super().__init__()
        self.conv1 = build.conv(cin, cout, 3, stride)
        self.conv2 = build.conv(cout, cout, 3, 1)
        self.bn1 = nn.ModuleList(build.bn(cout) for _ in range(iterations))
        self.bn2 = nn.ModuleList(build.bn(cout) for _ in range(iterations))
        self.shortcut = (nn.Identity() if stride == 1 and cin == cout
                         else nn.Sequential(build.conv(cin, cout, 1, stride), build.bn(cout)))

    def forward(self, x: Tensor, iteration: int = 0) -> Tensor:
        out = F.relu(self.bn1[iteration](self.conv1(x)))
        out = self.bn2[iteration](self.conv2(out))
        return F.relu(out + self.shortcut(x))


class HFNStage(nn.Module):
    """``n`` blocks: folded, the first block and one block applied ``n-1`` times; else ``n`` blocks."""

    def __init__(self, build: _Builder, cin: int, cout: int, stride: int, n: int, fold: bool):
        super().__init__()
        self.first = HFNBlock(build, cin, cout, stride)
        self.fold = fold and n > 1
        self.iterations = n - 1
        if self.fold:
            self.folded = HFNBlock(build, cout, cout, 1, iterations=n - 1)
        else:
            self.rest = nn.ModuleList(HFNBlock(build, cout, cout, 1) for _ in range(n - 1))

    def forward(self, x: Tensor) -> Tensor:
        x = self.first(x)
        for i in range(self.iterations):
            x = self.folded(x, i) if self.fold else self.rest[i](x)
        return x


class HFNResNet(nn.Module):
    """3x3 stem (stride 1) + BN + ReLU, the stages of ``arch``, global average pooling, a linear classifier.

    ``supermask=True, fold=True`` is the HFN; ``supermask=False, fold=False`` the dense network of the same
    layout (ordinary trained weights, affine BatchNorm, a biased classifier).
    """

    def __init__(self, arch: HFNArch, *, num_classes: int, in_channels: int, seed: int = 0,
                 supermask: bool = True, fold: bool = True):
        super().__init__()
        self.arch, self.seed, self.supermask = arch, seed, supermask
        build = _Builder(arch, seed, supermask)
        self.stem = build.conv(in_channels, arch.widths[0], 3, 1)
        self.stem_bn = build.bn(arch.widths[0])
        stages, cin = [], arch.widths[0]
        for s, (width, n) in enumerate(zip(arch.widths, arch.blocks)):
            stages.append(HFNStage(build, cin, width, 1 if s == 0 else 2, n, fold and s in arch.folded))
            cin = width
        self.stages = nn.Sequential(*stages)
        self.classifier = build.linear(cin, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        out = self.stages(F.relu(self.stem_bn(self.stem(x))))
        return self.classifier(F.adaptive_avg_pool2d(out, 1).flatten(1))


def build_hfn(arch: str | HFNArch, *, num_classes: int, in_channels: int, seed: int = 0, dense: bool = False,
              **overrides) -> HFNResNet:
    """The HFN of layout ``arch`` (a name in :data:`HFN_ARCHS` or an :class:`HFNArch`), or with
    ``dense=True`` the dense unfolded network of the same layout. ``overrides`` replace fields of the layout."""
    if isinstance(arch, str):
        arch = HFN_ARCHS[check_choice("HFN architecture", arch, HFN_ARCHS)]
    if not isinstance(arch, HFNArch):
        raise RramlibError(f"arch must be a name or an HFNArch, got {type(arch).__name__}")
    unknown = set(overrides) - {f.name for f in dataclasses.fields(HFNArch)}
    if unknown:
        raise RramlibError(f"unknown HFN layout field(s) {sorted(unknown)}")
    arch = dataclasses.replace(arch, **overrides)
    for name, v in (("num_classes", num_classes), ("in_channels", in_channels)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise RramlibError(f"{name} must be a positive integer, got {v!r}")
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**63:
        raise RramlibError(f"seed must be an integer in [0, 2**63), got {seed!r}")
    return HFNResNet(arch, num_classes=num_classes, in_channels=in_channels, seed=seed,
                     supermask=not dense, fold=not dense)


# ------------------------------------------------------------------------------------------ crossbar
def materialise(model: nn.Module) -> nn.Module:
    """A copy of ``model`` that an ordinary network's tools accept: every supermask layer becomes an
    ``nn.Conv2d``/``nn.Linear`` holding ``W ⊙ m``, and every non-affine BatchNorm an affine one with
    γ = 1, β = 0 (the same output), so :class:`~rramlib.device.analog.AnalogModel` programs the effective weights and
    the compensation methods see plain layers. A folded layer stays one module (one crossbar, reused)."""
    model = copy.deepcopy(model)
    replaced: dict[int, nn.Module] = {}
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if id(child) not in replaced:
                if isinstance(child, _SUPERMASK):
                    replaced[id(child)] = child.plain()
                elif isinstance(child, nn.BatchNorm2d) and not child.affine:
                    replaced[id(child)] = _affine_bn(child)
            if id(child) in replaced:
                setattr(parent, name, replaced[id(child)])
    return model


def _affine_bn(bn: nn.BatchNorm2d) -> nn.BatchNorm2d:
    new = nn.BatchNorm2d(bn.num_features, eps=bn.eps, momentum=bn.momentum, affine=True,
                         track_running_stats=bn.track_running_stats)
    new.load_state_dict(bn.state_dict(), strict=False)  # running statistics; γ = 1, β = 0 from the init
    return new.to(bn.running_mean.device).train(bn.training)


# ------------------------------------------------------------------------------------------ memory
def _bn_values(model: nn.Module) -> int:
    """Values a BatchNorm layer keeps for inference: running mean and variance, plus γ and β if affine."""
    return sum((4 if m.affine else 2) * m.num_features for m in model.modules() if isinstance(m, nn.BatchNorm2d))


@dataclass(frozen=True)
class HFNMemory:
    """Memory of an HFN: one bit per weight position (packed), plus ``digital`` (BatchNorm values at the
    stated precision and the seed of the random weights, as a :class:`~rramlib.methods.overhead.Storage`)."""

    mask_bits: int
    digital: Storage

    @property
    def mask_bytes(self) -> int:
        return math.ceil(self.mask_bits / 8)

    def total_bytes(self, precision: str = "fp32") -> float:
        return self.mask_bytes + self.digital.total_bytes(precision)

    def as_dict(self) -> dict:
        row = {"mask_bits": self.mask_bits, "mask_bytes": self.mask_bytes, **self.digital.as_dict()}
        row.update({f"total_bytes_{p}": self.total_bytes(p) for p in PRECISION_BITS})
        return row


def hfn_memory(model: HFNResNet) -> HFNMemory:
    """What an HFN must store: the mask of every distinct supermask layer (a folded layer once), the seed,
    and its BatchNorm values. The weights themselves cost nothing (regenerated from the seed)."""
    layers = supermask_layers(model)
    if not layers:
        raise RramlibError("hfn_memory needs a network with supermask layers (an HFN)")
    other = [n for n, p in model.named_parameters() if not n.endswith("scores") and not _is_bn_param(model, n)]
    if other:
        raise RramlibError(f"hfn_memory counts masks and BatchNorm only; the network also has {other}")
    return HFNMemory(mask_bits=sum(m.weight.numel() for _, m in layers),
                     digital=Storage(values_per_level=0, shared_values=_bn_values(model), seed_bytes=SEED_BYTES))


def dense_memory(model: nn.Module) -> Storage:
    """What a dense network must store: every Conv2d/Linear weight and bias and its BatchNorm values."""
    if supermask_layers(model):
        raise RramlibError("dense_memory got an HFN; use hfn_memory")
    layers = [m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    values = sum(m.weight.numel() + (m.bias.numel() if m.bias is not None else 0) for m in layers)
    return Storage(values_per_level=0, shared_values=values + _bn_values(model))


def _is_bn_param(model: nn.Module, name: str) -> bool:
    owner = model.get_submodule(name.rpartition(".")[0])
    return isinstance(owner, nn.BatchNorm2d)


# ------------------------------------------------------------------------------------------ drift
def accuracy_over_time(source: nn.Module | Method, drift: DriftModel | str | None = None, *, times: dict[str, float],
                       chips, test, mapping: str | None = "differential", drift_params: dict | None = None
                       ) -> list[dict]:
    """Accuracy at every time of ``times`` (label -> seconds) on each chip seed of ``chips``: one record per
    (chip, time). ``source`` is a network (an HFN is materialised first) programmed with ``drift`` and
    ``mapping``, or a fitted compensation method (``drift`` None), read through ``method.at(chip, t)``."""
    chips = list(chips)
    if not chips:
        raise RramlibError("give at least one chip seed")
    if isinstance(source, Method):
        if drift is not None:
            raise RramlibError("a fitted method brings its own drift model; pass drift=None")
        read = source.at
    else:
        analog = AnalogModel(materialise(source) if supermask_layers(source) else source, drift, seed=chips[0],
                             mapping=mapping, drift_params=drift_params)

        def read(chip, t):
            if analog.seed != chip:
                analog.program(chip)
            return analog.at(t)
    return [{"chip": chip, "time_label": label, "time_s": t, "accuracy": accuracy(read(chip, t), test)}
            for chip in chips for label, t in times.items()]


#: Compensation methods that do not apply to an HFN, and why: both put trained weights on the RRAM, and an
#: HFN's crossbar holds random signed constants by definition (its only learned state is the digital mask).
NOT_FOR_HFN = {
    "noise_aware": "trains the weights with drift injected; an HFN's weights are random and never trained",
    "offline_correction": "adds trained full-rank weights to the RRAM's, which turns the HFN into a dense network",
}


def check_hfn_method(name: str) -> str:
    """``name`` if it is a compensation method that applies to an HFN (see :data:`NOT_FOR_HFN`)."""
    from rramlib.methods.compensation import check_method

    check_method(name)
    if name in NOT_FOR_HFN:
        raise RramlibError(f"method {name!r} does not apply to a Hidden-Fold Network: {NOT_FOR_HFN[name]}")
    return name


@torch.no_grad()
def crossbar_layout(model: HFNResNet, example: Tensor) -> list[dict]:
    """Per distinct supermask layer: weight positions (differential pairs), kept weights (±c: one device of the
    pair at g_max, the other at g_min), pruned pairs (both at g_min), ``c``, and how often one inference of
    ``example`` reads the layer (a folded layer: once per iteration)."""
    layers = supermask_layers(model)
    reads = {name: 0 for name, _ in layers}
    hooks = [m.register_forward_hook(lambda *a, name=name: reads.__setitem__(name, reads[name] + 1))
             for name, m in layers]
    was_training = model.training
    try:
        model.eval()(example[:1])
    finally:
        model.train(was_training)
        for h in hooks:
            h.remove()
    return [{"layer": name, "pairs": m.weight.numel(), "kept": m.n_keep, "pruned": m.weight.numel() - m.n_keep,
             "c": float(m.weight.abs().max()), "reads_per_inference": reads[name]} for name, m in layers]


@torch.no_grad()
def weight_noise_accuracy(model: nn.Module, test, *, sigmas, repeats: int = 3, seed: int = 0) -> list[dict]:
    """A software check without any device model: accuracy when every Conv2d/Linear weight gets additive
    Gaussian noise of standard deviation ``sigma · max|W|`` of its layer (the scale the mapping uses),
    ``repeats`` draws per sigma from one generator seeded with ``seed``. ``model`` is not modified (an HFN is
    materialised first)."""
    if isinstance(repeats, bool) or not isinstance(repeats, int) or repeats < 1:
        raise RramlibError(f"repeats must be a positive integer, got {repeats!r}")
    net = materialise(model) if supermask_layers(model) else copy.deepcopy(model)
    layers = [m for _, m in rram_layers(net)]
    reference = [m.weight.detach().clone() for m in layers]
    gen = torch.Generator().manual_seed(seed)
    rows = []
    for sigma in sigmas:
        if isinstance(sigma, bool) or not isinstance(sigma, (int, float)) or not 0 <= sigma < math.inf:
            raise RramlibError(f"noise sigma must be a finite number >= 0, got {sigma!r}")
        for r in range(repeats):
            for m, w in zip(layers, reference):
                m.weight.copy_(w + sigma * w.abs().max() * torch.randn(w.shape, generator=gen))
            rows.append({"sigma": float(sigma), "repeat": r, "accuracy": accuracy(net, test)})
    return rows


def fit_compensation(name: str, model: nn.Module, splits, drift: DriftModel | str, *, levels: int,
                     train_chips: int, params: dict | None = None, cache: Cache | None = None,
                     key: dict | None = None) -> Method:
    """Compensation method ``name`` fitted offline on ``model`` (an HFN is materialised first, so BN
    recalibration re-estimates every per-iteration BatchNorm and VeRA+ adapts every layer, a folded one once)
    through the public API, on differential pairs, with ``levels`` log-spaced drift levels. With ``cache``
    and ``key`` (what identifies ``model``) the fitted state is cached like the sweeps'."""
    from rramlib.study.experiments import fit_method

    if supermask_layers(model):
        model = materialise(model)
    drift = make_drift_model(drift) if isinstance(drift, str) else drift
    ctx = FitContext(model=model, splits=splits, drift=drift, schedule=log_windows(levels), mapping="differential",
                     train_chips=train_chips)
    method = make_method(name, **(params or {}))
    fit_key = {**(key or {}), "preset": drift.name, "drift": drift.params(), "levels": levels,
               "train_chips": train_chips, "mapping": "differential"}
    fit_method(method, ctx, fit_key, cache if key is not None else Cache(None))
    return method


# ------------------------------------------------------------------------------------------ profiles
@dataclass(frozen=True)
class HFNProfile:
    """What a book profile trains for the HFN chapter: the HFN and the dense network of the same layout.

    The HFN recipe follows the authors' CIFAR-100 config (SGD, momentum 0.9, lr 0.1 cosine, weight decay
    5e-4, batch 128, 200 epochs; DESIGN §8) with :func:`rramlib.nn.train.train`'s Nesterov momentum; the epochs
    of the digits profiles and the dense recipe are ours.
    """

    dataset: str
    arch: str
    hfn_train: TrainConfig
    dense_train: TrainConfig
    seed: int = 0
    data_seed: int = 0
    #: compensation hyper-parameters of this chapter on top of the book profile's (method -> parameters)
    method_params: dict = dataclasses.field(default_factory=dict)

    def method(self, name: str, profile_params: dict | None = None) -> dict:
        """Hyper-parameters of compensation method ``name``: the book profile's, then this profile's."""
        return {**(profile_params or {}).get(name, {}), **self.method_params.get(name, {})}


HFN_PROFILES: dict[str, HFNProfile] = {
    "smoke": HFNProfile("digits", "hfn_digits", TrainConfig(epochs=2, lr=0.1, batch_size=64),
                        TrainConfig(epochs=2, lr=0.05, batch_size=64)),
    "quick": HFNProfile("digits", "hfn_digits", TrainConfig(epochs=20, lr=0.1, batch_size=64),
                        TrainConfig(epochs=15, lr=0.05, batch_size=64),
                        method_params={"vera_plus": {"steps": 150}}),  # keeps the chapter near 90 s
    "paper": HFNProfile("cifar100", "hfn_cifar", TrainConfig(epochs=200, lr=0.1, batch_size=128),
                        TrainConfig(epochs=200, lr=0.1, batch_size=128)),
}


@dataclass
class TrainedPair:
    """The trained HFN and dense network of one profile, their data, test accuracies and training times."""

    splits: object
    hfn: HFNResNet
    dense: HFNResNet
    hfn_accuracy: float
    dense_accuracy: float
    train_time_s: dict
    key: str


def train_pair(profile: str, *, cache: Cache | None = None, data_root: str | None = None,
               download: bool = False, progress: bool = False, device: str = "cpu") -> TrainedPair:
    """Train (or load from ``cache``) the HFN and the dense network of :data:`HFN_PROFILES` ``[profile]``.

    Training runs on ``device`` (``"auto"``: a GPU if there is one); the networks come back on the CPU. Only
    the scores and BatchNorm statistics of the HFN are cached; its weights come back from the seed.
    """
    from rramlib.study.profiles import resolve_device

    spec = HFN_PROFILES[check_choice("HFN profile", profile, HFN_PROFILES)]
    cache = cache or Cache(None)
    splits = load_dataset(spec.dataset, data_root, download=download, seed=spec.data_seed)
    nets = {kind: build_hfn(spec.arch, num_classes=splits.num_classes, in_channels=splits.in_channels,
                            seed=spec.seed, dense=kind == "dense") for kind in ("hfn", "dense")}
    recipes = {"hfn": spec.hfn_train, "dense": spec.dense_train}

    def fit() -> dict:
        out = {}
        for kind, net in nets.items():
            start = time.perf_counter()
            train(net, splits, recipes[kind], progress=progress, device=str(resolve_device(device)))
            out[kind] = {k: v.cpu() for k, v in net.to("cpu").state_dict().items()}
            out[f"{kind}_time_s"] = time.perf_counter() - start
        return out

    config = {"hfn_profile": {k: v for k, v in dataclasses.asdict(spec).items() if k != "method_params"},
              "arch": dataclasses.asdict(HFN_ARCHS[spec.arch])}
    entry = cache.get_or_compute("hfn", config, fit)
    test = as_tensors(splits.test)
    for kind, net in nets.items():
        net.load_state_dict(entry[kind])
        net.eval()
    return TrainedPair(splits, nets["hfn"], nets["dense"], accuracy(nets["hfn"], test),
                       accuracy(nets["dense"], test), {k: entry[f"{k}_time_s"] for k in nets}, config_hash(config))
