"""The same sweep in-process and on a local Dask cluster, and a paper-scale plan from the measured task times.

    python benchmarks/cluster.py [--profile quick] [--methods none,scale,bn,vera_plus] [--workers 2]
                                 [--out benchmarks/results/cluster.json]
    python benchmarks/cluster.py --plan-only --out benchmarks/results/cluster.json [--gpu-speedup X]

Measures, from cold caches holding only the (shared, pre-trained) base model: the wall time of
``experiments.run_sweep`` in this process, the wall time of the same sweep on ``--workers`` local worker
processes (``rramlib.study.cluster``), their ratio, and every task's own compute time on the workers (Dask's
task stream). Both runs give the same records (checked here too).

The plan extrapolates those task times to the ``paper`` profile on ImageNet with ResNet-50 (224x224):
* every task's time is scaled by the per-image cost ratio of ResNet-50 over the profile's model, measured
  on this machine (forward pass for evaluations, forward+backward for fits);
* evaluations also scale with the test-set size (ImageNet's 50,000 validation images; Russakovsky et al.,
  IJCV 2015) and with the paper profile's chips and times; fits of methods that run whole epochs
  (``EPOCH_METHODS``) with the training-set size (1,281,167 images); step-based fits do not;
* CPU hours become GPU hours through ``--gpu-speedup``, an ASSUMPTION (how many times faster one GPU does
  the same work than this machine's cores): measure yours by running this benchmark's ResNet-50 probe
  on both. Every number the plan prints is an estimate built from these stated rules.
"""
from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path

import torch

from rramlib.study import cluster
from rramlib.core.cache import Cache, default_cache_dir
from rramlib.study.experiments import SweepConfig, prepare, run_sweep
from rramlib.nn.models import build_model
from rramlib.study.profiles import get_profile
from rramlib.core.provenance import run_metadata

#: ImageNet-1k (ILSVRC 2012) split sizes, Russakovsky et al., IJCV 2015.
IMAGENET_TRAIN, IMAGENET_VAL = 1_281_167, 50_000
#: Methods whose fit runs whole epochs over the training set (their cost grows with it).
EPOCH_METHODS = ("noise_aware",)


def _strip(result: dict) -> str:
    timing = {"wall_time_s", "peak_rss_mb", "cache", "fit_time_s"}

    def strip(o):
        if isinstance(o, dict):
            return {k: strip(v) for k, v in o.items() if k not in timing}
        return [strip(v) for v in o] if isinstance(o, list) else o
    return json.dumps(strip(result), sort_keys=True)


def per_image_seconds(model: torch.nn.Module, shape: tuple[int, ...], batch: int, repeats: int = 3) -> dict:
    """Seconds per image of a forward pass (eval mode) and of a forward+backward+SGD step (train mode)."""
    x = torch.randn(batch, *shape)
    y = torch.zeros(batch, dtype=torch.long)
    opt = torch.optim.SGD(model.parameters(), lr=1e-3)
    fwd, train = [], []
    for _ in range(repeats + 1):  # the first round warms up
        model.eval()
        start = time.perf_counter()
        with torch.inference_mode():
            model(x)
        fwd.append(time.perf_counter() - start)
        model.train()
        start = time.perf_counter()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
        opt.zero_grad()
        train.append(time.perf_counter() - start)
    return {"forward_s": min(fwd[1:]) / batch, "train_s": min(train[1:]) / batch}


def measure(args) -> dict:
    methods = tuple(m for m in args.methods.split(",") if m)
    config = SweepConfig(profile=args.profile, preset=args.preset, methods=methods)
    shared = Cache(default_cache_dir())
    exp = prepare(config, cache=shared)  # trains the base model once, outside both timings
    with tempfile.TemporaryDirectory() as tmp:
        caches = {}
        for name in ("in_process", "cluster"):
            caches[name] = Cache(Path(tmp) / name)
            shutil.copytree(shared.root / "model", caches[name].root / "model")
        start = time.perf_counter()
        local = run_sweep(config, cache=caches["in_process"], progress=False)
        t_local = time.perf_counter() - start
        import distributed

        with cluster.connect(workers=args.workers) as client:
            start = time.perf_counter()
            with distributed.get_task_stream(client) as stream:
                remote = cluster.run_sweep(config, client, cache=caches["cluster"], progress=True)
            t_cluster = time.perf_counter() - start
    tasks = {}
    for item in stream.data:
        kind = str(item["key"]).split("-")[0]
        name = "base" if kind == "base" else f"{kind}:{str(item['key']).split('-')[1]}"
        run = sum(s["stop"] - s["start"] for s in item["startstops"] if s["action"] == "compute")
        tasks.setdefault(name, []).append(run)
    probe_model = build_model(exp.profile.model, num_classes=exp.base.splits.num_classes,
                              in_channels=exp.base.splits.in_channels)
    example = tuple(exp.ctx.example().shape[1:])
    return {
        "profile": args.profile, "preset": args.preset, "methods": list(methods), "workers": args.workers,
        "torch_threads": torch.get_num_threads(),
        "in_process_s": t_local, "cluster_s": t_cluster, "speedup": t_local / t_cluster,
        "identical_records": _strip(local) == _strip(remote),
        "task_seconds": tasks,
        "profile_test_images": len(exp.base.splits.test), "profile_train_images": len(exp.base.splits.train),
        "per_image": {
            exp.profile.model: {"shape": example, **per_image_seconds(probe_model, example, 64)},
            "resnet50": {"shape": (3, 224, 224), **per_image_seconds(build_model("resnet50", num_classes=1000), (3, 224, 224), 4, repeats=2)},
        },
        "metadata": run_metadata(),
    }


def plan(measured: dict, gpu_speedup: float, workers: list[int]) -> dict:
    """GPU-hours of one paper-profile comparison sweep on ImageNet/ResNet-50, from the measured task times."""
    small = measured["per_image"][next(k for k in measured["per_image"] if k != "resnet50")]
    big = measured["per_image"]["resnet50"]
    fwd_ratio, train_ratio = big["forward_s"] / small["forward_s"], big["train_s"] / small["train_s"]
    paper = get_profile("paper")
    quick = get_profile(measured["profile"])
    eval_scale = fwd_ratio * (IMAGENET_VAL / measured["profile_test_images"]) * len(paper.times) / len(quick.times)
    rows, hours = [], {}
    for name, seconds in sorted(measured["task_seconds"].items()):
        kind, _, method = name.partition(":")
        mean = sum(seconds) / len(seconds)
        if kind == "eval":
            count, scale = paper.chips, eval_scale
        elif kind in ("fit", "level"):  # a whole fit (or a per-level method's assembly), or one drift level
            count = paper.levels if kind == "level" else 1
            scale = train_ratio * (IMAGENET_TRAIN / measured["profile_train_images"] if method in EPOCH_METHODS else 1)
        else:
            continue  # the base model: see base_training below
        task_h = mean * scale / gpu_speedup / 3600
        rows.append({"task": name, "measured_s": mean, "scale": scale, "tasks": count, "gpu_h_per_task": task_h,
                     "gpu_h": task_h * count})
        hours[name] = task_h * count
    # ResNet-50 base training: epochs x ImageNet train images x measured train-step cost
    base_h = paper.train.epochs * IMAGENET_TRAIN * big["train_s"] / gpu_speedup / 3600
    total = sum(hours.values())
    per_task = {r["task"]: r["gpu_h_per_task"] for r in rows}
    # the longest chain of fits: a method's slowest level (levels run side by side), then its fit (the assembly)
    longest = max((per_task.get(f"level:{m}", 0.0) + h for t, h in per_task.items() if t.startswith("fit:")
                   for m in [t.partition(":")[2]]), default=0.0)
    one_eval = max((r["gpu_h_per_task"] for r in rows if r["task"].startswith("eval")), default=0.0)
    speedups = {w: total / max(total / w, longest + one_eval) for w in workers}
    return {"gpu_speedup_assumed": gpu_speedup, "forward_cost_ratio": fwd_ratio, "train_cost_ratio": train_ratio,
            "rows": rows, "sweep_gpu_h": total, "base_training_gpu_h": base_h, "speedup_with_workers": speedups}


def print_plan(p: dict) -> None:
    print(f"\nPaper profile on ImageNet/ResNet-50 -- ESTIMATES (GPU = {p['gpu_speedup_assumed']:g}x this machine, "
          f"an assumption; cost ratios ResNet-50/profile model measured here: forward {p['forward_cost_ratio']:.0f}x, "
          f"train step {p['train_cost_ratio']:.0f}x)")
    print(f"{'task':<22}{'measured s':>12}{'scale':>12}{'tasks':>7}{'GPU-h/task':>12}{'GPU-h':>10}")
    for r in p["rows"]:
        print(f"{r['task']:<22}{r['measured_s']:>12.2f}{r['scale']:>12.3g}{r['tasks']:>7}"
              f"{r['gpu_h_per_task']:>12.3g}{r['gpu_h']:>10.3g}")
    print(f"one comparison sweep: {p['sweep_gpu_h']:.3g} GPU-h; base-model training: {p['base_training_gpu_h']:.3g} GPU-h")
    print("expected speed-up of the sweep with W workers (bounded by longest fit + one evaluation): "
          + ", ".join(f"W={w}: {s:.1f}x" for w, s in p["speedup_with_workers"].items()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="quick")
    parser.add_argument("--preset", default="ibm_cmo_reram")
    parser.add_argument("--methods", default="none,scale,bn,vera_plus,lora")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--gpu-speedup", type=float, default=100.0,
                        help="ASSUMED speed of one GPU relative to this machine's cores (default 100)")
    parser.add_argument("--plan-only", action="store_true", help="read --out and print the plan, measure nothing")
    parser.add_argument("--out", default=None, help="JSON file of the measurements (written, or read with --plan-only)")
    args = parser.parse_args()
    if args.plan_only:
        measured = json.loads(Path(args.out).read_text())
    else:
        measured = measure(args)
        print(f"in-process {measured['in_process_s']:.1f} s, {args.workers} workers {measured['cluster_s']:.1f} s: "
              f"speed-up {measured['speedup']:.2f}x (torch threads {measured['torch_threads']}); "
              f"identical records: {measured['identical_records']}")
    measured["plan"] = plan(measured, args.gpu_speedup, [1, 2, 4, 8, 16, 32])
    print_plan(measured["plan"])
    if args.out and not args.plan_only:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(measured, indent=1))


if __name__ == "__main__":
    main()
