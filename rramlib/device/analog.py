"""Program a PyTorch network onto simulated RRAM and read it back at any time after programming.

What lives on RRAM: the weights of every ``nn.Conv2d`` and ``nn.Linear`` (or the
layers named in ``layers``). Everything else -- biases, BatchNorm, activations,
and any compensation parameters added later -- is digital and exact.

Programming happens once per chip: the weights are mapped to conductances
(:class:`rramlib.device.mapping.Mapping`) and the drift model draws all per-device
randomness from one explicit generator seeded with the chip seed. Afterwards
:meth:`AnalogModel.at` is deterministic: ``at(t1)`` and ``at(t2)`` are the same chip
at two times, and two chip seeds are two chips.

``crossbar`` (default ``"ideal"``: the exact product, nothing installed) passes every RRAM layer's
matrix-vector product through a tile/DAC/ADC/noise periphery (:mod:`rramlib.device.crossbar`). Its per-column
parts are drawn at programming from a stream derived from the chip seed (the drift draws are unchanged),
and its per-read noise stream restarts at every :meth:`AnalogModel.at` from (chip, t).
"""
from __future__ import annotations

import copy
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from rramlib.device.crossbar import Crossbar, Periphery, make_crossbar
from rramlib.device.drift import DriftModel, make_drift_model
from rramlib.core.errors import RramlibError, check_time, check_type
from rramlib.device.mapping import Mapping
from rramlib.core.seeding import derive_seed, generator as derived_generator

__all__ = ["AnalogModel", "rram_layers"]

RRAM_LAYER_TYPES = (nn.Conv2d, nn.Linear)


def rram_layers(model: nn.Module, names: Iterable[str] | None = None) -> list[tuple[str, nn.Module]]:
    """The (name, module) pairs whose weights go on RRAM, in registration order."""
    found = [(n, m) for n, m in model.named_modules() if isinstance(m, RRAM_LAYER_TYPES)]
    if names is None:
        return found
    wanted = list(names)
    by_name = dict(found)
    missing = [n for n in wanted if n not in by_name]
    if missing:
        raise RramlibError(f"no Conv2d/Linear layer named {missing}; RRAM layers are: {list(by_name)}")
    return [(n, by_name[n]) for n in wanted]


@dataclass
class _Layer:
    name: str
    module: nn.Module
    w_max: Tensor
    state: dict[str, Tensor]


class AnalogModel:
    """A trained network programmed onto one simulated RRAM chip.

    Parameters
    ----------
    model : the software (drift-free) network; it is copied, never modified.
    drift : a :class:`~rramlib.device.drift.DriftModel` or a preset name (``drift_params`` then go to it).
    seed : the chip seed; all programming randomness comes from ``torch.Generator().manual_seed(seed)``.
    mapping : ``"differential"``, ``"single"`` or a :class:`~rramlib.device.mapping.Mapping`; default: the preset's own.
    per_channel, n_conductance_states : mapping options (see :class:`~rramlib.device.mapping.Mapping`).
    layers : names of the layers on RRAM (default: every Conv2d and Linear).
    crossbar : a :class:`~rramlib.device.crossbar.Crossbar` or a preset name (``"ideal"``, ``"aihwkit"``).

    ``analog.model`` is the network whose RRAM weights :meth:`at` overwrites in place; wrap its
    layers with adapters freely, they keep seeing the drifted weights.
    """

    def __init__(
        self,
        model: nn.Module,
        drift: DriftModel | str,
        *,
        seed: int,
        mapping: Mapping | str | None = None,
        per_channel: bool = False,
        n_conductance_states: int | None = None,
        layers: Iterable[str] | None = None,
        drift_params: dict | None = None,
        crossbar: Crossbar | str = "ideal",
    ):
        check_type("seed", seed, int)
        crossbar = make_crossbar(crossbar)
        if isinstance(drift, str):
            drift = make_drift_model(drift, **(drift_params or {}))
        elif drift_params:
            raise RramlibError("drift_params only apply when drift is given as a preset name")
        if not isinstance(drift, DriftModel):
            raise RramlibError(f"drift must be a DriftModel or a preset name, got {type(drift).__name__}")
        if not isinstance(mapping, Mapping):
            mapping = Mapping(
                g_min=drift.g_min, g_max=drift.g_max, kind=mapping or drift.default_mapping,
                per_channel=per_channel, n_conductance_states=n_conductance_states,
            )
        self.drift = drift
        self.mapping = mapping
        self.model = copy.deepcopy(model).eval()
        for p in self.model.parameters():
            p.requires_grad_(False)
        self._layers = [
            _Layer(name, module, torch.empty(0), {}) for name, module in rram_layers(self.model, layers)
        ]
        if not self._layers:
            raise RramlibError("the model has no Conv2d or Linear layer to put on RRAM")
        self.reference = {layer.name: layer.module.weight.detach().clone() for layer in self._layers}
        self.periphery: Periphery | None = None
        self.program(seed)
        self.set_crossbar(crossbar)

    # ----------------------------------------------------------------- programming
    def program(self, seed: int) -> AnalogModel:
        """(Re)program the reference weights onto chip ``seed``: draws every device's randomness once."""
        check_type("seed", seed, int)
        self.seed = seed
        generator = torch.Generator().manual_seed(seed)
        for layer in self._layers:
            w = self.reference[layer.name]
            g, layer.w_max = self.mapping.to_conductance(w.cpu())
            state = self.drift.program(g, generator)
            layer.state = {k: v.to(w.device) for k, v in state.items()}
            layer.w_max = layer.w_max.to(w.device)
        self.time: float | None = None
        self._program_periphery()
        return self

    def set_crossbar(self, crossbar: Crossbar | str) -> AnalogModel:
        """Read the layers through ``crossbar`` from now on (``"ideal"``: their exact forward again)."""
        crossbar = make_crossbar(crossbar)
        if self.periphery is not None:
            self.periphery.remove()
            self.periphery = None
        if not crossbar.is_ideal:
            self.periphery = Periphery(crossbar, self.layer_modules)
            self._program_periphery()
        return self

    @property
    def crossbar(self) -> Crossbar:
        """The periphery every RRAM layer is read through."""
        return make_crossbar() if self.periphery is None else self.periphery.crossbar

    def _program_periphery(self) -> None:
        if self.periphery is not None:
            self.periphery.program([layer.w_max for layer in self._layers],
                                   derived_generator(self.seed, "crossbar_systematic"))

    def _start_read(self, key: str) -> None:
        if self.periphery is not None:
            self.periphery.reseed(derive_seed(self.seed, "crossbar_read", key))

    # ----------------------------------------------------------------- reading
    def weights_at(self, t: float) -> Iterator[tuple[str, Tensor]]:
        """(name, drifted weight) of every RRAM layer at ``t`` seconds, without touching the model."""
        t = check_time(t)
        for layer in self._layers:
            g = self.drift.conductance(layer.state, t)
            yield layer.name, self.mapping.to_weight(g, layer.w_max).to(self.reference[layer.name].dtype)

    @torch.no_grad()
    def at(self, t: float) -> nn.Module:
        """The chip ``t`` seconds after programming: writes the drifted weights into ``self.model``."""
        t = check_time(t)
        self._start_read(repr(t))
        if t != self.time:
            for layer, (_, w) in zip(self._layers, self.weights_at(t)):
                layer.module.weight.copy_(w)
            self.time = t
        return self.model

    @torch.no_grad()
    def drift_free(self) -> nn.Module:
        """Put the software weights back (the upper reference); ``at`` drifts again."""
        for layer in self._layers:
            layer.module.weight.copy_(self.reference[layer.name])
        self.time = None
        self._start_read("drift_free")
        return self.model

    @property
    def layer_names(self) -> list[str]:
        return [layer.name for layer in self._layers]

    @property
    def layer_modules(self) -> list[nn.Module]:
        return [layer.module for layer in self._layers]

    def num_devices(self) -> int:
        """Number of RRAM devices (two per weight for a differential pair)."""
        return sum(next(iter(layer.state.values())).numel() for layer in self._layers)

    def to(self, device: torch.device | str) -> AnalogModel:
        self.model.to(device)
        for layer in self._layers:
            layer.state = {k: v.to(device) for k, v in layer.state.items()}
            layer.w_max = layer.w_max.to(device)
        self.reference = {k: v.to(device) for k, v in self.reference.items()}
        if self.periphery is not None:
            self.periphery.to(device)
        self.time = None
        return self

    def __repr__(self) -> str:
        return (f"AnalogModel(preset={self.drift.name!r}, mapping={self.mapping.kind!r}, seed={self.seed}, "
                f"layers={len(self._layers)}, devices={self.num_devices()})")
