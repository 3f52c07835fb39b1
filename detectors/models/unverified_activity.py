"""The pydantic models of unverified_activity (`detectors.unverified_activity`): its settings, kept apart from its
steps, which are compiled (mypyc) and cannot hold pydantic fields or validators."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from detectors.core.settings import DetectorSettings


class UnverifiedActivitySettings(DetectorSettings):
    model_config = SettingsConfigDict(env_prefix="DAYLIGHT_UNVERIFIED_ACTIVITY_", frozen=True)

    dedup_window_hours: float = Field(
        default=168.0, gt=0, description="one finding per account per window (tumbling)"
    )
    require_account_created: bool = Field(
        default=True,
        description="judge only accounts whose account_created event was read before the act",
    )
    account_ttl_days: float = Field(
        default=1100.0,
        gt=0,
        description="an account with no event this long is forgotten (its creation with it)",
    )
