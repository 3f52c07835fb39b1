"""Detection logic: pure, typed, engine-free; one module per red flag."""

from __future__ import annotations

from typing import Any

from detectors.base import Detector, DetectorMetadata, FindingDraft

__all__ = ["Detector", "DetectorMetadata", "FindingDraft", "all_detectors"]


def all_detectors() -> list[Detector[Any]]:
    """Every detector, configured from its `DAYLIGHT_<ID>_*` settings."""
    return []
