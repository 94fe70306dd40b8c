"""Fit time per drift level of each compensation method, and a sweep with all methods vs plain inference.

Everything is measured in one run on the same machine state:

* fit time per level: ``method.fit(ctx)`` on a one-level schedule (DoRA: one calibration of one chip);
* sweep: every method evaluated on T times x S chips (after fitting), against plain inference of the
  drift-free model over the same number of images.

    python benchmarks/methods.py [--profile quick] [--preset ibm_cmo_reram] [--out FILE.json]
"""
from __future__ import annotations

import argparse
import json
import time

import torch

from rramlib.core.cache import Cache, default_cache_dir
from rramlib.methods.compensation import FitContext
from rramlib.nn.data import as_tensors
from rramlib.nn.evaluate import accuracy
from rramlib.core.provenance import run_metadata
from rramlib.core.seeding import EVAL_CHIP_BASE
from rramlib.study.base_model import train_base_model
from rramlib.study.experiments import SweepConfig
from rramlib.methods.schedule import log_windows
from rramlib.core.times import parse_time

FIT_METHODS = ("vera_plus", "lora", "bn", "dora", "offline_correction", "noise_aware")
ALL_METHODS = ("none", "scale", "bn", "lora", "dora", "vera_plus", "noise_aware", "offline_correction")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="quick", help="profile (model, data, method settings)")
    parser.add_argument("--preset", default="ibm_cmo_reram", help="drift preset")
    parser.add_argument("--out", default=None, help="write the measurements to this JSON file")
    args = parser.parse_args()

    config = SweepConfig(profile=args.profile, preset=args.preset, methods=ALL_METHODS)
    profile = config.resolved_profile()
    base = train_base_model(profile, cache=Cache(default_cache_dir()), progress=False)
    test = as_tensors(base.splits.test)
    times = [parse_time(t) for t in profile.times]
    chips = config.chip_seeds()

    def context(levels):
        return FitContext(model=base.model, splits=base.splits, drift=config.drift_model(),
                          schedule=log_windows(levels), train_chips=profile.train_chips)

    fit_rows = []
    for name in FIT_METHODS:
        method = config.method(name)
        start = time.perf_counter()
        method.fit(context(1))
        if name == "dora":
            method.at(chips[0], times[-1])  # DoRA's work is the in-field calibration of one chip
        seconds = time.perf_counter() - start
        fit_rows.append({"method": name, "fit_s_per_level": seconds})
        print(f"fit {name:12s} {seconds:7.2f} s per level")

    fitted = {name: config.method(name).fit(context(profile.levels)) for name in ALL_METHODS}
    n = len(times) * len(chips)
    with torch.inference_mode():
        start = time.perf_counter()
        for _ in range(n):
            accuracy(base.model, test)
        plain_s = time.perf_counter() - start
    sweep_rows = []
    for name, method in fitted.items():
        start = time.perf_counter()
        for seed in chips:
            for t in times:
                accuracy(method.at(seed, t), test)
        seconds = time.perf_counter() - start
        sweep_rows.append({"method": name, "sweep_s": seconds, "ratio_to_plain": seconds / plain_s})
        print(f"sweep {name:12s} {seconds:7.2f} s = {seconds / plain_s:6.2f} x plain inference ({plain_s:.2f} s)")
    total = sum(r["sweep_s"] for r in sweep_rows)
    print(f"all methods: {total:.2f} s = {total / plain_s:.2f} x plain inference of the same images")
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"metadata": run_metadata(profile=profile.name, preset=args.preset,
                                                threads=torch.get_num_threads(), evaluations=n),
                       "fit": fit_rows, "sweep": sweep_rows, "plain_s": plain_s}, f, indent=1)


if __name__ == "__main__":
    main()
