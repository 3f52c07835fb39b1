"""Detection logic: pure, typed, engine-free; one module per red flag."""

from __future__ import annotations

from detectors import continuous_session, geo_velocity, payout_routing, remote_access, shared_ip
from detectors.base import Detector, DetectorMetadata, FindingDraft

__all__ = ["DETECTOR_IDS", "Detector", "DetectorMetadata", "FindingDraft", "all_detectors"]

_MODULES = (geo_velocity, shared_ip, remote_access, continuous_session, payout_routing)
DETECTOR_IDS: tuple[str, ...] = tuple(module.METADATA.id for module in _MODULES)


def all_detectors() -> list[Detector]:
    """Every detector, each configured from its `DAYLIGHT_<ID>_*` settings."""
    return [module.build() for module in _MODULES]
