"""The ``rramlib`` command line.

Every bad input (unknown preset, malformed drift table, missing dataset ...) ends
with one line ``error: ...`` on stderr and exit code 2, before any heavy work.
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from rramlib import __version__
from rramlib.core.errors import RramlibError
from rramlib.core.params import parse_assignment
from rramlib.book import BookError, build, parse_parameter
from rramlib.cli.train import add_train_arguments, profile_overrides, train_command
from rramlib.core.cache import Cache, default_cache_dir
from rramlib.core.config import add_config_option
from rramlib.core.files import atomic_write
from rramlib.device.drift import PRESETS, make_drift_model
from rramlib.methods.compensation import METHODS
from rramlib.nn.train import TrainConfig
from rramlib.study import cluster
from rramlib.study.experiments import SweepConfig, run_sweep
from rramlib.study.profiles import PROFILES, Profile, get_profile
from rramlib.study.recorded import record

__all__ = ["build_parser", "main"]


def _csv(text: str) -> list[str]:
    return [item.strip() for item in text.split(",") if item.strip()]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rramlib", description="RRAM drift simulation and compensation.")
    parser.add_argument("--version", action="version", version=f"rramlib {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    sweep = sub.add_parser("sweep", help="accuracy vs time after programming, over several chips",
                           description="Train (or load from the cache) the profile's base model, program it "
                                       "on simulated RRAM chips and write accuracy over the time grid to JSON.")
    add_config_option(sweep, "--profile", SweepConfig, "profile")
    add_config_option(sweep, "--preset", SweepConfig, "preset")
    add_config_option(sweep, "--methods", SweepConfig, "methods", type=_csv, metavar="M1,M2,...",
                      note=f"any of: {', '.join(METHODS)}")
    sweep.add_argument("--drift-scale", type=float, default=None, help="multiplies the preset's drift")
    sweep.add_argument("--drift-param", action="append", default=[], metavar="NAME=VALUE",
                       help="a preset parameter, e.g. rd=0.3 or table=drift.csv (repeatable)")
    sweep.add_argument("--method-param", action="append", default=[], metavar="METHOD.NAME=VALUE",
                       help="a method hyper-parameter, e.g. vera_plus.rank=8 or dora.n_samples=20 (repeatable)")
    add_config_option(sweep, "--levels", SweepConfig, "levels", type=int)
    add_config_option(sweep, "--mapping", SweepConfig, "mapping")
    add_config_option(sweep, "--per-channel", SweepConfig, "per_channel", action="store_true")
    add_config_option(sweep, "--crossbar", SweepConfig, "crossbar")
    add_config_option(sweep, "--readout", SweepConfig, "readout")
    add_config_option(sweep, "--base-seed", SweepConfig, "base_seed", type=int)
    add_config_option(sweep, "--n-conductance-states", SweepConfig, "n_conductance_states", type=int, metavar="N")
    add_config_option(sweep, "--times", SweepConfig, "times", type=_csv, metavar="T1,T2,...")
    add_config_option(sweep, "--chips", SweepConfig, "chips", type=int)
    add_config_option(sweep, "--dataset", Profile, "dataset", default=None, unset="the profile's")
    add_config_option(sweep, "--model", Profile, "model", default=None, unset="the profile's")
    add_config_option(sweep, "--epochs", TrainConfig, "epochs", default=None, unset="the profile's", type=int)
    add_config_option(sweep, "--device", Profile, "device", default=None, unset="the profile's")
    sweep.add_argument("--data-root", default=None, help="folder holding the dataset (CIFAR, ImageFolder)")
    sweep.add_argument("--download", action="store_true", help="download the dataset into --data-root")
    sweep.add_argument("--cache-dir", default=None, help="results cache (default: $RRAMLIB_CACHE or .rramlib_cache)")
    sweep.add_argument("--no-cache", action="store_true", help="compute everything, store nothing")
    sweep.add_argument("--workers", type=int, default=None, metavar="N",
                       help="run the sweep's tasks on a local Dask cluster of N worker processes (rramlib[cluster])")
    sweep.add_argument("--scheduler", default=None, metavar="ADDRESS",
                       help="run the sweep's tasks on the Dask cluster at ADDRESS, e.g. tcp://host:8786")
    sweep.add_argument("--out", required=True, help="JSON file to write")
    sweep.add_argument("--quiet", action="store_true", help="no progress bars")

    train = sub.add_parser("train", help="train a profile's base model into the results cache (also under torchrun)",
                           description="Train (or find in the results cache) the profile's base model, in this process, "
                                       "or data-parallel (DistributedDataParallel) when started by torchrun: "
                                       "torchrun --nproc-per-node N -m rramlib train ... (see rramlib.cli.train). Sweeps and "
                                       "notebooks of the same profile then read it from the cache.")
    add_train_arguments(train)

    book = sub.add_parser("book", help="execute the notebooks and build the companion Jupyter Book (HTML)",
                          description="Execute every notebooks/NN_*.ipynb with papermill (skipping those whose "
                                      "inputs did not change) and build the book's HTML with Jupyter Book, offline.")
    add_config_option(book, "--profile", SweepConfig, "profile")
    book.add_argument("--out", default=None, metavar="DIR",
                      help="build folder (default _build/book/<profile>); the HTML goes to DIR/src/_build/html")
    book.add_argument("--force", action="store_true", help="execute every notebook, even unchanged ones")
    book.add_argument("-p", "--parameter", nargs=2, action="append", default=[], metavar=("NAME", "VALUE"),
                      help="pass a parameter to every notebook, as papermill -p does (repeatable)")
    book.add_argument("--no-html", action="store_true", help="execute the notebooks only, build no HTML")
    book.add_argument("--data-root", default=None, metavar="DIR",
                      help="dataset folder of a profile that reads one (cifar, paper); default $RRAMLIB_DATA_ROOT")

    rec = sub.add_parser("record", help="build the book at a profile (cached) and record its results for the default book",
                         description="Execute the book's notebooks at PROFILE (only those whose inputs changed, as "
                                     "`rramlib book` does), then copy their results JSON files into recorded/PROFILE/ "
                                     "with provenance.json (commit, date, configuration, data source, code identity, "
                                     "time and memory per notebook). The default book shows them beside its own "
                                     "numbers, marked STALE once the code no longer matches.")
    add_config_option(rec, "--profile", SweepConfig, "profile", default="cifar")
    rec.add_argument("--out", default=None, metavar="DIR", help="build folder (default _build/book/<profile>)")
    rec.add_argument("--dest", default=None, metavar="DIR", help="record folder (default recorded/<profile>)")
    rec.add_argument("-p", "--parameter", nargs=2, action="append", default=[], metavar=("NAME", "VALUE"),
                     help="a parameter for every notebook, as for `rramlib book` (repeatable)")
    rec.add_argument("--data-root", default=None, metavar="DIR",
                     help="dataset folder of the profile (e.g. CIFAR-10); default $RRAMLIB_DATA_ROOT")

    shown = sub.add_parser("recorded", help="print what a recorded build found (Markdown), and whether it is current",
                           description="Print the record of PROFILE as the book shows it: the answer first (the lead "
                                       "readout at the latest headline time, with intervals, and the verdict), every "
                                       "readout's table with the paired differences to BN and to cross-layer VeRA+, "
                                       "and where the numbers come from (STALE and why, once the code changed).")
    add_config_option(shown, "--profile", SweepConfig, "profile", default="cifar")
    shown.add_argument("--dest", default=None, metavar="DIR", help="record folder (default recorded/<profile>)")

    sub.add_parser("presets", help="list the drift presets and their parameters")
    sub.add_parser("profiles", help="list the profiles")
    sub.add_parser("methods", help="list the compensation methods and their hyper-parameters")
    return parser


def _sweep(args: argparse.Namespace) -> int:
    if args.data_root is not None and not Path(args.data_root).exists() and not args.download:
        raise RramlibError(f"dataset root {args.data_root!r} does not exist")
    out = Path(args.out)
    if not out.parent.exists():
        raise RramlibError(f"output folder {str(out.parent)!r} does not exist")
    params = dict(parse_assignment(p, "drift parameter") for p in args.drift_param)
    method_params: dict[str, dict] = {}
    for text in args.method_param:
        name, value = parse_assignment(text, "method parameter", "method.name=value, e.g. vera_plus.rank=8",
                                       dotted=True)
        method, _, key = name.partition(".")
        if not key:
            raise RramlibError(f"method parameter {text!r} must look like method.name=value, e.g. vera_plus.rank=8")
        method_params.setdefault(method, {})[key] = value
    if args.drift_scale is not None:
        params["drift_scale"] = args.drift_scale
    overrides = profile_overrides(args)
    config = SweepConfig(
        profile=args.profile, preset=args.preset, methods=tuple(args.methods), drift_params=params,
        method_params=method_params, levels=args.levels,
        mapping=args.mapping, per_channel=args.per_channel, n_conductance_states=args.n_conductance_states,
        times=tuple(args.times) if args.times else None, chips=args.chips, profile_overrides=overrides,
        crossbar=args.crossbar, readout=args.readout, base_seed=args.base_seed,
    )

    cache = Cache(None if args.no_cache else (args.cache_dir or default_cache_dir()))
    if args.workers is None and args.scheduler is None:
        result = run_sweep(config, data_root=args.data_root, download=args.download, cache=cache,
                           progress=not args.quiet)
    else:  # the same sweep, its tasks computed on a Dask cluster (imported only here)

        cluster.require_cache(cache)
        with cluster.connect(workers=args.workers, scheduler=args.scheduler) as client:
            result = cluster.run_sweep(config, client, data_root=args.data_root, download=args.download,
                                       cache=cache, progress=not args.quiet)
    write_json_atomic(out, result)
    meta = result["metadata"]
    print(f"wrote {len(result['records'])} records to {out} "
          f"(drift-free accuracy {meta['drift_free_accuracy']:.4f}, {meta['wall_time_s']:.1f} s)")
    return 0


def write_json_atomic(path: Path, obj: object) -> None:
    """Write JSON atomically (:func:`rramlib.core.files.atomic_write`), so no half-written file is ever read."""
    atomic_write(path, json.dumps(obj, indent=1))


def _book(args: argparse.Namespace) -> int:
    params = dict(parse_parameter(name, value) for name, value in args.parameter)
    try:
        build(args.profile, args.out, force=args.force, parameters=params, html=not args.no_html,
              data_root=args.data_root)
    except BookError as exc:
        print(exc.message, file=sys.stderr)
        return exc.exit_code
    return 0


def _record(args: argparse.Namespace) -> int:
    import os
    import shlex

    params = dict(parse_parameter(name, value) for name, value in args.parameter)
    try:
        result = build(args.profile, args.out, parameters=params, html=False, data_root=args.data_root)
    except BookError as exc:
        print(exc.message, file=sys.stderr)
        return exc.exit_code
    # the command as provenance, without this machine's paths (the data are named by their file-list hash)
    env = "RRAMLIB_DATA_ROOT=DIR " if os.environ.get("RRAMLIB_DATA_ROOT") and not args.data_root else ""
    data = ["--data-root DIR"] if args.data_root else []
    command = env + " ".join(["rramlib book --profile", args.profile, *data, *(
        f"-p {k} {'DIR' if k == 'data_root' else shlex.quote(str(v))}" for k, v in params.items())])
    path = record(args.profile, result.out / "src" / "results", args.dest, command=command)
    print(f"recorded {len(result.runs)} notebook(s) of profile {args.profile} in {path.parent}")
    return 0


def _recorded(args: argparse.Namespace) -> int:
    from rramlib.present import study_scale
    from rramlib.study import recorded

    rec = recorded.load(args.profile, args.dest, book_profile="")
    if not rec.exists:
        raise RramlibError(f"nothing is recorded for profile {args.profile!r}"
                           f"{' in ' + repr(args.dest) if args.dest else ''}: {rec.caption(study_scale.COMPARISON)}")
    print(study_scale.recorded_answer(rec))
    print(study_scale.readout_tables(rec.results.get(study_scale.COMPARISON)))
    return 0


def _presets() -> int:
    for name, cls in PRESETS.items():
        doc = (cls.__doc__ or "").strip().splitlines()[0]
        print(f"{name}: {doc}\n    defaults: {make_drift_model(name).params()}")
    return 0


def _methods() -> int:
    for name, cls in METHODS.items():
        doc = (sys.modules[cls.__module__].__doc__ or "").strip().splitlines()[0]
        print(f"{name}: {doc}\n    defaults: {cls.default_params()}")
    return 0


def _profiles() -> int:
    for p in PROFILES.values():
        print(f"{p.name}: {p.description}\n    {p.dataset}/{p.model}, {p.train.epochs} epochs, "
              f"times {','.join(p.times)}, {p.chips} chips, device {p.device}")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s: %(message)s")
    try:
        commands = {"sweep": _sweep, "train": train_command, "book": _book, "record": _record, "recorded": _recorded,
                    "presets": lambda a: _presets(), "profiles": lambda a: _profiles(), "methods": lambda a: _methods()}
        return commands[args.command](args)
    except RramlibError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
