"""Recorded study-scale results: a finished book build at one profile, committed with its provenance, and
shown beside the default (quick) book's numbers, marked stale when the code no longer matches it.

``rramlib record --profile cifar`` (or :func:`record`) copies the results files the notebooks wrote
(``results/<notebook>.json``: numbers, tables, runtime and peak memory; not the figures) of every chapter the book
runs at the profile's own scale (:func:`rramlib.study.scope.scoped_chapters`) into ``recorded/<profile>/`` at the
repository root, with the trained base model of every base seed of the profile (:data:`SHIPPED_CACHE`) and
``provenance.json``: the commands, git commit, date, the configuration of every profile the chapters ran at, the
data source (file-list hash), the libraries and CPU, each notebook's wall time and peak memory in the execution
that computed its results, every shipped base model's cache key, seed, numeric environment, epochs, wall time and
accuracy, and the identity of the code that computed them.

**Record once.** A record is written whole into a private folder beside ``recorded/<profile>`` and then put in its
place (two renames): nothing of the previous record -- results files, shipped models -- survives in the new one.
Nor does a number of the previous record enter the new one through the notebooks: a kernel of a book built at
profile P (:data:`BOOK_PROFILE_ENV`) finds no record of P (:func:`load` returns :meth:`Recorded.itself`), and the
build keys of that book do not depend on that record (:func:`recorded_inputs`), so recording changes nothing a
second ``make record`` would execute again.

**Stale** (:meth:`Recorded.reasons`): a recorded result no longer matches the code when any of these
differs from what was recorded --

* the code that computed it (:func:`code_files`): the import closures (:func:`rramlib.core.cache.module_closure`)
  of the modules that compute every kind of cached result (:data:`rramlib.core.cache.KINDS`: the trained model,
  the fits, the sweeps ...) and of the package modules the recorded notebooks import, except those that show
  results: the layers above the study (:data:`SHOWING_LAYERS`) and the modules that read a record (this one
  and every module that imports it, e.g. the claims table);
* the code cells of the notebook that produced the number (markdown prose does not count);
* any field of the configuration of a profile the recorded chapters ran at (:func:`profile_config`);
* a recorded file's SHA-256 against the one in ``provenance.json`` (a hand-edited or half-written record).

The reasons name the changed modules, notebooks and fields. The data are not part of the verdict (they are
not on every machine); their file-list hash is provenance. A record that cannot be read -- a file that is not
JSON or not there, a provenance of another shape -- is never an exception in the book: :func:`load` returns it
with the reason, naming the file (:attr:`Recorded.unreadable`), and every place that shows the record says it.
"""
from __future__ import annotations

import contextlib
import dataclasses
import datetime
import hashlib
import importlib.metadata
import json
import os
import shutil
import statistics
import subprocess
import uuid
from collections.abc import Mapping
from pathlib import Path

from rramlib.core.errors import RramlibError
from rramlib import __version__
from rramlib.core.cache import KINDS, imported_modules, module_closure
from rramlib.core.cache import code_files as module_files
from rramlib.core.files import atomic_write, temporary_environ
from rramlib.study.profiles import PROFILES, Profile, get_profile
from rramlib.study.scope import chapter_profile, scoped_chapters

__all__ = ["BOOK_PROFILE_ENV", "LIBRARIES", "RECORDED_DIR", "SHOWING_LAYERS", "SHIPPED_CACHE", "STUDY_PROFILE",
           "Recorded", "Restored", "book_cache_dir", "code_files", "cpu_facts", "cpu_text", "kernel_numerics",
           "library_versions", "load", "model_identity", "notebook_code_digest", "profile_config", "record",
           "recorded_inputs", "regenerate_command", "restore_models"]

PACKAGE_DIR = Path(__file__).resolve().parents[1]
REPO_ROOT = PACKAGE_DIR.parent
NOTEBOOK_DIR = REPO_ROOT / "notebooks"
#: Where recorded builds live, one folder per profile (committed with the repository).
RECORDED_DIR = REPO_ROOT / "recorded"
#: The profile whose recorded build the default book shows.
STUDY_PROFILE = "cifar"
#: The layers of the package above the study (tests/test_layers.py: no computation imports them):
#: they show results; a notebook's imports from them do not enter a record's code.
SHOWING_LAYERS = ("present", "book", "cli")
#: This module, by its name in the package: a module that imports it reads records, it did not compute them.
_READER = __name__.split(".", 1)[1]
#: How many changed modules a staleness reason names (then a count).
_NAMED = 10
PROVENANCE = "provenance.json"
#: The folder of results-cache entries a record ships (``recorded/<profile>/cache/<kind>/<key>.pt``, the layout of
#: :class:`rramlib.core.cache.Cache`): the base model of every base seed, trained with the record's code,
#: configuration and data, so that a rebuild starts from them instead of training ResNet-20 again (the longest
#: step of a cold study-scale build).
SHIPPED_CACHE = "cache"
#: The environment variable the book builder sets in every kernel: the profile of the book being built. A kernel
#: of the book at profile P is part of the build that a record of P records, so it never shows that record.
BOOK_PROFILE_ENV = "RRAMLIB_BOOK_PROFILE"
#: The libraries whose versions a record names (those installed): the numeric ones and what reads, tabulates and
#: draws the data (our choice: everything a notebook's numbers pass through besides Python and rramlib).
LIBRARIES = ("torch", "numpy", "scipy", "pandas", "matplotlib", "torchvision", "pillow", "transformers")
FORMAT = 1
#: The provenance entries :class:`Recorded` reads; a provenance without one of them is unreadable.
_REQUIRED = {"profile_config": dict, "code": dict, "notebooks": dict, "date": str, "regenerate": str}


# ---------------------------------------------------------------------------------------- identities
def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _computes(module: str, package_dir: Path) -> bool:
    """Whether a package module a notebook imports computes what the notebook records (see :func:`code_files`)."""
    return module.split(".")[0] not in SHOWING_LAYERS and _READER not in module_closure((module,), package_dir)


def _dotted(module: str) -> str:
    """A package-relative module name as Python spells it (``""`` is the package itself)."""
    return f"rramlib.{module}" if module else "rramlib"


def _changed_modules(then: Mapping[str, str], now: Mapping[str, str]) -> str | None:
    """``"code changed: rramlib.x, rramlib.y (new) ..."`` between two :func:`code_files` maps; None if equal."""
    changed = [_dotted(f) for f in sorted(then.keys() & now.keys()) if then[f] != now[f]]
    changed += [f"{_dotted(f)} (new)" for f in sorted(now.keys() - then.keys())]
    changed += [f"{_dotted(f)} (removed)" for f in sorted(then.keys() - now.keys())]
    if not changed:
        return None
    more = f" and {len(changed) - _NAMED} more" if len(changed) > _NAMED else ""
    return "code changed: " + ", ".join(changed[:_NAMED]) + more


def code_files(package_dir: str | os.PathLike = PACKAGE_DIR, notebooks=()) -> dict[str, str]:
    """SHA-256 of every package file whose code computes a record's results, by dotted module name
    (:func:`rramlib.core.cache.code_files`): the closures of the modules of every cache kind
    (:data:`rramlib.core.cache.KINDS`) and of the package modules the code cells of ``notebooks`` (paths)
    import, less those that only show results (:data:`SHOWING_LAYERS`, and the readers of records)."""
    package_dir = Path(package_dir)
    modules = {m for computed_by in KINDS.values() for m in computed_by}
    for path in notebooks:
        for cell in json.loads(Path(path).read_text(encoding="utf-8"))["cells"]:
            if cell["cell_type"] == "code":
                source = cell["source"]
                try:
                    imported = imported_modules("".join(source) if isinstance(source, list) else source, package_dir)
                except SyntaxError as exc:
                    raise RramlibError(f"cannot read the imports of notebook {str(path)!r}: {exc}") from None
                modules |= {m for m in imported if _computes(m, package_dir)}
    return module_files(tuple(sorted(modules)), package_dir)


def notebook_code_digest(path: str | os.PathLike) -> str:
    """SHA-256 of a notebook's code cells (their sources, in order); prose and outputs do not count."""
    cells = json.loads(Path(path).read_text(encoding="utf-8"))["cells"]
    digest = hashlib.sha256()
    for cell in cells:
        if cell["cell_type"] == "code":
            source = cell["source"]
            data = ("".join(source) if isinstance(source, list) else source).encode()
            digest.update(len(data).to_bytes(8, "little") + data)
    return digest.hexdigest()


def _plain(value):
    """``value`` as JSON gives it back (tuples become lists): so that a recorded value compares with a fresh one."""
    return json.loads(json.dumps(value, default=str))


def profile_config(profile: str) -> dict:
    """The profile's full configuration (:class:`rramlib.study.profiles.Profile`, nested) as plain JSON values."""
    return _plain(dataclasses.asdict(get_profile(profile)))


def _flat(config: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in config.items():
        if isinstance(value, dict) and value:
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def _changed_fields(then: dict, now: dict) -> str | None:
    """``"a.b 1 -> 2, c 'x' -> '-'"``: the fields of two nested configurations that differ; None if none."""
    then, now = _flat(then), _flat(now)
    fields = sorted(k for k in then.keys() | now.keys() if then.get(k, "-") != now.get(k, "-"))
    return ", ".join(f"{k} {then.get(k, '-')!r} -> {now.get(k, '-')!r}" for k in fields) or None


def _git(*args: str) -> str | None:
    try:
        out = subprocess.run(["git", *args], cwd=REPO_ROOT, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def regenerate_command(profile: str) -> str:
    """The command that rebuilds the book at ``profile`` and records it again."""
    data = " DATA_ROOT=DIR" if profile_config(profile)["dataset"] != "digits" else ""
    return f"make record PROFILE={profile}{data}"


def book_cache_dir() -> Path:
    """The results cache the book's kernels share: ``$RRAMLIB_CACHE``, else ``.rramlib_cache`` in the repository."""
    return Path(os.environ.get("RRAMLIB_CACHE") or REPO_ROOT / ".rramlib_cache").resolve()


def library_versions() -> dict[str, str]:
    """The installed versions of :data:`LIBRARIES` (those not installed are left out; nothing is imported)."""
    versions = {}
    for name in LIBRARIES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            pass
    return versions


def cpu_facts() -> dict:
    """What of this CPU changes torch's numbers or speed: the widest vector instructions ATen uses
    (``torch.backends.cpu.get_cpu_capability()``) and whether it computes bfloat16 natively
    (:func:`rramlib.nn.train.cpu_has_bf16`: the x86 flags ``avx512_bf16`` or ``amx_bf16``)."""
    import torch

    from rramlib.nn.train import cpu_has_bf16

    return {"aten_capability": torch.backends.cpu.get_cpu_capability(), "native_bf16": cpu_has_bf16()}


@contextlib.contextmanager
def kernel_numerics(environment: Mapping[str, str] | None = None):
    """Inside the block, this process's numeric environment (:func:`rramlib.core.numerics.numeric_environment`) is
    that of a notebook kernel started with ``environment`` (the book builder's
    :func:`~rramlib.book.builder.numeric_environment` of its profile): those variables set and, where they name
    ``OMP_NUM_THREADS``, torch's thread count; both restored after."""
    import torch

    environment = dict(environment or {})
    threads = torch.get_num_threads()
    with temporary_environ(environment):
        try:
            if "OMP_NUM_THREADS" in environment:
                torch.set_num_threads(int(environment["OMP_NUM_THREADS"]))
            yield
        finally:
            torch.set_num_threads(threads)


def model_identity(profile: Profile, data_source: Mapping | None, *, package_dir: str | os.PathLike = PACKAGE_DIR,
                   environment: Mapping[str, str] | None = None) -> dict:
    """What the cache key of ``profile``'s trained base model (:func:`rramlib.study.base_model.model_key`) is made
    of, and the key: ``{"key", "config", "version", "code", "numerics"}`` -- the model's configuration
    (:func:`~rramlib.study.base_model.model_config`, with ``data_source`` standing for the loaded data's
    ``info["source"]``, which is all it reads of them), the package version, the code of its closure (by module)
    and the numeric environment of a kernel started with ``environment`` (:func:`kernel_numerics`)."""
    from types import SimpleNamespace

    from rramlib.core.cache import config_hash
    from rramlib.core.numerics import numeric_environment
    from rramlib.study.base_model import model_config

    config = model_config(profile, SimpleNamespace(info={"source": dict(data_source or {})}))
    with kernel_numerics(environment):
        key = config_hash(config, "model", root=package_dir)
        numerics = numeric_environment()
    return {"key": key, "config": _plain(config), "version": __version__,
            "code": module_files(KINDS["model"], package_dir), "numerics": _plain(numerics)}


def _model_changes(then: dict, now: dict) -> list[str]:
    """Why the key of a base model recorded with identity ``then`` differs from ``now`` (:func:`model_identity`)."""
    then = {k: then.get(k) or ({} if k != "version" else "?") for k in ("version", "code", "config", "numerics")}
    found = [] if then["version"] == now["version"] else [f"rramlib {then['version']} -> {now['version']}"]
    found += [c for c in (_changed_modules(then["code"], now["code"]),) if c]
    fields = _changed_fields(then["config"], now["config"])
    found += [f"configuration changed: {fields}"] if fields else []
    a, b = then["numerics"], now["numerics"]
    found += [f"torch {a.get('torch')} -> {b.get('torch')}"] if a.get("torch") != b.get("torch") else []
    found += [f"{a.get('threads')} -> {b.get('threads')} torch threads"] if a.get("threads") != b.get("threads") else []
    if a.get("instructions") != b.get("instructions"):
        cap = lambda d: ", ".join(f"{k}={v}" for k, v in sorted((d or {}).items())) or "none"  # noqa: E731
        found.append(f"instruction cap {cap(a.get('instructions'))} -> {cap(b.get('instructions'))}")
    return found or ["its key differs for a reason not named here"]


def _shown(folder: Path, name: str) -> str:
    """A recorded file as the book names it: ``recorded/cifar/03_comparison.json`` (never an absolute path)."""
    return f"{folder.parent.name}/{folder.name}/{name}"


# ---------------------------------------------------------------------------------------- recording
def _data_source(results: Mapping[str, dict], dataset: str) -> dict:
    """The data source the notebooks named for ``dataset`` (:meth:`rramlib.present.report.Report.data_source`),
    else the one source they named without a dataset, else ``{}``."""
    sources = [s for r in results.values() for s in r.get("data_sources", []) if isinstance(s, dict)]
    named = [s for s in sources if s.get("dataset") == dataset]
    unnamed = {json.dumps(s, sort_keys=True) for s in sources if "dataset" not in s}
    if named:
        return named[0]
    return json.loads(unnamed.pop()) if len(unnamed) == 1 else {}


def _base_models(profile: str, results: Mapping[str, dict], cache_dir: Path,
                 environment: Mapping[str, str]) -> list[tuple[dict, bytes]]:
    """The trained base model of every base seed of ``profile`` in the results cache, as ``(provenance entry,
    file bytes)``; a RramlibError naming the missing ones."""
    from rramlib.core.cache import Cache

    prof = get_profile(profile)
    source = _data_source(results, prof.dataset)
    cache, found, missing = Cache(cache_dir), [], []
    for seed in prof.base_seeds:
        identity = model_identity(prof.with_base_seed(seed), source, environment=environment)
        entry = cache.load("model", identity["key"])  # checksum verified
        if entry is None:
            missing.append(f"{seed} (key {identity['key'][:12]})")
            continue
        history = entry.get("history", {})
        file = f"{SHIPPED_CACHE}/model/{identity['key']}.pt"
        data = cache.path("model", identity["key"]).read_bytes()
        found.append(({"base_seed": seed, "file": file, "sha256": _sha256(data), "data_source": source,
                       "precision": prof.train.precision, **identity,
                       "epochs": len(history.get("train_loss", [])), "wall_s": history.get("wall_seconds"),
                       "wall_s_all_calls": "epoch_seconds" in history,
                       "epoch_s_median": statistics.median(history["epoch_seconds"])
                       if history.get("epoch_seconds") else None,
                       "val_accuracy": (history.get("val_accuracy") or [None])[-1]}, data))
    if missing:
        raise RramlibError(f"the results cache {str(cache_dir)!r} holds no trained base model of profile {profile!r} "
                           f"for base seed {', '.join(missing)}: build the book at {profile} first (it trains them), "
                           f"or train them: rramlib train --profile {profile} --base-seed SEED")
    return found


def _replace(staging: Path, dest: Path) -> None:
    """Put the finished folder ``staging`` in the place of ``dest`` (two renames), then delete the old one."""
    old = None
    if dest.exists():
        old = dest.with_name(f".{dest.name}.old-{uuid.uuid4().hex[:12]}")
        os.rename(dest, old)
    os.rename(staging, dest)
    if old is not None:
        shutil.rmtree(old)


def record(profile: str, results_dir: str | os.PathLike, dest: str | os.PathLike | None = None, *,
           command: str | None = None, notebooks_dir: str | os.PathLike | None = None,
           cache_dir: str | os.PathLike | None = None, base_models: bool = True) -> Path:
    """Record a finished build: its results files, base models and ``provenance.json`` replace the content of
    ``dest`` (default ``recorded/<profile>``); returns the provenance path.

    Every notebook of ``notebooks_dir`` that the book runs at the profile's own scale
    (:func:`rramlib.study.scope.scoped_chapters`; the others run at the fallback profile and are not recorded)
    must have its results file in ``results_dir``, written at its chapter's profile; with ``base_models``, the
    results cache ``cache_dir`` (default :func:`book_cache_dir`) must hold the trained base model of every base
    seed of the profile, under the key the build's kernels computed (their numeric environment is in the
    builder's ``build_times.json``). Otherwise :class:`~rramlib.core.errors.RramlibError`, before anything is
    written. The record is written whole into a new folder that then takes the place of ``dest``, so nothing of
    an earlier record survives in it.
    """
    if profile not in PROFILES:
        raise RramlibError(f"unknown profile {profile!r}; known: {sorted(PROFILES)}")
    results_dir = Path(results_dir)
    notebooks_dir = Path(notebooks_dir) if notebooks_dir is not None else NOTEBOOK_DIR
    dest = Path(dest) if dest is not None else RECORDED_DIR / profile
    notebooks = scoped_chapters(profile, [p.stem for p in notebooks_dir.glob("[0-9][0-9]_*.ipynb")])
    missing = [n for n in notebooks if not (results_dir / f"{n}.json").is_file()]
    if not notebooks or missing:
        raise RramlibError(f"{str(results_dir)!r} is not a finished build: no results for "
                           f"{', '.join(missing) or 'any notebook'}; build it first (rramlib book --profile {profile})")
    raw = {n: (results_dir / f"{n}.json").read_bytes() for n in notebooks}
    results = {n: json.loads(data) for n, data in raw.items()}
    other = sorted(f"{n} (at {r.get('params', {}).get('profile')!r})" for n, r in results.items()
                   if r.get("params", {}).get("profile") != chapter_profile(profile, n))
    if other:
        raise RramlibError(f"results of {', '.join(other)} in {str(results_dir)!r} were not made at profile "
                           f"{profile!r} (their chapters' profiles in a book at {profile})")
    build = {}
    if (results_dir / "build_times.json").is_file():
        build = json.loads((results_dir / "build_times.json").read_text())
    times = build.get("notebooks", {})
    environment = build.get("kernel_numerics", {}).get(profile, {})
    shipped = _base_models(profile, results, Path(cache_dir) if cache_dir else book_cache_dir(),
                           environment) if base_models else []
    sources = {json.dumps(s, sort_keys=True) for r in results.values() for s in r.get("data_sources", [])}
    chapters = {n: chapter_profile(profile, n) for n in notebooks}
    provenance = {
        "format": FORMAT, "profile": profile, "profile_config": profile_config(profile),
        "profile_configs": {p: profile_config(p) for p in sorted(set(chapters.values()))},
        "command": command or f"rramlib book --profile {profile}", "regenerate": regenerate_command(profile),
        "git_commit": _git("rev-parse", "HEAD"),
        "git_dirty": bool(_git("status", "--porcelain", "--", "rramlib", "notebooks")),
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "rramlib_version": __version__, "libraries": library_versions(), "cpu": cpu_facts(),
        "data_sources": [json.loads(s) for s in sorted(sources)],
        "code": {"files": code_files(notebooks=[notebooks_dir / f"{n}.ipynb" for n in notebooks])},
        "notebooks": {n: {"results_sha256": _sha256(raw[n]), "code_sha256": notebook_code_digest(
            notebooks_dir / f"{n}.ipynb"), "profile": chapters[n], "runtime_s": r.get("runtime_s"),
            "cpu_s": r.get("cpu_s"), "peak_rss_mb": r.get("peak_rss_mb"),
            "builder_wall_s": (times.get(n) or {}).get("executed_seconds"),
            "params": r.get("params", {}), "git_commit": r.get("git_commit")} for n, r in results.items()},
        "build": _first_executions(profile, results_dir, times, build.get("jobs")),
        "base_model_precision": get_profile(profile).train.precision,
        "base_models": [entry for entry, _ in shipped],
        "machine": next(iter(results.values())).get("machine"),
    }
    provenance["total_runtime_s"] = sum(v["runtime_s"] or 0.0 for v in provenance["notebooks"].values())
    provenance["peak_rss_mb_max"] = max(v["peak_rss_mb"] or 0.0 for v in provenance["notebooks"].values())
    staging = dest.with_name(f".{dest.name}.new-{uuid.uuid4().hex[:12]}")
    try:
        for n, data in raw.items():
            atomic_write(staging / f"{n}.json", data)
        for entry, data in shipped:
            atomic_write(staging / entry["file"], data)
        atomic_write(staging / PROVENANCE, json.dumps(provenance, indent=1, sort_keys=True) + "\n")
        _replace(staging, dest)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return dest / PROVENANCE


def _first_executions(profile: str, results_dir: Path, times: Mapping[str, dict], jobs) -> dict:
    """Every notebook of the build (recorded or not) in the execution that computed its results -- which a
    recording run that found it cached did not repeat: the builder's wall time of that execution (kernel start
    included), with that of the earlier executions that did not finish (``unfinished_runs`` of them: a
    study-scale chapter can span sessions), and the finishing kernel's CPU time and peak memory from the results
    file (``Report.finish``)."""
    notebooks = {}
    for name, entry in times.items():
        try:
            res = json.loads((results_dir / f"{name}.json").read_text())
        except (OSError, ValueError):
            res = {}
        notebooks[name] = {"profile": chapter_profile(profile, name), "wall_s": entry.get("executed_seconds"),
                           "cpu_s": res.get("cpu_s"), "peak_rss_mb": res.get("peak_rss_mb"),
                           "unfinished_runs": entry.get("unfinished_runs", 0),
                           "cached_in_recording_run": bool(entry.get("cached"))}
    return {"jobs": jobs, "notebooks": notebooks}


@dataclasses.dataclass
class Restored:
    """What :func:`restore_models` did: the entries it copied, and one line per shipped model it could not use."""

    copied: list[Path]
    notes: list[str]

    def lines(self, profile: str) -> list[str]:
        """What a build or a training prints about it: one line for the copied files, if any, then one per note."""
        copied = []
        if self.copied:
            files = "1 file" if len(self.copied) == 1 else f"{len(self.copied)} files"
            copied = [f"results cache: {files} shipped with recorded/{profile}/ copied in (the record's trained base "
                      "models, or the training checkpoints of unfinished ones)"]
        return copied + [f"note: {note}" for note in self.notes]


def restore_models(profile: str, cache_dir: str | os.PathLike, folder: str | os.PathLike | None = None, *,
                   environment: Mapping[str, str] | None = None,
                   package_dir: str | os.PathLike = PACKAGE_DIR) -> Restored:
    """Copy the base models the record of ``profile`` ships (:data:`SHIPPED_CACHE`) into the results cache
    ``cache_dir`` where absent, after checking that the build will read them.

    An entry's name is its cache key; the build reads it only where the key it computes is the same. For every
    shipped model the provenance describes, the key is computed again (:func:`model_identity`) from this
    checkout's code and profile and the numeric environment of the build's kernels (``environment``, the
    builder's ``numeric_environment(profile)``), with the recorded data source (the data folder itself is
    not checked here). A model whose key differs is not copied, and :attr:`Restored.notes` says why in one line
    (code changed, configuration, torch version, thread count, instruction cap): the build then trains that
    seed anew. So does a shipped file that is missing or differs from its provenance, a model of a seed the
    profile no longer has, or an entry the provenance does not describe (copied unchecked: a damaged one fails
    its checksum on reading and is trained again). To train from scratch, delete the record's ``cache/`` folder
    (or the copied entry) before building.

    A base model whose training has not finished may travel beside them as its training checkpoint
    (``model/<key>.ckpt``, :func:`rramlib.study.base_model.checkpoint_path`): it is copied where the cache holds
    neither that model nor a checkpoint of it, so that the training resumes after the checkpoint's last finished
    epoch on another machine (a checkpoint written for another configuration is ignored by the training). A
    record replaces the whole folder, so the checkpoints never outlive the next record.
    """
    folder = Path(folder) if folder is not None else RECORDED_DIR / profile
    shipped = folder / SHIPPED_CACHE
    entries = sorted(shipped.glob("*/*.pt")) if shipped.is_dir() else []
    checkpoints = sorted(shipped.glob("model/*.ckpt")) if shipped.is_dir() else []
    rec = load(profile, folder, book_profile="")
    if not entries and not checkpoints and not rec.exists:
        return Restored([], [])
    models = (rec.provenance or {}).get("base_models")
    described = {m.get("file"): m for m in (models if isinstance(models, list) else []) if isinstance(m, dict)}
    seeds = get_profile(profile).base_seeds
    usable, notes = [], [f"{problem}: its shipped models are copied unchecked" for problem in rec.unreadable
                         if not rec.exists]
    for file, model in sorted(described.items(), key=lambda item: (str(item[1].get("base_seed")), str(item[0]))):
        path, seed = folder / str(file), model.get("base_seed")
        what = f"the shipped base model of base seed {seed} ({_shown(folder, str(file))})"
        if not path.is_file():
            notes.append(f"{what} is missing: the build trains base seed {seed}")
        elif _sha256(path.read_bytes()) != model.get("sha256"):
            notes.append(f"{what} differs from its provenance: not copied; the build trains base seed {seed}")
        elif seed not in seeds:
            notes.append(f"{what} is not one of profile {profile}'s base seeds {seeds}: not copied")
        else:
            data = model.get("data_source")
            now = model_identity(get_profile(profile).with_base_seed(seed), data if isinstance(data, dict) else {},
                                 package_dir=package_dir, environment=environment)
            if now["key"] == model.get("key"):
                usable.append(path)
            else:
                notes.append(f"{what} would not be read: {'; '.join(_model_changes(model, now))}; the build trains "
                             f"base seed {seed} anew")
    for path in entries:
        if path.relative_to(folder).as_posix() not in described:
            if rec.exists:
                notes.append(f"{_shown(folder, path.relative_to(folder).as_posix())} is not described by its "
                             f"provenance: copied unchecked")
            usable.append(path)
    copied = []
    for path in usable:
        target = Path(cache_dir) / path.relative_to(shipped)
        if not target.exists():
            copied.append(atomic_write(target, path.read_bytes()))
    for path in checkpoints:
        target = Path(cache_dir) / path.relative_to(shipped)
        if not target.exists() and not target.with_suffix(".pt").exists():
            copied.append(atomic_write(target, path.read_bytes()))
    return Restored(copied, notes)


# ---------------------------------------------------------------------------------------- reading
@dataclasses.dataclass
class Recorded:
    """A recorded build as the book shows it: its provenance, its results by notebook, and whether it is stale.

    ``provenance`` is ``None`` when nothing is recorded for ``profile``, when the provenance cannot be read
    (``unreadable`` says why, naming the file) and in a kernel of the book that the record records (``itself``).
    ``integrity``: the recorded files that are missing, unreadable or differ from the provenance (reasons of
    staleness, each naming its file).
    """

    profile: str
    provenance: dict | None
    results: dict
    package_dir: Path = PACKAGE_DIR
    notebooks_dir: Path = NOTEBOOK_DIR
    integrity: tuple = ()
    folder: Path | None = None  # where the record was read from
    unreadable: tuple = ()
    itself: bool = False

    @classmethod
    def of_itself(cls, profile: str) -> "Recorded":
        """What a kernel of the book at ``profile`` sees of the record of ``profile``: nothing (it is that build)."""
        return cls(profile, None, {}, itself=True)

    @property
    def exists(self) -> bool:
        return self.provenance is not None

    def reasons(self, notebook: str | None = None) -> list[str]:
        """Why the record no longer matches the code, or cannot be read (empty: current, or nothing recorded);
        ``notebook`` limits the notebook check to that one (``None``: every recorded notebook)."""
        if not self.exists:
            return list(self.unreadable)
        prov, found = self.provenance, list(self.integrity)
        shown = [self.notebooks_dir / f"{n}.ipynb" for n in sorted(prov["notebooks"])]
        changed = _changed_modules(prov["code"]["files"], code_files(self.package_dir,
                                                                     [path for path in shown if path.exists()]))
        found += [changed] if changed else []
        configs = prov.get("profile_configs")
        for name, config in (configs if isinstance(configs, dict) else {self.profile: prov["profile_config"]}).items():
            try:
                current = profile_config(name)
            except RramlibError:
                current = {}
            fields = _changed_fields(config if isinstance(config, dict) else {}, current)
            found += [f"profile {name} changed: {fields}"] if fields else []
        names = [notebook] if notebook else sorted(prov["notebooks"])
        for name in names:
            path = self.notebooks_dir / f"{name}.ipynb"
            if name not in prov["notebooks"]:
                found.append(f"notebook {name} is not in the record")
            elif not path.exists():
                found.append(f"notebook {name} no longer exists")
            elif notebook_code_digest(path) != prov["notebooks"][name].get("code_sha256"):
                found.append(f"code cells of notebook {name} changed")
        return found

    def stale(self, notebook: str | None = None) -> bool:
        return bool(self.reasons(notebook))

    def number(self, notebook: str, key: str):
        """The recorded number ``key`` of ``notebook``, or ``None`` when not recorded."""
        return self.results.get(notebook, {}).get("numbers", {}).get(key)

    def cost(self, notebook: str | None, field: str, digits: int = 1):
        """A recorded notebook's ``runtime_s`` or ``peak_rss_mb`` (from the provenance), rounded; None if absent."""
        entry = (self.provenance or {}).get("notebooks", {}).get(notebook) if notebook else None
        return None if not isinstance(entry, dict) or entry.get(field) is None else round(entry[field], digits)

    def table(self, notebook: str, key: str):
        """The recorded table ``key`` of ``notebook`` as a DataFrame, or ``None`` when not recorded."""
        import pandas as pd

        rows = self.results.get(notebook, {}).get("tables", {}).get(key)
        return None if rows is None else pd.DataFrame(rows)

    def caption(self, notebook: str | None = None) -> str:
        """One line for the book: where the numbers come from, how to regenerate them, and STALE with why (or
        which file cannot be read)."""
        head = f"study scale (profile {self.profile})"
        if self.itself:
            return (f"{head}: this book is the study-scale build itself, so its own numbers are the study-scale "
                    f"ones; a record of an earlier build is not shown beside them")
        if self.unreadable:
            return (f"{head}: the record cannot be read: {'; '.join(self.unreadable)}; record it again with "
                    f"\"{regenerate_command(self.profile)}\"")
        if not self.exists:
            return f"{head}: not recorded yet; record it with \"{regenerate_command(self.profile)}\""
        prov = self.provenance
        commit = (prov.get("git_commit") or "unknown")[:10] + (" plus uncommitted changes" if prov.get("git_dirty")
                                                                else "")
        text = f"{head}: recorded at commit {commit} on {prov['date'][:10]}; regenerate with \"{prov['regenerate']}\""
        reasons = self.reasons(notebook)
        return text + (f". STALE: {'; '.join(reasons)}" if reasons else "")

    def column(self) -> str:
        """The heading of a column of recorded numbers."""
        return f"study scale ({self.profile}" + (", STALE)" if self.stale() else ")")

    def absent(self) -> str:
        """What a table shows for a number the record does not hold: ``"this build"``, ``"record unreadable"``,
        ``"not recorded"`` or ``"not in the record"`` (with STALE where the record is)."""
        if self.itself:
            return "this build"
        if self.unreadable:
            return "record unreadable"
        return "not recorded" if not self.exists else "not in the record" + (" (STALE)" if self.stale() else "")

    def shown(self, notebook: str, key: str, scale: float = 1.0, unit: str = "") -> str:
        """A recorded number as a table shows it: ``"87.3 %"``, ``"87.3 % (STALE)"``, ``"not recorded"``,
        ``"record unreadable"`` or ``"this build"``."""
        value = self.number(notebook, key)
        if value is None:
            return self.absent()
        if value != value:  # NaN: the recorded profile could not measure it
            return "n/a"
        text = f"{value * scale:.4g} {unit}".strip()
        return text + (" (STALE)" if self.stale(notebook) else "")

    def provenance_table(self):
        """What the record holds, as a two-column table: profile, commit, date, commands, data, libraries, CPU,
        base models, cost, status (no absolute paths: the data folder is named by its file-list hash)."""
        import pandas as pd

        if not self.exists:
            status = self.caption().split(": ", 1)[1]
            rows = [("profile", self.profile), ("status", status)]
        else:
            prov = self.provenance
            data = "; ".join(", ".join(f"{k} {str(v)[:16]}" for k, v in src.items() if k != "root")
                             for src in prov.get("data_sources", []) if isinstance(src, dict)) \
                or "not named by the notebooks"
            config, machine = prov["profile_config"], prov.get("machine") or {}
            train = config.get("train") or {}
            models = prov.get("base_models")
            rows = [("profile", f"{self.profile}: {config.get('model')} on {config.get('dataset')}, "
                                f"{train.get('epochs')} epochs, {config.get('chips')} chips"),
                    ("git commit", (prov.get("git_commit") or "unknown") + (" (+ uncommitted changes)"
                                                                            if prov.get("git_dirty") else "")),
                    ("date (UTC)", prov["date"]), ("built with", prov.get("command", "?")),
                    ("regenerate with", prov["regenerate"]),
                    ("data", data), ("notebooks", str(len(prov["notebooks"]))),
                    ("notebook time of the executions that computed them, total (s)",
                     _fmt(prov.get("total_runtime_s"), "{:.0f}")),
                    ("peak memory of those executions, largest (MiB)", _fmt(prov.get("peak_rss_mb_max"), "{:.0f}")),
                    ("machine", f"{machine.get('cores', '?')} cores of {machine.get('cpu', '?')}"),
                    ("CPU", cpu_text(prov.get("cpu"))),
                    ("libraries", ", ".join(f"{k} {v}" for k, v in (prov.get("libraries") or {}).items())
                     or "not in this record"),
                    ("base models", "not in this record" if models is None else
                     f"{len(models)} shipped (base seeds {', '.join(str(m.get('base_seed')) for m in models)}), "
                     f"trained in {prov.get('base_model_precision', '?')}"),
                    ("status", "STALE: " + "; ".join(self.reasons()) if self.stale() else "current")]
        return pd.DataFrame(rows, columns=["recorded build", "value"])


def _fmt(value, fmt: str) -> str:
    return "?" if value is None else fmt.format(value)


def cpu_text(cpu: dict | None) -> str:
    """``"ATen AVX2, bfloat16 emulated (...)"``: a record's :func:`cpu_facts` in words."""
    if not isinstance(cpu, dict):
        return "CPU capabilities not in this record"
    bf16 = "native bfloat16" if cpu.get("native_bf16") else "bfloat16 emulated (no avx512_bf16 or amx_bf16)"
    return f"ATen {cpu.get('aten_capability', '?')}, {bf16}"


def _read_json(path: Path, folder: Path) -> tuple[bytes | None, object, str | None]:
    """``(bytes, value, None)``, or ``(bytes or None, None, why)`` naming the file when it cannot be read or is not
    JSON."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        return None, None, f"{_shown(folder, path.name)} is unreadable ({exc.strerror or type(exc).__name__})"
    try:
        return data, json.loads(data), None
    except ValueError as exc:
        return data, None, f"{_shown(folder, path.name)} is unreadable: not valid JSON ({exc})"


def _provenance_problem(prov, profile: str, where: str) -> str | None:
    """Why ``prov`` is not a provenance :class:`Recorded` can read (None: it is)."""
    if not isinstance(prov, dict) or prov.get("format") != FORMAT or prov.get("profile") != profile:
        return f"{where} is not a format-{FORMAT} record of profile {profile!r}"
    lacking = [k for k, kind in _REQUIRED.items() if not isinstance(prov.get(k), kind)]
    if not lacking and not isinstance(prov["code"].get("files"), dict):
        lacking = ["code.files"]
    if not lacking:
        lacking = [f"notebooks.{n}" for n, entry in prov["notebooks"].items() if not isinstance(entry, dict)]
    return f"{where} lacks {', '.join(lacking)}" if lacking else None


def load(profile: str = STUDY_PROFILE, folder: str | os.PathLike | None = None, *,
         package_dir: str | os.PathLike = PACKAGE_DIR, notebooks_dir: str | os.PathLike = NOTEBOOK_DIR,
         book_profile: str | None = None) -> Recorded:
    """The recorded build of ``profile`` (``folder``, default ``recorded/<profile>``); an empty :class:`Recorded`
    when nothing is recorded there. Never raises for the record's content: a provenance or results file that
    cannot be read is named in :attr:`Recorded.unreadable` or :attr:`Recorded.integrity`.

    ``book_profile``: the profile of the book this runs in (default ``$RRAMLIB_BOOK_PROFILE``, which the book
    builder sets in its kernels); where it is ``profile``, the record is not read (:meth:`Recorded.of_itself`)."""
    book_profile = os.environ.get(BOOK_PROFILE_ENV) if book_profile is None else book_profile
    if book_profile == profile:
        return Recorded.of_itself(profile)
    folder = Path(folder) if folder is not None else RECORDED_DIR / profile
    package_dir, notebooks_dir = Path(package_dir), Path(notebooks_dir)
    path = folder / PROVENANCE
    if not path.exists():
        return Recorded(profile, None, {}, package_dir, notebooks_dir, folder=folder)
    _, prov, problem = _read_json(path, folder)
    problem = problem or _provenance_problem(prov, profile, _shown(folder, PROVENANCE))
    if problem:
        return Recorded(profile, None, {}, package_dir, notebooks_dir, folder=folder, unreadable=(problem,))
    results, integrity = {}, []
    for name, entry in sorted(prov["notebooks"].items()):
        file, shown = folder / f"{name}.json", _shown(folder, f"{name}.json")
        if not file.exists():
            integrity.append(f"recorded file {shown} is missing")
            continue
        data, value, problem = _read_json(file, folder)
        if problem is None and not isinstance(value, dict):
            problem = f"{shown} is unreadable: not a results file"
        if problem is not None:
            integrity.append(f"recorded file {problem}")
            continue
        if _sha256(data) != entry.get("results_sha256"):
            integrity.append(f"recorded file {shown} differs from its provenance")
        results[name] = value
    return Recorded(profile, prov, results, package_dir, notebooks_dir, tuple(integrity), folder)


def recorded_inputs(notebook_source: bytes, book_profile: str, folder: str | os.PathLike | None = None,
                    notebooks_dir: str | os.PathLike | None = None) -> dict:
    """For the book builder's key: a digest of what a notebook that shows recorded results (``recorded.load``
    in its source) depends on beyond its own source and the package, in a book at ``book_profile`` -- the
    recorded files of every profile but ``book_profile`` (its kernels do not read their own record, see
    :func:`load`) and the code cells of every notebook (the staleness verdict reads them). ``{}`` for other
    notebooks, and where no such record exists."""
    if b"recorded.load" not in notebook_source:
        return {}
    folder = Path(folder) if folder is not None else RECORDED_DIR
    notebooks_dir = Path(notebooks_dir) if notebooks_dir is not None else NOTEBOOK_DIR
    shown = [d for d in sorted(folder.iterdir()) if d.is_dir() and d.name != book_profile
             and not d.name.startswith(".")] if folder.is_dir() else []
    files = [path for d in shown for path in sorted(d.rglob("*.json"))]
    if not files:
        return {}
    digest = hashlib.sha256()
    for path in files:
        digest.update(path.relative_to(folder).as_posix().encode() + b"\0" + _sha256(path.read_bytes()).encode())
    for path in sorted(notebooks_dir.glob("*.ipynb")):
        digest.update(path.name.encode() + b"\0" + notebook_code_digest(path).encode())
    return {"recorded": digest.hexdigest()}
