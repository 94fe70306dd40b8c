"""The numeric environment of this process: what, besides the code and the configuration, changes the numbers
torch computes on a CPU.

* the torch version (its kernels and their order of summation change between releases);
* the number of torch threads: torch's CPU kernels split their sums by thread, so another thread count may sum
  in another order (a base model trained with 1 thread differed from one trained with 2, see
  :mod:`rramlib.study.cluster`);
* the cap on vector instructions (:data:`INSTRUCTION_VARIABLES`): the width of the instructions changes the
  order of the sums too (the quick book's numbers differed between AVX2 and AVX-512 until capped at AVX2, see
  :func:`rramlib.book.builder.instruction_cap`, which sets these variables for small-profile kernels).

:mod:`rramlib.core.cache` keys every entry by it, so a result is only read back where the same computation
would give it.
"""
from __future__ import annotations

import os

__all__ = ["INSTRUCTION_VARIABLES", "numeric_environment"]

#: The environment variables that cap the vector instructions of ATen, oneDNN and MKL.
INSTRUCTION_VARIABLES = ("ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA", "MKL_ENABLE_INSTRUCTIONS")


def numeric_environment() -> dict:
    """``{"torch": version, "threads": torch.get_num_threads(), "instructions": {variable: value}}`` of this
    process now (only the instruction variables that are set)."""
    import torch

    return {"torch": str(torch.__version__), "threads": torch.get_num_threads(),
            "instructions": {name: os.environ[name] for name in INSTRUCTION_VARIABLES if name in os.environ}}
