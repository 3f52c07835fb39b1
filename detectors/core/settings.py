"""Settings shared by the detectors' own settings classes."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["DetectorSettings"]


class DetectorSettings(BaseSettings):
    """Each detector subclasses this with `env_prefix="DAYLIGHT_<ID>_"`."""

    model_config = SettingsConfigDict(frozen=True, extra="ignore")

    dedup_window_hours: float = Field(
        default=24.0, gt=0, description="at most one finding per entity per window (tumbling)"
    )
