"""LoRA adapters with one (A, B) pair per layer and drift level.

LoRA (Hu et al., "LoRA: Low-Rank Adaptation of Large Language Models", ICLR 2022): ``ΔW = (α/r)·B A`` with
``A`` (r × in) Kaiming-uniform (a = √5, peft's default) and ``B`` (out × r) zero, so the adapted layer starts
equal to the base layer. For a Conv2d the layout is peft's: ``A`` is a convolution C_in→r with the main
convolution's kernel, stride, padding and dilation (peft omits dilation; we keep it so the branch's output
size always matches), ``B`` a 1×1 convolution r→C_out. Grouped convolutions are refused.

Each level's ``A`` is drawn from its own ``torch.Generator`` seeded with a SHA-256 digest of
``(seed, level name, layer name)``, so a level's initial values do not depend on which other levels exist
or in which order they were added.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import check_positive
from .base import (AdapterController, check_plain_conv, check_rank, check_seed, conv_like, derive_seed,
                   kaiming_uniform_, layer_dims)

__all__ = ["LoRA", "add_lora"]


class LoRA(AdapterController):
    """Controller of LoRA adapters; build it with :func:`add_lora`.

    Per level and layer: ``lora_A[layer][level]`` — (r, in) for Linear, (r, C_in, kh, kw) for Conv2d — and
    ``lora_B[layer][level]`` — (out, r) or (C_out, r, 1, 1). Layers are keyed by their qualified name with
    dots replaced by ``-``. ``scaling`` = α / r.
    """

    method = "lora"

    def __init__(self, model: nn.Module, *, targets: Sequence[str] | None = None, rank: int = 4, alpha: float = 8.0,
                 seed: int = 0, levels: Sequence[str] = ("level0",)):
        check_rank(rank)
        check_positive("alpha", alpha)
        check_seed(seed)
        super().__init__(model, targets, levels)
        for name, layer in zip(self.target_names, self._base_layers):
            check_plain_conv(name, layer, type(self).__name__)
        self.rank, self.alpha, self.seed = rank, float(alpha), seed
        self.scaling = self.alpha / self.rank
        self.lora_A = nn.ModuleDict({k: nn.ParameterDict() for k in self.layer_keys})
        self.lora_B = nn.ModuleDict({k: nn.ParameterDict() for k in self.layer_keys})
        self._setup_extra()
        self._attach()

    def _setup_extra(self) -> None:
        """Hook for subclasses to create more per-level dicts before the levels are initialised."""

    # ------------------------------------------------------------------ levels
    def _init_level(self, name: str) -> None:
        for key, lname, layer in zip(self.layer_keys, self.target_names, self._base_layers):
            c_in, c_out = layer_dims(layer)
            dtype, device = layer.weight.dtype, layer.weight.device
            gen = torch.Generator(device="cpu").manual_seed(derive_seed("lora", self.seed, name, lname))
            if isinstance(layer, nn.Conv2d):
                a_shape, b_shape = (self.rank, c_in, *layer.kernel_size), (c_out, self.rank, 1, 1)
            else:
                a_shape, b_shape = (self.rank, c_in), (c_out, self.rank)
            a = kaiming_uniform_(torch.empty(a_shape, dtype=torch.float32), gen, a=5**0.5)
            self.lora_A[key][name] = nn.Parameter(a.to(device=device, dtype=dtype))
            self.lora_B[key][name] = nn.Parameter(torch.zeros(b_shape, device=device, dtype=dtype))

    def _ab(self, index: int, level: str | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        key = self.layer_keys[index]
        level = self._active if level is None else level
        return self.lora_A[key][level], self.lora_B[key][level]

    # ------------------------------------------------------------------ forward
    def _lora_path(self, index: int, x: torch.Tensor) -> torch.Tensor:
        """B(A x) without the scaling."""
        layer = self._base_layers[index]
        a, b = self._ab(index)
        if isinstance(layer, nn.Conv2d):
            return F.conv2d(conv_like(layer, x, a), b)
        return F.linear(F.linear(x, a), b)

    def _adapt(self, index: int, x: torch.Tensor, base_out: torch.Tensor) -> torch.Tensor:
        return base_out + self._lora_path(index, x) * self.scaling

    def lora_weight(self, index: int, level: str | None = None) -> torch.Tensor:
        """B A of one layer, in the base weight's shape (without the scaling)."""
        level = self._check_level(self._active if level is None else level)
        a, b = self._ab(index, level)
        weight = self._base_layers[index].weight
        return torch.mm(b.reshape(b.shape[0], self.rank), a.reshape(self.rank, -1)).reshape(weight.shape)

    def delta_weight(self, index: int, level: str | None = None) -> torch.Tensor:
        """ΔW = (α/r)·B A of one layer, in the base weight's shape."""
        return self.scaling * self.lora_weight(index, level)

    def _merged_weight(self, index: int) -> torch.Tensor:
        return self._base_layers[index].weight.detach() + self.delta_weight(index).detach()

    # ------------------------------------------------------------------ storage and compute
    def _macs_per_position(self, index: int) -> int:
        # A: r*in*kh*kw, B: out*r (the constant α/r is folded into B)
        layer = self._base_layers[index]
        c_in, c_out = layer_dims(layer)
        k = layer.kernel_size[0] * layer.kernel_size[1] if isinstance(layer, nn.Conv2d) else 1
        return self.rank * c_in * k + c_out * self.rank

    def extra_repr(self) -> str:
        return f"rank={self.rank}, alpha={self.alpha}, seed={self.seed}, " + super().extra_repr()


def add_lora(model: nn.Module, *, targets: Sequence[str] | None = None, rank: int = 4, alpha: float = 8.0,
             levels: Sequence[str] = ("level0",), seed: int = 0) -> LoRA:
    """Wrap the target layers of ``model`` (in place) with LoRA adapters and return their controller.

    ``targets``: None for every Linear/Conv2d, or a list of qualified module names. All model parameters are
    frozen (``remove()`` restores their flags); train ``controller.level_parameters(level)``.
    """
    return LoRA(model, targets=targets, rank=rank, alpha=alpha, seed=seed, levels=levels)
