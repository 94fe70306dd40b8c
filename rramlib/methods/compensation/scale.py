"""Output scaling: global or per-column drift compensation in the style of aihwkit.

aihwkit's ``GlobalDriftCompensation`` / ``PerColumnDriftCompensation`` read the crossbar
out with a fixed probe input right after programming (reference ``r0``) and again at
time t, and multiply the layer's outputs by ``α = r0 / r_t``. We do the same per RRAM
layer: the probe is ``n_probe`` standard-normal input vectors drawn from a fixed seed,
the readout is the layer's analog product ``|W p|`` averaged over probes (and over all
output columns for the global variant). The readout is *noiseless arithmetic on the
chip's conductances*: it includes the preset's read noise (frozen per device) but adds
no further readout noise (our choice; aihwkit's readout goes through its forward noise).
Because the layer's bias is digital and added after the analog product, scaling the
analog product equals scaling the weight, which is how it is applied.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import torch
from torch import nn

from rramlib.core.errors import check_int, check_seed
from rramlib.methods.overhead import Storage
from rramlib.methods.compensation.base import SHARED, FitContext, Method, MethodConfig

__all__ = ["OutputScaling", "OutputScalingConfig"]


@dataclass(frozen=True)
class OutputScalingConfig(MethodConfig):
    """``mode`` ``"global"`` (one α per layer) or ``"column"`` (one per output); ``n_probe`` probe vectors
    drawn from ``probe_seed``."""

    owner: ClassVar[str] = "scale"
    mode: str = field(default="global", metadata={
        "help": "global (one α per layer) or column (one α per output)", "choices": ("global", "column")})
    n_probe: int = field(default=64, metadata={"help": "random probe vectors that measure a layer's response"})
    probe_seed: int = field(default=0, metadata={"help": "seed of the probe vectors"})

    def _validate(self) -> None:
        check_int("scale.n_probe", self.n_probe, 1)
        check_seed("scale.probe_seed", self.probe_seed)


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
        gen = torch.Generator().manual_seed(self.hparams.probe_seed)  # one stream: the probes, layer after layer
        self.probes_ = {
            name: torch.randn(m.weight[0].numel(), self.hparams.n_probe, generator=gen).to(m.weight.device)
            for name, m in zip(self.analog_.layer_names, self.analog_.layer_modules)
        }
        self._reference_chip = None

    def _readout(self, name: str, weight: torch.Tensor) -> torch.Tensor:
        response = (weight.reshape(weight.shape[0], -1) @ self.probes_[name]).abs().mean(dim=1)
        return response.mean() if self.hparams.mode == "global" else response

    @torch.no_grad()
    def _reference(self) -> dict[str, torch.Tensor]:
        """r0 of the programmed chip, per layer: read once right after programming, kept in SRAM."""
        if self._reference_chip != self.analog_.seed:
            self.reference_ = {n: self._readout(n, w) for n, w in self.analog_.weights_at(0.0)}
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
            alpha = reference[name] / self._readout(name, module.weight).clamp_min(1e-12)
            module.weight.mul_(alpha.reshape(-1, *[1] * (module.weight.dim() - 1)) if alpha.dim() else alpha)
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
