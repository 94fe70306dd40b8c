"""LoRA adapters with one (A, B) pair per layer and drift level.

LoRA (Hu et al., "LoRA: Low-Rank Adaptation of Large Language Models", ICLR 2022): ``ΔW = (α/r)·B A`` with
``A`` (r × in) Kaiming-uniform (a = √5, peft's default) and ``B`` (out × r) zero, so the adapted layer starts
equal to the base layer. For a Conv2d the layout is peft's: ``A`` is a convolution C_in→r with the main
convolution's kernel, stride, padding and dilation (peft omits dilation; we keep it so the branch's output
size always matches), ``B`` a 1×1 convolution r→C_out. Grouped convolutions are refused.

Each named adapter's ``A`` is drawn from its own ``torch.Generator`` seeded by
:func:`rramlib.core.seeding.derive_seed` from ``(init_seed, "lora_init", adapter name, layer name)``, so an
adapter's initial values do not depend on which other adapters exist or in which order they were added.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from rramlib.core.config import Config
from rramlib.core.errors import check_int, check_positive
from rramlib.core.seeding import check_root_seed, generator
from rramlib.methods.adapters.base import (AdapterController, centre_tap, check_plain_conv, conv1x1_like, conv_like, kaiming_uniform_,
                   layer_dims)

__all__ = ["LoRA", "LoRAConfig", "add_lora"]


@dataclass(frozen=True)
class LoRAConfig(Config):
    """LoRA hyper-parameters: rank r, α (``ΔW = (α/r)·B A``) and the seed of A's initialisation."""

    owner: ClassVar[str] = "lora"
    rank: int = field(default=4, metadata={"help": "rank r of the update B·A"})
    alpha: float = field(default=8.0, metadata={"help": "scaling α: the update is (α/r)·B·A"})
    init_seed: int = field(default=0, metadata={"help": "seed of A's Kaiming-uniform initialisation"})
    conv_branch: str = field(default="peft", metadata={
        "help": "a convolution's A branch: peft (the main kernel, stride, padding, dilation: peft's layout) or "
                "1x1 (a 1×1 convolution with the main stride: VeRA+'s structure, for like-with-like comparisons)",
        "choices": ("peft", "1x1")})

    def _validate(self) -> None:
        check_int(f"{self.owner}.rank", self.rank, 1)
        check_positive(f"{self.owner}.alpha", self.alpha)
        check_root_seed(self.init_seed, f"{self.owner}.init_seed")


class LoRA(AdapterController):
    """Controller of LoRA adapters; build it with :func:`add_lora`.

    Per adapter and layer: ``lora_A[layer][adapter]`` — (r, in) for Linear, (r, C_in, kh, kw) for Conv2d — and
    ``lora_B[layer][adapter]`` — (out, r) or (C_out, r, 1, 1). Layers are keyed by their qualified name with
    dots replaced by ``-``. ``scaling`` = α / r.
    """

    method = "lora"

    config_class: ClassVar[type[LoRAConfig]] = LoRAConfig

    def __init__(self, model: nn.Module, config: LoRAConfig | None = None, *, targets: Sequence[str] | None = None,
                 adapter_names: Sequence[str] = ("level0",)):
        config = self.config_class.resolve(config, {})
        super().__init__(model, targets, adapter_names)
        for name, layer in zip(self.target_names, self._base_layers):
            check_plain_conv(name, layer, type(self).__name__)
        self.config = config
        self.rank, self.alpha = config.rank, float(config.alpha)
        self.scaling = self.alpha / self.rank
        self.lora_A = nn.ModuleDict({k: nn.ParameterDict() for k in self.layer_keys})
        self.lora_B = nn.ModuleDict({k: nn.ParameterDict() for k in self.layer_keys})
        self._setup_extra()
        self._attach()

    def _setup_extra(self) -> None:
        """Hook for subclasses to create more per-adapter dicts before the adapters are initialised."""

    # ------------------------------------------------------------------ named adapters
    def _init_adapter(self, name: str) -> None:
        for key, lname, layer in zip(self.layer_keys, self.target_names, self._base_layers):
            c_in, c_out = layer_dims(layer)
            dtype, device = layer.weight.dtype, layer.weight.device
            gen = generator(self.config.init_seed, "lora_init", name, lname)
            if isinstance(layer, nn.Conv2d):
                a_kernel = (1, 1) if self.config.conv_branch == "1x1" else layer.kernel_size
                a_shape, b_shape = (self.rank, c_in, *a_kernel), (c_out, self.rank, 1, 1)
            else:
                a_shape, b_shape = (self.rank, c_in), (c_out, self.rank)
            a = kaiming_uniform_(torch.empty(a_shape, dtype=torch.float32), gen, a=5**0.5)
            self.lora_A[key][name] = nn.Parameter(a.to(device=device, dtype=dtype))
            self.lora_B[key][name] = nn.Parameter(torch.zeros(b_shape, device=device, dtype=dtype))

    def _ab(self, index: int, adapter: str | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        key = self.layer_keys[index]
        adapter = self._active if adapter is None else adapter
        return self.lora_A[key][adapter], self.lora_B[key][adapter]

    # ------------------------------------------------------------------ forward
    def _lora_path(self, index: int, x: torch.Tensor, base_out: torch.Tensor) -> torch.Tensor:
        """B(A x) without the scaling (``base_out``: the base layer's output, whose size a 1×1 branch must match)."""
        layer = self._base_layers[index]
        a, b = self._ab(index)
        if isinstance(layer, nn.Conv2d) and self.config.conv_branch == "1x1":
            return F.conv2d(conv1x1_like(layer, x, a, base_out, f"LoRA layer {self.target_names[index]!r}"), b)
        if isinstance(layer, nn.Conv2d):
            return F.conv2d(conv_like(layer, x, a), b)
        return F.linear(F.linear(x, a), b)

    def _adapt(self, index: int, x: torch.Tensor, base_out: torch.Tensor) -> torch.Tensor:
        return base_out + self._lora_path(index, x, base_out) * self.scaling

    def lora_weight(self, index: int, adapter: str | None = None) -> torch.Tensor:
        """B A of one layer, in the base weight's shape (without the scaling)."""
        adapter = self._check_adapter(self._active if adapter is None else adapter)
        a, b = self._ab(index, adapter)
        layer = self._base_layers[index]
        product = torch.mm(b.reshape(b.shape[0], self.rank), a.reshape(self.rank, -1))
        if isinstance(layer, nn.Conv2d) and self.config.conv_branch == "1x1":
            return centre_tap(layer, product, f"LoRA layer {self.target_names[index]!r}")
        return product.reshape(layer.weight.shape)

    def delta_weight(self, index: int, adapter: str | None = None) -> torch.Tensor:
        """ΔW = (α/r)·B A of one layer, in the base weight's shape."""
        return self.scaling * self.lora_weight(index, adapter)

    def _merged_weight(self, index: int) -> torch.Tensor:
        return self._base_layers[index].weight.detach() + self.delta_weight(index).detach()

    # ------------------------------------------------------------------ storage and compute
    def _macs_per_position(self, index: int) -> int:
        # A: r*in*kh*kw, B: out*r (the constant α/r is folded into B)
        layer = self._base_layers[index]
        c_in, c_out = layer_dims(layer)
        k = math.prod(layer.weight.shape[2:]) if isinstance(layer, nn.Conv2d) else 1
        k = 1 if self.config.conv_branch == "1x1" else k
        return self.rank * c_in * k + c_out * self.rank

    def extra_repr(self) -> str:
        return f"rank={self.rank}, alpha={self.alpha}, init_seed={self.config.init_seed}, " + super().extra_repr()


def add_lora(model: nn.Module, config: LoRAConfig | None = None, *, targets: Sequence[str] | None = None,
             adapter_names: Sequence[str] = ("level0",), **fields) -> LoRA:
    """Wrap the target layers of ``model`` (in place) with LoRA adapters and return their controller.

    ``config`` or its fields as keywords (``rank=8``); ``targets``: None for every Linear/Conv2d, or a list of
    qualified module names. All model parameters are frozen (``remove()`` restores their flags); train
    ``controller.adapter_parameters(name)``.
    """
    return LoRA(model, LoRAConfig.resolve(config, fields), targets=targets, adapter_names=adapter_names)
