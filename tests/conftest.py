import os

import pytest
import torch

# Tests run on 2 cores; keep torch from oversubscribing them.
torch.set_num_threads(min(2, os.cpu_count() or 1))


@pytest.fixture
def cache_dir(tmp_path):
    return tmp_path / "cache"
