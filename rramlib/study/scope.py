"""Which profile each chapter of a book runs at.

A profile runs every chapter unless :data:`PROFILE_CHAPTERS` names its chapters: then each named chapter runs at
the profile given beside it, and every other chapter at :data:`FALLBACK_PROFILE`.

The study-scale book (``cifar``, ResNet-20 on CIFAR-10) runs the headline comparison, the claims, the tuning
search and the lossless check at ``cifar`` itself (every base seed, five chips, the full test split); the drift
models, drift impact, storage counts, scheduling, ablations, measured drift and DoRA calibration at
``cifar_subset`` (the same base models, read on a 2,000-image stratified subset of the test split through three
chips); SEU, Hidden-Fold Networks, the crossbar periphery and the language models stay at ``quick`` (our choice:
the 2-core budget of the study-scale build holds the first two groups, not hours of ResNet-20 fits for the side
studies). The page of a chapter says the profile it ran at.
"""
from __future__ import annotations

__all__ = ["FALLBACK_PROFILE", "PROFILE_CHAPTERS", "chapter_profile", "scoped_chapters"]

FALLBACK_PROFILE = "quick"

#: book profile -> {chapter (notebook stem): the profile it runs at}; chapters not named run at FALLBACK_PROFILE.
PROFILE_CHAPTERS: dict[str, dict[str, str]] = {
    "cifar": {
        **{stem: "cifar" for stem in ("03_comparison", "09_claims", "13_tuning", "15_lossless_check")},
        **{stem: "cifar_subset" for stem in ("01_drift_models", "02_drift_impact", "04_overhead", "05_scheduling",
                                             "06_ablations", "07_measured_drift", "08_dora_calibration")},
    },
}


def chapter_profile(profile: str, notebook: str) -> str:
    """The profile notebook ``notebook`` (its stem, e.g. ``03_comparison``) runs at in a book built at ``profile``."""
    chapters = PROFILE_CHAPTERS.get(profile)
    return profile if chapters is None else chapters.get(notebook, FALLBACK_PROFILE)


def scoped_chapters(profile: str, stems) -> list[str]:
    """Those of ``stems`` that a book built at ``profile`` runs at a profile of its own scale (not the fallback):
    every stem for a profile without a scope, else the chapters :data:`PROFILE_CHAPTERS` names."""
    return sorted(s for s in stems if profile not in PROFILE_CHAPTERS or s in PROFILE_CHAPTERS[profile])
