"""Provenance of a run: package and library versions, git commit, machine, peak memory.

Kept apart from the experiment runners so that :mod:`rramlib.present.report` (every notebook) reads it without
importing the training and sweep stack.
"""
from __future__ import annotations

import os
import platform
import resource
import subprocess
import sys
from pathlib import Path

from rramlib import __version__

__all__ = ["git_commit", "peak_rss_mb", "machine", "run_metadata"]


def git_commit() -> str | None:
    """The commit of the source tree rramlib is imported from, when it is a git checkout."""
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent, capture_output=True,
                             text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far, in MiB."""
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / 1024 if sys.platform != "darwin" else rss / 2**20


def machine() -> dict:
    """The machine a run was measured on: CPU model, cores this process may use, OS, Python."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {"cpu": cpu, "cores": cores, "os": f"{platform.system()} {platform.release()}",
            "python": platform.python_version()}


def run_metadata(**extra) -> dict:
    """Provenance recorded in every results file (the sweep runner imports torch already)."""
    import torch

    return {
        "rramlib_version": __version__, "git_commit": git_commit(), "torch_version": torch.__version__,
        "python": platform.python_version(), "machine": machine(), "peak_rss_mb": round(peak_rss_mb(), 1),
        **extra,
    }
