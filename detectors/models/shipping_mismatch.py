"""The pydantic models of shipping_mismatch (`detectors.shipping_mismatch`): its settings and the events it re-keys (AddressUse), kept apart from its
steps, which are compiled (mypyc) and cannot hold pydantic fields or validators."""

from __future__ import annotations

from typing import Literal

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from detectors.core.settings import DetectorSettings
from schemas.events import EventBase


class ShippingMismatchSettings(DetectorSettings):
    model_config = SettingsConfigDict(env_prefix="DAYLIGHT_SHIPPING_MISMATCH_", frozen=True)

    dedup_window_hours: float = Field(
        default=720.0, gt=0, description="farm findings opening in one window are one"
    )
    farm_min_accounts: int = Field(
        default=3, ge=2, le=1000, description="accounts shipping to one address that are a farm"
    )
    farm_window_days: float = Field(
        default=90.0, gt=0, description="how long an account's use of an address counts"
    )
    max_accounts_per_address: int = Field(
        default=200, ge=2, le=10_000, description="accounts kept per address"
    )
    profile_ttl_days: float = Field(
        default=1100.0, gt=0, description="an account with no event this long is forgotten"
    )


class AddressUse(EventBase):
    """An account's shipping address, judged against its document (internal, between stages)."""

    type: Literal["address_use"] = "address_use"
    address_fingerprint: str
    country: str
    #: Set on a change judged against the document: the document's other country.
    document_country: str | None = None
