"""The lossless check (rramlib.study.lossless): official CIFAR-10 pixels paired with their JPEG twins."""
import hashlib
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn as nn
from PIL import Image

from rramlib.core.errors import RramlibError
from rramlib.nn.data import CIFAR10_MEAN, CIFAR10_STD, as_tensors, load_dataset
from rramlib.study import lossless
from rramlib.study.lossless import (DRIFT_FREE, ENCODINGS, default_official_path,
                                    load_official_pairs, lossless_check, normalise, read_official, twin_paths)

NAMES = [f"class{c}" for c in range(10)]  # sorted = label order, as airplane ... truck are
PER_CLASS = 3  # test images per class in the fake JPEG folder


def _smooth(rng, n):
    """Images of four 16x16 single-colour blocks (JPEG's blocks of luma and subsampled chroma): JPEG keeps them within
    a few grey levels, while two such images differ by tens of levels (as real pairs and non-pairs do)."""
    return np.kron(rng.integers(0, 256, (n, 2, 2, 3)), np.ones((1, 16, 16, 1))).astype(np.uint8)


@pytest.fixture
def fake(tmp_path):
    """An official test set of 30 images (3 per class, labels shuffled), an npz of its first 17, and a JPEG folder
    (train/: 2 per class; test/: every official image saved by the pairing rule, written here by hand)."""
    rng = np.random.default_rng(0)
    y = rng.permutation(np.repeat(np.arange(10), PER_CLASS))
    x = _smooth(rng, len(y))
    root = tmp_path / "jpeg"
    count = [0] * 10
    for image, label in zip(x, y):
        folder = root / "test" / NAMES[label]
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(folder / f"{count[label]:04d}.jpg")
        count[label] += 1
    for label in range(10):
        (root / "train" / NAMES[label]).mkdir(parents=True)
        for k, image in enumerate(_smooth(rng, 2)):
            Image.fromarray(image).save(root / "train" / NAMES[label] / f"{k:04d}.jpg")
    npz = tmp_path / "first17.npz"
    _write_npz(npz, x[:17], y[:17])
    return {"x": x, "y": y, "root": root, "npz": npz, "tmp": tmp_path}


def _write_npz(path, x, y, index=None, names=NAMES):
    np.savez(path, x_test=x, y_test=y.astype(np.int64), test_index=np.arange(len(y)) if index is None else index,
             class_names=np.asarray(names))
    return path


def _write_test_batch(folder, x, y):
    """The official python layout, as torchvision's download leaves it (pickled dicts, CHW rows)."""
    folder.mkdir(parents=True)
    with open(folder / "test_batch", "wb") as f:
        pickle.dump({"data": x.transpose(0, 3, 1, 2).reshape(len(x), -1), "labels": y.tolist()}, f)
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump({"label_names": NAMES}, f)


def _denormalised(x):
    mean, std = torch.tensor(CIFAR10_MEAN).view(3, 1, 1), torch.tensor(CIFAR10_STD).view(3, 1, 1)
    return (x * std + mean) * 255


# ----------------------------------------------------------------------------------------------- pairing
def test_twin_paths_count_earlier_images_of_the_same_class():
    assert twin_paths([2, 0, 2, 2, 0, 1], ["a", "b", "c"]) == [
        "test/c/0000.jpg", "test/a/0000.jpg", "test/c/0001.jpg", "test/c/0002.jpg", "test/a/0001.jpg", "test/b/0000.jpg"]


def test_pairs_follow_the_rule_and_are_the_rows_of_the_study_split(fake):
    (xo, yo), (xj, yj) = load_official_pairs(fake["npz"], fake["root"], verify=False)
    assert xo.shape == xj.shape == (17, 3, 32, 32) and yo.tolist() == yj.tolist() == fake["y"][:17].tolist()
    # the official tensors: pixels / 255 normalised with the CIFAR-10 statistics
    expected = (torch.from_numpy(fake["x"][:17]).permute(0, 3, 1, 2).float() / 255 - torch.tensor(CIFAR10_MEAN).view(
        3, 1, 1)) / torch.tensor(CIFAR10_STD).view(3, 1, 1)
    assert torch.allclose(xo, expected, atol=1e-6)
    # each JPEG row is its own image (a few grey levels of JPEG loss), not another one (tens of levels)
    diff = (_denormalised(xj) - _denormalised(xo)).abs().mean(dim=(1, 2, 3))
    assert 0 < diff.max() < 8 and (_denormalised(xj) - _denormalised(xo.roll(1, 0))).abs().mean(dim=(1, 2, 3)).min() > 20
    # bit for bit the study's test split rows of the same files: class by class, files in name order
    split = load_dataset("cifar10", fake["root"], n_calib=2)
    x_split, y_split = as_tensors(split.test)
    rows = [NAMES.index(p.split("/")[1]) * PER_CLASS + int(p.split("/")[2][:4])
            for p in twin_paths(fake["y"][:17], NAMES)]
    assert torch.equal(x_split[rows], xj) and torch.equal(y_split[rows], yj)


def test_the_official_python_test_batch_pairs_all_its_images(fake):
    _write_test_batch(fake["tmp"] / "py" / "cifar-10-batches-py", fake["x"], fake["y"])
    for where in (fake["tmp"] / "py", fake["tmp"] / "py" / "cifar-10-batches-py"):
        images = read_official(where, verify=False)
        assert np.array_equal(images.x, fake["x"]) and images.class_names == NAMES and images.source["n_images"] == 30
    (xo, yo), (xj, _) = load_official_pairs(fake["tmp"] / "py", fake["root"], verify=False)
    (xo17, _), (xj17, _) = load_official_pairs(fake["npz"], fake["root"], verify=False)
    assert len(yo) == 30 and torch.equal(xo[:17], xo17) and torch.equal(xj[:17], xj17)
    with pytest.raises(RramlibError, match="md5 .* expected 40351d58.*torchvision"):
        read_official(fake["tmp"] / "py")


def test_the_npz_checksum_is_the_readme_s(fake, monkeypatch):
    assert lossless.FIRST1017_SHA256 == "7ddb1c2fb28a2e73b32ffee9dcf16375065e4e313bea2043de0d7ffef18922f2"
    with pytest.raises(RramlibError, match=f"sha256 [0-9a-f]{{64}}, expected {lossless.FIRST1017_SHA256}"):
        read_official(fake["npz"])
    monkeypatch.setattr(lossless, "FIRST1017_SHA256", hashlib.sha256(fake["npz"].read_bytes()).hexdigest())
    assert read_official(fake["npz"]).source["sha256"] == lossless.FIRST1017_SHA256


def test_default_official_path(monkeypatch):
    monkeypatch.delenv(lossless.OFFICIAL_ENV, raising=False)
    repository = Path(lossless.__file__).resolve().parents[2]  # the folder holding the package
    assert default_official_path() == repository.parent / "shared" / "data" / lossless.FIRST1017_NAME
    monkeypatch.setenv(lossless.OFFICIAL_ENV, "/elsewhere/official.npz")
    assert str(default_official_path()) == "/elsewhere/official.npz"


# ----------------------------------------------------------------------------------------------- errors
def test_missing_and_corrupt_official_files(fake):
    with pytest.raises(RramlibError, match="not found at .*nothing.npz"):
        read_official(fake["tmp"] / "nothing.npz")
    (fake["tmp"] / "bad.npz").write_bytes(b"not a zip file")
    with pytest.raises(RramlibError, match="not a readable .npz"):
        read_official(fake["tmp"] / "bad.npz", verify=False)
    np.savez(fake["tmp"] / "short.npz", x_test=fake["x"])
    with pytest.raises(RramlibError, match=r"lacks the arrays \[.y_test., .test_index., .class_names.\]"):
        read_official(fake["tmp"] / "short.npz", verify=False)
    shifted = _write_npz(fake["tmp"] / "shifted.npz", fake["x"][:5], fake["y"][:5], index=np.arange(1, 6))
    with pytest.raises(RramlibError, match="test_index must be 0 ... N-1"):
        read_official(shifted, verify=False)
    small = _write_npz(fake["tmp"] / "small.npz", fake["x"][:5, :16], fake["y"][:5])
    with pytest.raises(RramlibError, match=r"expected uint8 \(5, 32, 32, 3\)"):
        read_official(small, verify=False)
    with pytest.raises(RramlibError, match="has no test_batch"):
        read_official(fake["tmp"], verify=False)


def test_a_missing_twin_is_named(fake):
    labels = fake["y"][:17]
    c = next(c for c in range(10) if (labels == c).sum() >= 2)
    i = int(np.flatnonzero(labels == c)[1])  # the second image of class c -> class<c>/0001.jpg
    (fake["root"] / "test" / NAMES[c] / "0001.jpg").unlink()
    with pytest.raises(RramlibError, match=f"official test image {i} .*{NAMES[c]}/0001.jpg' is missing"):
        load_official_pairs(fake["npz"], fake["root"], verify=False)
    with pytest.raises(RramlibError, match="no test/ folder"):
        load_official_pairs(fake["npz"], fake["tmp"], verify=False)


def test_labels_that_differ_name_the_first_image(fake):
    """Class names in another order than the sorted class folders: twins of classes 3 and 4 get other labels."""
    names = NAMES[:3] + [NAMES[4], NAMES[3]] + NAMES[5:]
    npz = _write_npz(fake["tmp"] / "swapped.npz", fake["x"][:17], fake["y"][:17], names=names)
    first = int(np.flatnonzero(np.isin(fake["y"][:17], [3, 4]))[0])
    with pytest.raises(RramlibError, match=f"labels differ at official test image {first}: "):
        load_official_pairs(npz, fake["root"], verify=False)


def test_a_folder_numbered_otherwise_is_refused(fake):
    folder = fake["root"] / "test" / "class7"
    (folder / "0000.jpg").rename(folder / "tmp.jpg")
    (folder / "0001.jpg").rename(folder / "0000.jpg")
    (folder / "tmp.jpg").rename(folder / "0001.jpg")
    every = _write_npz(fake["tmp"] / "all30.npz", fake["x"], fake["y"])
    first = fake["y"].tolist().index(7)
    with pytest.raises(RramlibError, match=f"official test image {first} and its JPEG twin test/class7/0000.jpg "
                                           "differ by .* grey levels"):
        load_official_pairs(every, fake["root"], verify=False)
    load_official_pairs(every, fake["root"], verify=False, max_difference=None)  # the check can be turned off


def test_a_twin_of_another_size_is_refused(fake):
    first = int(fake["y"][0])
    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(fake["root"] / "test" / NAMES[first] / "0000.jpg")
    with pytest.raises(RramlibError, match="JPEG twin .*0000.jpg of official test image 0 is 16x16 pixels"):
        load_official_pairs(fake["npz"], fake["root"], verify=False)


# ----------------------------------------------------------------------------------------------- the check
class Logits(nn.Module):
    """Logits = the input times ``sign``: -1 flips every two-class prediction."""

    def __init__(self, sign: float = 1.0):
        super().__init__()
        self.sign = sign

    def forward(self, x):
        return x * self.sign


class Flipper:
    """A fitted "method": chip ``c`` at time index ``k`` flips the predictions when ``c + k`` is odd."""

    def __init__(self, times):
        self.times, self.calls = list(times), []

    def at(self, chip, t):
        self.calls.append((chip, t))
        return Logits(-1.0 if (chip + self.times.index(t)) % 2 else 1.0)


Y = torch.tensor([0, 1, 0, 1, 0, 1])
OFFICIAL = (torch.nn.functional.one_hot(torch.tensor([0, 1, 0, 1, 0, 0]), 2).float(), Y)  # image 5 wrong
JPEG = (torch.nn.functional.one_hot(torch.tensor([0, 1, 1, 0, 0, 0]), 2).float(), Y)  # images 2, 3, 5 wrong


def test_check_arithmetic_on_a_tiny_model():
    times = {"1d": 86400.0, "10y": 3.15e8}
    methods = {seed: Flipper(times.values()) for seed in (3, 5)}
    fits = {3: (Logits(), {"flip": methods[3]}), 5: (Logits(-1.0), {"flip": methods[5]})}
    check = lossless_check(fits, [10, 11], times, OFFICIAL, JPEG, batch_size=4)
    right = {"official": np.array([1, 1, 1, 1, 1, 0], bool), "jpeg": np.array([1, 1, 0, 0, 1, 0], bool)}
    for e in ENCODINGS:
        free = check.correct[(DRIFT_FREE, None, e)]
        assert free.shape == (2, 2, 6) and (free[0] == right[e]).all() and (free[1] == ~right[e]).all()
        for k, t in enumerate(times):
            a = check.correct[("flip", t, e)]
            assert a.shape == (2, 2, 6) and a.dtype == bool
            for c, chip in enumerate((10, 11)):
                flip = (chip + k) % 2 == 1
                assert (a[0, c] == (right[e] ^ flip)).all()  # seed 3: the software model right as given
                assert (a[1, c] == (right[e] ^ flip)).all()  # seed 5: the chips' networks do not use it
    assert methods[3].calls == [(10, 86400.0), (10, 3.15e8), (11, 86400.0), (11, 3.15e8)]  # one read per chip, time
    assert np.array_equal(check.paired("flip", "10y")[1], check.correct[("flip", "10y", "jpeg")])
    table = check.table
    assert len(table) == 2 * 2 + 2 * 2 * 2 * 2 and set(table["encoding"]) == set(ENCODINGS)
    row = table[(table.method == "flip") & (table.chip == 11) & (table.time == "1d") & (table.encoding == "official")]
    assert row["accuracy"].tolist() == [1 / 6, 1 / 6] and row["time_s"].tolist() == [86400.0] * 2  # flipped
    summary = check.summary()
    free = summary.iloc[0]
    assert free["method"] == DRIFT_FREE and free["acc_official"] == pytest.approx(6 / 12)
    flip = summary[(summary.method == "flip") & (summary.time == "1d")].iloc[0]
    # chips 10, 11 at 1d: one kept, one flipped, on both seeds: every image right exactly half the time
    assert flip["acc_official"] == pytest.approx(0.5) and flip["loss_pp_official"] == pytest.approx(0.0)
    assert np.isnan(flip["loss_ratio"])
    # discordant pairs: images 2 and 3 differ between encodings on every (seed, chip): 2 x 2 x 2, half each way
    assert (flip["n_official_only"], flip["n_jpeg_only"], flip["n_pairs"]) == (4, 4, 24)


def test_losses_and_their_ratio():
    """One seed, one chip whose network flips every prediction: losses and their ratio against hand counts."""
    class Wrong:
        def at(self, chip, t):
            return Logits(-1.0)

    check = lossless_check({0: (Logits(), {"wrong": Wrong()})}, [1], ["10y"], OFFICIAL, JPEG)
    s = check.summary().iloc[1]
    # software: official 5/6 right, jpeg 3/6; flipped: official 1/6, jpeg 3/6
    assert s["acc_official"] == pytest.approx(1 / 6) and s["acc_jpeg"] == pytest.approx(3 / 6)
    assert s["loss_pp_official"] == pytest.approx(100 * 4 / 6) and s["loss_pp_jpeg"] == pytest.approx(0.0)
    assert s["jpeg_minus_official_pp"] == pytest.approx(100 * 2 / 6) and s["loss_ratio"] == pytest.approx(0.0)


def test_check_refuses_bad_input():
    fits = {0: (Logits(), {"flip": Flipper([1.0])})}
    with pytest.raises(RramlibError, match="same images in the same order"):
        lossless_check(fits, [1], ["1s"], OFFICIAL, (JPEG[0], 1 - Y))
    with pytest.raises(RramlibError, match="same methods"):
        lossless_check({**fits, 1: (Logits(), {"other": Flipper([1.0])})}, [1], ["1s"], OFFICIAL, JPEG)
    with pytest.raises(RramlibError, match="names the software model"):
        lossless_check({0: (Logits(), {DRIFT_FREE: Flipper([1.0])})}, [1], ["1s"], OFFICIAL, JPEG)
    with pytest.raises(RramlibError, match="each once"):
        lossless_check(fits, [1, 1], ["1s"], OFFICIAL, JPEG)
    with pytest.raises(RramlibError, match="cannot read time"):
        lossless_check(fits, [1], ["soon"], OFFICIAL, JPEG)
    with pytest.raises(RramlibError, match="no results for method 'x'"):
        lossless_check(fits, [1], {"1s": 1.0}, OFFICIAL, JPEG).paired("x", "1s")


def test_check_agrees_with_the_sweeps_on_a_fitted_method(smoke_cache):
    """A real fitted method on the smoke profile: the official encoding's accuracies are the sweep's, chip by chip."""
    from rramlib.study.experiments import SweepConfig, chip_accuracies, prepare

    config = SweepConfig(profile="smoke", methods=("none",))
    exp = prepare(config, cache=smoke_cache)
    method = exp.fit("none", config, smoke_cache)
    test = as_tensors(exp.base.splits.test)
    noisy = (test[0] + 0.5 * torch.randn(test[0].shape, generator=torch.Generator().manual_seed(0)), test[1])
    chips = config.chip_seeds()
    check = lossless_check({0: (exp.base.model, {"none": method})}, chips, exp.profile.times, test, noisy)
    table = check.table
    for chip in chips:
        ours = table[(table.chip == chip) & (table.encoding == "official")].set_index("time")["accuracy"]
        assert ours[list(exp.profile.times)].tolist() == chip_accuracies(exp, config, method, chip, smoke_cache, test)
    free = table[(table.method == DRIFT_FREE) & (table.encoding == "official")]["accuracy"].item()
    assert free == exp.base.accuracy
    assert check.summary().iloc[0]["acc_jpeg"] < exp.base.accuracy  # the noisy copy costs the software model


def test_normalise_is_the_split_s_normalisation():
    rng = np.random.default_rng(1)
    x = rng.integers(0, 256, (4, 32, 32, 3), dtype=np.uint8)
    mean, std = torch.tensor(CIFAR10_MEAN).view(3, 1, 1), torch.tensor(CIFAR10_STD).view(3, 1, 1)
    assert torch.equal(normalise(x), (torch.from_numpy(x).permute(0, 3, 1, 2).float().div_(255.0) - mean) / std)


def test_the_paired_arrays_feed_the_intervals():
    """Drift loss and encoding gap as rramlib.study.intervals reads paired (seeds, chips, images) arrays."""
    intervals = pytest.importorskip("rramlib.study.intervals")
    fits = {seed: (Logits(), {"flip": Flipper([1.0, 2.0])}) for seed in (0, 1)}
    check = lossless_check(fits, [10, 11, 12], {"a": 1.0, "b": 2.0}, OFFICIAL, JPEG)
    free_o, free_j = check.paired(DRIFT_FREE)
    flip_o, flip_j = check.paired("flip", "a")
    row = check.summary().set_index("time").loc["a"]
    loss = intervals.paired_difference(free_o, flip_o, n_boot=200)
    assert loss.mean == pytest.approx(row["loss_pp_official"] / 100)
    gap = intervals.paired_difference(flip_j, flip_o, n_boot=200)
    assert gap.mean == pytest.approx(row["jpeg_minus_official_pp"] / 100) and (gap.seeds, gap.chips) == (2, 3)
