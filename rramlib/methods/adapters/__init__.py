"""Digital adapters around RRAM layers: VeRA+, LoRA and DoRA, each with named parameter sets ("adapters").

``add_vera_plus`` / ``add_lora`` / ``add_dora`` replace the targeted ``nn.Linear``/``nn.Conv2d`` modules of a
model (in place) by wrappers that keep the original module as ``base_layer`` and return a controller that
owns the adapter tensors (see :mod:`rramlib.methods.adapters.base`).
"""
from __future__ import annotations

from rramlib.methods.adapters.base import AdapterController, AdapterWrapper
from rramlib.methods.adapters.dora import DoRA, DoRAConfig, add_dora
from rramlib.methods.adapters.lora import LoRA, LoRAConfig, add_lora
from rramlib.methods.adapters.vera_plus import VeraPlus, VeraPlusConfig, add_vera_plus, vera_projections

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
