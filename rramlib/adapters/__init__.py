"""Digital adapters around RRAM layers: VeRA+, LoRA and DoRA with one parameter set per drift level.

``add_vera_plus`` / ``add_lora`` / ``add_dora`` replace the targeted ``nn.Linear``/``nn.Conv2d`` modules of a
model (in place) by wrappers that keep the original module as ``base_layer`` and return a controller that
owns the adapter tensors (see :mod:`rramlib.adapters.base`).
"""
from __future__ import annotations

from .base import AdapterController, AdapterWrapper
from .dora import DoRA, add_dora
from .lora import LoRA, add_lora
from .vera_plus import VeraPlus, add_vera_plus, vera_projections

__all__ = [
    "AdapterController",
    "AdapterWrapper",
    "DoRA",
    "LoRA",
    "VeraPlus",
    "add_dora",
    "add_lora",
    "add_vera_plus",
    "vera_projections",
]
