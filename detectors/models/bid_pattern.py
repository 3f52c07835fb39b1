"""The pydantic models of bid_pattern (`detectors.bid_pattern`): its settings and the events it re-keys (BidActivity), kept apart from its
steps, which are compiled (mypyc) and cannot hold pydantic fields or validators."""

from __future__ import annotations

from typing import Literal

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from detectors.core.settings import DetectorSettings
from schemas.events import EventBase


class BidPatternSettings(DetectorSettings):
    model_config = SettingsConfigDict(env_prefix="DAYLIGHT_BID_PATTERN_", frozen=True)

    dedup_window_hours: float = Field(
        default=168.0, gt=0, description="one finding per freelancer per window (tumbling)"
    )
    window_days: int = Field(default=7, ge=1, le=60, description="how far back bids count")
    min_bids: int = Field(default=30, ge=2, description="bids within the window that count")
    max_accepted_share: float = Field(
        default=0.05, ge=0, lt=1, description="share of those bids accepted, at most"
    )
    bids_per_login_max: float = Field(
        default=10.0, gt=0, description="bids per login above which bidding is not a person's"
    )
    acceptance_grace_hours: float = Field(
        default=24.0,
        ge=0,
        description="how long after a bid its acceptance still counts: the decision waits so long",
    )
    min_bids_for_rate: int = Field(
        default=15, ge=2, description="bids within the window before bids per login counts"
    )
    max_bids: int = Field(default=500, ge=10, le=100_000, description="bids kept per freelancer")


class BidActivity(EventBase):
    """A bid with the bidder's recent logins, or an acceptance (internal, between stages)."""

    type: Literal["bid_activity"] = "bid_activity"
    kind: Literal["bid", "accepted"]
    freelancer_id: str
    job_id: str
    logins: int = 0  # the bidder's logins within the window before the bid (bids only)
