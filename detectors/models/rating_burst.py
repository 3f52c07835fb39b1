"""The pydantic models of rating_burst (`detectors.rating_burst`): its settings, kept apart from its
steps, which are compiled (mypyc) and cannot hold pydantic fields or validators."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from detectors.core.settings import DetectorSettings


class RatingBurstSettings(DetectorSettings):
    model_config = SettingsConfigDict(env_prefix="DAYLIGHT_RATING_BURST_", frozen=True)

    dedup_window_hours: float = Field(
        default=168.0, gt=0, description="bursts opening in one window are one finding"
    )
    min_score: int = Field(default=4, ge=1, le=5, description="a rating this high counts")
    min_freelancers: int = Field(
        default=3, ge=2, description="distinct freelancers rated highly within the window"
    )
    window_days: float = Field(default=7.0, gt=0, description="how close the ratings must be")
    high_severity_freelancers: int = Field(
        default=5, ge=2, description="freelancers in a burst that make it High"
    )
    max_ratings: int = Field(default=200, ge=3, le=10_000, description="ratings kept per client")
