"""Training (determinism, hook order, reaching the quick-profile accuracy) and evaluation."""
from __future__ import annotations

import pytest
import torch
import torch.nn as nn
from torch.utils.data import Dataset, TensorDataset

from fake_cifar import files_checked_by_existence, write_fake_cifar  # noqa: F401 (fixture)
from rramlib.nn.data import load_dataset
from rramlib.core.errors import RramlibError
from rramlib.nn.evaluate import accuracy, predict_logits
from rramlib.nn.models import build_model
from rramlib.nn.train import TrainConfig, train


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
    "cfg, pattern",
    [
        (TrainConfig(epochs=0), "epochs"),
        (TrainConfig(lr=0.0), "lr"),
        (TrainConfig(lr=float("nan")), "lr"),
        (TrainConfig(batch_size=-1), "batch_size"),
        (TrainConfig(momentum=1.5), "momentum"),
        (TrainConfig(label_smoothing=1.0), "label_smoothing"),
        (TrainConfig(seed=-2), "seed"),
    ],
)
def test_bad_config_raises(digits, cfg, pattern):
    with pytest.raises(RramlibError, match=pattern):
        train(_cnn(), digits, cfg, progress=False)


def test_bad_data_raises():
    with pytest.raises(RramlibError, match="DatasetSplits or a Dataset"):
        train(_cnn(), [1, 2, 3], TrainConfig(epochs=1), progress=False)


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
