"""Which profile each chapter of a book runs at.

A profile runs every chapter unless :data:`PROFILE_CHAPTERS` names its chapters; the others then run at
:data:`FALLBACK_PROFILE`. The study-scale profile ``cifar`` runs, at ResNet-20 on CIFAR-10, the chapters that
its claims and its comparison need (drift models, drift impact and the collapse regimes, the method comparison,
the storage and compute counts, the VeRA+ ablations of rank, sharing and loss, the claims); scheduling, measured
drift, the DoRA budget sweep, SEU, Hidden-Fold Networks, the crossbar periphery and the tuning searches stay at
``quick`` (our choice: each of those grids costs hours of ResNet-20 fits on 2 CPU cores, which the profile's
three-hour budget does not hold). The page of a chapter says the profile it ran at.
"""
from __future__ import annotations

__all__ = ["FALLBACK_PROFILE", "PROFILE_CHAPTERS", "chapter_profile"]

FALLBACK_PROFILE = "quick"

PROFILE_CHAPTERS: dict[str, tuple[str, ...]] = {
    "cifar": ("01_drift_models", "02_drift_impact", "03_comparison", "04_overhead", "06_ablations", "09_claims"),
}


def chapter_profile(profile: str, notebook: str) -> str:
    """The profile notebook ``notebook`` (its stem, e.g. ``03_comparison``) runs at in a book built at ``profile``."""
    chapters = PROFILE_CHAPTERS.get(profile)
    return profile if chapters is None or notebook in chapters else FALLBACK_PROFILE
