"""The pydantic models of shared_ip (`detectors.shared_ip`): its settings, kept apart from its
steps, which are compiled (mypyc) and cannot hold pydantic fields or validators."""

from __future__ import annotations

import ipaddress

from pydantic import Field, field_validator
from pydantic_settings import SettingsConfigDict

from detectors.core.settings import DetectorSettings


class SharedIpSettings(DetectorSettings):
    model_config = SettingsConfigDict(env_prefix="DAYLIGHT_SHARED_IP_", frozen=True)

    min_accounts: int = Field(default=3, ge=2, description="distinct accounts that open a case")
    window_hours: float = Field(default=24.0, gt=0, description="how long a login counts")
    max_accounts: int = Field(default=200, ge=3, le=10_000, description="accounts kept per IP")
    allowlist_cidrs: tuple[str, ...] = Field(
        default=(), description="egress networks (offices, carrier NAT) never reported"
    )

    @field_validator("allowlist_cidrs")
    @classmethod
    def _networks(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for cidr in value:
            ipaddress.ip_network(cidr, strict=False)  # raises a ValueError naming the CIDR
        return value
