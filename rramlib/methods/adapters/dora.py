"""DoRA adapters (weight-decomposed low-rank adaptation) with one parameter set per drift level.

DoRA (Liu et al., "DoRA: Weight-Decomposed Low-Rank Adaptation", ICML 2024) rewrites the adapted weight as
``W' = m ⊙ (W0 + s·B A) / ‖W0 + s·B A‖`` with the norm taken per output channel, ``s = α/r`` and a trainable
magnitude ``m``. The 2025 RRAM calibration paper of the study puts DoRA adapters on the most drift-sensitive
layers and calibrates them on the drifted chip.

As in peft (``peft.tuners.lora.dora``), and as the DoRA paper suggests (§4.3), the norm is computed from the
CURRENT base weight (here the drifted ``W(t)``) and detached from the gradient graph; the forward is
``y = base(x) + (m/‖·‖ − 1) ⊙ (base(x) − bias) + (m/‖·‖) ⊙ B(A x) · s``, so the bias is not rescaled.
``m`` is set to ``‖W + s·B A‖`` (= ‖W‖ while B = 0) of the weight present when the adapter is added;
:meth:`DoRA.reset_magnitude` re-initialises it from the current weight (for calibrating a given drifted chip).
Magnitude shapes follow peft: (out,) for Linear, (1, out, 1, 1) for Conv2d.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn

from rramlib.core.errors import RramlibError
from rramlib.methods.adapters.lora import LoRA, LoRAConfig

__all__ = ["DoRA", "DoRAConfig", "add_dora"]


@dataclass(frozen=True)
class DoRAConfig(LoRAConfig):
    """DoRA hyper-parameters: those of LoRA (the magnitude adds none)."""

    owner: ClassVar[str] = "dora"

    def _validate(self) -> None:
        if self.conv_branch != "peft":
            raise RramlibError("dora.conv_branch must be 'peft' (DoRA's weight norm needs the full kernel)")


class DoRA(LoRA):
    """Controller of DoRA adapters; build it with :func:`add_dora`.

    Per adapter and layer: ``lora_A``, ``lora_B`` as in :class:`~rramlib.methods.adapters.lora.LoRA` and
    ``magnitude[layer][adapter]`` of shape (out,) for Linear or (1, out, 1, 1) for Conv2d.
    """

    method = "dora"
    config_class: ClassVar[type[DoRAConfig]] = DoRAConfig

    def _setup_extra(self) -> None:
        self.magnitude = nn.ModuleDict({k: nn.ParameterDict() for k in self.layer_keys})

    def _init_adapter(self, name: str) -> None:
        super()._init_adapter(name)
        for index, key in enumerate(self.layer_keys):
            norm = self.weight_norm(index, name, _check=False)
            self.magnitude[key][name] = nn.Parameter(norm.detach().clone())

    def weight_norm(self, index: int, adapter: str | None = None, *, _check: bool = True) -> torch.Tensor:
        """‖W + s·B A‖ per output channel from the current base weight, detached, in the magnitude's shape."""
        adapter = self._active if adapter is None else adapter
        if _check:
            self._check_adapter(adapter)
        layer = self._base_layers[index]
        a, b = self.lora_A[self.layer_keys[index]][adapter], self.lora_B[self.layer_keys[index]][adapter]
        lora_weight = torch.mm(b.reshape(b.shape[0], self.rank), a.reshape(self.rank, -1)).reshape(layer.weight.shape)
        weight = layer.weight + self.scaling * lora_weight.detach()
        if isinstance(layer, nn.Conv2d):
            norm = weight.norm(p=2, dim=(1, 2, 3), keepdim=True).transpose(1, 0)  # (1, out, 1, 1)
        else:
            norm = torch.linalg.norm(weight, dim=1).to(weight.dtype)  # (out,)
        return norm.detach()

    def reset_magnitude(self, adapter: str | None = None) -> None:
        """Set ``m`` of ``adapter`` (default: active) to ``‖W + s·B A‖`` of the current base weights."""
        adapter = self._check_adapter(self._active if adapter is None else adapter)
        with torch.no_grad():
            for index, key in enumerate(self.layer_keys):
                self.magnitude[key][adapter].copy_(self.weight_norm(index, adapter))

    # ------------------------------------------------------------------ forward
    def _adapt(self, index: int, x: torch.Tensor, base_out: torch.Tensor) -> torch.Tensor:
        layer = self._base_layers[index]
        magnitude = self.magnitude[self.layer_keys[index]][self._active]
        scale = magnitude / self.weight_norm(index, _check=False)
        lora_out = self._lora_path(index, x, base_out)
        base_no_bias = base_out
        if isinstance(layer, nn.Conv2d):
            scale = scale.view(-1, 1, 1)  # broadcasts over (N, C, H, W) and unbatched (C, H, W)
            if layer.bias is not None:
                base_no_bias = base_out - layer.bias.view(-1, 1, 1)
        elif layer.bias is not None:
            base_no_bias = base_out - layer.bias
        return base_out + ((scale - 1) * base_no_bias + scale * lora_out * self.scaling)

    def _merged_weight(self, index: int) -> torch.Tensor:
        layer = self._base_layers[index]
        magnitude = self.magnitude[self.layer_keys[index]][self._active].detach()
        weight = layer.weight.detach() + self.delta_weight(index).detach()
        factor = (magnitude / self.weight_norm(index, _check=False)).reshape((-1,) + (1,) * (weight.dim() - 1))
        return factor * weight

    def _macs_per_position(self, index: int) -> int:
        # LoRA path plus one multiplication by m/‖·‖ per output channel; the norm itself is recomputed only
        # when the base weight changes and is not counted per sample (see weight_norm_macs)
        return super()._macs_per_position(index) + self._base_layers[index].weight.shape[0]

    def weight_norm_macs(self) -> int:
        """MACs to recompute all norms ‖W + s·B A‖ once (B A product plus squares), e.g. after a weight update."""
        total = 0
        for layer in self._base_layers:
            n = layer.weight.numel()
            total += n * self.rank + n
        return total


def add_dora(model: nn.Module, config: DoRAConfig | None = None, *, targets: Sequence[str] | None = None,
             adapter_names: Sequence[str] = ("level0",), **fields) -> DoRA:
    """Wrap the target layers of ``model`` (in place) with DoRA adapters and return their controller.

    ``config`` or its fields as keywords (``rank=8``); ``targets``: None for every Linear/Conv2d, or a list of
    qualified module names. All model parameters are frozen (``remove()`` restores their flags); train
    ``controller.adapter_parameters(name)``.
    """
    return DoRA(model, DoRAConfig.resolve(config, fields), targets=targets, adapter_names=adapter_names)
