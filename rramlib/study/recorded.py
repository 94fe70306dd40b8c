"""Recorded study-scale results: a finished book build at one profile, committed with its provenance, and
shown beside the default (quick) book's numbers, marked stale when the code no longer matches it.

``rramlib record --profile cifar`` (or :func:`record`) copies the results files the notebooks wrote
(``results/<notebook>.json``: numbers, tables, runtime and peak memory; not the cache, not the figures) into
``recorded/<profile>/`` at the repository root, with ``provenance.json``: the commands, git commit, date, the
profile's full configuration, the data source (file-list hash), wall time and peak memory per notebook, and
the identity of the code that computed them.

**Stale** (:meth:`Recorded.reasons`): a recorded result no longer matches the code when any of these
differs from what was recorded --

* the code that computed it (:func:`code_files`): the import closures (:func:`rramlib.core.cache.module_closure`)
  of the modules that compute every kind of cached result (:data:`rramlib.core.cache.KINDS`: the trained model,
  the fits, the sweeps ...) and of the package modules the recorded notebooks import, except those that show
  results: the layers above the study (:data:`SHOWING_LAYERS`) and the modules that read a record (this one
  and every module that imports it, e.g. the claims table);
* the code cells of the notebook that produced the number (markdown prose does not count);
* any field of the profile's configuration (:func:`profile_config`);
* a recorded file's SHA-256 against the one in ``provenance.json`` (a hand-edited or half-written record).

The reasons name the changed modules, notebooks and fields. The data are not part of the verdict (they are
not on every machine); their file-list hash is provenance.
"""
from __future__ import annotations

import dataclasses
import datetime
import hashlib
import json
import os
import subprocess
from pathlib import Path

from rramlib.core.errors import RramlibError
from rramlib import __version__
from rramlib.core.cache import KINDS, imported_modules, module_closure
from rramlib.core.cache import code_files as module_files
from rramlib.core.files import atomic_write
from rramlib.study.profiles import PROFILES, get_profile
from rramlib.study.scope import chapter_profile

__all__ = ["RECORDED_DIR", "SHOWING_LAYERS", "SHIPPED_CACHE", "STUDY_PROFILE", "Recorded", "code_files", "load",
           "notebook_code_digest", "seed_cache",
           "profile_config", "record", "recorded_inputs", "regenerate_command"]

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
#: the console output of the first, uncached build, kept beside a record when the recording run was a cached one
COLD_BUILD = "cold_build_times.txt"
#: The folder of results-cache entries a record ships (``recorded/<profile>/cache/<kind>/<key>.pt``, the layout of
#: :class:`rramlib.core.cache.Cache`): a base model trained with the record's code, configuration and data, so that a
#: rebuild starts from it instead of training ResNet-20 again (the longest step of a cold study-scale build).
SHIPPED_CACHE = "cache"
FORMAT = 1


# ---------------------------------------------------------------------------------------- identities
def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _computes(module: str, package_dir: Path) -> bool:
    """Whether a package module a notebook imports computes what the notebook records (see :func:`code_files`)."""
    return module.split(".")[0] not in SHOWING_LAYERS and _READER not in module_closure((module,), package_dir)


def _dotted(module: str) -> str:
    """A package-relative module name as Python spells it (``""`` is the package itself)."""
    return f"rramlib.{module}" if module else "rramlib"


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


def profile_config(profile: str) -> dict:
    """The profile's full configuration (:class:`rramlib.study.profiles.Profile`, nested) as plain JSON values."""
    return json.loads(json.dumps(dataclasses.asdict(get_profile(profile)), default=str))


def _flat(config: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in config.items():
        if isinstance(value, dict) and value:
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


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


# ---------------------------------------------------------------------------------------- recording
def record(profile: str, results_dir: str | os.PathLike, dest: str | os.PathLike | None = None, *,
           command: str | None = None, notebooks_dir: str | os.PathLike = NOTEBOOK_DIR) -> Path:
    """Copy a finished build's results files into ``dest`` (default ``recorded/<profile>``) with
    ``provenance.json``; returns the provenance path.

    Every notebook of ``notebooks_dir`` that the book runs at ``profile`` (:mod:`rramlib.study.scope`; the
    others run at a smaller profile and are not recorded) must have its results file in ``results_dir``,
    written at ``profile``; otherwise :class:`~rramlib.core.errors.RramlibError`, before anything is written. Files
    are written atomically, the provenance last (it holds every file's SHA-256, so a half-done record reads
    stale).
    """
    if profile not in PROFILES:
        raise RramlibError(f"unknown profile {profile!r}; known: {sorted(PROFILES)}")
    results_dir, notebooks_dir = Path(results_dir), Path(notebooks_dir)
    dest = Path(dest) if dest is not None else RECORDED_DIR / profile
    notebooks = sorted(p.stem for p in notebooks_dir.glob("[0-9][0-9]_*.ipynb")
                       if chapter_profile(profile, p.stem) == profile)
    missing = [n for n in notebooks if not (results_dir / f"{n}.json").is_file()]
    if not notebooks or missing:
        raise RramlibError(f"{str(results_dir)!r} is not a finished build: no results for "
                           f"{', '.join(missing) or 'any notebook'}; build it first (rramlib book --profile {profile})")
    raw = {n: (results_dir / f"{n}.json").read_bytes() for n in notebooks}
    results = {n: json.loads(data) for n, data in raw.items()}
    other = sorted(n for n, r in results.items() if r.get("params", {}).get("profile") != profile)
    if other:
        raise RramlibError(f"results of {', '.join(other)} in {str(results_dir)!r} were not made at profile "
                           f"{profile!r}")
    builder = {}
    if (results_dir / "build_times.json").is_file():
        builder = json.loads((results_dir / "build_times.json").read_text()).get("notebooks", {})
    sources = {json.dumps(s, sort_keys=True) for r in results.values() for s in r.get("data_sources", [])}
    provenance = {
        "format": FORMAT, "profile": profile, "profile_config": profile_config(profile),
        "command": command or f"rramlib book --profile {profile}", "regenerate": regenerate_command(profile),
        "git_commit": _git("rev-parse", "HEAD"),
        "git_dirty": bool(_git("status", "--porcelain", "--", "rramlib", "notebooks")),
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "rramlib_version": __version__,
        "data_sources": [json.loads(s) for s in sorted(sources)],
        "code": {"files": code_files(notebooks=[notebooks_dir / f"{n}.ipynb" for n in notebooks])},
        "notebooks": {n: {"results_sha256": _sha256(raw[n]), "code_sha256": notebook_code_digest(
            notebooks_dir / f"{n}.ipynb"), "runtime_s": r.get("runtime_s"), "cpu_s": r.get("cpu_s"),
            "peak_rss_mb": r.get("peak_rss_mb"), "builder_wall_s": (builder.get(n) or {}).get("executed_seconds"),
            "params": r.get("params", {}), "git_commit": r.get("git_commit")} for n, r in results.items()},
        "machine": next(iter(results.values())).get("machine"),
    }
    provenance["total_runtime_s"] = sum(v["runtime_s"] or 0.0 for v in provenance["notebooks"].values())
    provenance["peak_rss_mb_max"] = max(v["peak_rss_mb"] or 0.0 for v in provenance["notebooks"].values())
    for old in dest.glob("*.json") if dest.is_dir() else ():
        if old.stem not in raw and old.name != PROVENANCE:
            old.unlink()
    for n, data in raw.items():
        atomic_write(dest / f"{n}.json", data)
    return atomic_write(dest / PROVENANCE, json.dumps(provenance, indent=1, sort_keys=True) + "\n")


def seed_cache(profile: str, cache_dir: str | os.PathLike, folder: str | os.PathLike | None = None) -> list[Path]:
    """Copy the results-cache entries that the record of ``profile`` ships (:data:`SHIPPED_CACHE`) into
    ``cache_dir`` where they are absent; returns the copied paths.

    An entry's name is the hash of the code and configuration that made it, so it is only read where the same
    computation would run; a damaged one fails its checksum on reading and is computed again. To train the base
    model from scratch, delete the record's ``cache/`` folder (or the copied entry) before building.
    """
    source = (Path(folder) if folder is not None else RECORDED_DIR / profile) / SHIPPED_CACHE
    copied = []
    for path in sorted(source.glob("*/*.pt")) if source.is_dir() else ():
        target = Path(cache_dir) / path.relative_to(source)
        if not target.exists():
            copied.append(atomic_write(target, path.read_bytes()))
    return copied


# ---------------------------------------------------------------------------------------- reading
@dataclasses.dataclass
class Recorded:
    """A recorded build as the book shows it: its provenance, its results by notebook, and whether it is stale.

    ``provenance`` is ``None`` when nothing is recorded for ``profile``.
    """

    profile: str
    provenance: dict | None
    results: dict
    package_dir: Path = PACKAGE_DIR
    notebooks_dir: Path = NOTEBOOK_DIR
    integrity: tuple = ()
    folder: Path | None = None  # where the record was read from

    @property
    def exists(self) -> bool:
        return self.provenance is not None

    def reasons(self, notebook: str | None = None) -> list[str]:
        """Why the record no longer matches the code (empty: current); ``notebook`` limits the notebook
        check to that one (``None``: every recorded notebook)."""
        if not self.exists:
            return []
        prov, found = self.provenance, list(self.integrity)
        shown = [self.notebooks_dir / f"{n}.ipynb" for n in sorted(prov["notebooks"])]
        then = prov["code"]["files"]
        now = code_files(self.package_dir, [path for path in shown if path.exists()])
        changed = [_dotted(f) for f in sorted(then.keys() & now.keys()) if then[f] != now[f]]
        changed += [f"{_dotted(f)} (new)" for f in sorted(now.keys() - then.keys())]
        changed += [f"{_dotted(f)} (removed)" for f in sorted(then.keys() - now.keys())]
        if changed:
            more = f" and {len(changed) - _NAMED} more" if len(changed) > _NAMED else ""
            found.append("code changed: " + ", ".join(changed[:_NAMED]) + more)
        try:
            current = _flat(profile_config(self.profile))
        except RramlibError:
            current = {}
        recorded = _flat(prov["profile_config"])
        fields = sorted(k for k in recorded.keys() | current.keys() if recorded.get(k, "-") != current.get(k, "-"))
        if fields:
            found.append(f"profile {self.profile} changed: " + ", ".join(
                f"{k} {recorded.get(k, '-')!r} -> {current.get(k, '-')!r}" for k in fields))
        names = [notebook] if notebook else sorted(prov["notebooks"])
        for name in names:
            path = self.notebooks_dir / f"{name}.ipynb"
            if name not in prov["notebooks"]:
                found.append(f"notebook {name} is not in the record")
            elif not path.exists():
                found.append(f"notebook {name} no longer exists")
            elif notebook_code_digest(path) != prov["notebooks"][name]["code_sha256"]:
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
        return None if not entry or entry.get(field) is None else round(entry[field], digits)

    def table(self, notebook: str, key: str):
        """The recorded table ``key`` of ``notebook`` as a DataFrame, or ``None`` when not recorded."""
        import pandas as pd

        rows = self.results.get(notebook, {}).get("tables", {}).get(key)
        return None if rows is None else pd.DataFrame(rows)

    def caption(self, notebook: str | None = None) -> str:
        """One line for the book: where the numbers come from, how to regenerate them, and STALE with why."""
        if not self.exists:
            return (f"study scale (profile {self.profile}): not recorded yet; record it with "
                    f"\"{regenerate_command(self.profile)}\"")
        prov = self.provenance
        commit = (prov.get("git_commit") or "unknown")[:10] + (" plus uncommitted changes" if prov.get("git_dirty")
                                                                else "")
        text = (f"study scale (profile {self.profile}): recorded at commit {commit} on {prov['date'][:10]}; "
                f"regenerate with \"{prov['regenerate']}\"")
        reasons = self.reasons(notebook)
        return text + (f". STALE: {'; '.join(reasons)}" if reasons else "")

    def column(self) -> str:
        """The heading of a column of recorded numbers."""
        return f"study scale ({self.profile}" + (", STALE)" if self.stale() else ")")

    def shown(self, notebook: str, key: str, scale: float = 1.0, unit: str = "") -> str:
        """A recorded number as a table shows it: ``"87.3 %"``, ``"87.3 % (STALE)"`` or ``"not recorded"``."""
        value = self.number(notebook, key)
        if value is None:
            return "not recorded" if not self.exists else "not in the record" + (" (STALE)" if self.stale() else "")
        if value != value:  # NaN: the recorded profile could not measure it
            return "n/a"
        text = f"{value * scale:.4g} {unit}".strip()
        return text + (" (STALE)" if self.stale(notebook) else "")

    def provenance_table(self):
        """What the record holds, as a two-column table: profile, commit, date, commands, data, cost, status
        (no absolute paths: the data folder is named by its file-list hash)."""
        import pandas as pd

        if not self.exists:
            rows = [("profile", self.profile), ("status", "not recorded"),
                    ("record it with", regenerate_command(self.profile))]
        else:
            prov = self.provenance
            data = "; ".join(", ".join(f"{k} {str(v)[:16]}" for k, v in src.items() if k != "root")
                             for src in prov.get("data_sources", [])) or "not named by the notebooks"
            config = prov["profile_config"]
            rows = [("profile", f"{self.profile}: {config['model']} on {config['dataset']}, "
                                f"{config['train']['epochs']} epochs, {config['chips']} chips"),
                    ("git commit", (prov.get("git_commit") or "unknown") + (" (+ uncommitted changes)"
                                                                            if prov.get("git_dirty") else "")),
                    ("date (UTC)", prov["date"]), ("built with", prov["command"]),
                    ("regenerate with", prov["regenerate"]),
                    ("data", data), ("notebooks", str(len(prov["notebooks"]))),
                    ("notebook time of the recording run, total (s)", f"{prov['total_runtime_s']:.0f}"),
                    ("peak memory of the recording run, largest (MiB)", f"{prov['peak_rss_mb_max']:.0f}"),
                    ("machine", f"{(prov.get('machine') or {}).get('cores', '?')} cores of "
                                f"{(prov.get('machine') or {}).get('cpu', '?')}"),
                    ("status", "STALE: " + "; ".join(self.reasons()) if self.stale() else "current")]
            if self.folder is not None and (self.folder / COLD_BUILD).is_file():
                rows.insert(-1, ("first, uncached build", f"wall time per notebook in recorded/{self.profile}/"
                                 f"{COLD_BUILD} (the recording run may have read results from the cache)"))
        return pd.DataFrame(rows, columns=["recorded build", "value"])


def load(profile: str = STUDY_PROFILE, folder: str | os.PathLike | None = None, *,
         package_dir: str | os.PathLike = PACKAGE_DIR, notebooks_dir: str | os.PathLike = NOTEBOOK_DIR) -> Recorded:
    """The recorded build of ``profile`` (``folder``, default ``recorded/<profile>``); an empty
    :class:`Recorded` when nothing is recorded there."""
    folder = Path(folder) if folder is not None else RECORDED_DIR / profile
    path = folder / PROVENANCE
    if not path.is_file():
        return Recorded(profile, None, {}, Path(package_dir), Path(notebooks_dir))
    try:
        prov = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise RramlibError(f"{str(path)!r} is not valid JSON ({exc}); record the build again") from None
    if prov.get("format") != FORMAT or prov.get("profile") != profile:
        raise RramlibError(f"{str(path)!r} is not a format-{FORMAT} record of profile {profile!r}; record it again")
    results, integrity = {}, []
    for name, entry in sorted(prov["notebooks"].items()):
        file = folder / f"{name}.json"
        data = file.read_bytes() if file.is_file() else None
        if data is None or _sha256(data) != entry["results_sha256"]:
            problem = "is missing" if data is None else "differs from its provenance"
            integrity.append(f"recorded file {name}.json {problem}")
        if data is not None:
            results[name] = json.loads(data)
    return Recorded(profile, prov, results, Path(package_dir), Path(notebooks_dir), tuple(integrity), folder)


def recorded_inputs(notebook_source: bytes, folder: str | os.PathLike = RECORDED_DIR,
                    notebooks_dir: str | os.PathLike = NOTEBOOK_DIR) -> dict:
    """For the book builder's key: a digest of what a notebook that shows recorded results
    (``recorded.load`` in its source) depends on beyond its own source and the package -- the recorded files
    and the code cells of every notebook (the staleness verdict reads them). ``{}`` for other notebooks."""
    if b"recorded.load" not in notebook_source:
        return {}
    digest = hashlib.sha256()
    for path in sorted(Path(folder).rglob("*.json")) if Path(folder).is_dir() else ():
        digest.update(path.relative_to(folder).as_posix().encode() + b"\0" + _sha256(path.read_bytes()).encode())
    for path in sorted(Path(notebooks_dir).glob("*.ipynb")):
        digest.update(path.name.encode() + b"\0" + notebook_code_digest(path).encode())
    return {"recorded": digest.hexdigest()}
