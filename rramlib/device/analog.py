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

``readout`` (default ``"raw"``: the conductances as they are) names how the chip's outputs are read
(:data:`READOUTS`). ``"gdc"`` is aihwkit's default, global drift compensation (``GlobalDriftCompensation``): right
after programming the chip reads every RRAM layer out with a fixed probe input (``r0``, kept per layer in the
periphery), at time t again (``r_t``), and multiplies the layer's outputs by ``α = r0 / r_t``
(:class:`DriftCompensation`, the one place α is computed; the method ``scale`` reuses it). The weights the chip
presents at t (:meth:`AnalogModel.weights_at`, :meth:`AnalogModel.at`) then include α. The layer's bias is digital
and added after the analog product, so scaling the product equals scaling the weight, which is how it is applied;
read through a non-ideal ``crossbar``, α thus scales what the periphery reads, not its digitised outputs
(aihwkit scales the tile's output).
"""
from __future__ import annotations

import copy
from collections.abc import Iterable, Iterator
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import ClassVar

import torch
from torch import Tensor, nn

from rramlib.core.config import Config
from rramlib.device.crossbar import Crossbar, Periphery, make_crossbar
from rramlib.device.drift import DriftModel, make_drift_model
from rramlib.core.errors import RramlibError, check_choice, check_int, check_seed, check_time, check_type
from rramlib.device.mapping import Mapping
from rramlib.core.seeding import derive_seed, generator as derived_generator

__all__ = ["READOUTS", "AnalogModel", "DriftCompensation", "rram_layers"]

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


#: The smallest readout α divides by: guards a layer whose weights all read zero (our choice).
MIN_READOUT = 1e-12


@dataclass(frozen=True)
class DriftCompensation(Config):
    """Output scaling against drift, as aihwkit's ``GlobalDriftCompensation`` (``mode="global"``) and
    ``PerColumnDriftCompensation`` (``mode="column"``) read it: ``α = r0 / r_t``.

    The probe is ``n_probe`` standard-normal input vectors drawn once from ``probe_seed`` (one stream, layer after
    layer); a layer's readout is ``mean_probes |W p|`` per output column, averaged over the columns in the global
    mode; ``r0`` is the readout right after programming, ``r_t`` at time t. The readout is *noiseless arithmetic
    on the chip's conductances*: it includes the preset's read noise (frozen per device) but adds no readout noise
    of its own (our choice; aihwkit's readout goes through its forward noise). The readout ``"gdc"`` of
    :class:`AnalogModel` and the method ``scale`` (:mod:`rramlib.methods.compensation.scale`, whose config derives
    from this one) both compute α here.
    """

    owner: ClassVar[str] = "gdc"
    mode: str = field(default="global", metadata={
        "help": "global (one α per layer) or column (one α per output)", "choices": ("global", "column")})
    n_probe: int = field(default=64, metadata={"help": "random probe vectors that measure a layer's response"})
    probe_seed: int = field(default=0, metadata={"help": "seed of the probe vectors"})

    def _validate(self) -> None:
        check_int(self._label("n_probe"), self.n_probe, 1)
        check_seed(self._label("probe_seed"), self.probe_seed)

    def probes(self, weights: Sequence[Tensor]) -> list[Tensor]:
        """The probe of each layer (inputs x ``n_probe``), on the weight's device and dtype, for ``weights`` in order."""
        gen = torch.Generator().manual_seed(self.probe_seed)  # one stream: the probes, layer after layer
        return [torch.randn(w[0].numel(), self.n_probe, generator=gen).to(device=w.device, dtype=w.dtype)
                for w in weights]

    def readout(self, weight: Tensor, probe: Tensor) -> Tensor:
        """The layer's response ``mean_probes |W p|``: one value (global) or one per output column."""
        response = (weight.reshape(weight.shape[0], -1) @ probe).abs().mean(dim=1)
        return response.mean() if self.mode == "global" else response

    def alpha(self, r0: Tensor, weight: Tensor, probe: Tensor) -> Tensor:
        """``α = r0 / r_t`` of the layer now holding ``weight``, shaped to multiply it (scalar, or one per row)."""
        alpha = r0 / self.readout(weight, probe).clamp_min(MIN_READOUT)
        return alpha.reshape(-1, *[1] * (weight.dim() - 1)) if alpha.dim() else alpha


#: The readouts a chip can have, by name: ``"raw"`` the conductances as they are (no correction); ``"gdc"``
#: aihwkit's default global drift compensation with :class:`DriftCompensation`'s default probe.
READOUTS: dict[str, DriftCompensation | None] = {"raw": None, "gdc": DriftCompensation()}


@dataclass
class _Layer:
    name: str
    module: nn.Module
    w_max: Tensor
    state: dict[str, Tensor]
    probe: Tensor | None = None  # the readout's probe input (readout "gdc")
    r0: Tensor | None = None  # the readout right after programming (readout "gdc")


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
    readout : ``"raw"`` or ``"gdc"`` (:data:`READOUTS`): how the chip's outputs are read (module docstring).

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
        readout: str = "raw",
    ):
        check_type("seed", seed, int)
        self.readout = check_choice("readout", readout, READOUTS)
        self._compensation = READOUTS[readout]
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
        if self._compensation is not None:  # the fixed probe input, drawn once
            for layer, probe in zip(self._layers, self._compensation.probes(list(self.reference.values()))):
                layer.probe = probe
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
            if self._compensation is not None:  # r0: read once right after programming
                layer.r0 = self._compensation.readout(self._raw_weight(layer, 0.0), layer.probe)
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
    def _raw_weight(self, layer: _Layer, t: float) -> Tensor:
        """The weight layer ``layer``'s conductances hold at ``t`` (before the readout's α)."""
        g = self.drift.conductance(layer.state, t)
        return self.mapping.to_weight(g, layer.w_max).to(self.reference[layer.name].dtype)

    def _read(self, t: float) -> Iterator[tuple[_Layer, Tensor, Tensor | None]]:
        """(layer, weight before α, α or None for the raw readout) of every RRAM layer at ``t``."""
        t = check_time(t)
        for layer in self._layers:
            w = self._raw_weight(layer, t)
            yield layer, w, None if self._compensation is None else self._compensation.alpha(layer.r0, w, layer.probe)

    def weights_at(self, t: float) -> Iterator[tuple[str, Tensor]]:
        """(name, drifted weight as the chip presents it, α of the readout included) of every RRAM layer at
        ``t`` seconds, without touching the model."""
        for layer, w, alpha in self._read(t):
            yield layer.name, w if alpha is None else w * alpha

    @torch.no_grad()
    def alphas_at(self, t: float) -> dict[str, Tensor]:
        """The readout's α of every RRAM layer at ``t`` seconds (readout ``"raw"``: a scalar 1 each)."""
        return {layer.name: torch.ones((), dtype=w.dtype, device=w.device) if alpha is None else alpha
                for layer, w, alpha in self._read(t)}

    @torch.no_grad()
    def at(self, t: float) -> nn.Module:
        """The chip ``t`` seconds after programming: writes the drifted weights (the readout's α included) into
        ``self.model``."""
        t = check_time(t)
        self._start_read(repr(t))
        if t != self.time:
            for layer, (_, w) in zip(self._layers, self.weights_at(t)):
                layer.module.weight.copy_(w)
            self.time = t
        return self.model

    @torch.no_grad()
    def drift_free(self) -> nn.Module:
        """Put the software weights back (the upper reference, no readout α); ``at`` drifts again."""
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
            layer.probe, layer.r0 = (None if v is None else v.to(device) for v in (layer.probe, layer.r0))
        self.reference = {k: v.to(device) for k, v in self.reference.items()}
        if self.periphery is not None:
            self.periphery.to(device)
        self.time = None
        return self

    def __repr__(self) -> str:
        return (f"AnalogModel(preset={self.drift.name!r}, mapping={self.mapping.kind!r}, seed={self.seed}, "
                f"readout={self.readout!r}, "
                f"layers={len(self._layers)}, devices={self.num_devices()})")
