"""Detection logic: pure, typed, engine-free; one module per red flag."""

from __future__ import annotations

from pydantic import ValidationError

from detectors.core.compiled import check_fresh

check_fresh()  # before the compiled modules are imported

from detectors import (  # noqa: E402
    anonymizer,
    bid_pattern,
    continuous_session,
    crypto_payout,
    geo_velocity,
    payout_holder_change,
    payout_routing,
    rating_burst,
    remote_access,
    self_dealing,
    shared_ip,
    shipping_mismatch,
    template_reuse,
    unverified_activity,
    working_hours,
)
from detectors.core.base import Detector, DetectorMetadata, FindingDraft  # noqa: E402

__all__ = [
    "DETECTOR_IDS",
    "Detector",
    "DetectorMetadata",
    "DetectorSettingsError",
    "FindingDraft",
    "all_detectors",
    "prepare",
]


class DetectorSettingsError(ValueError):
    """A detector setting has a bad value; the message names the environment variable."""


_MODULES = (
    geo_velocity,
    shared_ip,
    remote_access,
    continuous_session,
    payout_routing,
    self_dealing,
    rating_burst,
    template_reuse,
    bid_pattern,
    anonymizer,
    payout_holder_change,
    crypto_payout,
    shipping_mismatch,
    unverified_activity,
    working_hours,
)
DETECTOR_IDS: tuple[str, ...] = tuple(module.METADATA.id for module in _MODULES)


def _variable(detector_id: str, loc: tuple[int | str, ...]) -> str:
    """The environment variable a settings error is about: the detector's prefix and the
    field, or the field's own name where it has one (DAYLIGHT_GEOIP_MMDB)."""
    name = "_".join(map(str, loc)).upper()
    return name if name.startswith("DAYLIGHT_") else f"DAYLIGHT_{detector_id.upper()}_{name}"


def all_detectors() -> list[Detector]:
    """Every detector, each configured from its `DAYLIGHT_<ID>_*` settings."""
    detectors = []
    for module in _MODULES:
        try:
            detectors.append(module.build())
        except ValidationError as exc:
            problems = "; ".join(
                f"{_variable(module.METADATA.id, error['loc'])}: {error['msg']} "
                f"(got {error.get('input')!r})"
                for error in exc.errors(include_url=False)
            )
            raise DetectorSettingsError(f"invalid setting: {problems}") from None
    return detectors


def prepare(detectors: list[Detector]) -> None:
    """Load what the chosen detectors read besides events (the ASN database, the MinHash
    permutations), before the first event: a worker does not stall on its first login or
    first proposal, forked replay jobs inherit it, and a file that cannot be read fails at
    start, naming its setting (DetectorSettingsError)."""
    for detector in detectors:
        for stage in detector.stages:
            ready = getattr(stage, "prepare", None)
            if ready is None:
                continue
            try:
                ready()
            except (OSError, ValueError) as exc:
                raise DetectorSettingsError(f"{detector.metadata.id}: {exc}") from None
