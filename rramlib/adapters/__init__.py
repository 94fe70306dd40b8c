"""Digital adapters around RRAM layers: VeRA+, LoRA and DoRA, each with named parameter sets ("adapters").

``add_vera_plus`` / ``add_lora`` / ``add_dora`` replace the targeted ``nn.Linear``/``nn.Conv2d`` modules of a
model (in place) by wrappers that keep the original module as ``base_layer`` and return a controller that
owns the adapter tensors (see :mod:`rramlib.adapters.base`).
"""
from __future__ import annotations

from .base import AdapterController, AdapterWrapper
from .dora import DoRA, DoRAConfig, add_dora
from .lora import LoRA, LoRAConfig, add_lora
from .vera_plus import VeraPlus, VeraPlusConfig, add_vera_plus, vera_projections

__all__ = [
    "AdapterController",
    "AdapterWrapper",
    "DoRA",
    "DoRAConfig",
    "LoRA",
    "LoRAConfig",
    "VeraPlus",
    "VeraPlusConfig",
    "add_dora",
    "add_lora",
    "add_vera_plus",
    "vera_projections",
]
