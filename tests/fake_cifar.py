"""Small fake CIFAR folders in torchvision's format, for the tests (no download, no real data)."""
import os
import pickle

import numpy as np
import pytest


@pytest.fixture
def files_checked_by_existence(monkeypatch):
    """torchvision checks the MD5 of the real CIFAR files; the small fake files only need to exist."""
    import torchvision.datasets.cifar

    monkeypatch.setattr(torchvision.datasets.cifar, "check_integrity", lambda path, md5=None: os.path.isfile(path))


def _write_batch(path, data: np.ndarray, labels: np.ndarray, key: str) -> None:
    """A batch as torchvision reads it (``pickle.load(encoding="latin1")`` gives str keys)."""
    with open(path, "wb") as f:
        pickle.dump({"data": data.reshape(len(data), -1), key: labels.tolist(), "batch_label": "fake"}, f)


def write_fake_cifar(root, kind: str, n_train: int = 200, n_test: int = 30, seed: int = 0):
    """Write a CIFAR folder (batches + meta) with random images under ``root``; return
    (root, x_train, y_train, x_test, y_test) with uint8 NCHW images."""
    rng = np.random.default_rng(seed)
    classes = 10 if kind == "cifar10" else 100
    x_tr = rng.integers(0, 256, (n_train, 3, 32, 32), dtype=np.uint8)
    y_tr = np.arange(n_train) % classes
    x_te = rng.integers(0, 256, (n_test, 3, 32, 32), dtype=np.uint8)
    y_te = rng.integers(0, classes, n_test)
    if kind == "cifar10":
        folder = root / "cifar-10-batches-py"
        folder.mkdir()
        for b, part in enumerate(np.array_split(np.arange(n_train), 5), start=1):
            _write_batch(folder / f"data_batch_{b}", x_tr[part], y_tr[part], "labels")
        _write_batch(folder / "test_batch", x_te, y_te, "labels")
        meta, names = folder / "batches.meta", {"label_names": [f"c{i}" for i in range(10)]}
    else:
        folder = root / "cifar-100-python"
        folder.mkdir()
        _write_batch(folder / "train", x_tr, y_tr, "fine_labels")
        _write_batch(folder / "test", x_te, y_te, "fine_labels")
        meta, names = folder / "meta", {"fine_label_names": [f"c{i}" for i in range(100)]}
    with open(meta, "wb") as f:
        pickle.dump(names, f)
    return root, x_tr, y_tr, x_te, y_te
