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

import torch
from torch import nn

from ..errors import check_choice
from ..overhead import Storage
from .base import FitContext, Method


class OutputScaling(Method):
    """α = r0 / r_t per layer (``mode="global"``) or per output column (``mode="column"``)."""

    name = "scale"
    defaults = {"mode": "global", "n_probe": 64, "probe_seed": 0}

    def __init__(self, **params):
        super().__init__(**params)
        check_choice("scale mode", self.params["mode"], ("global", "column"))

    def setup(self, ctx: FitContext) -> None:
        self.analog_ = ctx.analog()
        gen = torch.Generator().manual_seed(self.params["probe_seed"])
        self._probes = {
            name: torch.randn(m.weight[0].numel(), self.params["n_probe"], generator=gen).to(m.weight.device)
            for name, m in zip(self.analog_.layer_names, self.analog_.layer_modules)
        }
        self._reference_seed = None

    def _readout(self, name: str, weight: torch.Tensor) -> torch.Tensor:
        response = (weight.reshape(weight.shape[0], -1) @ self._probes[name]).abs().mean(dim=1)
        return response.mean() if self.params["mode"] == "global" else response

    @torch.no_grad()
    def at(self, seed: int, t: float) -> nn.Module:
        if self.analog_.seed != seed or self._reference_seed != seed:
            self.analog_.program(seed)
            self._reference = {n: self._readout(n, w) for n, w in self.analog_.weights_at(0.0)}
            self._reference_seed = seed
        model = self.analog_.at(t)
        for name, module in zip(self.analog_.layer_names, self.analog_.layer_modules):
            alpha = self._reference[name] / self._readout(name, module.weight).clamp_min(1e-12)
            module.weight.mul_(alpha.reshape(-1, *[1] * (module.weight.dim() - 1)) if alpha.dim() else alpha)
        self.analog_.time = None  # the weights no longer equal the plain chip at t
        return model

    def storage(self) -> Storage:
        # r0 per layer (global) or per column, kept from programming; α itself is recomputed in the field.
        mods = self.analog_.layer_modules
        values = len(mods) if self.params["mode"] == "global" else sum(m.weight.shape[0] for m in mods)
        return Storage(values_per_level=0, levels=1, shared_values=values)

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
