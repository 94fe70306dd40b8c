import os
import signal
import subprocess
import sys
import textwrap

import pytest
import torch

from rramlib.core.cache import Cache, config_hash


def counting(value):
    calls = []

    def compute():
        calls.append(1)
        return value

    return compute, calls


def test_second_call_hits_the_cache(tmp_path):
    cache = Cache(tmp_path)
    compute, calls = counting({"accuracy": [0.5, 0.25], "w": torch.arange(3.0)})
    first = cache.get_or_compute("sweep", {"a": 1}, compute)
    second = cache.get_or_compute("sweep", {"a": 1}, compute)
    assert len(calls) == 1 and (cache.hits, cache.misses) == (1, 1)
    assert second["accuracy"] == [0.5, 0.25] and torch.equal(second["w"], first["w"])


def test_other_config_or_kind_is_another_entry(tmp_path):
    cache = Cache(tmp_path)
    compute, calls = counting([1])
    cache.get_or_compute("sweep", {"a": 1}, compute)
    cache.get_or_compute("sweep", {"a": 2}, compute)
    cache.get_or_compute("model", {"a": 1}, compute)
    assert len(calls) == 3


def test_config_hash_is_order_free_exact_and_versioned():
    assert config_hash({"a": 1, "b": [1.0, "x"]}) == config_hash({"b": (1.0, "x"), "a": 1})
    assert config_hash({"a": 0.1}) != config_hash({"a": 0.1 + 1e-16 * 2})
    assert config_hash({"a": 1}, version="1") != config_hash({"a": 1}, version="2")
    assert config_hash({"a": 1}) != config_hash({"a": 1.0})  # int and float differ on purpose
    with pytest.raises(TypeError):
        config_hash({"a": object()})


@pytest.mark.parametrize("damage", ["truncate", "flip", "empty", "garbage"])
def test_damaged_entry_is_recomputed(tmp_path, damage):
    cache = Cache(tmp_path)
    compute, calls = counting({"x": torch.ones(1000)})
    cache.get_or_compute("sweep", {"a": 1}, compute)
    path = cache.path("sweep", config_hash({"a": 1}))
    data = path.read_bytes()
    damaged = {
        "truncate": data[: len(data) // 2],
        "flip": data[:-10] + bytes([data[-10] ^ 0xFF]) + data[-9:],
        "empty": b"",
        "garbage": b"not a cache file",
    }[damage]
    path.write_bytes(damaged)
    result = cache.get_or_compute("sweep", {"a": 1}, compute)
    assert len(calls) == 2 and torch.equal(result["x"], torch.ones(1000))
    assert cache.load("sweep", config_hash({"a": 1})) is not None  # rewritten whole


def test_disabled_cache_always_computes(tmp_path):
    cache = Cache(None)
    compute, calls = counting(1)
    cache.get_or_compute("sweep", {"a": 1}, compute)
    cache.get_or_compute("sweep", {"a": 1}, compute)
    assert len(calls) == 2


def test_kill_during_write_leaves_no_readable_entry(tmp_path):
    """SIGKILL a writer between writing the payload and renaming it into place."""
    script = textwrap.dedent(f"""
        import os, sys, time, torch
        from rramlib.core.cache import Cache
        real_fsync = os.fsync
        def stall(fd):
            real_fsync(fd)
            print("written", flush=True)
            time.sleep(60)
        os.fsync = stall
        Cache({str(tmp_path)!r}).save("sweep", "k", {{"x": torch.ones(100_000)}})
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "written"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    cache = Cache(tmp_path)
    assert not cache.path("sweep", "k").exists()
    assert list((tmp_path / "sweep").glob(".k.*.tmp"))  # only the orphaned temporary file
    assert cache.load("sweep", "k") is None


def _package_copy(tmp_path):
    import shutil
    from pathlib import Path

    import rramlib

    root = tmp_path / "rramlib"
    shutil.copytree(Path(rramlib.__file__).parent, root, ignore=shutil.ignore_patterns("__pycache__"))
    return root


def test_source_digest_follows_every_source_edit(tmp_path):
    from rramlib.core.cache import source_digest

    root = _package_copy(tmp_path)
    before = source_digest(root)
    (root / "__pycache__").mkdir(exist_ok=True)
    (root / "__pycache__" / "x.py").write_text("ignored = 1\n")  # compiled/cached files do not count
    assert source_digest.__wrapped__(root) == before
    target = root / "drift" / "ibm_pcm.py"
    target.write_text(target.read_text() + "\n# an edit\n")
    after = source_digest.__wrapped__(root)
    assert after != before
    target.rename(root / "drift" / "ibm_pcm2.py")  # a renamed file is another package
    assert source_digest.__wrapped__(root) not in (before, after)


def test_source_digest_ignores_the_presentation_layer_only(tmp_path):
    from rramlib.core.cache import source_digest

    root = _package_copy(tmp_path)
    before = source_digest.__wrapped__(root)
    for path in (root / "book" / "present.py", root / "plotting.py"):  # restyling the book keeps the cache
        path.write_text(path.read_text() + "\n# restyled\n")
    assert source_digest.__wrapped__(root) == before
    target = root / "bookkeeping.py"  # a name that merely starts like the builder still counts
    target.write_text("x = 1\n")
    assert source_digest.__wrapped__(root) != before


def test_changed_sources_never_read_back_stale_results(tmp_path, monkeypatch):
    import rramlib.core.cache as cache_module

    cache = Cache(tmp_path)
    compute, calls = counting({"accuracy": 0.5})
    cache.get_or_compute("sweep", {"a": 1}, compute)
    cache.get_or_compute("sweep", {"a": 1}, compute)
    assert len(calls) == 1
    monkeypatch.setattr(cache_module, "source_digest", lambda: "another version of the code")
    cache.get_or_compute("sweep", {"a": 1}, compute)
    assert len(calls) == 2 and cache.misses == 2
    assert config_hash({"a": 1}, sources="x") != config_hash({"a": 1}, sources="y")


def test_temporary_environ_sets_unsets_and_restores(monkeypatch):
    import os

    from rramlib.core.files import temporary_environ

    monkeypatch.setenv("RRAMLIB_T_KEEP", "old")
    monkeypatch.setenv("RRAMLIB_T_DROP", "there")
    monkeypatch.delenv("RRAMLIB_T_NEW", raising=False)
    try:
        with temporary_environ({"RRAMLIB_T_KEEP": "new", "RRAMLIB_T_NEW": "1"}, remove=("RRAMLIB_T_DROP",)):
            assert (os.environ["RRAMLIB_T_KEEP"], os.environ["RRAMLIB_T_NEW"]) == ("new", "1")
            assert "RRAMLIB_T_DROP" not in os.environ
            raise KeyboardInterrupt  # restored on the way out of an interrupted block too
    except KeyboardInterrupt:
        pass
    assert (os.environ["RRAMLIB_T_KEEP"], os.environ["RRAMLIB_T_DROP"]) == ("old", "there")
    assert "RRAMLIB_T_NEW" not in os.environ


def test_module_closure_follows_relative_imports_only():
    from rramlib.core.cache import module_closure

    closure = module_closure(("train",))
    assert {"", "train", "data", "evaluate", "errors", "seeding"} <= set(closure)  # train -> data -> seeding ...
    assert not {m for m in closure if m.startswith(("compensation", "drift", "book"))}  # nothing it does not import
    assert "compensation.lora" in module_closure(("compensation",))  # a package brings the modules it imports
    with pytest.raises(ValueError, match="no module 'nonexistent'"):
        module_closure.__wrapped__(("nonexistent",))


def test_model_digest_follows_only_the_modules_training_depends_on(tmp_path):
    from rramlib.core.cache import source_digest
    from rramlib.study.experiments import MODEL_SOURCES

    root = _package_copy(tmp_path)
    before = source_digest.__wrapped__(root, MODEL_SOURCES)
    whole = source_digest.__wrapped__(root)
    drift = root / "drift" / "ibm_pcm.py"
    drift.write_text(drift.read_text() + "\n# an edit of a drift model\n")
    assert source_digest.__wrapped__(root, MODEL_SOURCES) == before  # the trained model stays valid
    assert source_digest.__wrapped__(root) != whole  # sweeps do not
    seeding = root / "seeding.py"  # imported by data.py: the training depends on it
    seeding.write_text(seeding.read_text() + "\n# an edit\n")
    assert source_digest.__wrapped__(root, MODEL_SOURCES) != before


def test_get_or_compute_keys_by_the_given_sources(tmp_path):
    cache = Cache(tmp_path)
    compute, calls = counting({"accuracy": 0.5})
    cache.get_or_compute("model", {"a": 1}, compute, sources="digest-1")
    cache.get_or_compute("model", {"a": 1}, compute, sources="digest-1")
    cache.get_or_compute("model", {"a": 1}, compute, sources="digest-2")
    assert len(calls) == 2
