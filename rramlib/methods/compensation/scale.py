"""Output scaling: global or per-column drift compensation in the style of aihwkit.

aihwkit's ``GlobalDriftCompensation`` / ``PerColumnDriftCompensation`` read the crossbar
out with a fixed probe input right after programming (reference ``r0``) and again at
time t, and multiply the layer's outputs by ``α = r0 / r_t``. We do the same per RRAM
layer with :class:`rramlib.device.analog.DriftCompensation` (the probe, the readout and α are
defined there, once: this method's config derives from it). Because the layer's bias is digital
and added after the analog product, scaling the analog product equals scaling the weight,
which is how it is applied.

The chip's own readout ``"gdc"`` (:data:`rramlib.device.analog.READOUTS`) is the global mode with the
default probe, built into the chip: ``none`` on a ``"gdc"`` chip equals ``scale`` (global, default probe)
on a ``"raw"`` chip bit for bit (same code, same inputs). ``scale`` (global) on a ``"gdc"`` chip is the
identity: its reference ``r0'`` is the chip's ``r0`` exactly (α = 1 at t = 0) and at t it reads the
already compensated layer, so ``α' = r0 / r_t(α W) = 1`` up to float rounding (the readout of ``α W`` is
``α r_t`` only to the last bits).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn

from rramlib.device.analog import DriftCompensation
from rramlib.methods.overhead import Storage
from rramlib.methods.compensation.base import SHARED, FitContext, Method, MethodConfig

__all__ = ["OutputScaling", "OutputScalingConfig"]


@dataclass(frozen=True)
class OutputScalingConfig(MethodConfig, DriftCompensation):
    """``mode`` ``"global"`` (one α per layer) or ``"column"`` (one per output); ``n_probe`` probe vectors
    drawn from ``probe_seed`` (the fields, their checks and the arithmetic of
    :class:`~rramlib.device.analog.DriftCompensation`)."""

    owner: ClassVar[str] = "scale"


class OutputScaling(Method):
    """α = r0 / r_t per layer (``mode="global"``) or per output column (``mode="column"``)."""

    name = "scale"
    Config = OutputScalingConfig
    label = "output scaling"
    color = "#E69F00"
    marker = "s"
    fitting = "per chip: readouts at programming and at t"
    shared_note = "r0 per layer, kept once from programming"
    trained = False
    not_for_hfn = None

    def setup(self, ctx: FitContext) -> None:
        self.analog_ = ctx.analog()
        weights = [m.weight for m in self.analog_.layer_modules]
        self.probes_ = dict(zip(self.analog_.layer_names, self.hparams.probes(weights)))
        self._reference_chip = None

    @torch.no_grad()
    def _reference(self) -> dict[str, torch.Tensor]:
        """r0 of the programmed chip, per layer: read once right after programming, kept in SRAM."""
        if self._reference_chip != self.analog_.seed:
            self.reference_ = {n: self.hparams.readout(w, self.probes_[n]) for n, w in self.analog_.weights_at(0.0)}
            self._reference_chip = self.analog_.seed
        return self.reference_

    @torch.no_grad()
    def at(self, seed: int, t: float) -> nn.Module:
        """The drifted chip with α applied (see :meth:`Method.at`: the returned module is shared)."""
        self._check_fitted()
        if self.analog_.seed != seed:
            self.analog_.program(seed)
        reference = self._reference()
        model = self.analog_.at(t)
        for name, module in zip(self.analog_.layer_names, self.analog_.layer_modules):
            module.weight.mul_(self.hparams.alpha(reference[name], module.weight, self.probes_[name]))
        self.analog_.time = None  # the weights no longer equal the plain chip at t
        return model

    def storage(self) -> Storage:
        # r0 per layer (global) or per column, kept from programming; α itself is recomputed in the field.
        mods = self.analog_.layer_modules
        values = len(mods) if self.hparams.mode == "global" else sum(m.weight.shape[0] for m in mods)
        return Storage(values_per_level=0, levels=1, shared_values=values)

    def _sram_tensors(self) -> dict[str, torch.Tensor]:
        return {f"{SHARED}/{name}.r0": r0 for name, r0 in self._reference().items()}

    def extra_macs(self, example: torch.Tensor) -> int:
        # one multiply per output value of each layer
        total = 0

        def hook(module, inputs, output):
            nonlocal total
            total += output[0].numel()

        handles = [m.register_forward_hook(hook) for m in self.analog_.layer_modules]
        try:
            with torch.no_grad():
                self.analog_.model(example[:1])
        finally:
            for h in handles:
                h.remove()
        return total
