"""Hidden-Fold Networks (HFN): random signed-constant weights, a learned supermask, folded stages.

López García-Arias, Hashimoto, Motomura, Yu, "Hidden-Fold Networks: Random Recurrent Residuals Using
Sparse Supermasks", BMVC 2021 (arXiv 2111.12330). Only the abstract and the authors' public configs are
known to us; every other choice is a named parameter here, listed in the book's *unknowns* page
(book/unknowns.md, *Hidden-Fold Networks*).
This module holds the networks; what they store is :mod:`rramlib.methods.hidden_fold_memory`, and the
chapter's profiles, training and drift pipeline are :mod:`rramlib.study.hidden_fold`.

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

The same :class:`HFNResNet` with ``supermask=False, fold=False`` is the dense, trained, unfolded network of
the same layout, the comparison the HFN paper makes (an HFN against the ResNet it was folded from).
"""
from __future__ import annotations

import copy
import dataclasses
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rramlib.core.errors import RramlibError, check_choice, check_type
from rramlib.core.seeding import generator

__all__ = ["HFN_ARCHS", "HFNArch", "SupermaskConv2d", "SupermaskLinear", "HFNResNet", "build_hfn", "supermask_layers",
           "materialise"]


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
