"""Dataset splits, normalisation, fake CIFAR / ImageFolder folders and bad-input errors."""
from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch
from torch.utils.data import TensorDataset

from fake_cifar import files_checked_by_existence, write_fake_cifar  # noqa: F401 (fixture)
from rramlib.nn.data import (
    CIFAR10_MEAN,
    CIFAR10_STD,
    CIFAR100_MEAN,
    CIFAR100_STD,
    DATASETS,
    IMAGENET_MEAN,
    IMAGENET_STD,
    DatasetSplits,
    SeededAugment,
    as_tensors,
    load_dataset,
    make_loader,
)
from rramlib.core.errors import RramlibError

SPLITS = ("train", "val", "test", "calib")


@pytest.fixture(scope="module")
def digits() -> DatasetSplits:
    return load_dataset("digits", seed=0)


def _sklearn_digits():
    from sklearn.datasets import load_digits

    b = load_digits()
    return b.images.astype(np.float32) / 16.0, b.target


# ------------------------------------------------------------------------------------------------ digits
def test_digits_split_sizes_shapes_and_metadata(digits):
    sizes = {k: len(getattr(digits, k)) for k in SPLITS}
    assert sizes == {"train": 1068, "val": 180, "test": 449, "calib": 100}
    assert (digits.num_classes, digits.in_channels, digits.image_size, digits.name) == (10, 1, 8, "digits")
    for k in SPLITS:
        ds = getattr(digits, k)
        assert isinstance(ds, TensorDataset)
        x, y = ds.tensors
        assert x.shape == (len(ds), 1, 8, 8) and x.dtype == torch.float32
        assert y.dtype == torch.int64


def test_digits_splits_are_disjoint_and_cover_everything(digits):
    idx = digits.info["indices"]
    sets = {k: set(idx[k].tolist()) for k in SPLITS}
    for i, a in enumerate(SPLITS):
        assert len(sets[a]) == len(idx[a])  # no duplicates inside a split
        for b in SPLITS[i + 1 :]:
            assert not sets[a] & sets[b], f"{a} and {b} share samples"
    assert set().union(*sets.values()) == set(range(1797))


def test_digits_split_contents_match_their_indices(digits):
    images, target = _sklearn_digits()
    mean, std = digits.info["mean"], digits.info["std"]
    for k in SPLITS:
        x, y = getattr(digits, k).tensors
        i = digits.info["indices"][k]
        assert torch.equal(y, torch.from_numpy(target[i]))
        np.testing.assert_allclose(x[:, 0].numpy(), (images[i] - mean) / std, rtol=0, atol=1e-5)


def test_digits_standardised_with_train_statistics(digits):
    images, _ = _sklearn_digits()
    train_raw = images[digits.info["indices"]["train"]]
    assert digits.info["mean"] == pytest.approx(float(train_raw.mean()))
    assert digits.info["std"] == pytest.approx(float(train_raw.std()))
    x_train = digits.train.tensors[0]
    assert abs(float(x_train.mean())) < 1e-5
    assert float(x_train.std(unbiased=False)) == pytest.approx(1.0, abs=1e-4)
    # The test split is transformed with the *train* statistics, so it is not exactly standardised.
    assert float(digits.test.tensors[0].mean()) != pytest.approx(0.0, abs=1e-6)


def test_digits_stratified(digits):
    _, target = _sklearn_digits()
    total = np.bincount(target, minlength=10)
    for k, n in (("test", 449), ("val", 180), ("calib", 100)):
        counts = np.bincount(getattr(digits, k).tensors[1].numpy(), minlength=10)
        expected = total * n / len(target)
        assert np.all(np.abs(counts - expected) <= 1.0 + 1e-9), (k, counts, expected)
    small = load_dataset("digits", n_calib=10)
    assert np.bincount(small.calib.tensors[1].numpy(), minlength=10).tolist() == [1] * 10


def test_digits_seed_controls_the_split(digits):
    again = load_dataset("digits", seed=0)
    other = load_dataset("digits", seed=1)
    for k in SPLITS:
        assert np.array_equal(again.info["indices"][k], digits.info["indices"][k])
        assert torch.equal(getattr(again, k).tensors[0], getattr(digits, k).tensors[0])
        assert not np.array_equal(other.info["indices"][k], digits.info["indices"][k])


# ------------------------------------------------------------------------------------------------ CIFAR
@pytest.fixture(autouse=True)
def _existence_is_enough(files_checked_by_existence):
    """Every test here may read the fake CIFAR files (torchvision would check the real files' MD5)."""


def _fake_cifar(tmp_path, kind: str, n_train: int = 200, n_test: int = 30, seed: int = 0):
    return write_fake_cifar(tmp_path, kind, n_train, n_test, seed)


def _norm(x_u8: np.ndarray, mean, std) -> torch.Tensor:
    m = torch.tensor(mean).view(3, 1, 1)
    s = torch.tensor(std).view(3, 1, 1)
    return (torch.from_numpy(x_u8).float() / 255 - m) / s


@pytest.mark.parametrize("kind", ["cifar10", "cifar100"])
def test_fake_cifar_loads_with_shapes_labels_and_normalisation(tmp_path, kind):
    root, x_tr, y_tr, x_te, y_te = _fake_cifar(tmp_path, kind)
    s = load_dataset(kind, root, n_calib=10, seed=3)
    mean, std = (CIFAR10_MEAN, CIFAR10_STD) if kind == "cifar10" else (CIFAR100_MEAN, CIFAR100_STD)
    assert s.num_classes == (10 if kind == "cifar10" else 100)
    assert (s.in_channels, s.image_size, s.name) == (3, 32, kind)
    assert (len(s.train), len(s.val), len(s.test), len(s.calib)) == (170, 20, 30, 10)

    x, y = as_tensors(s.test)
    assert x.shape == (30, 3, 32, 32) and x.dtype == torch.float32
    assert torch.equal(y, torch.from_numpy(y_te))
    torch.testing.assert_close(x, _norm(x_te, mean, std), rtol=0, atol=1e-6)

    # val is the last 10 % of the train files, untouched by the seed
    xv, yv = as_tensors(s.val)
    torch.testing.assert_close(xv, _norm(x_tr[-20:], mean, std), rtol=0, atol=1e-6)
    assert torch.equal(yv, torch.from_numpy(y_tr[-20:]))

    idx = s.info["indices"]
    assert not set(idx["calib"]) & set(idx["val"]) and not set(idx["calib"]) & set(idx["train"])
    assert not set(idx["train"]) & set(idx["val"])
    assert len(set(idx["train"]) | set(idx["calib"]) | set(idx["val"])) == 200
    xc, yc = as_tensors(s.calib)
    torch.testing.assert_close(xc, _norm(x_tr[idx["calib"]], mean, std), rtol=0, atol=1e-6)
    assert torch.equal(yc, torch.from_numpy(y_tr[idx["calib"]]))

    xa, ya = s.train[0]
    assert xa.shape == (3, 32, 32) and xa.dtype == torch.float32 and int(ya) == y_tr[idx["train"][0]]


def test_cifar_train_augmentation_is_crop_flip_and_reproducible(tmp_path):
    root, x_tr, *_ = _fake_cifar(tmp_path, "cifar10")
    s = load_dataset("cifar10", root, n_calib=10, seed=0)
    assert isinstance(s.train, SeededAugment)
    i = 5
    raw = x_tr[s.info["indices"]["train"][i]]
    padded = torch.nn.functional.pad(torch.from_numpy(raw).float() / 255, (4, 4, 4, 4))
    m = torch.tensor(CIFAR10_MEAN).view(3, 1, 1)
    sd = torch.tensor(CIFAR10_STD).view(3, 1, 1)
    candidates = []
    for dy in range(9):
        for dx in range(9):
            c = padded[:, dy : dy + 32, dx : dx + 32]
            candidates += [(c - m) / sd, (c.flip(-1) - m) / sd]

    seen = []
    for epoch in range(6):
        s.train.set_epoch(epoch)
        a = s.train[i][0]
        assert torch.equal(a, s.train[i][0])  # same (seed, epoch, index) -> same sample
        assert any(torch.allclose(a, c, atol=1e-6) for c in candidates)
        seen.append(a)
    assert any(not torch.equal(seen[0], t) for t in seen[1:])  # epochs differ
    s.train.set_epoch(0, seed=1)
    s2 = load_dataset("cifar10", root, n_calib=10, seed=0)
    s2.train.set_epoch(0, seed=1)
    assert torch.equal(s.train[i][0], s2.train[i][0])
    # picklable (DataLoader workers under "spawn") and the copy yields the same samples
    assert torch.equal(pickle.loads(pickle.dumps(s.train))[i][0], s.train[i][0])


def test_cifar_missing_files_without_download(tmp_path):
    with pytest.raises(RramlibError, match="download=True"):
        load_dataset("cifar10", tmp_path)
    with pytest.raises(RramlibError, match="cifar-100-python"):
        load_dataset("cifar100", tmp_path)


def test_cifar_n_calib_larger_than_possible(tmp_path):
    root, *_ = _fake_cifar(tmp_path, "cifar10")  # 180 images outside val
    with pytest.raises(RramlibError, match="n_calib=100 is larger than possible"):
        load_dataset("cifar10", root)  # default n_calib=100 > 90


def test_cifar_corrupt_batch(tmp_path):
    folder = tmp_path / "cifar-100-python"
    folder.mkdir()
    (folder / "train").write_bytes(b"not a pickle")
    (folder / "test").write_bytes(b"not a pickle")
    (folder / "meta").write_bytes(b"not a pickle either")
    with pytest.raises(RramlibError, match="does not hold readable CIFAR python-pickle batches"):
        load_dataset("cifar100", tmp_path, n_calib=1)


# ------------------------------------------------------------------------------------------------ ImageFolder
COLOURS = {"apple": (200, 30, 30), "sky": (20, 90, 220)}


def _fake_imagefolder(tmp_path, n_train: int = 10, n_val: int = 3):
    from PIL import Image

    root = tmp_path / "imgs"
    for split, n in (("train", n_train), ("val", n_val)):
        for cls, rgb in COLOURS.items():
            d = root / split / cls
            d.mkdir(parents=True)
            for i in range(n):
                Image.new("RGB", (40 + i, 30), rgb).save(d / f"{i}.png")
    return root


def test_fake_imagefolder_loads(tmp_path):
    root = _fake_imagefolder(tmp_path)
    s = load_dataset("imagefolder", root, n_calib=4, image_size=32, seed=0)
    assert (s.num_classes, s.in_channels, s.image_size) == (2, 3, 32)
    assert s.info["classes"] == ["apple", "sky"]
    assert (len(s.train), len(s.val), len(s.test), len(s.calib)) == (14, 2, 6, 4)
    idx = s.info["indices"]
    assert len(set(idx["train"]) | set(idx["val"]) | set(idx["calib"])) == 20
    m = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
    sd = torch.tensor(IMAGENET_STD).view(3, 1, 1)
    for split in ("val", "test", "calib"):
        x, y = as_tensors(getattr(s, split))
        assert x.shape == (len(getattr(s, split)), 3, 32, 32)
        for xi, yi in zip(x, y):
            rgb = torch.tensor(COLOURS[s.info["classes"][int(yi)]], dtype=torch.float32).view(3, 1, 1)
            torch.testing.assert_close(xi, ((rgb / 255 - m) / sd).expand(3, 32, 32), rtol=0, atol=1e-2)
    assert np.bincount(as_tensors(s.test)[1].numpy()).tolist() == [3, 3]
    s.train.set_epoch(2)
    a, ya = s.train[0]
    assert a.shape == (3, 32, 32) and torch.equal(a, s.train[0][0]) and ya in (0, 1)
    assert torch.equal(pickle.loads(pickle.dumps(s.train))[0][0], a)


def test_imagefolder_missing_subfolder(tmp_path):
    root = _fake_imagefolder(tmp_path)
    import shutil

    shutil.rmtree(root / "val")
    with pytest.raises(RramlibError, match=r"no val/ \(or test/\) subfolder"):
        load_dataset("imagefolder", root, n_calib=2)


def test_imagefolder_test_layout_of_the_cifar_jpeg_folders(tmp_path):
    """train/<class>/*.jpg and test/<class>/*.jpg (no val/): test/ is the test split, val is carved from train."""
    from PIL import Image

    root = tmp_path / "cifar-jpeg"
    for split, n in (("train", 10), ("test", 4)):
        for k, (cls, rgb) in enumerate(COLOURS.items()):
            d = root / split / cls
            d.mkdir(parents=True)
            for i in range(n):
                Image.new("RGB", (32, 32), rgb).save(d / f"{i:04d}.jpg")
    s = load_dataset("imagefolder", root, n_calib=2, image_size=32)
    assert len(s.test) == 8 and len(s.val) + len(s.calib) + len(s.train) == 20
    assert s.info["classes"] == sorted(COLOURS)
    x, y = s.test[0]
    assert x.shape == (3, 32, 32) and y == 0
    # the JPEG colour survives: the first class is red, the normalised red channel is the largest
    assert x[0].mean() > x[2].mean()


def test_imagefolder_class_mismatch(tmp_path):
    root = _fake_imagefolder(tmp_path)
    (root / "val" / "extra").mkdir()
    from PIL import Image

    Image.new("RGB", (8, 8)).save(root / "val" / "extra" / "0.png")
    with pytest.raises(RramlibError, match="different class folders"):
        load_dataset("imagefolder", root, n_calib=2)


# ------------------------------------------------------------------------------------------------ errors
@pytest.mark.parametrize(
    "kwargs, pattern",
    [
        (dict(name="mnist"), r"unknown dataset 'mnist'; choose one of: cifar10, cifar100, digits, imagefolder"),
        (dict(name="cifar10"), "needs root="),
        (dict(name="imagefolder"), "needs root="),
        (dict(name="cifar10", root="/no/such/folder"), "does not exist"),
        (dict(name="imagefolder", root="/no/such/folder"), "does not exist"),
        (dict(name="digits", root="/no/such/folder"), "does not exist"),
        (dict(name="digits", n_calib=0), "n_calib must be an integer"),
        (dict(name="digits", n_calib=-3), "n_calib must be an integer"),
        (dict(name="digits", n_calib=2.5), "n_calib must be an integer"),
        (dict(name="digits", n_calib=True), "n_calib must be an integer"),
        (dict(name="digits", n_calib=10_000), "n_calib=10000 is larger than possible"),
        (dict(name="digits", seed=-1), "seed must be"),
        (dict(name="cifar10", n_calib=0), "n_calib must be an integer"),  # checked before root
    ],
)
def test_bad_input_raises(kwargs, pattern):
    kwargs = dict(kwargs)
    name = kwargs.pop("name")
    with pytest.raises(RramlibError, match=pattern):
        load_dataset(name, **kwargs)


def test_imagefolder_without_train_and_val(tmp_path):
    with pytest.raises(RramlibError, match="no train/ subfolder"):
        load_dataset("imagefolder", tmp_path)
    (tmp_path / "train").mkdir()
    with pytest.raises(RramlibError, match=r"no val/ \(or test/\) subfolder"):
        load_dataset("imagefolder", tmp_path)


def test_datasets_constant():
    assert DATASETS == ("digits", "cifar10", "cifar100", "imagefolder")


# ------------------------------------------------------------------------------------------------ loaders
def test_as_tensors_does_not_copy_tensor_datasets(digits):
    x, y = as_tensors(digits.val)
    assert x.data_ptr() == digits.val.tensors[0].data_ptr()
    assert y.data_ptr() == digits.val.tensors[1].data_ptr()


def test_make_loader_order_depends_only_on_seed(digits):
    def order(seed, shuffle=True):
        return torch.cat([y for _, y in make_loader(digits.val, 32, shuffle=shuffle, seed=seed)])

    def first_x(seed):
        return next(iter(make_loader(digits.val, 32, shuffle=True, seed=seed)))[0]

    a, b, c = order(0), order(0), order(1)
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert torch.equal(first_x(4), first_x(4))
    assert sorted(a.tolist()) == sorted(digits.val.tensors[1].tolist())  # every sample once
    assert torch.equal(order(0, shuffle=False), digits.val.tensors[1])
    sizes = [len(y) for _, y in make_loader(digits.val, 64, shuffle=True)]
    assert sizes == [64, 64, 52]
    # a global-RNG draw in between does not change the order
    torch.rand(10)
    assert torch.equal(order(0), a)


def test_make_loader_rejects_bad_batch_size(digits):
    with pytest.raises(RramlibError, match="batch_size"):
        make_loader(digits.val, 0, shuffle=False)


def test_torchvision_augmentation_uses_a_private_seeded_rng():
    from torchvision.transforms import v2

    from rramlib.nn.data import _GlobalRngAugment

    aug = _GlobalRngAugment(v2.RandomCrop(8))
    img = torch.arange(3 * 16 * 16, dtype=torch.float32).view(3, 16, 16)
    torch.manual_seed(0)
    expected_next = torch.rand(2)
    torch.manual_seed(0)
    outs = [aug(img, torch.Generator().manual_seed(s)) for s in (1, 1, 2, 3, 4)]
    assert torch.equal(torch.rand(2), expected_next)  # global RNG neither consumed nor reseeded
    assert torch.equal(outs[0], outs[1])
    assert any(not torch.equal(outs[0], o) for o in outs[2:])


# ---------------------------------------------------------------------- CIFAR from image folders (book/reproducing.md)
def _cifar_image_folders(root, n_train: int = 20, n_test: int = 3, size: int = 32, classes: int = 10):
    """train/<class>/NNNN.png and test/<class>/NNNN.png with random pixels (PNG: lossless, so exact pixels
    can be checked; the loader treats .jpg the same way). Returns {split: (x uint8 NCHW, y)} in file order."""
    from PIL import Image

    rng = np.random.default_rng(0)
    out = {}
    for split, n in (("train", n_train), ("test", n_test)):
        xs, ys = [], []
        for label in range(classes):
            d = root / split / f"class{label:02d}"
            d.mkdir(parents=True)
            for i in range(n):
                pixels = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(d / f"{i:04d}.png")
                xs.append(pixels.transpose(2, 0, 1))
                ys.append(label)
        out[split] = (np.stack(xs), np.asarray(ys))
    return out


def test_cifar10_from_image_folders_reads_exact_pixels_with_stratified_val(tmp_path):
    from rramlib.core.cache import Cache

    truth = _cifar_image_folders(tmp_path / "jpeg")
    cache = Cache(tmp_path / "cache")
    s = load_dataset("cifar10", tmp_path / "jpeg", n_calib=10, seed=0, cache=cache)
    assert (len(s.train), len(s.val), len(s.test), len(s.calib)) == (170, 20, 30, 10)
    # the listing is class by class, so val must be stratified, not the last images (all of the last class)
    assert np.bincount(as_tensors(s.val)[1].numpy(), minlength=10).tolist() == [2] * 10
    assert np.bincount(as_tensors(s.calib)[1].numpy(), minlength=10).tolist() == [1] * 10
    idx = s.info["indices"]
    assert len(set(idx["train"]) | set(idx["val"]) | set(idx["calib"])) == 200
    # test images: exactly the files' pixels, normalised with the CIFAR-10 statistics
    x_test, y_test = as_tensors(s.test)
    mean, std = torch.tensor(CIFAR10_MEAN).view(3, 1, 1), torch.tensor(CIFAR10_STD).view(3, 1, 1)
    expected = (torch.from_numpy(truth["test"][0]).float() / 255 - mean) / std
    assert torch.allclose(x_test, expected, atol=1e-6) and y_test.tolist() == truth["test"][1].tolist()
    source = s.info["source"]
    assert source["format"] == "image files" and source["n_files"] == 230 and len(source["file_list_sha256"]) == 64
    # decoded once: the second load reads the pixels back from the cache
    again = load_dataset("cifar10", tmp_path / "jpeg", n_calib=10, seed=0, cache=cache)
    assert cache.hits == 1 and torch.equal(as_tensors(again.test)[0], x_test)
    # another file list is another data set
    from PIL import Image

    Image.fromarray(np.zeros((32, 32, 3), dtype=np.uint8)).save(tmp_path / "jpeg" / "test" / "class00" / "9999.png")
    third = load_dataset("cifar10", tmp_path / "jpeg", n_calib=10, seed=0, cache=cache)
    assert third.info["source"]["file_list_sha256"] != source["file_list_sha256"] and len(third.test) == 31


@pytest.mark.parametrize("size, classes, pattern", [(16, 10, r"is 16x16 pixels, expected 32x32"),
                                                     (32, 9, r"holds 9 class folders, expected 10")])
def test_cifar10_image_folders_reject_wrong_images(tmp_path, size, classes, pattern):
    _cifar_image_folders(tmp_path, n_train=2, n_test=1, size=size, classes=classes)
    with pytest.raises(RramlibError, match=pattern):
        load_dataset("cifar10", tmp_path, n_calib=1)


def test_cifar10_root_with_neither_layout_names_both(tmp_path):
    with pytest.raises(RramlibError, match=r"cifar-10-batches-py.*train/<class>/\*\.jpg"):
        load_dataset("cifar10", tmp_path)


def test_n_test_keeps_a_stratified_deterministic_subset(digits):
    full = np.bincount(as_tensors(digits.test)[1].numpy())
    small = load_dataset("digits", seed=0, n_test=100)
    y = as_tensors(small.test)[1].numpy()
    assert len(y) == 100
    assert np.all(np.abs(np.bincount(y, minlength=10) - full * 100 / full.sum()) < 1 + 1e-9)
    assert set(small.info["indices"]["test"]) <= set(digits.info["indices"]["test"])
    again = load_dataset("digits", seed=0, n_test=100)
    assert torch.equal(as_tensors(again.test)[0], as_tensors(small.test)[0])
    assert len(load_dataset("digits", seed=0, n_test=10_000).test) == len(digits.test)
    with pytest.raises(RramlibError, match="n_test"):
        load_dataset("digits", n_test=0)
