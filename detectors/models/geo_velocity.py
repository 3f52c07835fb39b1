"""The pydantic models of geo_velocity (`detectors.geo_velocity`): its settings, kept apart from its
steps, which are compiled (mypyc) and cannot hold pydantic fields or validators."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, field_validator
from pydantic_settings import SettingsConfigDict

from detectors.core.settings import DetectorSettings, existing_file


class GeoVelocitySettings(DetectorSettings):
    model_config = SettingsConfigDict(env_prefix="DAYLIGHT_GEO_VELOCITY_", frozen=True)

    max_speed_kmh: float = Field(default=900.0, gt=0, description="faster than an airliner")
    min_distance_km: float = Field(
        default=100.0, ge=0, description="closer than this is GeoIP noise (carrier IPs, metro)"
    )
    coarse_min_distance_km: float = Field(
        default=1000.0,
        ge=0,
        description="minimum distance (a lower bound) when a position is known only to its country",
    )
    history_hours: float = Field(default=24.0, gt=0, description="how long a login is remembered")
    max_logins: int = Field(default=8, ge=2, le=64, description="logins kept per account")
    geoip_mmdb: Path | None = Field(
        default=None,
        validation_alias="DAYLIGHT_GEOIP_MMDB",
        description="MaxMind City .mmdb; default: the country database shipped with geoip2fast",
    )

    _exists = field_validator("geoip_mmdb")(existing_file)
