"""Settings shared by the detectors' own settings classes."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["DetectorSettings", "existing_file"]


class DetectorSettings(BaseSettings):
    """Each detector subclasses this with `env_prefix="DAYLIGHT_<ID>_"`."""

    model_config = SettingsConfigDict(frozen=True, extra="ignore")

    dedup_window_hours: float = Field(
        default=24.0, gt=0, description="at most one finding per entity per window (tumbling)"
    )


def existing_file(value: Path | None) -> Path | None:
    """An optional file setting: None, or a file that exists (a field validator)."""
    if value is not None and not value.is_file():
        raise ValueError(f"no such file: {value}")
    return value
