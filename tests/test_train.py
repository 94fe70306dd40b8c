"""Training (determinism, hook order, reaching the quick-profile accuracy) and evaluation."""
from __future__ import annotations

import dataclasses
import logging
import math

import pytest
import torch
import torch.nn as nn
from torch.utils.data import Dataset, TensorDataset

from fake_cifar import files_checked_by_existence, write_fake_cifar  # noqa: F401 (fixture)
from rramlib.nn.data import load_dataset
from rramlib.core.errors import RramlibError
from rramlib.nn.evaluate import accuracy, predict_logits
from rramlib.nn.models import build_model
from rramlib.core.cache import Cache
from rramlib.nn import train as train_module
from rramlib.nn.train import TrainConfig, cosine_factor, cpu_has_bf16, train
from rramlib.study.base_model import checkpoint_path, model_config, model_key, train_base_model
from rramlib.study.profiles import get_profile


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny models train as fast on one thread, and 2 OpenMP threads on a shared 2-core machine can be
    ~100x slower when other processes compete for the cores (measured: 2.5 s vs 256 s)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits", seed=0)


def _cnn(seed=0):
    return build_model("digits_cnn", num_classes=10, in_channels=1, seed=seed)


def _state(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


# ------------------------------------------------------------------------------------------------ train
def test_same_seed_gives_bit_identical_weights(digits):
    cfg = TrainConfig(epochs=1, seed=0)
    a, b, c = _cnn(), _cnn(), _cnn()
    ha = train(a, digits, cfg, progress=False)
    hb = train(b, digits, cfg, progress=False)
    train(c, digits, TrainConfig(epochs=1, seed=1), progress=False)
    sa, sb, sc = _state(a), _state(b), _state(c)
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert len(ha.pop("epoch_seconds")) == len(hb.pop("epoch_seconds")) == 1  # wall times: they differ between runs
    assert ha == hb
    assert any(not torch.equal(sa[k], sc[k]) for k in sa if sa[k].is_floating_point())


def test_digits_cnn_reaches_95_percent(digits):
    model = _cnn()
    hist = train(model, digits, TrainConfig(epochs=20), progress=False)
    assert len(hist["train_loss"]) == len(hist["val_accuracy"]) == 20
    assert hist["train_loss"][-1] < 0.5 * hist["train_loss"][0]
    assert accuracy(model, digits.test) >= 0.95
    assert model.training  # left in train mode
    for m in model.modules():  # trained in channels_last, returned contiguous (view() works)
        if isinstance(m, nn.Conv2d):
            assert m.weight.is_contiguous()
            m.weight.view(m.weight.shape[0], -1)


def test_train_on_a_bare_dataset_has_no_val_history(digits):
    hist = train(build_model("digits_mlp", num_classes=10, in_channels=1), digits.train, TrainConfig(epochs=2), progress=False)
    assert len(hist["train_loss"]) == 2 and hist["val_accuracy"] == []


def test_before_step_hook_order_and_restore_callable(digits):
    model = _cnn()
    events = []
    model.register_forward_pre_hook(lambda m, inp: events.append(("forward", None)))
    params_before = {}

    def hook(m, step):
        assert m is model
        events.append(("before", step))
        params_before[step] = m[-1].weight.detach().clone()

        def after():
            events.append(("after", step))
            assert m[-1].weight.grad is not None  # after backward ...
            assert torch.equal(m[-1].weight, params_before[step])  # ... before optimizer.step()

        return after

    small = TensorDataset(*[t[:200] for t in digits.train.tensors])
    train(model, small, TrainConfig(epochs=2, batch_size=64), before_step=hook, progress=False)
    steps_per_epoch = 4  # 200 samples in batches of 64
    expected = []
    for s in range(2 * steps_per_epoch):
        expected += [("before", s), ("forward", None), ("after", s)]
    assert events == expected


def test_noise_injection_hook_changes_training_but_stays_deterministic(digits):
    def noisy(m, step):
        clean = [p.detach().clone() for p in m.parameters()]
        with torch.no_grad():
            for p in m.parameters():
                p.add_(0.05 * torch.randn_like(p))  # global RNG: seeded by train() from cfg.seed

        def restore():
            with torch.no_grad():
                for p, c in zip(m.parameters(), clean):
                    p.copy_(c)

        return restore

    small = TensorDataset(*[t[:256] for t in digits.train.tensors])
    cfg = TrainConfig(epochs=1)
    a, b, clean = _cnn(), _cnn(), _cnn()
    train(a, small, cfg, before_step=noisy, progress=False)
    train(b, small, cfg, before_step=noisy, progress=False)
    train(clean, small, cfg, progress=False)
    sa, sb, sc = _state(a), _state(b), _state(clean)
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert any(not torch.equal(sa[k], sc[k]) for k in sa if sa[k].is_floating_point())


def test_augmented_training_is_deterministic(tmp_path, files_checked_by_existence):
    splits = load_dataset("cifar10", write_fake_cifar(tmp_path, "cifar10", n_train=100, n_test=10)[0], n_calib=5)
    cfg = TrainConfig(epochs=2, batch_size=32)
    a, b = (build_model("resnet20", num_classes=10, seed=0) for _ in range(2))
    train(a, splits, cfg, progress=False)
    train(b, splits, cfg, progress=False)
    sa, sb = _state(a), _state(b)
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert splits.train.epoch == 1 and splits.train.seed == cfg.seed


@pytest.mark.parametrize(
    "fields, pattern",
    [
        ({"epochs": 0}, "epochs must be a positive integer"),
        ({"epochs": True}, "epochs must be int"),
        ({"lr": 0.0}, "lr"),
        ({"lr": float("nan")}, "lr"),
        ({"batch_size": -1}, "batch_size"),
        ({"momentum": 1.5}, "momentum"),
        ({"label_smoothing": 1.0}, "label_smoothing"),
        ({"seed": -2}, "seed"),
        ({"precision": "fp16"}, "precision 'fp16'; choose one of: bf16, fp32"),
    ],
)
def test_bad_config_is_refused_on_construction(fields, pattern):
    with pytest.raises(RramlibError, match=pattern):
        TrainConfig(**fields)
    with pytest.raises(RramlibError, match=pattern):  # a copy is checked again
        dataclasses.replace(TrainConfig(), **fields)


def test_bad_data_raises():
    with pytest.raises(RramlibError, match="DatasetSplits or a Dataset"):
        train(_cnn(), [1, 2, 3], TrainConfig(epochs=1), progress=False)


# ------------------------------------------------------------------------------------------------ schedule
def test_learning_rate_is_the_hand_written_cosine_bit_for_bit(digits, monkeypatch):
    """The LambdaLR schedule gives, at every step, exactly the float the loop used to compute by hand."""
    seen = []
    real_step = torch.optim.SGD.step

    def step(self, *args, **kwargs):
        seen.append(self.param_groups[0]["lr"])
        return real_step(self, *args, **kwargs)

    monkeypatch.setattr(torch.optim.SGD, "step", step)
    small = TensorDataset(*[t[:300] for t in digits.train.tensors])
    for lr in (0.05, 0.1, 0.03, 1 / 3):
        seen.clear()
        train(build_model("digits_mlp", num_classes=10, in_channels=1), small, TrainConfig(epochs=3, lr=lr),
              progress=False)
        total = 3 * 5  # 300 samples in batches of 64
        assert seen == [0.5 * lr * (1.0 + math.cos(math.pi * s / total)) for s in range(total)]
    total = 100_003
    assert all(0.7 * cosine_factor(s, total) == 0.5 * 0.7 * (1.0 + math.cos(math.pi * s / total))
               for s in range(0, total, 7))


# ------------------------------------------------------------------------------------------------ resume
class _Interrupt(Exception):
    """Stands for a killed run."""


def _noisy(stop_at: int | None = None):
    """A before_step hook drawing from torch's global RNG (so a resumed run must restore it), raising at
    step ``stop_at``, mid-run, as an interruption would."""
    def hook(m, step):
        if step == stop_at:
            raise _Interrupt
        with torch.no_grad():
            for p in m.parameters():
                p.add_(1e-3 * torch.randn_like(p))
    return hook


def _interrupt_after_epoch(monkeypatch, epochs_done: int) -> None:
    """Stop the training right after it wrote the checkpoint of epoch ``epochs_done``."""
    real = train_module._write_checkpoint

    def write(path, state):
        real(path, state)
        if state["epoch"] == epochs_done:
            raise _Interrupt

    monkeypatch.setattr(train_module, "_write_checkpoint", write)


def _same(a, b) -> bool:
    sa, sb = _state(a), _state(b)
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


class _Plain(Dataset):
    """Not a TensorDataset: batches come from a DataLoader (its own generator and seed draws)."""

    def __init__(self, ds):
        self.x, self.y = ds.tensors

    def __len__(self):
        return len(self.y)

    def __getitem__(self, i):
        return self.x[i], self.y[i]


@pytest.mark.parametrize("data", ["splits", "plain"])
@pytest.mark.parametrize("stop_at", [7, 10])  # mid-epoch 1; first step of epoch 2 (5 steps per epoch)
def test_interrupted_training_resumes_to_bit_identical_weights(digits, tmp_path, data, stop_at):
    source = digits if data == "splits" else _Plain(TensorDataset(*[t[:300] for t in digits.train.tensors]))
    cfg = TrainConfig(epochs=3, batch_size=256 if data == "splits" else 64, seed=4)
    reference = _cnn()
    expected = train(reference, source, cfg, before_step=_noisy(), progress=False)
    ckpt = tmp_path / "run.ckpt"
    model = _cnn()
    with pytest.raises(_Interrupt):
        train(model, source, cfg, before_step=_noisy(stop_at), progress=False, checkpoint=ckpt)
    assert ckpt.is_file()
    resumed = _cnn()  # a fresh process would start from the initial weights
    steps = []
    history = train(resumed, source, cfg, before_step=lambda m, s: (steps.append(s), _noisy()(m, s))[1],
                    progress=False, checkpoint=ckpt)
    per_epoch = math.ceil(len(digits.train if data == "splits" else source) / cfg.batch_size)
    assert steps[0] == (stop_at // per_epoch) * per_epoch  # the unfinished epoch runs again, from its start
    assert _same(resumed, reference)
    timed = history.pop("epoch_seconds")
    assert len(timed) == 3 and all(t > 0 for t in timed) and len(expected.pop("epoch_seconds")) == 3
    assert history == expected and len(history["val_accuracy"]) == (3 if data == "splits" else 0)
    again = _cnn()  # a finished checkpoint: nothing left to train
    finished = train(again, source, cfg, before_step=_noisy(0), progress=False, checkpoint=ckpt)
    assert finished.pop("epoch_seconds") == timed  # the wall times of every call, read back from the checkpoint
    assert finished == expected
    assert _same(again, reference)


@pytest.mark.parametrize("damage", ["flip", "truncate", "garbage"])
def test_damaged_checkpoint_is_ignored_with_a_warning(digits, tmp_path, monkeypatch, caplog, damage):
    small = TensorDataset(*[t[:300] for t in digits.train.tensors])
    cfg = TrainConfig(epochs=2)
    reference = _cnn()
    train(reference, small, cfg, progress=False)
    ckpt = tmp_path / "run.ckpt"
    with monkeypatch.context() as m:
        _interrupt_after_epoch(m, 1)
        with pytest.raises(_Interrupt):
            train(_cnn(), small, cfg, progress=False, checkpoint=ckpt)
    data = bytearray(ckpt.read_bytes())
    if damage == "flip":
        data[len(data) // 2] ^= 0x01
    ckpt.write_bytes(bytes(data[: len(data) // 2]) if damage == "truncate" else
                     b"not a checkpoint" if damage == "garbage" else bytes(data))
    model = _cnn()
    steps = []
    with caplog.at_level(logging.WARNING, logger="rramlib.nn.train"):
        train(model, small, cfg, before_step=lambda m, s: steps.append(s), progress=False, checkpoint=ckpt)
    assert "ignoring damaged training checkpoint" in caplog.text
    assert steps[0] == 0 and _same(model, reference)  # trained from the start


def test_checkpoint_of_another_configuration_is_ignored(digits, tmp_path, monkeypatch, caplog):
    small = TensorDataset(*[t[:300] for t in digits.train.tensors])
    ckpt = tmp_path / "run.ckpt"
    with monkeypatch.context() as m:
        _interrupt_after_epoch(m, 1)
        with pytest.raises(_Interrupt):
            train(_cnn(), small, TrainConfig(epochs=2, lr=0.1), progress=False, checkpoint=ckpt)
    reference, model = _cnn(), _cnn()
    train(reference, small, TrainConfig(epochs=2), progress=False)
    with caplog.at_level(logging.WARNING, logger="rramlib.nn.train"):
        train(model, small, TrainConfig(epochs=2), progress=False, checkpoint=ckpt)
    assert "ignoring training checkpoint" in caplog.text and "'lr': 0.1" in caplog.text
    assert _same(model, reference)


def test_base_model_resumes_from_its_cache_checkpoint_and_deletes_it(tmp_path, monkeypatch):
    profile = get_profile("smoke", train=dataclasses.replace(get_profile("smoke").train, epochs=2))
    reference = train_base_model(profile, cache=Cache(None), progress=False)
    cache = Cache(tmp_path)
    with monkeypatch.context() as m:
        _interrupt_after_epoch(m, 1)
        with pytest.raises(_Interrupt):
            train_base_model(profile, cache=cache, progress=False)
    key = model_key(profile, reference.splits)
    ckpt = checkpoint_path(cache, key)
    assert ckpt.is_file() and ckpt.parent == cache.path("model", key).parent and not cache.path("model", key).exists()
    base = train_base_model(profile, cache=cache, progress=False)
    assert _same(base.model, reference.model) and base.accuracy == reference.accuracy
    assert base.history["train_loss"] == reference.history["train_loss"]
    seconds = base.history["epoch_seconds"]  # the first epoch's from the interrupted call
    assert len(seconds) == 2 and base.history["wall_seconds"] == sum(seconds) > 0
    assert [p.name for p in (tmp_path / "model").iterdir()] == [cache.path("model", key).name]  # checkpoint gone
    assert checkpoint_path(Cache(None), key) is None


def test_a_shipped_training_checkpoint_resumes_on_another_machine(tmp_path, monkeypatch):
    """A base model whose training stopped can travel with a record as its checkpoint: restored into a fresh cache,
    the training continues after its last finished epoch and ends with an uninterrupted run's weights."""
    from rramlib.study import recorded

    profile = get_profile("smoke", train=dataclasses.replace(get_profile("smoke").train, epochs=2))
    reference = train_base_model(profile, cache=Cache(None), progress=False)
    first = Cache(tmp_path / "first-machine")
    with monkeypatch.context() as m:
        _interrupt_after_epoch(m, 1)
        with pytest.raises(_Interrupt):
            train_base_model(profile, cache=first, progress=False)
    key = model_key(profile, reference.splits)
    shipped = tmp_path / "recorded" / "smoke" / recorded.SHIPPED_CACHE / "model"
    shipped.mkdir(parents=True)
    checkpoint_path(first, key).rename(shipped / f"{key}.ckpt")
    second = Cache(tmp_path / "second-machine")
    restored = recorded.restore_models("smoke", second.root, tmp_path / "recorded" / "smoke")
    assert restored.copied == [checkpoint_path(second, key)]
    steps = []
    real = train_module.fit
    monkeypatch.setattr(train_module, "fit", lambda *a, **k: real(*a, **{**k, "before_step": lambda m, s: steps.append(s)}))
    base = train_base_model(profile, cache=second, progress=False)
    per_epoch = len(steps)  # one epoch was left
    assert steps[0] == per_epoch and _same(base.model, reference.model)
    assert len(base.history["epoch_seconds"]) == 2 and not checkpoint_path(second, key).exists()

# ------------------------------------------------------------------------------------------------ precision
def test_bf16_autocasts_forward_and_keeps_fp32_weights(digits):
    small = TensorDataset(*[t[:256] for t in digits.train.tensors])
    runs = {}
    for precision in ("fp32", "bf16", "bf16"):
        model = _cnn()
        conv = next(m for m in model.modules() if isinstance(m, nn.Conv2d))
        dtypes = set()
        conv.register_forward_hook(lambda m, i, out: dtypes.add(out.dtype))
        hist = train(model, small, TrainConfig(epochs=1, precision=precision), progress=False)
        assert dtypes == {torch.bfloat16 if precision == "bf16" else torch.float32}
        assert all(p.dtype == torch.float32 for p in model.parameters()) and math.isfinite(hist["train_loss"][0])
        runs.setdefault(precision, []).append(model)
    assert _same(*runs["bf16"])  # deterministic
    assert not _same(runs["fp32"][0], runs["bf16"][0])


def test_precision_is_part_of_the_model_key(digits):
    smoke = get_profile("smoke")
    bf16 = get_profile("smoke", train=dataclasses.replace(smoke.train, precision="bf16"))
    assert smoke.train.precision == "fp32"
    assert model_config(bf16, digits)["train"]["precision"] == "bf16"
    assert model_key(bf16, digits) != model_key(smoke, digits)


@pytest.mark.parametrize("flags, expected", [
    ("fpu vme avx512f avx512_bf16 avx512_vnni", True), ("fpu amx_bf16 amx_tile", True),
    ("fpu vme avx2 avx512f", False), (None, False),
])
def test_cpu_has_bf16_reads_the_cpu_flags(tmp_path, flags, expected):
    info = tmp_path / "cpuinfo"
    if flags is not None:
        info.write_text(f"processor\t: 0\nmodel name\t: x\nflags\t\t: {flags}\n\nprocessor\t: 1\nflags\t\t: {flags}\n")
    assert cpu_has_bf16(info) is expected


# ------------------------------------------------------------------------------------------------ evaluate
class _Fixed(nn.Module):
    """Returns the input as logits; has a dropout-like child so the mode matters to the test."""

    def __init__(self):
        super().__init__()
        self.child = nn.Dropout(0.5)
        self.modes = []

    def forward(self, x):
        self.modes.append(self.training)
        return x


class _ListDataset(Dataset):
    def __init__(self, x, y):
        self.x, self.y = x, y

    def __len__(self):
        return len(self.y)

    def __getitem__(self, i):
        return self.x[i], int(self.y[i])


def test_accuracy_matches_hand_computation():
    logits = torch.tensor([[2.0, 1.0, 0.0], [0.0, 3.0, 1.0], [0.5, 0.2, 0.9], [1.0, 0.0, 0.0], [0.0, 0.0, 5.0]])
    y = torch.tensor([0, 2, 2, 1, 2])  # arg-max 0,1,2,0,2 -> correct 0,2,4 -> 3/5
    model = _Fixed()
    assert accuracy(model, (logits, y)) == pytest.approx(0.6)
    assert accuracy(model, TensorDataset(logits, y), batch_size=2) == pytest.approx(0.6)
    assert accuracy(model, _ListDataset(logits, y), batch_size=2) == pytest.approx(0.6)
    assert torch.equal(predict_logits(model, (logits, y), batch_size=3), logits)
    assert torch.equal(predict_logits(model, _ListDataset(logits, y), batch_size=2), logits)
    assert not any(model.modes)  # always evaluated in eval mode


def test_accuracy_restores_each_modules_mode(digits):
    model = _cnn()
    model.train()
    model[1].eval()  # e.g. a frozen BatchNorm inside a model in train mode
    before = [m.training for m in model.modules()]
    accuracy(model, digits.val)
    predict_logits(model, digits.val)
    assert [m.training for m in model.modules()] == before
    model.eval()
    accuracy(model, digits.val)
    assert not any(m.training for m in model.modules())


def test_accuracy_equals_manual_argmax_on_a_real_model(digits):
    model = build_model("digits_mlp", num_classes=10, in_channels=1, seed=3).eval()
    x, y = digits.test.tensors
    with torch.no_grad():
        manual = (model(x).argmax(1) == y).float().mean().item()
    assert accuracy(model, digits.test, batch_size=100) == pytest.approx(manual)
    torch.testing.assert_close(predict_logits(model, digits.test, batch_size=64), model(x).detach())


def test_evaluate_bad_input():
    model = _Fixed()
    with pytest.raises(RramlibError, match="empty"):
        accuracy(model, (torch.zeros(0, 3), torch.zeros(0, dtype=torch.long)))
    with pytest.raises(RramlibError, match="x has 2 samples but y has 3"):
        accuracy(model, (torch.zeros(2, 3), torch.zeros(3, dtype=torch.long)))
    with pytest.raises(RramlibError, match="batch_size"):
        accuracy(model, (torch.zeros(2, 3), torch.zeros(2, dtype=torch.long)), batch_size=0)
    with pytest.raises(RramlibError, match="data must be"):
        accuracy(model, "not data")
