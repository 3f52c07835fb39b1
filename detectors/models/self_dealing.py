"""The pydantic models of self_dealing (`detectors.self_dealing`): its settings and the events it re-keys (FingerprintUse), kept apart from its
steps, which are compiled (mypyc) and cannot hold pydantic fields or validators."""

from __future__ import annotations

from typing import Literal

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from detectors.core.settings import DetectorSettings
from schemas.events import (
    EventBase,
)


class SelfDealingSettings(DetectorSettings):
    model_config = SettingsConfigDict(env_prefix="DAYLIGHT_SELF_DEALING_", frozen=True)

    dedup_window_hours: float = Field(
        default=720.0, gt=0, description="findings of one fingerprint opening in one window are one"
    )
    retention_days: float = Field(
        default=365.0, gt=0, description="how long a fingerprint's use is remembered"
    )
    max_counterparties: int = Field(
        default=200, ge=1, le=10_000, description="freelancers kept per client"
    )
    max_accounts_per_fingerprint: int = Field(
        default=100, ge=2, le=10_000, description="accounts kept per payment fingerprint"
    )


class FingerprintUse(EventBase):
    """An account's use of a payment fingerprint (internal, between stages)."""

    type: Literal["fingerprint_use"] = "fingerprint_use"
    fingerprint: str
    side: Literal["funds", "paid"]
    method: str
    counterparties: list[str] = Field(default_factory=list)  # freelancers hired or rated
