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
   set), drawn stratified by class from the calibration split (:func:`stratified_pick`). The norm
   in DoRA is detached in the gradient (DoRA paper §4.3, peft semantics).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from rramlib.core.config import config_field
from rramlib.methods.adapters import DoRAConfig, add_dora
from rramlib.nn.data import as_tensors
from rramlib.core.errors import RramlibError, check_int, check_positive
from rramlib.nn.models import count_parameters
from rramlib.methods.overhead import Storage, input_bits
from rramlib.core.seeding import check_root_seed, train_chips
from rramlib.core.times import parse_time
from rramlib.core.torchutil import eval_mode
from rramlib.methods.compensation.base import CALIBRATION, SHARED, FitContext, Method, MethodConfig

__all__ = ["DoRACalibration", "DoRACalibrationConfig", "dora_values", "stratified_pick"]

#: name of the single DoRA parameter set (calibrated anew for every chip and time)
ADAPTER = "calib"


def stratified_pick(labels: torch.Tensor, n: int) -> torch.Tensor:
    """Indices of ``n`` samples with class counts proportional to those in ``labels`` (no randomness).

    Quotas: the floor of each class's proportional share, plus one for the classes with the largest
    remainders (ties: the lower label), so they sum to ``n`` and each class is within one sample of its share
    (Hamilton's largest-remainder rule). Within a class the first members in split order are taken; the
    calibration split is itself a seeded random draw (:func:`rramlib.nn.data.load_dataset`), so these are random
    images of their class. Returned sorted.
    """
    labels = torch.as_tensor(labels).flatten()
    n = check_int("number of samples", n, 1)
    if n > len(labels):
        raise RramlibError(f"cannot pick {n} samples from {len(labels)}")
    classes, counts = torch.unique(labels, return_counts=True)
    share = counts.double() * n / len(labels)
    quota = share.floor().long()
    left = n - int(quota.sum())
    # largest remainder first; a stable sort keeps the lower label first among equal remainders
    order = torch.sort(-(share - quota), stable=True).indices
    quota[order[:left]] += 1
    picked = [torch.nonzero(labels == c).flatten()[:q] for c, q in zip(classes, quota.tolist())]
    return torch.sort(torch.cat(picked)).values


def dora_values(layer: nn.Module, rank: int) -> int:
    """Values DoRA adds to one layer: A (r × in·k²), B (out × r) and the magnitude (out)."""
    out = layer.weight.shape[0]
    return rank * layer.weight[0].numel() + out * rank + out


@dataclass(frozen=True)
class DoRACalibrationConfig(MethodConfig):
    """Calibration on ``n_samples`` images, ``steps`` Adam steps per layer at ``lr``; DoRA rank and α (seed:
    A's initialisation); layers chosen within ``budget`` (fraction of the model's parameters) by the logit MSE
    each causes alone at ``sensitivity_time`` on ``sensitivity_chips`` training chips."""

    owner: ClassVar[str] = "dora"
    n_samples: int = field(default=10, metadata={"help": "calibration images per chip (stratified by class)"})
    budget: float = field(default=0.0234, metadata={
        "help": "DoRA parameters allowed, as a fraction of the model's parameters"})
    rank: int = field(default=DoRAConfig.rank, metadata={"help": config_field(DoRAConfig, "rank").help})
    alpha: float = field(default=DoRAConfig.alpha, metadata={"help": config_field(DoRAConfig, "alpha").help})
    steps: int = field(default=100, metadata={"help": "Adam steps per adapted layer in each chip's calibration"})
    lr: float = field(default=5e-3, metadata={"help": "Adam learning rate of the calibration"})
    sensitivity_time: str = field(default="1y", metadata={
        "help": "time after programming at which layers are ranked by the logit error each causes alone"})
    sensitivity_chips: int = field(default=2, metadata={"help": "training chips the layer ranking averages over"})
    seed: int = field(default=DoRAConfig.init_seed, metadata={"help": config_field(DoRAConfig, "init_seed").help})

    def _validate(self) -> None:
        check_int("dora.n_samples", self.n_samples, 1)
        check_positive("dora.budget", self.budget)
        check_int("dora.steps", self.steps, 1)
        check_positive("dora.lr", self.lr)
        parse_time(self.sensitivity_time)
        check_int("dora.sensitivity_chips", self.sensitivity_chips, 1)
        check_root_seed(self.seed, "dora.seed")
        self.adapter_config()  # rank and alpha

    def adapter_config(self) -> DoRAConfig:
        return DoRAConfig(rank=self.rank, alpha=self.alpha, init_seed=self.seed)


class DoRACalibration(Method):
    """Offline: rank layers and add DoRA adapters; in the field, :meth:`at` calibrates each chip (trains)."""

    name = "dora"
    Config = DoRACalibrationConfig
    label = "DoRA calibration"
    color = "#F0E442"
    marker = "D"
    fitting = "online, per chip (in the field)"
    shared_note = "online, per chip: the chip's DoRA set + calibration inputs and drift-free targets (counted)"
    trained = True
    not_for_hfn = None

    def setup(self, ctx: FitContext) -> None:
        p = self.hparams
        x, y = as_tensors(ctx.splits.calib)
        if p.n_samples > len(x):
            raise RramlibError(f"dora.n_samples={p.n_samples} but the calibration split holds only {len(x)} images")
        self.calib_inputs_ = x[stratified_pick(y, p.n_samples)].to(ctx.device)
        self.teacher_ = ctx.model
        self.analog_ = ctx.analog(seed=0)
        self.total_parameters_ = count_parameters(ctx.model)
        self.sensitivity_ = self._rank_layers()
        budget = p.budget * self.total_parameters_
        modules = dict(zip(self.analog_.layer_names, self.analog_.layer_modules))
        chosen, used = [], 0
        for name in sorted(self.sensitivity_, key=self.sensitivity_.get, reverse=True):
            cost = dora_values(modules[name], p.rank)
            if used + cost <= budget:
                chosen.append(name)
                used += cost
        if not chosen:
            raise RramlibError(f"no layer fits the DoRA budget of {budget:.0f} parameters "
                               f"({p.budget:.2%}); raise dora.budget or lower dora.rank")
        self.layers_ = [n for n in self.analog_.layer_names if n in chosen]  # network order
        self.targets_ = self._teacher_features()
        self.adapters_ = add_dora(self.analog_.model, p.adapter_config(), targets=self.layers_,
                                  adapter_names=(ADAPTER,))
        self._initial = self.adapters_.adapter_state_dict(ADAPTER)

    @torch.no_grad()
    def _rank_layers(self) -> dict[str, float]:
        """Logit MSE when only one layer drifts, averaged over training chips."""
        p = self.hparams
        t = parse_time(p.sensitivity_time)
        with eval_mode(self.teacher_):
            reference = self.teacher_(self.calib_inputs_)
        scores = dict.fromkeys(self.analog_.layer_names, 0.0)
        for chip in train_chips(p.sensitivity_chips):
            self.analog_.program(chip)
            drifted = dict(self.analog_.weights_at(t))
            for name, module in zip(self.analog_.layer_names, self.analog_.layer_modules):
                self.analog_.drift_free()
                module.weight.copy_(drifted[name])
                scores[name] += float(F.mse_loss(self.analog_.model(self.calib_inputs_), reference))
        self.analog_.drift_free()
        return {k: v / p.sensitivity_chips for k, v in scores.items()}

    @torch.no_grad()
    def _teacher_features(self) -> dict[str, torch.Tensor]:
        """The drift-free model's output of every adapted layer on the calibration inputs (the KD targets)."""
        modules = dict(self.teacher_.named_modules())
        targets = {}
        handles = [modules[n].register_forward_hook(lambda m, i, o, n=n: targets.__setitem__(n, o.detach()))
                   for n in self.layers_]
        try:
            with eval_mode(self.teacher_):
                self.teacher_(self.calib_inputs_)
        finally:
            for h in handles:
                h.remove()
        return targets

    def at(self, seed: int, t: float) -> nn.Module:
        """Chip ``seed`` at ``t`` seconds, **calibrated**: this trains (:meth:`calibrate`) at every call.

        The DoRA parameters are reset and trained on this chip's drifted weights, so the result depends
        only on (chip, t). Returns the method's own network, shared between calls (see :meth:`Method.at`).
        """
        self._check_fitted()
        if self.analog_.seed != seed:
            self.analog_.program(seed)
        model = self.analog_.at(t)
        self.calibrate()
        return model

    @torch.enable_grad()
    def calibrate(self) -> None:
        """Reset the DoRA parameters on the current chip and train them layer by layer (feature KD).

        Layers are trained in network order; while one is trained, the layers before it are fixed, so its
        input is computed once (one forward of the network) and each step runs only that layer, forward and
        backward. That is the same optimisation as stepping through the whole network, at a fraction of its cost
        (with a noisy crossbar periphery, the layer's input is one read of the chip rather than a new read per step).
        """
        p = self.hparams
        self.adapters_.load_adapter_state_dict(ADAPTER, self._initial)
        self.adapters_.reset_magnitude(ADAPTER)
        student_modules = dict(self.analog_.model.named_modules())
        params_by_layer = self._params_by_layer()
        for name in self.layers_:
            layer = student_modules[name]
            inputs = self._layer_inputs(layer)
            optimizer = torch.optim.Adam(params_by_layer[name], lr=p.lr)
            for _ in range(p.steps):
                loss = F.mse_loss(layer(*inputs), self.targets_[name])
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()

    @torch.no_grad()
    def _layer_inputs(self, layer: nn.Module) -> tuple:
        """The positional inputs of ``layer`` when the student network reads the calibration inputs."""
        captured = []
        handle = layer.register_forward_pre_hook(lambda m, args: captured.append(tuple(a.detach() for a in args)))
        try:
            self.analog_.model(self.calib_inputs_)
        finally:
            handle.remove()
        if len(captured) != 1:
            raise RramlibError(f"DoRA calibration needs each adapted layer called once per forward, "
                               f"this one was called {len(captured)} times")
        return captured[0]

    def _params_by_layer(self) -> dict[str, list[nn.Parameter]]:
        out = {}
        for name, key in zip(self.adapters_.target_names, self.adapters_.layer_keys):
            out[name] = [self.adapters_.lora_A[key][ADAPTER], self.adapters_.lora_B[key][ADAPTER],
                         self.adapters_.magnitude[key][ADAPTER]]
        return out

    def state_dict(self) -> dict:
        return {"sensitivity": self.sensitivity_, "layers": self.layers_}

    def storage(self) -> Storage:
        """The DoRA parameters of the calibrated chip, plus what calibrating in the field needs on every chip:
        the calibration inputs (images at :data:`~rramlib.methods.overhead.PIXEL_BITS` like every method's stored
        images, token sequences at :data:`~rramlib.methods.overhead.TOKEN_BITS`:
        :func:`~rramlib.methods.overhead.input_bits`) and the drift-free model's outputs of the adapted layers (the
        KD targets)."""
        return Storage(values_per_level=self.adapters_.values_per_adapter(), levels=1,
                       calibration_values=sum(t.numel() for t in self.targets_.values()),
                       input_values=self.calib_inputs_.numel(), input_bits=input_bits(self.calib_inputs_),
                       online=True)

    def _sram_tensors(self) -> dict[str, torch.Tensor]:
        tensors = {f"{SHARED}/{k}": v for k, v in self.adapters_.adapter_tensors(ADAPTER).items()}
        tensors[f"{CALIBRATION}/inputs"] = self.calib_inputs_
        tensors.update({f"{CALIBRATION}/{name}.target": t for name, t in self.targets_.items()})
        return tensors

    def extra_macs(self, example: torch.Tensor) -> int:
        return self.adapters_.extra_macs(example[:1])

    def fraction_updated(self) -> float:
        """Share of the model's parameters that calibration trains (the study's "% of parameters")."""
        return self.adapters_.values_per_adapter() / self.total_parameters_
