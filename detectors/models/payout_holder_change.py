"""The pydantic models of payout_holder_change (`detectors.payout_holder_change`): its settings, kept apart from its
steps, which are compiled (mypyc) and cannot hold pydantic fields or validators."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from detectors.core.settings import DetectorSettings


class PayoutHolderChangeSettings(DetectorSettings):
    model_config = SettingsConfigDict(env_prefix="DAYLIGHT_PAYOUT_HOLDER_CHANGE_", frozen=True)

    name_similarity_min: float = Field(
        default=0.85, gt=0, le=1, description="holder name vs legal name, after folding (0-1)"
    )
    rechange_window_days: float = Field(
        default=7.0, gt=0, description="another change this soon before makes it High"
    )
    profile_ttl_days: float = Field(
        default=1100.0, gt=0, description="an account with no event this long is forgotten"
    )
