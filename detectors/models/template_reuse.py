"""The pydantic models of template_reuse (`detectors.template_reuse`): its settings and the events it re-keys (TemplateBand, TemplateGroup), kept apart from its
steps, which are compiled (mypyc) and cannot hold pydantic fields or validators."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator
from pydantic_settings import SettingsConfigDict

from detectors.core.settings import DetectorSettings
from schemas.events import EventBase


class TemplateReuseSettings(DetectorSettings):
    model_config = SettingsConfigDict(env_prefix="DAYLIGHT_TEMPLATE_REUSE_", frozen=True)

    dedup_window_hours: float = Field(
        default=720.0, gt=0, description="a template whose first use falls in a window is one"
    )
    min_accounts: int = Field(default=3, ge=2, description="distinct accounts that make a flag")
    similarity_min: float = Field(
        default=0.8, gt=0, le=1, description="estimated Jaccard similarity of the shingle sets"
    )
    min_words: int = Field(
        default=20, ge=5, description="shorter texts (greetings, one-liners) are not templates"
    )
    shingle_words: int = Field(default=5, ge=1, le=20, description="words per shingle")
    num_perm: int = Field(default=128, ge=16, le=1024, description="MinHash permutations")
    bands: int = Field(default=16, ge=1, description="LSH bands (num_perm / bands rows each)")
    retention_days: float = Field(
        default=90.0, gt=0, description="how long a text's use is remembered"
    )
    max_accounts_per_band: int = Field(
        default=50, ge=3, le=1_000, description="accounts kept per band and per template"
    )
    max_bands_per_account: int = Field(
        default=512, ge=16, le=100_000, description="bands remembered per account"
    )

    @model_validator(mode="after")
    def _bands_divide(self) -> TemplateReuseSettings:
        if self.num_perm % self.bands:
            raise ValueError(f"bands ({self.bands}) must divide num_perm ({self.num_perm})")
        return self


class TemplateBand(EventBase):
    """One band of a text's signature, with the text's use (internal, stage 1 to 2)."""

    type: Literal["template_band"] = "template_band"
    band: str
    signature: list[int]
    snippet: str


class TemplateGroup(EventBase):
    """Accounts whose texts are alike in one band (internal, stage 2 to 3): keyed by the
    earliest text's event id; `superseded_by` when an earlier text turned up."""

    type: Literal["template_group"] = "template_group"
    origin: str
    origin_ms: int
    members: dict[str, list[Any]]  # account -> [first ms, event id, similarity]
    snippet: str
    superseded_by: str | None = None
