import os
import shutil
from pathlib import Path
from typing import Callable

import pytest
import torch

from rramlib.core.cache import Cache

# Tests run on 2 cores; keep torch from oversubscribing them.
torch.set_num_threads(min(2, os.cpu_count() or 1))


@pytest.fixture
def cache_dir(tmp_path):
    return tmp_path / "cache"


@pytest.fixture(scope="session")
def smoke_model_root(tmp_path_factory) -> Path:
    """A cache folder holding the smoke profile's data splits and trained base model, trained once per test
    session. Read-only: tests take a copy of it (:func:`smoke_cache_in`, :func:`smoke_cache`)."""
    from rramlib.study.base_model import train_base_model
    from rramlib.study.profiles import get_profile

    root = tmp_path_factory.mktemp("smoke-model")
    train_base_model(get_profile("smoke"), cache=Cache(root), progress=False)
    return root


@pytest.fixture(scope="session")
def smoke_cache_in(smoke_model_root) -> Callable[[Path], Cache]:
    """``smoke_cache_in(folder)``: a cache in ``folder`` (new or empty) that already holds the smoke base model,
    so that a test (or a module-scoped fixture) neither trains it again nor sees what other tests stored."""
    def copy(folder: Path) -> Cache:
        shutil.copytree(smoke_model_root, folder, dirs_exist_ok=True)
        return Cache(folder)

    return copy


@pytest.fixture
def smoke_cache(smoke_cache_in, tmp_path) -> Cache:
    """This test's own cache (in ``tmp_path / "smoke-cache"``), holding the smoke base model and nothing else."""
    return smoke_cache_in(tmp_path / "smoke-cache")
