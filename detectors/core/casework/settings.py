"""How findings become cases: weights, decay, threshold, levels, bounds (DAYLIGHT_CASE_*)."""

from __future__ import annotations

import ipaddress

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["CaseSettings"]


class CaseSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="DAYLIGHT_CASE_", frozen=True, extra="ignore")

    weights: dict[str, float] = Field(
        default={
            "geo_velocity": 25.0,
            "shared_ip": 25.0,
            "remote_access": 25.0,
            "continuous_session": 25.0,
            "payout_routing": 35.0,
            "self_dealing": 35.0,
            "rating_burst": 30.0,
            "template_reuse": 25.0,
            "bid_pattern": 20.0,
            "anonymizer": 15.0,
            "payout_holder_change": 30.0,
            "crypto_payout": 20.0,
            "shipping_mismatch": 30.0,
            "unverified_activity": 20.0,
            "working_hours": 25.0,
        },
        description="points of a Medium, high-confidence finding, by detector id",
    )
    default_weight: float = Field(
        default=25.0, ge=0, description="points of a detector the table does not name"
    )
    severity_factors: dict[str, float] = Field(
        default={"1": 0.25, "2": 0.5, "3": 1.0, "4": 1.4, "5": 1.8},
        description="multiplier by the finding's severity_id",
    )
    confidence_factors: dict[str, float] = Field(
        default={"1": 0.6, "2": 0.8, "3": 1.0}, description="multiplier by confidence_id"
    )
    repeat_factor: float = Field(
        default=0.5,
        gt=0,
        lt=1,
        description="each further finding of one detector counts this much less",
    )
    max_points_per_detector: float = Field(
        default=45.0, gt=0, description="no detector adds more, however often it fires"
    )
    half_life_days: float = Field(default=7.0, gt=0, description="points halve in this event time")
    open_score: float = Field(
        default=50.0, gt=0, le=100, description="risk score at which a case opens"
    )
    level_scores: tuple[float, float, float, float] = Field(
        default=(25.0, 50.0, 70.0, 90.0),
        description="risk scores where Low, Medium, High and Critical begin",
    )
    max_team_accounts: int = Field(
        default=100, ge=2, le=10_000, description="accounts one team case may gather"
    )
    max_findings_per_case: int = Field(default=500, ge=10, le=100_000)
    retention_days: float = Field(
        default=30.0, gt=0, description="a case with no finding this long (event time) is dropped"
    )
    link_allowlist_cidrs: tuple[str, ...] = Field(
        default=(), description="IP networks that never link accounts (offices, carrier NAT)"
    )
    link_allowlist_destinations: tuple[str, ...] = Field(
        default=(), description="payout destinations that never link accounts (pooled accounts)"
    )

    @field_validator("link_allowlist_cidrs")
    @classmethod
    def _networks(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for cidr in value:
            ipaddress.ip_network(cidr, strict=False)
        return value

    @model_validator(mode="after")
    def _ordered_levels(self) -> CaseSettings:
        if list(self.level_scores) != sorted(self.level_scores):
            raise ValueError("level_scores must be increasing")
        if self.max_points_per_detector >= self.open_score:
            raise ValueError(
                "max_points_per_detector must stay under open_score: one detector alone must "
                "not open a case"
            )
        return self
