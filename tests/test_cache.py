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
    assert config_hash({"a": 1, "b": [1.0, "x"]}, "sweep") == config_hash({"b": (1.0, "x"), "a": 1}, "sweep")
    assert config_hash({"a": 0.1}, "sweep") != config_hash({"a": 0.1 + 1e-16 * 2}, "sweep")
    assert config_hash({"a": 1}, "sweep", version="1") != config_hash({"a": 1}, "sweep", version="2")
    assert config_hash({"a": 1}, "sweep") != config_hash({"a": 1.0}, "sweep")  # int and float differ on purpose
    with pytest.raises(TypeError):
        config_hash({"a": object()}, "sweep")


@pytest.mark.parametrize("damage", ["truncate", "flip", "empty", "garbage"])
def test_damaged_entry_is_recomputed(tmp_path, damage):
    cache = Cache(tmp_path)
    compute, calls = counting({"x": torch.ones(1000)})
    cache.get_or_compute("sweep", {"a": 1}, compute)
    path = cache.path("sweep", config_hash({"a": 1}, "sweep"))
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
    assert cache.load("sweep", config_hash({"a": 1}, "sweep")) is not None  # rewritten whole


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


def _keys(root, kinds=None) -> dict[str, str]:
    """Each kind's key (default: every kind's) of one configuration, for the package at ``root`` as it is now."""
    from rramlib.core.cache import KINDS, module_closure, source_digest

    module_closure.cache_clear()
    source_digest.cache_clear()
    return {kind: config_hash({"a": 1}, kind, root=root) for kind in kinds or KINDS}


def _edit(root, *relative: str) -> None:
    for rel in relative:
        path = root / rel
        path.write_text(path.read_text() + "\n# an edit\n")


def test_source_digest_follows_file_contents_by_module_name(tmp_path):
    import shutil

    from rramlib.core.cache import source_digest

    root = _package_copy(tmp_path)
    before = source_digest(("nn.train",), root)
    (root / "nn" / "__pycache__").mkdir(exist_ok=True)
    (root / "nn" / "__pycache__" / "train.py").write_text("ignored = 1\n")  # compiled/cached files do not count
    assert source_digest.__wrapped__(("nn.train",), root) == before
    _edit(root, "nn/train.py")
    after = source_digest.__wrapped__(("nn.train",), root)
    assert after != before
    _edit(root, "nn/__init__.py")  # importing rramlib.nn.train runs rramlib/nn/__init__.py first
    assert source_digest.__wrapped__(("nn.train",), root) not in (before, after)
    other = shutil.copytree(root, tmp_path / "elsewhere" / "rramlib")  # the same code at another path
    assert source_digest.__wrapped__(("nn.train",), other) == source_digest.__wrapped__(("nn.train",), root)


def test_presentation_only_edits_keep_every_kind_of_entry(tmp_path):
    """Editing the notebook helpers, the figures, the report, the claims, the record's display or the book
    computes nothing cached: no kind's key changes (the reviewer's case: a trained fit survives them)."""
    root = _package_copy(tmp_path)
    before = _keys(root)
    book = [str(p.relative_to(root)) for p in (root / "book").glob("*.py")]
    _edit(root, "present/notebook.py", "present/plotting.py", "present/report.py", "study/claims.py",
          "study/recorded.py", "study/analysis.py", "cli/main.py", *book)
    (root / "study" / "new_chapter_helper.py").write_text("x = 1\n")  # a module nothing that computes imports
    assert _keys(root) == before


def test_model_key_follows_the_code_from_network_to_last_optimiser_step(tmp_path):
    root = _package_copy(tmp_path)
    before = _keys(root)
    _edit(root, "device/drift/ibm_pcm.py")  # a drift model: sweeps and fits change, the trained model stays
    after = _keys(root)
    assert after["model"] == before["model"] and after["data"] == before["data"]
    assert all(after[k] != before[k] for k in ("fit", "fit_level", "sweep", "tuning", "hfn"))
    _edit(root, "device/drift/neurram_wan2022.csv")  # a package's data file belongs to its code
    assert _keys(root, ("sweep",))["sweep"] != after["sweep"]
    for rel in ("nn/train.py", "study/base_model.py", "nn/models.py", "core/seeding.py"):
        # the training call, the model's seed handling, the network, the data's seeds
        previous = _keys(root, ("model", "sweep"))
        _edit(root, rel)
        now = _keys(root, ("model", "sweep"))
        assert now["model"] != previous["model"] and now["sweep"] != previous["sweep"], rel


def test_every_key_follows_the_torch_version_threads_and_instruction_cap(monkeypatch):
    from rramlib.core.cache import KINDS

    before = {kind: config_hash({"a": 1}, kind) for kind in KINDS}
    monkeypatch.setattr(torch, "__version__", "0.0.0+another")
    assert all(config_hash({"a": 1}, kind) != before[kind] for kind in KINDS)
    monkeypatch.undo()
    assert {kind: config_hash({"a": 1}, kind) for kind in KINDS} == before
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(threads + 1)
        assert config_hash({"a": 1}, "model") != before["model"]
    finally:
        torch.set_num_threads(threads)
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "SSE41")  # another instruction cap
    assert config_hash({"a": 1}, "model") != before["model"]


def test_instruction_variables_are_the_ones_the_book_builder_caps():
    from rramlib.book.builder import AVX2_CAP
    from rramlib.core.numerics import INSTRUCTION_VARIABLES

    assert set(AVX2_CAP) == set(INSTRUCTION_VARIABLES)


def test_an_unknown_kind_is_refused(tmp_path):
    from rramlib.core.errors import RramlibError

    with pytest.raises(RramlibError, match="unknown cache kind 'sweeps'"):
        Cache(tmp_path).get_or_compute("sweeps", {"a": 1}, lambda: 1)
    assert not list(tmp_path.iterdir())


def test_every_kind_is_keyed_by_the_module_that_computes_it():
    """Each literal kind passed to get_or_compute / config_hash in the package is registered; the module storing an
    entry (get_or_compute) lies in the closure that keys the kind, and a module computing a kind's key
    (config_hash) lies in it or imports the module that computes the kind (it reproduces that module's key, as
    the record does to check a shipped model)."""
    import ast

    from rramlib.core.cache import KINDS, PACKAGE_DIR, module_closure

    calls = {}
    for path in PACKAGE_DIR.rglob("*.py"):
        module = ".".join(path.relative_to(PACKAGE_DIR).with_suffix("").parts)
        for node in ast.walk(ast.parse(path.read_bytes())):
            if not isinstance(node, ast.Call):
                continue
            name = getattr(node.func, "attr", getattr(node.func, "id", None))
            position = {"get_or_compute": 0, "config_hash": 1}.get(name)
            if position is not None and len(node.args) > position and isinstance(node.args[position], ast.Constant):
                calls.setdefault(node.args[position].value, set()).add((module, name))
    assert {"data", "model", "fit", "fit_level", "sweep", "tuning", "hfn"} <= set(calls)
    for kind, made in calls.items():
        assert kind in KINDS
        closure = set(module_closure(KINDS[kind]))
        for module, name in made:
            assert module in closure or (name == "config_hash" and set(KINDS[kind]) <= set(
                module_closure((module,)))), (kind, module, name)


def test_changed_sources_never_read_back_stale_results(tmp_path, monkeypatch):
    import rramlib.core.cache as cache_module

    cache = Cache(tmp_path)
    compute, calls = counting({"accuracy": 0.5})
    cache.get_or_compute("sweep", {"a": 1}, compute)
    cache.get_or_compute("sweep", {"a": 1}, compute)
    assert len(calls) == 1
    monkeypatch.setattr(cache_module, "source_digest", lambda modules, root: "another version of the code")
    cache.get_or_compute("sweep", {"a": 1}, compute)
    assert len(calls) == 2 and cache.misses == 2


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


def test_module_closure_follows_imports_and_the_packages_above_them():
    from rramlib.core.cache import module_closure

    closure = module_closure(("nn.train",))
    assert {"", "nn", "core", "nn.train", "nn.data", "core.errors", "core.seeding"} <= set(closure)  # train -> data -> seeding
    assert not {m for m in closure if m.startswith(("methods", "device", "book", "study", "present"))}
    assert "methods.compensation.lora" in module_closure(("methods.compensation",))  # a package brings its imports
    assert "study.experiments" in module_closure(("study.cluster",))  # imports inside functions run too
    with pytest.raises(ValueError, match="no module 'nonexistent'"):
        module_closure.__wrapped__(("nonexistent",))


def test_the_model_is_keyed_by_data_network_training_and_nothing_else():
    """The base model's code: its own module, the data, the network, the training and the core helpers; the
    profiles it reads (a type only, under TYPE_CHECKING), the methods, the device, the sweeps are not."""
    from rramlib.core.cache import KINDS, module_closure

    closure = set(module_closure(KINDS["model"]))
    assert {"study.base_model", "nn.data", "nn.models", "nn.train", "nn.evaluate"} <= closure
    assert {m.split(".")[0] for m in closure} == {"", "core", "nn", "study"}
    assert closure & {m for m in closure if m.startswith("study.")} == {"study.base_model"}


def test_a_type_checking_import_does_not_count(tmp_path):
    from rramlib.core.cache import module_closure

    root = _package_copy(tmp_path)
    (root / "core" / "typed.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
                                            "    from rramlib.study.profiles import Profile\nelse:\n"
                                            "    from rramlib.core import times\n")
    assert set(module_closure(("core.typed",), root)) == {"core.typed", *module_closure(("core.times",), root)}
