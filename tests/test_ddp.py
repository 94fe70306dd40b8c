"""Data-parallel training (rramlib.nn.ddp, started by rramlib.cli.train): the same run as one process, into the same
cache entry; resumable like it."""
from __future__ import annotations

import argparse
import dataclasses
import io
import os
import subprocess
import sys
import types

import numpy as np
import pytest
import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import TensorDataset

from rramlib.core.cache import Cache
from rramlib.cli.main import main as cli_main
from rramlib.cli.train import add_train_arguments, profile_overrides
from rramlib.nn import train as train_module
from rramlib.nn.data import load_dataset
from rramlib.nn.ddp import GlobalBatchNorm, train_ddp
from rramlib.nn.models import build_model
from rramlib.nn.train import TrainConfig
from rramlib.study.base_model import model_key, train_base_model
from rramlib.study.profiles import get_profile


def _loopback_env() -> dict:
    return {**os.environ, "GLOO_SOCKET_IFNAME": "lo", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
            "MASTER_ADDR": "127.0.0.1"}


@pytest.fixture
def single_process_group(tmp_path):
    """A gloo process group of one process, over a file store (no network)."""
    dist.init_process_group("gloo", store=dist.FileStore(str(tmp_path / "store"), 1), rank=0, world_size=1)
    yield
    dist.destroy_process_group()


def test_global_batchnorm_equals_batchnorm_in_one_process(single_process_group):
    torch.manual_seed(0)
    ref = nn.BatchNorm2d(5)
    with torch.no_grad():
        ref.weight.uniform_(0.5, 1.5)
        ref.bias.uniform_(-0.5, 0.5)
    ours = GlobalBatchNorm(5)
    ours.load_state_dict(ref.state_dict())
    x = torch.randn(8, 5, 4, 4) * 3 + 1
    for _ in range(3):  # running statistics follow too
        xr, xo = x.clone().requires_grad_(), x.clone().requires_grad_()
        yr, yo = ref(xr), ours(xo)
        torch.testing.assert_close(yo, yr, rtol=1e-5, atol=1e-5)
        (yr * torch.arange(yr.numel()).view_as(yr)).sum().backward()
        (yo * torch.arange(yo.numel()).view_as(yo)).sum().backward()
        torch.testing.assert_close(xo.grad, xr.grad, rtol=1e-4, atol=1e-4)
        torch.testing.assert_close(ours.weight.grad, ref.weight.grad, rtol=1e-4, atol=1e-3)
        x = x * 0.5 + 2
    torch.testing.assert_close(ours.running_mean, ref.running_mean)
    torch.testing.assert_close(ours.running_var, ref.running_var)
    ours.eval(), ref.eval()
    torch.testing.assert_close(ours(x), ref(x))


@pytest.fixture
def one_thread():
    """torch's thread count enters cache keys (rramlib.core.numerics): look up with the torchrun processes' one."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


class _Interrupt(Exception):
    """Stands for a killed run."""


def test_ddp_training_resumes_to_bit_identical_weights(single_process_group, tmp_path, monkeypatch, one_thread):
    """The DDP loop is the shared one: interrupted after an epoch and run again with the same checkpoint, it ends
    with the weights and history of an uninterrupted DDP run (one gloo process; rank 0 writes, all read)."""
    digits = load_dataset("digits", seed=0)
    splits = types.SimpleNamespace(train=TensorDataset(*[t[:300] for t in digits.train.tensors]), val=digits.val)
    cfg = TrainConfig(epochs=2, batch_size=128, seed=2)

    def net():
        return build_model("digits_cnn", num_classes=10, in_channels=1, seed=0)

    reference = net()
    expected = train_ddp(reference, splits, cfg, device=torch.device("cpu"), progress=False)
    ckpt = tmp_path / "run.ckpt"
    real = train_module._write_checkpoint

    def write(path, state):
        real(path, state)
        if state["epoch"] == 1:
            raise _Interrupt

    with monkeypatch.context() as m:
        m.setattr(train_module, "_write_checkpoint", write)
        with pytest.raises(_Interrupt):
            train_ddp(net(), splits, cfg, device=torch.device("cpu"), progress=False, checkpoint=ckpt)
    assert torch.load(io.BytesIO(ckpt.read_bytes().split(b"\n", 1)[1]), weights_only=True)["epoch"] == 1
    resumed = net()
    history = train_ddp(resumed, splits, cfg, device=torch.device("cpu"), progress=False, checkpoint=ckpt)
    assert len(history.pop("epoch_seconds")) == len(expected.pop("epoch_seconds")) == 2  # wall times differ
    assert history == expected
    for (name, a), b in zip(resumed.state_dict().items(), reference.state_dict().values()):
        assert torch.equal(a, b), name


def test_train_options_override_the_profiles_training():
    parser = argparse.ArgumentParser()
    add_train_arguments(parser)
    train = profile_overrides(parser.parse_args(["--profile", "smoke", "--precision", "bf16", "--epochs", "2"]))["train"]
    assert train == dataclasses.replace(get_profile("smoke").train, precision="bf16", epochs=2)
    assert "train" not in profile_overrides(parser.parse_args(["--profile", "smoke"]))


@pytest.mark.slow
def test_two_cpu_processes_follow_the_single_process_run(tmp_path, one_thread):
    """2 gloo processes on the smoke profile (digits CNN with BatchNorm, global batch 64, 2 epochs): the same loss
    per epoch and the same weights as rramlib.nn.train in one process, within float tolerance; and the model
    is stored under the key train_base_model reads, with no checkpoint left beside it."""
    profile = get_profile("smoke", train=dataclasses.replace(get_profile("smoke").train, epochs=2))
    reference = train_base_model(profile, cache=Cache(None), progress=False)
    out = subprocess.run(  # `rramlib train` under torchrun: data-parallel (rramlib.cli.train -> rramlib.nn.ddp)
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
         "-m", "rramlib", "train", "--profile", "smoke", "--epochs", "2", "--cache-dir", str(tmp_path), "--quiet"],
        env=_loopback_env(), capture_output=True, text=True, timeout=240)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "trained into" in out.stdout
    cache = Cache(tmp_path)
    ddp = train_base_model(profile, cache=cache, progress=False)
    assert (cache.hits, cache.misses) == (1, 0)  # found, not trained again
    assert [p.suffix for p in (tmp_path / "model").iterdir()] == [".pt"]  # the checkpoint is deleted
    # Rounding differences (another summation order) grow during training, as they do between two
    # single-process runs with 1 and 2 torch threads: tight on the first epoch, looser after.
    np.testing.assert_allclose(ddp.history["train_loss"][0], reference.history["train_loss"][0], rtol=1e-5)
    np.testing.assert_allclose(ddp.history["train_loss"], reference.history["train_loss"], rtol=3e-4)
    for (name, a), b in zip(ddp.model.state_dict().items(), reference.model.state_dict().values()):
        torch.testing.assert_close(a.float(), b.float(), rtol=0, atol=3e-3, msg=name)
    assert abs(ddp.accuracy - reference.accuracy) <= 0.01


def test_train_subcommand_copies_in_the_models_its_record_ships(tmp_path, capsys, monkeypatch):
    """On a fresh checkout ``rramlib train`` trains only what the record does not ship: a shipped base model (and
    a shipped training checkpoint) is copied into the cache first, and the command finds it there."""
    from rramlib.study import base_model, recorded

    monkeypatch.delenv("RANK", raising=False)
    profile = get_profile("smoke", train=dataclasses.replace(get_profile("smoke").train, epochs=1))
    trained = train_base_model(profile, cache=Cache(tmp_path / "elsewhere"), progress=False)
    shipped = tmp_path / "recorded" / "smoke" / recorded.SHIPPED_CACHE / "model"
    shipped.mkdir(parents=True)
    (tmp_path / "elsewhere" / "model" / f"{trained.key}.pt").rename(shipped / f"{trained.key}.pt")
    (shipped / "another.ckpt").write_bytes(b"an unfinished training")
    monkeypatch.setattr(recorded, "RECORDED_DIR", tmp_path / "recorded")
    monkeypatch.setattr(base_model, "train", lambda *a, **k: pytest.fail("trained a shipped model again"))
    cache = tmp_path / "fresh"
    assert cli_main(["train", "--profile", "smoke", "--epochs", "1", "--cache-dir", str(cache), "--quiet"]) == 0
    out = capsys.readouterr()
    assert "results cache: 2 files shipped with recorded/smoke/ copied in" in out.err
    assert out.out.strip().endswith(f"accuracy {trained.accuracy:.4f}; cached in {cache / 'model' / f'{trained.key}.pt'}")
    assert (cache / "model" / "another.ckpt").read_bytes() == b"an unfinished training"


def test_train_subcommand_in_one_process(tmp_path, capsys, monkeypatch):
    """``rramlib train`` without torchrun trains in this process, into the entry that sweeps and notebooks read."""
    monkeypatch.delenv("RANK", raising=False)
    profile = get_profile("smoke", train=dataclasses.replace(get_profile("smoke").train, epochs=1))
    assert cli_main(["train", "--profile", "smoke", "--epochs", "1", "--cache-dir", str(tmp_path), "--quiet"]) == 0
    printed = capsys.readouterr().out
    cache = Cache(tmp_path)
    base = train_base_model(profile, cache=cache, progress=False)
    assert (cache.hits, cache.misses) == (1, 0)  # found, not trained again
    path = cache.path("model", model_key(profile, base.splits))
    assert path.is_file() and printed.strip().endswith(f"accuracy {base.accuracy:.4f}; cached in {path}")
    assert [p.name for p in (tmp_path / "model").iterdir()] == [path.name]


@pytest.mark.parametrize("flags, message", [
    (["--profile", "nonsense"], "error: unknown profile"),
    (["--num-workers", "-1"], "error: --num-workers must be an integer >= 0"),
    (["--epochs", "0"], "error: TrainConfig.epochs must be a positive integer"),
    (["--device", "tpu"], "error: unknown device"),
    (["--precision", "fp16"], "error: unknown TrainConfig.precision 'fp16'; choose one of: bf16, fp32"),
])
def test_train_subcommand_refuses_bad_input_before_work(tmp_path, capsys, monkeypatch, flags, message):
    monkeypatch.delenv("RANK", raising=False)
    assert cli_main(["train", "--cache-dir", str(tmp_path / "cache"), "--quiet", *flags]) == 2
    assert capsys.readouterr().err.startswith(message)
    assert not (tmp_path / "cache").exists()
