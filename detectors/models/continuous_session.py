"""The pydantic models of continuous_session (`detectors.continuous_session`): its settings, kept apart from its
steps, which are compiled (mypyc) and cannot hold pydantic fields or validators."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from detectors.core.settings import DetectorSettings


class ContinuousSessionSettings(DetectorSettings):
    model_config = SettingsConfigDict(env_prefix="DAYLIGHT_CONTINUOUS_SESSION_", frozen=True)

    max_gap_minutes: float = Field(default=30.0, gt=0, description="a longer gap ends a span")
    min_span_hours: float = Field(default=24.0, gt=0, description="span that opens a finding")
    escalate_span_hours: float = Field(default=48.0, gt=0, description="span that raises severity")
