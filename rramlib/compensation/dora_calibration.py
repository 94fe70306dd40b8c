"""DoRA-based calibration of a drifted chip (the study's 2025 method).

Steps (the published abstract gives: DoRA on influential layers, SRAM parameters, 10
calibration samples, 2.34 % of ResNet-50's parameters; the rest are our choices):

1. Sensitivity ranking, offline: each RRAM layer alone is drifted (training chips,
   ``sensitivity_time``) and the mean squared error of the network's logits against the
   drift-free network on the calibration samples is measured; layers are ranked by it.
2. Layers are taken in that order while the DoRA parameters added stay within ``budget``
   (fraction of the model's parameters; 2.34 % by default).
3. In the field, for the chip being calibrated at time t: the DoRA parameters are reset
   (B = 0, m = ‖W(t)‖, so the start equals the drifted chip) and trained layer by layer, in
   network order, with feature-MSE knowledge distillation against the drift-free model's
   output of the same layer, on ``n_samples`` calibration images (disjoint from the test
   set). The norm in DoRA is detached in the gradient (DoRA paper §4.3, peft semantics).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..adapters import add_dora
from ..data import as_tensors
from ..errors import RramlibError, check_positive
from ..models import count_parameters
from ..overhead import Storage
from ..times import parse_time
from .base import FitContext, Method

LEVEL = "calib"


def dora_values(layer: nn.Module, rank: int) -> int:
    """Values DoRA adds to one layer: A (r × in·k²), B (out × r) and the magnitude (out)."""
    out = layer.weight.shape[0]
    return rank * layer.weight[0].numel() + out * rank + out


class DoRACalibration(Method):
    name = "dora"
    defaults = {"n_samples": 10, "budget": 0.0234, "rank": 4, "alpha": 8.0, "steps": 100, "lr": 5e-3,
                "sensitivity_time": "1y", "sensitivity_chips": 2, "seed": 0}

    def __init__(self, **params):
        super().__init__(**params)
        check_positive("dora.n_samples", self.params["n_samples"])
        check_positive("dora.budget", self.params["budget"])
        parse_time(self.params["sensitivity_time"])

    def setup(self, ctx: FitContext) -> None:
        x, _ = as_tensors(ctx.splits.calib)
        n = self.params["n_samples"]
        if n > len(x):
            raise RramlibError(f"dora.n_samples={n} but the calibration split holds only {len(x)} images")
        self._x = x[:n].to(ctx.device)
        self._teacher = ctx.model.eval()
        self.analog_ = ctx.analog(seed=0)
        self.total_parameters_ = count_parameters(ctx.model)
        self.sensitivity_ = self._rank_layers(ctx)
        budget = self.params["budget"] * self.total_parameters_
        modules = dict(zip(self.analog_.layer_names, self.analog_.layer_modules))
        chosen, used = [], 0
        for name in sorted(self.sensitivity_, key=self.sensitivity_.get, reverse=True):
            cost = dora_values(modules[name], self.params["rank"])
            if used + cost <= budget:
                chosen.append(name)
                used += cost
        if not chosen:
            raise RramlibError(f"no layer fits the DoRA budget of {budget:.0f} parameters "
                               f"({self.params['budget']:.2%}); raise dora.budget or lower dora.rank")
        self.layers_ = [n for n in self.analog_.layer_names if n in chosen]  # network order
        self.adapters_ = add_dora(self.analog_.model, targets=self.layers_, rank=self.params["rank"],
                                  alpha=self.params["alpha"], levels=(LEVEL,), seed=self.params["seed"])
        self._initial = {k: v.clone() for k, v in self.adapters_.level_state_dict(LEVEL).items()}

    @torch.no_grad()
    def _rank_layers(self, ctx: FitContext) -> dict[str, float]:
        """Logit MSE when only one layer drifts, averaged over training chips."""
        t = parse_time(self.params["sensitivity_time"])
        reference = self._teacher(self._x)
        scores = dict.fromkeys(self.analog_.layer_names, 0.0)
        for chip in range(self.params["sensitivity_chips"]):
            self.analog_.program(chip)
            drifted = dict(self.analog_.weights_at(t))
            for name, module in zip(self.analog_.layer_names, self.analog_.layer_modules):
                self.analog_.drift_free()
                module.weight.copy_(drifted[name])
                scores[name] += float(F.mse_loss(self.analog_.model(self._x), reference))
        self.analog_.drift_free()
        return {k: v / self.params["sensitivity_chips"] for k, v in scores.items()}

    def at(self, seed: int, t: float) -> nn.Module:
        if self.analog_.seed != seed:
            self.analog_.program(seed)
        model = self.analog_.at(t)
        self.calibrate()
        return model

    @torch.enable_grad()
    def calibrate(self) -> None:
        """Reset the DoRA parameters on the current chip and train them layer by layer (feature KD)."""
        self.adapters_.load_level_state_dict(LEVEL, self._initial)
        self.adapters_.reset_magnitude(LEVEL)
        teacher_modules = dict(self._teacher.named_modules())
        student_modules = dict(self.analog_.model.named_modules())
        with torch.no_grad():
            targets = {}
            handles = [teacher_modules[n].register_forward_hook(
                lambda m, i, o, n=n: targets.__setitem__(n, o)) for n in self.layers_]
            self._teacher(self._x)
            for h in handles:
                h.remove()
        params_by_layer = self._params_by_layer()
        for name in self.layers_:
            captured = {}
            handle = student_modules[name].register_forward_hook(lambda m, i, o: captured.__setitem__("y", o))
            optimizer = torch.optim.Adam(params_by_layer[name], lr=self.params["lr"])
            try:
                for _ in range(self.params["steps"]):
                    self.analog_.model(self._x)
                    loss = F.mse_loss(captured["y"], targets[name])
                    optimizer.zero_grad(set_to_none=True)
                    loss.backward()
                    optimizer.step()
            finally:
                handle.remove()

    def _params_by_layer(self) -> dict[str, list[nn.Parameter]]:
        out = {}
        for name, key in zip(self.adapters_.target_names, self.adapters_.layer_keys):
            out[name] = [self.adapters_.lora_A[key][LEVEL], self.adapters_.lora_B[key][LEVEL],
                         self.adapters_.magnitude[key][LEVEL]]
        return out

    def state_dict(self) -> dict:
        return {"sensitivity": self.sensitivity_, "layers": self.layers_}

    def storage(self) -> Storage:
        return Storage(values_per_level=self.adapters_.values_per_level(), levels=1)

    def extra_macs(self, example: torch.Tensor) -> int:
        return self.adapters_.extra_macs(example[:1])

    def fraction_updated(self) -> float:
        """Share of the model's parameters that calibration trains (the study's "% of parameters")."""
        return self.adapters_.values_per_level() / self.total_parameters_
