"""Profiles: what the smoke / quick / paper runs train and evaluate, defined in one place.

Evaluation chips are :func:`rramlib.core.seeding.eval_chips`; anything that trains or calibrates on drifted
chips draws them from :func:`rramlib.core.seeding.train_chips`; the two ranges never overlap.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import torch

from rramlib.methods.compensation import make_method
from rramlib.nn.data import DATASETS
from rramlib.core.errors import RramlibError, check_choice, check_int
from rramlib.device.mapping import MAPPING_KINDS
from rramlib.nn.models import MODELS
from rramlib.core.seeding import EVAL_CHIP_BASE, eval_chips, train_chips
from rramlib.core.times import TIME_GRID, parse_time
from rramlib.nn.train import TrainConfig

__all__ = ["EVAL_CHIP_BASE", "PROFILES", "Profile", "get_profile", "resolve_device"]



@dataclass(frozen=True)
class Profile:
    """What a profile trains and evaluates. Override any field with :func:`get_profile`."""

    name: str
    dataset: str
    model: str
    train: TrainConfig
    times: tuple[str, ...] = tuple(TIME_GRID)
    chips: int = 5
    data_seed: int = 0
    model_seed: int = 0
    n_calib: int = 100
    #: evaluate on a stratified subset of this many test images (None: the whole test split)
    n_test: int | None = None
    device: str = "cpu"
    levels: int = 4
    train_chips: int = 8
    #: images per forward pass when sweeps evaluate a chip (the fastest on 2 CPU cores: ResNet-20 on 32x32 images
    #: evaluates about 3x faster in batches of 128 than of 1024, measured for issue 10)
    eval_batch_size: int = 1024
    #: weight-to-conductance mapping of every preset (None: each preset's default, see rramlib.device.mapping)
    mapping: str | None = None
    method_params: dict = field(default_factory=dict)
    description: str = ""

    def __post_init__(self):
        check_choice("dataset", self.dataset, DATASETS)
        check_choice("model", self.model, MODELS)
        check_int("eval_batch_size", self.eval_batch_size, minimum=1)
        if self.mapping is not None:
            check_choice("mapping", self.mapping, MAPPING_KINDS)
        if self.n_test is not None:
            check_int("n_test", self.n_test, minimum=1)
        eval_chips(self.chips)  # validates both counts (the two chip ranges stay disjoint)
        train_chips(self.train_chips)
        for t in self.times:
            parse_time(t)
        for name, params in self.method_params.items():
            make_method(name, **params)  # validates names and hyper-parameters


#: The DoRA-calibration study adapts 2.34 % of ResNet-50's parameters. On the 23 k-parameter digits CNN that
#: budget cannot hold a single one of the drift-sensitive convolutions (rank 4), so the digits profiles use 10 %
#: (our choice; notebook 08 sweeps the budget, 2.34 % included).
_DIGITS_DORA = {"budget": 0.10}

#: Shorter offline training for the smoke profile (tests and CI).
_SMOKE_METHODS = {
    "vera_plus": {"steps": 40}, "lora": {"steps": 40}, "offline_correction": {"steps": 40}, "noise_aware": {"epochs": 2},
    "bn": {"batches": 5}, "dora": {"steps": 20, **_DIGITS_DORA},
}

#: ResNet-20 epochs for the study-scale profile's 60-minute training budget on 2 CPU cores (our choice). Measured
#: (issue 10): 28 epochs on the CIFAR-10 JPEG folders took 57 min (100-115 s per epoch when nothing else ran)
#: and reached 87.2 % on the profile's 2,000 test images; the paper profile trains the usual 160.
_CIFAR_EPOCHS = 28

#: Study-scale method settings (our choices): the digits budget for DoRA does not carry over (ResNet-20's
#: convolutions fit the study's 2.34 % budget); noise-aware training fine-tunes the trained base model for 3
#: epochs instead of 10 (one epoch of ResNet-20 with drifted weights takes about two minutes here, so the
#: default would spend 20 minutes of the profile's budget on one baseline).
_CIFAR_METHODS: dict = {"noise_aware": {"epochs": 3}}

PROFILES: dict[str, Profile] = {
    "smoke": Profile(
        name="smoke", dataset="digits", model="digits_cnn",
        train=TrainConfig(epochs=4, lr=0.05, batch_size=64),
        times=("1s", "1d", "10y"), chips=2, n_calib=50, levels=2, train_chips=4,
        method_params=_SMOKE_METHODS, description="seconds per run; for tests and CI",
    ),
    "quick": Profile(
        name="quick", dataset="digits", model="digits_cnn",
        train=TrainConfig(epochs=30, lr=0.05, batch_size=64),
        chips=5, method_params={"dora": _DIGITS_DORA},
        description="default: scikit-learn digits, minutes on 2 CPU cores",
    ),
    "cifar": Profile(
        name="cifar", dataset="cifar10", model="resnet20",
        train=TrainConfig(epochs=_CIFAR_EPOCHS, lr=0.1, batch_size=128, weight_decay=5e-4),
        chips=3, n_test=2000, train_chips=4, method_params=_CIFAR_METHODS, mapping="differential",
        eval_batch_size=128,
        description="the study's scale on 2 CPU cores: ResNet-20 on real CIFAR-10, hours",
    ),
    "paper": Profile(
        name="paper", dataset="cifar10", model="resnet20",
        train=TrainConfig(epochs=160, lr=0.1, batch_size=128, weight_decay=1e-4),
        chips=10, n_calib=1000, device="auto",
        description="CIFAR ResNets as in the study; GPU recommended",
    ),
}


def get_profile(name: str, **overrides) -> Profile:
    """The named profile with ``overrides`` applied (unknown profile or field -> RramlibError)."""
    base = PROFILES[check_choice("profile", name, PROFILES)]
    fields = {f.name for f in dataclasses.fields(Profile)}
    unknown = set(overrides) - fields
    if unknown:
        raise RramlibError(f"unknown profile field(s) {sorted(unknown)}; known: {sorted(fields)}")
    return dataclasses.replace(base, **overrides)


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        return torch.device(device)
    except RuntimeError as exc:
        raise RramlibError(f"unknown device {device!r}: {exc}") from None
