"""Methods that keep one set of a network's normalisation tensors per drift level (BN recalibration, LayerNorm re-fit).

Such a method stores, for each drift level, its own copy of some tensors of the network's normalisation layers
(BatchNorm's running statistics and γ/β, LayerNorm's γ/β), and :meth:`PerLevelNormSets.select` makes the layers
read the copy of the level holding the time. Every level starts from the trained model's values. What is
re-estimated and how is the subclass's (:meth:`~rramlib.methods.compensation.base.Method.train_level`); fine-tuning
the affine γ/β goes through the drift-injected training loop every per-level method shares
(:func:`~rramlib.methods.compensation.base.drift_injected_training`, :meth:`PerLevelNormSets.finetune_affine`).
"""
from __future__ import annotations

from typing import ClassVar

import torch
from torch import nn

from rramlib.core.errors import RramlibError
from rramlib.methods.compensation.base import FitContext, Method, drift_injected_training
from rramlib.methods.overhead import Storage

__all__ = ["AFFINE", "PerLevelNormSets"]

#: The affine tensors of a normalisation layer (γ, β), as PyTorch names them.
AFFINE = ("weight", "bias")


class PerLevelNormSets(Method):
    """Base of the methods with one set of normalisation tensors per drift level (module docstring).

    Subclasses name the layer types (:attr:`norm_types`, :attr:`norm_name` for errors), the tensors a level may
    change (:attr:`changed`) and those it stores (:meth:`stored`, a subset), and implement ``train_level``.
    A tensor a layer does not have (``None``, e.g. no affine γ/β) is skipped.
    """

    #: The normalisation layer types the method works on, and their name in error messages.
    norm_types: ClassVar[tuple[type[nn.Module], ...]]
    norm_name: ClassVar[str]
    #: Names of the layer tensors a level may change (each level starts from the model's values of them).
    changed: ClassVar[tuple[str, ...]]

    def stored(self) -> tuple[str, ...]:
        """Names of the layer tensors stored per level (default: every changed one)."""
        return self.changed

    @classmethod
    def norm_layers(cls, model: nn.Module) -> dict[str, nn.Module]:
        """The normalisation layers of ``model`` the method works on, by qualified name."""
        return {n: m for n, m in model.named_modules() if isinstance(m, cls.norm_types)}

    def setup(self, ctx: FitContext) -> None:
        if not self.norm_layers(ctx.model):  # before programming a chip
            raise RramlibError(f"{self.name} ({self.label}) needs a model with {self.norm_name} layers; "
                               f"this {type(ctx.model).__name__} has none")
        self.analog_ = ctx.analog()
        self.norm_layers_ = self.norm_layers(self.analog_.model)
        self.schedule_ = ctx.schedule
        self.sets_: dict[str, dict[str, torch.Tensor]] = {}
        # the model's own values: every level starts from them
        self._initial = self._snapshot(self.changed)

    def _snapshot(self, names: tuple[str, ...]) -> dict[str, torch.Tensor]:
        """Copies of the layers' tensors ``names`` now, keyed ``"<layer>.<tensor>"``."""
        return {f"{n}.{k}": getattr(m, k).detach().clone() for n, m in self.norm_layers_.items() for k in names
                if getattr(m, k, None) is not None}

    def reset(self) -> None:
        """Make the layers read fresh copies of the model's own values (the start of every level)."""
        self._point_to({k: v.clone() for k, v in self._initial.items()})

    def _point_to(self, tensors: dict[str, torch.Tensor]) -> None:
        """Make the layers read ``tensors`` themselves (no copy), so writes into a stored set take effect."""
        for key, value in tensors.items():
            layer, attr = key.rsplit(".", 1)
            module = self.norm_layers_[layer]
            if attr in module._parameters:
                module._parameters[attr] = value if isinstance(value, nn.Parameter) else \
                    nn.Parameter(value, requires_grad=False)
                tensors[key] = module._parameters[attr]
            else:
                module._buffers[attr] = value

    def finetune_affine(self, ctx: FitContext, level: int, generator: torch.Generator, **training) -> list[float]:
        """Train the layers' γ/β on drift level ``level`` with
        :func:`~rramlib.methods.compensation.base.drift_injected_training` (``training``: its keyword arguments);
        returns the loss per step. The network's other tensors stay frozen."""
        affine = [getattr(m, k) for m in self.norm_layers_.values() for k in AFFINE if getattr(m, k, None) is not None]
        if not affine:
            raise RramlibError(f"{self.name}: the {self.norm_name} layers have no affine γ/β to fine-tune")
        for param in affine:
            param.requires_grad_(True)
        try:
            return drift_injected_training(ctx, self.analog_, affine, level, generator, **training)
        finally:
            for param in affine:
                param.requires_grad_(False)

    def keep_level(self, level: int) -> None:
        """Store the layers' values now as drift level ``level``'s set."""
        self.sets_[self.schedule_.names[level]] = self._snapshot(self.stored())

    def select(self, t: float) -> None:
        self._point_to(self.sets_[self.schedule_.name_of(t)])

    def _device(self) -> torch.device:
        return next(iter(self._initial.values())).device

    def level_state_dict(self, level: int) -> dict:
        return {k: v.detach().cpu().clone() for k, v in self.sets_[self.schedule_.names[level]].items()}

    def load_level_state_dict(self, level: int, state: dict) -> None:
        self.sets_[self.schedule_.names[level]] = {k: v.to(self._device()) for k, v in state.items()}

    def state_dict(self) -> dict:
        return {"sets": {name: {k: v.detach().cpu().clone() for k, v in s.items()} for name, s in self.sets_.items()}}

    def load_state_dict(self, state: dict) -> None:
        self.sets_ = {name: {k: v.to(self._device()) for k, v in s.items()} for name, s in state["sets"].items()}
        self.select(0.0)

    def storage(self) -> Storage:
        """The stored tensors' values of one level, times the number of levels."""
        per_level = sum(getattr(m, k).numel() for m in self.norm_layers_.values() for k in self.stored()
                        if getattr(m, k, None) is not None)
        return Storage(values_per_level=per_level, levels=self.schedule_.num_levels)

    def _sram_tensors(self) -> dict[str, torch.Tensor]:
        return {f"{name}/{k}": v for name, s in self.sets_.items() for k, v in s.items()}
