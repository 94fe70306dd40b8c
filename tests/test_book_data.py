"""A book at a profile that reads its dataset from a folder (cifar, paper): the folder is checked before any
notebook runs, and every chapter reaches it (``make book PROFILE=paper DATA_ROOT=DIR``)."""
from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from fake_cifar import write_fake_cifar
from rramlib import book
from rramlib.book import builder
from rramlib.cli.main import main
from rramlib.core.errors import RramlibError

ROOT = Path(__file__).resolve().parents[1]
STEMS = sorted(p.stem for p in (ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))


@pytest.mark.parametrize("profile", ["cifar", "paper"])
def test_a_missing_data_folder_names_both_ways_to_give_it(profile):
    with pytest.raises(RramlibError) as error:
        builder.check_data_root(profile, STEMS, None)
    message = str(error.value)
    assert "--data-root DIR" in message and f"make book PROFILE={profile} DATA_ROOT=DIR" in message
    assert "cifar10" in message


def test_the_data_folder_is_checked_and_made_absolute(tmp_path, monkeypatch):
    assert builder.check_data_root("smoke", STEMS, None) is None  # digits ship with scikit-learn
    assert builder.check_data_root("quick", STEMS, None) is None
    monkeypatch.chdir(tmp_path)
    (tmp_path / "data").mkdir()
    assert builder.check_data_root("paper", STEMS, "data") == str(tmp_path / "data")
    with pytest.raises(RramlibError, match="'nowhere' .* does not exist"):
        builder.check_data_root("paper", STEMS, "nowhere")


@pytest.mark.parametrize("profile", ["cifar", "paper"])
def test_cli_book_without_a_data_folder_stops_before_any_notebook(profile, capsys, monkeypatch):
    monkeypatch.delenv(builder.DATA_ROOT_ENV, raising=False)
    monkeypatch.setattr(builder, "stage_static", lambda *a, **k: pytest.fail("staged before checking the data"))
    monkeypatch.setattr(builder, "execute_notebook", lambda *a, **k: pytest.fail("a notebook ran"))
    assert main(["book", "--profile", profile, "--no-html"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: the {profile} book reads cifar10 from a data folder")
    assert "--data-root DIR" in err and "DATA_ROOT=DIR" in err
    assert main(["book", "--profile", profile, "--no-html", "--data-root", "/no/such/folder"]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_the_data_layer_names_the_command_line_ways_too():
    from rramlib.nn.data import load_dataset

    with pytest.raises(RramlibError, match=r"needs root=.*--data-root DIR.*DATA_ROOT=DIR"):
        load_dataset("cifar10")


#: Loaded by every kernel of the build below (its folder is put first on PYTHONPATH): the paper profile and the
#: paper Hidden-Fold profile scaled down to seconds (the digits CNN, one epoch, the smoke profile's chips, times
#: and method settings), still reading CIFAR from the data folder; torchvision checks only that the small fake
#: CIFAR files exist (their MD5 is not the real one's).
TINY_PAPER = textwrap.dedent('''
    import dataclasses
    import os

    import torchvision.datasets.cifar

    from rramlib.nn.train import TrainConfig
    from rramlib.study import hidden_fold, profiles, text

    torchvision.datasets.cifar.check_integrity = lambda path, md5=None: os.path.isfile(path)
    smoke, one_epoch = profiles.PROFILES["smoke"], TrainConfig(epochs=1, lr=0.05, batch_size=64)
    profiles.PROFILES["paper"] = dataclasses.replace(
        profiles.PROFILES["paper"], model="digits_cnn", train=one_epoch, times=smoke.times, chips=smoke.chips,
        n_calib=smoke.n_calib, levels=smoke.levels, train_chips=smoke.train_chips, device="cpu",
        method_params=smoke.method_params, description="the paper profile scaled down for a test")
    hidden_fold.HFN_PROFILES["paper"] = dataclasses.replace(
        hidden_fold.HFN_PROFILES["paper"], arch="hfn_digits", hfn_train=one_epoch, dense_train=one_epoch)
    text.BOOK_PROFILES["paper"] = "smoke"  # BERT-base comes from the hub, out of reach here (tests/test_text.py
                                           # loads a hub-layout checkpoint from a local folder instead)
''')

#: The notebooks' parameters at their smallest (every name is a parameter of some notebook, valid in each one
#: that declares it): one preset, one value per grid, no greedy-window ablation. The methods and the networks
#: counted stay the notebooks' own: the claims page needs their numbers.
SMALL_PARAMETERS = {
    "presets": ["ibm_cmo_reram"], "n_devices": 200, "n_weights": 200, "g_targets": [0.5], "levels_list": [1],
    "dense_points": 3, "run_greedy": False, "val_chips": 1, "ranks": [4], "sharings": ["cross"], "kd_weights": [0.0],
    "reference_methods": ["none"], "samples": [1], "budgets": [0.1], "n_params": 1, "depth_models": [],
    "dac_bits": [5], "adc_bits": [7], "out_noises": [0.0], "tuned_methods": ["vera_plus"],
    "mac_models": ["resnet20"], "field_images": [10],
}


@pytest.mark.slow
def test_the_whole_book_builds_at_the_paper_profile_from_a_data_folder(tmp_path, monkeypatch):
    """``make book PROFILE=paper DATA_ROOT=DIR`` on a fake CIFAR-10 / CIFAR-100 folder: every chapter runs and
    reads CIFAR from the folder (its drift-free test set is the fake one's), with nothing in the parameters."""
    data = tmp_path / "data"
    data.mkdir()
    write_fake_cifar(data, "cifar10", n_train=300, n_test=40)
    # enough CIFAR-100 test images that a one-epoch network guessing one class still gets some right
    write_fake_cifar(data, "cifar100", n_train=300, n_test=400)
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(TINY_PAPER)
    monkeypatch.setenv("PYTHONPATH", str(site))
    monkeypatch.setenv("RRAMLIB_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv(builder.DATA_ROOT_ENV, str(data))  # what make's DATA_ROOT=DIR sets
    declared = set().union(*(builder.declared_parameters(json.loads((ROOT / "notebooks" / f"{s}.ipynb").read_text()))
                             for s in STEMS))
    parameters = {k: v for k, v in SMALL_PARAMETERS.items() if k in declared}
    result = book.build("paper", tmp_path / "out", html=False, parameters=parameters, jobs=2,
                        log=lambda *a, **k: None)
    assert [r.name for r in result.runs] == STEMS
    impact = json.loads((tmp_path / "out" / "src" / "results" / "02_drift_impact.json").read_text())
    assert impact["numbers"]["n_test"] == 40  # the fake CIFAR-10 test split
    assert "cifar10" in json.dumps(impact["data_sources"])
