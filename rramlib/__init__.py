"""rramlib: RRAM in-memory computing under conductance drift, and digital ways to compensate it.

The package maps a trained PyTorch network onto simulated RRAM crossbars, lets the
conductances drift for up to ten years with one consistent trajectory per chip, and
measures accuracy over time. See the book (``make book``) for the study it accompanies.
"""
from __future__ import annotations

__version__ = "0.1.0"

from rramlib.core.errors import RramlibError  # noqa: E402

__all__ = ["RramlibError", "__version__"]
