"""The pydantic models of working_hours (`detectors.working_hours`): its settings, kept apart from its
steps, which are compiled (mypyc) and cannot hold pydantic fields or validators."""

from __future__ import annotations

from pydantic import Field, ValidationInfo, field_validator
from pydantic_settings import SettingsConfigDict

from detectors.core.settings import DetectorSettings


class WorkingHoursSettings(DetectorSettings):
    model_config = SettingsConfigDict(env_prefix="DAYLIGHT_WORKING_HOURS_", frozen=True)

    dedup_window_hours: float = Field(
        default=168.0, gt=0, description="one finding per account per window (tumbling)"
    )
    window_days: int = Field(default=14, ge=7, le=60, description="days of activity weighed")
    min_active_days: int = Field(
        default=7, ge=2, le=60, description="active days in the window before judging"
    )
    work_start_hour: int = Field(default=8, ge=0, le=23, description="local working day start")
    work_end_hour: int = Field(default=19, ge=1, le=24, description="local working day end")
    suspect_offsets_hours: tuple[int, ...] = Field(
        default=(8, 9), description="the UTC offsets whose fit is the flag (hours)"
    )
    min_share: float = Field(
        default=0.6, gt=0, le=1, description="share of active hours in their working day (0-1)"
    )
    margin: float = Field(
        default=0.4, gt=0, le=1, description="how much better than the declared zone (0-1)"
    )
    best_fit_tolerance: float = Field(
        default=0.1, ge=0, le=1, description="how far below the best-fitting offset's share"
    )
    profile_ttl_days: float = Field(
        default=400.0, gt=0, description="an account with no new active hour this long is forgotten"
    )

    @field_validator("work_end_hour")
    @classmethod
    def _after_start(cls, value: int, info: ValidationInfo) -> int:
        start = info.data.get("work_start_hour")
        if start is not None and value <= start:
            raise ValueError(f"the working day must end after it starts ({start})")
        return value

    @field_validator("min_active_days")
    @classmethod
    def _within_window(cls, value: int, info: ValidationInfo) -> int:
        window = info.data.get("window_days")
        if window is not None and value > window:
            raise ValueError(f"more active days than the window holds ({window})")
        return value
