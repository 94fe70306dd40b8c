"""Cost of a drift sweep relative to plain inference over the same images, measured side by side.

A sweep over T times x S chips evaluates the test set T*S times, each time on freshly
drifted weights (plus one programming per chip). Plain inference evaluates the same
drift-free model T*S times. The ratio (sweep / plain) is the overhead the drift
simulation adds; the goal is <= 1.2 with the ideal crossbar and <= 2 with the aihwkit-like
periphery (tiles, DAC, ADC, output noise at every read; rramlib.device.crossbar).

    python benchmarks/drift_sweep.py [--profile quick] [--repeats 3] [--out FILE.json]
    python benchmarks/drift_sweep.py --profile cifar --data-root DIR     # ResNet-20 on CIFAR-10
    python benchmarks/drift_sweep.py --ops 15      # also: where a sweep's time goes, per torch operator
    python benchmarks/drift_sweep.py --profile cifar --data-root DIR --presets ibm_pcm --images 500 --repeats 2

It runs with the allocator setting the book gives its kernels (rramlib.book.builder.KEEP_FREED_MEMORY: glibc
keeps freed memory instead of faulting it in again), restarting itself under it; --system-malloc measures
without it (GLIBC_TUNABLES set by you is kept either way).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

import torch

from rramlib.device.analog import AnalogModel
from rramlib.book.builder import KEEP_FREED_MEMORY
from rramlib.core.cache import Cache, default_cache_dir
from rramlib.nn.data import as_tensors
from rramlib.device.drift import PRESETS
from rramlib.nn.evaluate import accuracy
from rramlib.core.provenance import run_metadata
from rramlib.core.seeding import EVAL_CHIP_BASE
from rramlib.study.base_model import train_base_model
from rramlib.study.profiles import get_profile
from rramlib.core.times import parse_time


def plain(model, test, n):
    for _ in range(n):
        accuracy(model, test)


def sweep(analog, test, times, chips):
    for seed in chips:
        analog.program(seed)
        for t in times:
            accuracy(analog.at(t), test)


def operator_costs(model, test, times, chips, crossbars, top: int, preset: str) -> None:
    """Print, per crossbar preset, the ``top`` torch operators by self CPU time in one sweep of drift ``preset``."""
    from torch.profiler import ProfilerActivity, profile

    with torch.inference_mode():
        for crossbar in crossbars:
            analog = AnalogModel(model, preset, seed=chips[0], crossbar=crossbar)
            with profile(activities=[ProfilerActivity.CPU]) as prof:
                sweep(analog, test, times, chips)
            print(f"\n{preset} {crossbar}: costliest operators of one sweep")
            print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=top))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="quick", help="profile whose model and time grid are used")
    parser.add_argument("--repeats", type=int, default=3, help="timed repetitions; the minimum is reported")
    parser.add_argument("--out", default=None, help="write the measurements to this JSON file")
    parser.add_argument("--crossbars", default="ideal,aihwkit", help="comma-separated crossbar presets to time")
    parser.add_argument("--data-root", default=os.environ.get("RRAMLIB_DATA_ROOT"),
                        help="dataset folder for the cifar/paper profiles (default: $RRAMLIB_DATA_ROOT)")
    parser.add_argument("--presets", default=",".join(PRESETS), help="comma-separated drift presets to time")
    parser.add_argument("--images", type=int, default=0, metavar="N",
                        help="time the first N test images only (default: the whole test split)")
    parser.add_argument("--system-malloc", action="store_true",
                        help="keep glibc's default allocator settings instead of the book's (KEEP_FREED_MEMORY)")
    parser.add_argument("--ops", type=int, default=0, metavar="N",
                        help="after the timings, profile one sweep per crossbar and print its N costliest torch "
                             "operators (self CPU time)")
    args = parser.parse_args()
    presets = args.presets.split(",")
    unknown = [p for p in presets if p not in PRESETS]
    if unknown or args.images < 0:
        parser.error(f"unknown preset(s) {unknown}; choose from {', '.join(PRESETS)}" if unknown
                     else "--images must be >= 0")
    if not args.system_malloc and "GLIBC_TUNABLES" not in os.environ and sys.platform == "linux":
        # glibc reads its tunables at start-up: restart this script under the book's setting
        os.execve(sys.executable, [sys.executable, *sys.argv], {**os.environ, **KEEP_FREED_MEMORY})
    print(f"GLIBC_TUNABLES={os.environ.get('GLIBC_TUNABLES', '')}")

    profile = get_profile(args.profile)
    base = train_base_model(profile, data_root=args.data_root, cache=Cache(default_cache_dir()), progress=True)
    test = as_tensors(base.splits.test)
    if args.images:
        test = tuple(t[:args.images] for t in test)
    times = [parse_time(t) for t in profile.times]
    chips = [EVAL_CHIP_BASE + i for i in range(profile.chips)]
    n = len(times) * len(chips)
    rows = []
    with torch.inference_mode():
        for preset, crossbar in [(p, c) for p in presets for c in args.crossbars.split(",")]:
            analog = AnalogModel(base.model, preset, seed=chips[0], crossbar=crossbar)
            plain(base.model, test, 2)  # warm-up
            sweep(analog, test, times[:1], chips[:1])
            t_plain, t_sweep = [], []
            for _ in range(args.repeats):  # interleaved, so both see the same machine state
                start = time.perf_counter(); plain(base.model, test, n); t_plain.append(time.perf_counter() - start)
                start = time.perf_counter(); sweep(analog, test, times, chips); t_sweep.append(time.perf_counter() - start)
            rows.append({"preset": preset, "crossbar": crossbar, "evaluations": n, "images": n * len(test[1]),
                         "plain_s": min(t_plain), "sweep_s": min(t_sweep), "ratio": min(t_sweep) / min(t_plain)})
            print(f"{preset:18s} {crossbar:8s} {n} evaluations x {len(test[1])} images: plain {min(t_plain):.3f} s, "
                  f"sweep {min(t_sweep):.3f} s, ratio {rows[-1]['ratio']:.2f}")
    if args.ops > 0:
        operator_costs(base.model, test, times, chips, args.crossbars.split(","), args.ops, presets[0])
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"metadata": run_metadata(profile=profile.name, threads=torch.get_num_threads(),
                                                images=len(test[1]), glibc_tunables=os.environ.get("GLIBC_TUNABLES")),
                       "rows": rows}, f, indent=1)


if __name__ == "__main__":
    main()
