"""Hidden-Fold Networks (HFN) on drifting RRAM: the chapter's profiles, training and drift pipeline.

López García-Arias, Hashimoto, Motomura, Yu, "Hidden-Fold Networks: Random Recurrent Residuals Using
Sparse Supermasks", BMVC 2021 (arXiv 2111.12330). The networks (supermask layers, folded stages,
:func:`~rramlib.nn.hidden_fold.materialise`) are :mod:`rramlib.nn.hidden_fold`; their memory is
:mod:`rramlib.methods.hidden_fold_memory`. Here: what each book profile trains (:data:`HFN_PROFILES`,
:func:`train_pair`: the HFN and the dense network of the same layout, the comparison the HFN paper makes),
accuracy over drift time (:func:`accuracy_over_time`), the compensation methods that apply to an HFN
(:func:`check_hfn_method`, :func:`fit_compensation`), the crossbar layout of its layers and a software
weight-noise check.
"""
from __future__ import annotations

import copy
import dataclasses
import math
import time
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from rramlib.core.cache import Cache, config_hash
from rramlib.core.errors import RramlibError, check_choice
from rramlib.device.analog import AnalogModel, rram_layers
from rramlib.device.drift import DriftModel, make_drift_model
from rramlib.methods.compensation import METHODS, FitContext, Method, check_method, make_method
from rramlib.methods.schedule import log_windows
from rramlib.nn.data import as_tensors, load_dataset
from rramlib.nn.evaluate import accuracy
from rramlib.nn.hidden_fold import HFN_ARCHS, HFNResNet, build_hfn, materialise, supermask_layers
from rramlib.nn.train import TrainConfig, train
from rramlib.study.experiments import fit_method
from rramlib.core.torchutil import resolve_device

__all__ = [
    "PAPER_CLAIMS", "accuracy_over_time", "check_hfn_method", "crossbar_layout",
    "weight_noise_accuracy", "fit_compensation", "HFNProfile", "HFN_PROFILES", "TrainedPair", "train_pair",
]

#: The HFN paper's own headline numbers, from its abstract (arXiv 2111.12330): memory of the dense ResNet
#: over that of the HFN of equivalent (CIFAR-100, ResNet-50) or similar (ImageNet, ResNet-34) accuracy.
#: Its accounting rule is unknown to us.
PAPER_CLAIMS = {"memory_ratio_cifar100_resnet50": 38.5, "memory_ratio_imagenet_resnet34": 26.8}


# ------------------------------------------------------------------------------------------ drift
def accuracy_over_time(source: nn.Module | Method, drift: DriftModel | str | None = None, *, times: dict[str, float],
                       chips, test, mapping: str | None = "differential", drift_params: dict | None = None
                       ) -> list[dict]:
    """Accuracy at every time of ``times`` (label -> seconds) on each chip seed of ``chips``: one record per
    (chip, time). ``source`` is a network (an HFN is materialised first) programmed with ``drift`` and
    ``mapping``, or a fitted compensation method (``drift`` None), read through ``method.at(chip, t)``."""
    chips = list(chips)
    if not chips:
        raise RramlibError("give at least one chip seed")
    if isinstance(source, Method):
        if drift is not None:
            raise RramlibError("a fitted method brings its own drift model; pass drift=None")
        read = source.at
    else:
        analog = AnalogModel(materialise(source) if supermask_layers(source) else source, drift, seed=chips[0],
                             mapping=mapping, drift_params=drift_params)

        def read(chip, t):
            if analog.seed != chip:
                analog.program(chip)
            return analog.at(t)
    return [{"chip": chip, "time_label": label, "time_s": t, "accuracy": accuracy(read(chip, t), test)}
            for chip in chips for label, t in times.items()]


def check_hfn_method(name: str) -> str:
    """``name`` if it is a compensation method that applies to an HFN, else RramlibError with the reason its class
    gives (:attr:`~rramlib.methods.compensation.Method.not_for_hfn`): a method that puts trained weights on the
    RRAM does not apply, since an HFN's crossbar holds random signed constants by definition (its only learned
    state is the digital mask)."""
    reason = METHODS[check_method(name)].not_for_hfn
    if reason is not None:
        raise RramlibError(f"method {name!r} does not apply to a Hidden-Fold Network: {reason}")
    return name


@torch.no_grad()
def crossbar_layout(model: HFNResNet, example: Tensor) -> list[dict]:
    """Per distinct supermask layer: weight positions (differential pairs), kept weights (±c: one device of the
    pair at g_max, the other at g_min), pruned pairs (both at g_min), ``c``, and how often one inference of
    ``example`` reads the layer (a folded layer: once per iteration)."""
    layers = supermask_layers(model)
    reads = {name: 0 for name, _ in layers}
    hooks = [m.register_forward_hook(lambda *a, name=name: reads.__setitem__(name, reads[name] + 1))
             for name, m in layers]
    was_training = model.training
    try:
        model.eval()(example[:1])
    finally:
        model.train(was_training)
        for h in hooks:
            h.remove()
    return [{"layer": name, "pairs": m.weight.numel(), "kept": m.n_keep, "pruned": m.weight.numel() - m.n_keep,
             "c": float(m.weight.abs().max()), "reads_per_inference": reads[name]} for name, m in layers]


@torch.no_grad()
def weight_noise_accuracy(model: nn.Module, test, *, sigmas, repeats: int = 3, seed: int = 0) -> list[dict]:
    """A software check without any device model: accuracy when every Conv2d/Linear weight gets additive
    Gaussian noise of standard deviation ``sigma · max|W|`` of its layer (the scale the mapping uses),
    ``repeats`` draws per sigma from one generator seeded with ``seed``. ``model`` is not modified (an HFN is
    materialised first)."""
    if isinstance(repeats, bool) or not isinstance(repeats, int) or repeats < 1:
        raise RramlibError(f"repeats must be a positive integer, got {repeats!r}")
    net = materialise(model) if supermask_layers(model) else copy.deepcopy(model)
    layers = [m for _, m in rram_layers(net)]
    reference = [m.weight.detach().clone() for m in layers]
    gen = torch.Generator().manual_seed(seed)
    rows = []
    for sigma in sigmas:
        if isinstance(sigma, bool) or not isinstance(sigma, (int, float)) or not 0 <= sigma < math.inf:
            raise RramlibError(f"noise sigma must be a finite number >= 0, got {sigma!r}")
        for r in range(repeats):
            for m, w in zip(layers, reference):
                m.weight.copy_(w + sigma * w.abs().max() * torch.randn(w.shape, generator=gen))
            rows.append({"sigma": float(sigma), "repeat": r, "accuracy": accuracy(net, test)})
    return rows


def fit_compensation(name: str, model: nn.Module, splits, drift: DriftModel | str, *, levels: int,
                     train_chips: int, params: dict | None = None, cache: Cache | None = None,
                     key: dict | None = None) -> Method:
    """Compensation method ``name`` fitted offline on ``model`` (an HFN is materialised first, so BN
    recalibration re-estimates every per-iteration BatchNorm and VeRA+ adapts every layer, a folded one once)
    through the public API, on differential pairs, with ``levels`` log-spaced drift levels. With ``cache``
    and ``key`` (what identifies ``model``) the fitted state is cached like the sweeps'."""
    if supermask_layers(model):
        model = materialise(model)
    drift = make_drift_model(drift) if isinstance(drift, str) else drift
    ctx = FitContext(model=model, splits=splits, drift=drift, schedule=log_windows(levels), mapping="differential",
                     train_chips=train_chips)
    method = make_method(name, **(params or {}))
    fit_key = {**(key or {}), "preset": drift.name, "drift": drift.params(), "levels": levels,
               "train_chips": train_chips, "mapping": "differential"}
    fit_method(method, ctx, fit_key, cache if key is not None else Cache(None))
    return method


# ------------------------------------------------------------------------------------------ profiles
@dataclass(frozen=True)
class HFNProfile:
    """What a book profile trains for the HFN chapter: the HFN and the dense network of the same layout.

    The HFN recipe follows the authors' CIFAR-100 config (SGD, momentum 0.9, lr 0.1 cosine, weight decay
    5e-4, batch 128, 200 epochs; book/unknowns.md) with :func:`rramlib.nn.train.train`'s Nesterov momentum; the epochs
    of the digits profiles and the dense recipe are ours.
    """

    dataset: str
    arch: str
    hfn_train: TrainConfig
    dense_train: TrainConfig
    seed: int = 0
    data_seed: int = 0
    #: compensation hyper-parameters of this chapter on top of the book profile's (method -> parameters)
    method_params: dict = dataclasses.field(default_factory=dict)

    def method(self, name: str, profile_params: dict | None = None) -> dict:
        """Hyper-parameters of compensation method ``name``: the book profile's, then this profile's."""
        return {**(profile_params or {}).get(name, {}), **self.method_params.get(name, {})}


HFN_PROFILES: dict[str, HFNProfile] = {
    "smoke": HFNProfile("digits", "hfn_digits", TrainConfig(epochs=2, lr=0.1, batch_size=64),
                        TrainConfig(epochs=2, lr=0.05, batch_size=64)),
    "quick": HFNProfile("digits", "hfn_digits", TrainConfig(epochs=20, lr=0.1, batch_size=64),
                        TrainConfig(epochs=15, lr=0.05, batch_size=64),
                        method_params={"vera_plus": {"steps": 150}}),  # keeps the chapter near 90 s
    "paper": HFNProfile("cifar100", "hfn_cifar", TrainConfig(epochs=200, lr=0.1, batch_size=128),
                        TrainConfig(epochs=200, lr=0.1, batch_size=128)),
}


@dataclass
class TrainedPair:
    """The trained HFN and dense network of one profile, their data, test accuracies and training times."""

    splits: object
    hfn: HFNResNet
    dense: HFNResNet
    hfn_accuracy: float
    dense_accuracy: float
    train_time_s: dict
    key: str


def train_pair(profile: str, *, cache: Cache | None = None, data_root: str | None = None,
               download: bool = False, progress: bool = False, device: str = "cpu") -> TrainedPair:
    """Train (or load from ``cache``) the HFN and the dense network of :data:`HFN_PROFILES` ``[profile]``.

    Training runs on ``device`` (``"auto"``: a GPU if there is one); the networks come back on the CPU. Only
    the scores and BatchNorm statistics of the HFN are cached; its weights come back from the seed.
    """
    spec = HFN_PROFILES[check_choice("HFN profile", profile, HFN_PROFILES)]
    cache = cache or Cache(None)
    splits = load_dataset(spec.dataset, data_root, download=download, seed=spec.data_seed)
    nets = {kind: build_hfn(spec.arch, num_classes=splits.num_classes, in_channels=splits.in_channels,
                            seed=spec.seed, dense=kind == "dense") for kind in ("hfn", "dense")}
    recipes = {"hfn": spec.hfn_train, "dense": spec.dense_train}

    def fit() -> dict:
        out = {}
        for kind, net in nets.items():
            start = time.perf_counter()
            train(net, splits, recipes[kind], progress=progress, device=str(resolve_device(device)))
            out[kind] = {k: v.cpu() for k, v in net.to("cpu").state_dict().items()}
            out[f"{kind}_time_s"] = time.perf_counter() - start
        return out

    config = {"hfn_profile": {k: v for k, v in dataclasses.asdict(spec).items() if k != "method_params"},
              "arch": dataclasses.asdict(HFN_ARCHS[spec.arch])}
    entry = cache.get_or_compute("hfn", config, fit)
    test = as_tensors(splits.test)
    for kind, net in nets.items():
        net.load_state_dict(entry[kind])
        net.eval()
    return TrainedPair(splits, nets["hfn"], nets["dense"], accuracy(nets["hfn"], test),
                       accuracy(nets["dense"], test), {k: entry[f"{k}_time_s"] for k in nets}, config_hash(config, "hfn"))
