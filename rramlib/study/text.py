"""The language-model chapter's profiles and the training of its text classifiers (cached, kind ``"text_model"``).

Three kinds of profile (:data:`TEXT_PROFILES`; :func:`get_text_profile` changes any field):

* ``smoke`` -- a tiny random BERT (``bert_toy``) on a few hundred SST-5 sentences: seconds, for tests and CI.
* ``cpu`` -- a small encoder (``bert_h64``: BERT-Tiny's 2 layers at half its width) trained from scratch on all of
  SST-5 with a WordPiece vocabulary learnt from its training split: minutes on one CPU core, the book's default.
* ``paper_<sst5|qqp>_<base|large>`` -- ``bert-base-uncased`` / ``bert-large-uncased`` fine-tuned on SST-5 or QQP,
  as the study evaluates them: a GPU and the hub (or local copies in the hub's layout) on a user's machine.

Training (:func:`train_text`): AdamW (Loshchilov & Hutter, ICLR 2019) with the learning rate rising linearly over
the first ``warmup_fraction`` of the steps and falling linearly to 0 afterwards, no weight decay on biases and
LayerNorm, gradient norm clipped -- BERT's fine-tuning recipe (Devlin et al., NAACL 2019, App. A.3, and its
reference ``run_classifier.py``). The paper profiles use standard BERT fine-tuning values from there (batch 32,
learning rate 2e-5, 3 epochs, 10 % warm-up, weight decay 0.01, 128 tokens): **they are BERT's usual values, not
the study's**, whose fine-tuning settings we do not know. The CPU profile's values are ours (a model trained from
scratch needs a larger learning rate and more epochs).

Kept apart from the drift pipeline (:mod:`rramlib.study.text_sweep`), as :mod:`rramlib.study.base_model` is from
the image sweeps: a trained model's cache key covers this module and what it imports (data, model, training) and
nothing of the methods, so an hours-long BERT-large fine-tuning survives edits of the methods or the sweep.
"""
from __future__ import annotations

import dataclasses
import hashlib
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from rramlib.core.cache import Cache, config_hash, load_checked, save_checked
from rramlib.core.config import Config
from rramlib.core.errors import RramlibError, check_choice, check_int, check_positive
from rramlib.core.seeding import eval_chips, train_chips
from rramlib.core.times import TIME_GRID, parse_time
from rramlib.core.torchutil import resolve_device
from rramlib.nn.data import DatasetSplits, as_tensors
from rramlib.nn.evaluate import accuracy
from rramlib.nn.text import ENCODER_SIZES, PRETRAINED, TEXT_MODELS, TextDataConfig, build_text_model, load_text_dataset
from rramlib.nn.train import PRECISIONS
from rramlib.study.base_model import BaseModel, device_test_set

__all__ = ["BUCKET_BATCHES", "BERT_FINE_TUNING", "TextTrainConfig", "TextProfile", "TEXT_PROFILES",
           "BOOK_PROFILES", "get_text_profile", "book_text_profile", "linear_warmup_factor", "length_batches",
           "train_text", "text_model_config", "train_text_model"]


@dataclass(frozen=True)
class TextTrainConfig(Config):
    """Hyper-parameters of :func:`train_text` (the module docstring gives the recipe)."""

    owner: ClassVar[str] = "text_train"
    epochs: int = field(default=3, metadata={"help": "passes over the training split"})
    lr: float = field(default=2e-5, metadata={"help": "peak learning rate of AdamW"})
    batch_size: int = field(default=32, metadata={"help": "examples per optimisation step"})
    warmup_fraction: float = field(default=0.1, metadata={"help": "fraction of the steps the learning rate rises over"})
    weight_decay: float = field(default=0.01, metadata={"help": "AdamW's decoupled weight decay (not on biases, LayerNorm)"})
    max_grad_norm: float = field(default=1.0, metadata={"help": "gradient norm clipped to this (0: no clipping)"})
    seed: int = field(default=0, metadata={"help": "seed of the batch order and of dropout"})
    precision: str = field(default="fp32", metadata={
        "help": "arithmetic of the forward pass (bf16: torch.autocast to bfloat16)", "choices": PRECISIONS})

    def _validate(self) -> None:
        check_int(self._label("epochs"), self.epochs, 1)
        check_int(self._label("batch_size"), self.batch_size, 1)
        check_int(self._label("seed"), self.seed, 0)
        check_positive(self._label("lr"), self.lr)
        check_positive(self._label("weight_decay"), self.weight_decay, allow_zero=True)
        check_positive(self._label("max_grad_norm"), self.max_grad_norm, allow_zero=True)
        if not 0 <= self.warmup_fraction < 1:
            raise RramlibError(f"{self._label('warmup_fraction')} must be in [0, 1), got {self.warmup_fraction!r}")


@dataclass(frozen=True)
class TextProfile(Config):
    """What a text profile trains and how its chips are evaluated (the fields the drift pipeline reads have the
    names and meanings of :class:`rramlib.study.profiles.Profile`'s)."""

    owner: ClassVar[str] = ""
    name: str = field(metadata={"help": "the profile's name"})
    data: TextDataConfig = field(metadata={"help": "dataset, tokenizer and splits (rramlib.nn.text.TextDataConfig)"})
    model: str = field(metadata={"help": "the text classifier (rramlib.nn.text.TEXT_MODELS)", "choices": TEXT_MODELS})
    train: TextTrainConfig = field(metadata={"help": "training of the classifier"})
    source: str | None = field(default=None, metadata={
        "help": "pretrained weights: hub id or local folder in the hub's layout (default: the model's hub id)"})
    model_seed: int = field(default=0, metadata={"help": "seed of the random weights (all of them, or the new head)"})
    times: tuple[str, ...] = field(default=tuple(TIME_GRID), metadata={
        "help": "times after programming at which the chips are evaluated"})
    chips: int = field(default=5, metadata={"help": "number of evaluation chips"})
    levels: int = field(default=4, metadata={"help": "number of drift levels K (time windows) per-level methods fit"})
    train_chips: int = field(default=8, metadata={"help": "training chips methods fit on"})
    eval_batch_size: int = field(default=256, metadata={"help": "examples per forward pass when chips are evaluated"})
    device: str = field(default="cpu", metadata={"help": "torch device, or auto: cuda when available, else cpu"})
    mapping: str | None = field(default=None, metadata={
        "help": "weight-to-conductance mapping, checked by the drift pipeline (default: each preset's own)"})
    method_params: dict = field(default_factory=dict, metadata={
        "help": "compensation methods' hyper-parameters: {method: {name: value}} (checked by the drift pipeline)"})
    description: str = field(default="", metadata={"help": "one line for listings"})

    @property
    def n_test(self) -> None:
        """The test subset the drift pipeline evaluates on (:attr:`rramlib.study.profiles.Profile.n_test`): None,
        the whole test split, whose size ``data.n_test`` sets when the data are loaded."""
        return None

    def _validate(self) -> None:
        if not isinstance(self.data, TextDataConfig) or not isinstance(self.train, TextTrainConfig):
            raise RramlibError("a TextProfile's data is a TextDataConfig and its train a TextTrainConfig")
        if self.model in PRETRAINED and self.data.tokenizer == "wordpiece":
            raise RramlibError(f"{self.model} is pretrained: its data need its own tokenizer (data.tokenizer), "
                               f"not a new wordpiece vocabulary")
        check_int("model_seed", self.model_seed, 0)
        check_int("eval_batch_size", self.eval_batch_size, 1)
        eval_chips(self.chips)
        train_chips(self.train_chips)
        check_int("levels", self.levels, 1)
        for t in self.times:
            parse_time(t)


#: Standard BERT fine-tuning values (Devlin et al. 2019, App. A.3: batch 32, learning rate 2e-5 of {5e-5, 3e-5,
#: 2e-5}, 3 epochs of {2, 3, 4}; warm-up over 10 % of the steps and weight decay 0.01 as in the reference
#: run_classifier.py). BERT's usual values, not the study's (unknown to us); one point of the grid, no search.
BERT_FINE_TUNING = TextTrainConfig(epochs=3, lr=2e-5, batch_size=32, warmup_fraction=0.1, weight_decay=0.01,
                                   max_grad_norm=1.0)
#: The CPU profile's grid: the first time of the study's grid and one time per decade of drift that the chapter's
#: table reads (our choice, for the default book's time budget: every evaluation chip reads all 2,210 test sentences
#: at every time).
_CPU_TIMES = ("1s", "1d", "1y", "10y")
#: Shorter offline training of the methods for the CPU profile (our choice, for the book's time budget: 40 steps
#: per drift level instead of 300, on two drift levels (the profile's ``levels``), one epoch of noise-aware
#: fine-tuning instead of 10).
_CPU_METHODS = {"vera_plus": {"steps": 40}, "lora": {"steps": 40}, "ln_refit": {"steps": 40},
                "offline_correction": {"steps": 40}, "noise_aware": {"epochs": 1}, "dora": {"steps": 20}}
#: Shorter offline training of the methods for the smoke profile (tests and CI).
_SMOKE_METHODS = {"vera_plus": {"steps": 30}, "lora": {"steps": 30}, "ln_refit": {"steps": 30},
                  "offline_correction": {"steps": 30}, "noise_aware": {"epochs": 1}, "dora": {"steps": 10}}


def _paper(dataset: str, size: str) -> TextProfile:
    model = f"bert_{size}"
    return TextProfile(
        name=f"paper_{dataset}_{size}",
        data=TextDataConfig(dataset=dataset, tokenizer=PRETRAINED[model], max_length=128, n_calib=1000),
        model=model, train=BERT_FINE_TUNING, chips=10, device="auto",
        description=f"{PRETRAINED[model]} fine-tuned on {dataset.upper()} (standard BERT values); GPU and hub")


TEXT_PROFILES: dict[str, TextProfile] = {
    "smoke": TextProfile(
        name="smoke",
        data=TextDataConfig(dataset="sst5", vocab_size=600, max_length=40, n_train=400, n_val=100, n_test=200,
                            n_calib=20),
        model="bert_toy", train=TextTrainConfig(epochs=4, lr=2e-3, batch_size=32),
        times=("1s", "1d", "10y"), chips=2, levels=2, train_chips=4, method_params=_SMOKE_METHODS,
        description="seconds: a tiny random BERT on a few hundred SST-5 sentences; for tests and CI"),
    "cpu": TextProfile(
        name="cpu",
        data=TextDataConfig(dataset="sst5", vocab_size=8000, max_length=64),
        model="bert_h64", train=TextTrainConfig(epochs=3, lr=2e-3, batch_size=32),
        times=_CPU_TIMES, chips=3, levels=2, train_chips=4, method_params=_CPU_METHODS,
        description="a small BERT trained from scratch on all of SST-5: minutes on one CPU core"),
    **{f"paper_{d}_{s}": _paper(d, s) for d in ("sst5", "qqp") for s in ("base", "large")},
}
#: The text profile the language-model chapter runs for each book profile (rramlib.study.profiles.PROFILES).
BOOK_PROFILES = {"smoke": "smoke", "quick": "cpu", "cifar": "cpu", "cifar_subset": "cpu", "paper": "paper_sst5_base"}


def get_text_profile(name: str, **overrides) -> TextProfile:
    """The named text profile with ``overrides`` applied (unknown profile or field -> RramlibError)."""
    base = TEXT_PROFILES[check_choice("text profile", name, TEXT_PROFILES)]
    fields = {f.name for f in dataclasses.fields(TextProfile)}
    if unknown := sorted(set(overrides) - fields):
        raise RramlibError(f"unknown text profile field(s) {unknown}; known: {sorted(fields)}")
    return dataclasses.replace(base, **overrides)


def book_text_profile(book_profile: str) -> str:
    """The text profile the chapter runs for ``book_profile`` (:data:`BOOK_PROFILES`)."""
    return BOOK_PROFILES[check_choice("profile", book_profile, BOOK_PROFILES)]


# ----------------------------------------------------------------------------------------------- training
def linear_warmup_factor(step: int, warmup: int, total: int) -> float:
    """The learning rate at ``step`` as a fraction of its peak: ``step / warmup`` during the ``warmup`` first steps,
    then a straight line down to 0 at ``total`` (BERT's schedule, Devlin et al. 2019)."""
    if step < warmup:
        return step / warmup
    return max(0.0, (total - step) / max(1, total - warmup))


#: Batches a chunk of the shuffled training set is sorted into by length (:func:`length_batches`; our choice).
BUCKET_BATCHES = 50


def length_batches(lengths: torch.Tensor, batch_size: int, generator: torch.Generator) -> list[torch.Tensor]:
    """One epoch's batches (index tensors) of examples of similar length, so that little padding is computed (a
    :class:`~rramlib.nn.text.TextClassifier` cuts each batch to its longest example): a random permutation drawn
    from ``generator`` is cut into chunks of :data:`BUCKET_BATCHES` batches, each chunk is sorted by length (stable)
    and cut into batches, and the order of all batches is shuffled again -- the bucketing of common NLP trainers
    (e.g. torchtext's ``BucketIterator``). Every example is in exactly one batch."""
    perm = torch.randperm(len(lengths), generator=generator)
    chunk = BUCKET_BATCHES * batch_size
    batches = []
    for start in range(0, len(perm), chunk):
        part = perm[start:start + chunk]
        part = part[torch.argsort(lengths[part], stable=True)]
        batches += list(part.split(batch_size))
    return [batches[i] for i in torch.randperm(len(batches), generator=generator).tolist()]


def _decays(name: str) -> bool:
    """BERT's rule: weight decay on the weights, none on biases and LayerNorm."""
    return not (name.endswith("bias") or "LayerNorm" in name)


_MAGIC = b"rramlib-text-checkpoint-v1 "


def train_text(model: nn.Module, splits: DatasetSplits, cfg: TextTrainConfig, *, device="cpu",
               checkpoint: str | Path | None = None, progress: bool = False) -> dict:
    """Train ``model`` (a :class:`~rramlib.nn.text.TextClassifier`) on ``splits.train`` in place (module docstring);
    return ``{"train_loss": [...], "val_accuracy": [...], "epoch_seconds": [...]}`` per epoch (the wall times
    travel in the checkpoint, so their sum covers every call of a resumed training).

    Batches hold examples of similar length (:func:`length_batches`); their order comes from a generator seeded
    with ``cfg.seed``, dropout from torch's generator seeded with it
    (inside ``fork_rng``): on the CPU the same seed gives the same weights. ``checkpoint``: the training state is
    written there after every epoch and a later call resumes after the last finished epoch with the same weights
    as an uninterrupted run (a checkpoint of another configuration or a damaged one is ignored)."""
    if not isinstance(cfg, TextTrainConfig):
        raise RramlibError(f"cfg must be a TextTrainConfig, got {type(cfg).__name__}")
    device = torch.device(device)
    x_train, y_train = as_tensors(splits.train)
    lengths = x_train[:, 1].sum(1)
    order = torch.Generator().manual_seed(cfg.seed)
    steps = math.ceil(len(y_train) / cfg.batch_size)
    total = cfg.epochs * steps
    warmup = round(cfg.warmup_fraction * total)
    model.to(device)
    named = list(model.named_parameters())
    groups = [{"params": [p for n, p in named if _decays(n)], "weight_decay": cfg.weight_decay},
              {"params": [p for n, p in named if not _decays(n)], "weight_decay": 0.0}]
    optimizer = torch.optim.AdamW(groups, lr=cfg.lr, betas=(0.9, 0.999), eps=1e-6)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: linear_warmup_factor(s, warmup, total))
    identity = {"config": cfg.as_dict(), "steps_per_epoch": steps}
    saved = None
    if checkpoint is not None:
        try:
            saved = load_checked(checkpoint, _MAGIC, map_location="cpu")
        except Exception:  # a damaged checkpoint is never used
            saved = None
        saved = saved if saved is not None and saved["identity"] == identity else None
    history, start = {"train_loss": [], "val_accuracy": [], "epoch_seconds": []}, 0
    if saved is not None:
        model.load_state_dict(saved["model"])
        optimizer.load_state_dict(saved["optimizer"])
        scheduler.load_state_dict(saved["scheduler"])
        order.set_state(saved["order"])
        history, start = saved["history"], saved["epoch"]
    cuda = device.type == "cuda"
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=cfg.precision == "bf16")
    with torch.random.fork_rng(devices=[device] if cuda else []):
        torch.manual_seed(cfg.seed)
        if saved is not None:
            torch.set_rng_state(saved["rng"]["cpu"])
            if cuda:
                torch.cuda.set_rng_state(saved["rng"]["cuda"], device)
        for epoch in tqdm(range(start, cfg.epochs), desc="train", disable=not progress, leave=False):
            began = time.perf_counter()
            model.train()
            loss_sum = 0.0
            for batch in length_batches(lengths, cfg.batch_size, order):
                x, y = x_train[batch], y_train[batch]
                with autocast:
                    loss = F.cross_entropy(model(x.to(device)), y.to(device))
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                if cfg.max_grad_norm > 0:
                    nn.utils.clip_grad_norm_(model.parameters(), cfg.max_grad_norm)
                optimizer.step()
                scheduler.step()
                loss_sum += loss.item() * len(y)
            history["train_loss"].append(loss_sum / len(y_train))
            if not math.isfinite(history["train_loss"][-1]):
                raise RramlibError(f"training diverged at epoch {epoch} (loss {history['train_loss'][-1]}); lower lr")
            history["val_accuracy"].append(accuracy(model, splits.val, device=device))
            history["epoch_seconds"].append(time.perf_counter() - began)
            if checkpoint is not None:
                rng = {"cpu": torch.get_rng_state(), **({"cuda": torch.cuda.get_rng_state(device)} if cuda else {})}
                save_checked(checkpoint, {
                    "identity": identity, "epoch": epoch + 1, "history": history, "rng": rng,
                    "model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
                    "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                    "order": order.get_state()}, _MAGIC)
    model.eval()
    return history


def _source_identity(profile: TextProfile) -> str | dict | None:
    """What the pretrained weights are, for the cache key: the hub id, or the SHA-256 of every file of a local
    folder; None for a model built from a configuration."""
    if profile.model in ENCODER_SIZES:
        return None
    source = profile.source or PRETRAINED[profile.model]
    folder = Path(source)
    if not folder.is_dir():
        return source
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def text_model_config(profile: TextProfile, splits: DatasetSplits) -> dict:
    """What a profile's trained classifier is cached under (with the code of this module): the tokenised data (its
    own cache key), the model and its weights' source, the seeds and the training."""
    return {"data": splits.info["key"], "model": profile.model, "source": _source_identity(profile),
            "model_seed": profile.model_seed, "train": profile.train.as_dict()}


def train_text_model(profile: TextProfile, *, data_root: str | None = None, download: bool = False,
                     cache: Cache | None = None, progress: bool = False) -> BaseModel:
    """Load the profile's data and train (or fine-tune, or read from the cache) its classifier.

    Returns a :class:`~rramlib.study.base_model.BaseModel` (model in eval mode on the profile's device, splits,
    drift-free test accuracy, history, cache key). The training keeps its state between epochs next to the cache
    entry (``.ckpt``), so an interrupted run resumes; the file is deleted once the entry is stored."""
    if not isinstance(profile, TextProfile):
        raise RramlibError(f"profile must be a TextProfile, got {type(profile).__name__}")
    cache = cache or Cache(None)
    device = resolve_device(profile.device)
    splits = load_text_dataset(profile.data, data_root, download=download, cache=cache)
    model = build_text_model(profile.model, num_classes=splits.num_classes, vocab_size=splits.info["vocab_size"],
                             max_length=profile.data.max_length, seed=profile.model_seed, source=profile.source)
    config = text_model_config(profile, splits)
    key = config_hash(config, "text_model")
    checkpoint = None if cache.root is None else cache.path("text_model", key).with_suffix(".ckpt")

    def fit() -> dict:
        history = train_text(model, splits, profile.train, device=device, checkpoint=checkpoint, progress=progress)
        history["wall_seconds"] = sum(history["epoch_seconds"])
        return {"state_dict": {k: v.cpu() for k, v in model.state_dict().items()}, "history": history}

    entry = cache.get_or_compute("text_model", config, fit)
    if checkpoint is not None:
        checkpoint.unlink(missing_ok=True)
    model.load_state_dict(entry["state_dict"])
    model.to(device).eval()
    acc = accuracy(model, device_test_set(splits, device), device=str(device), batch_size=profile.eval_batch_size)
    return BaseModel(model, splits, acc, entry["history"], key)
