"""The pydantic models of payout_routing (`detectors.payout_routing`): its settings and the events it re-keys (ProfiledPayout), kept apart from its
steps, which are compiled (mypyc) and cannot hold pydantic fields or validators."""

from __future__ import annotations

from typing import Literal

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from detectors.core.settings import DetectorSettings
from schemas.events import EventBase, Payout


class PayoutRoutingSettings(DetectorSettings):
    model_config = SettingsConfigDict(env_prefix="DAYLIGHT_PAYOUT_ROUTING_", frozen=True)

    high_risk_countries: tuple[str, ...] = Field(
        default=("CN", "HK", "MO", "RU", "KP", "LA", "KH"),
        description="destination countries that need a reason (ISO alpha-2)",
    )
    min_intermediaries: int = Field(default=2, ge=1, description="route length that is a flag")
    name_similarity_min: float = Field(
        default=0.85, gt=0, le=1, description="holder name vs legal name, after normalising"
    )
    shared_destination_min_accounts: int = Field(default=2, ge=2)
    shared_destination_window_days: float = Field(default=30.0, gt=0)
    profile_ttl_days: float = Field(
        default=1100.0,
        gt=0,
        description="a profile with no profile event or payout this long is dropped",
    )
    max_accounts_per_destination: int = Field(default=100, ge=2, le=10_000)


class ProfiledPayout(EventBase):
    """A payout with what the account's profile says about it (internal, between stages)."""

    type: Literal["profiled_payout"] = "profiled_payout"
    payout: Payout
    declared_country: str | None = None
    document_country: str | None = None
    legal_name: str | None = None
    reasons: list[str] = Field(default_factory=list)
    codes: list[str] = Field(default_factory=list)
