"""What Daylight publishes on `daylight.cases`, and the analysts' feedback it reads back.

A case is an OCSF 1.8.0 Detection Finding (class 2004): it carries every account in
`resources`, the contributing findings in `finding_info.related_events`, the risk in
`risk_score` / `risk_level_id`, the analyst's decision in `verdict_id` and `status_id`.
"""

from __future__ import annotations

import ipaddress
from typing import Annotated, Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, model_validator

from schemas.finding import Analytic, Confidence, Metadata, Observable, Remediation, Resource

__all__ = [
    "RISK_LEVELS",
    "Case",
    "CaseInfo",
    "CaseVerdict",
    "ContributingFinding",
    "Feedback",
    "Suppression",
]

RISK_LEVELS = ("Info", "Low", "Medium", "High", "Critical")  # risk_level_id 0..4


class _Ocsf(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class ContributingFinding(_Ocsf):
    """A finding of daylight.alerts that adds to the case (OCSF related_event)."""

    uid: str = Field(description="the finding's finding_info.uid")
    type: str = Field(description="the detector id")
    title: str | None = None
    severity_id: int
    severity: str
    created_time: int = Field(description="the finding's time (event time), epoch ms")
    count: int | None = Field(default=None, description="points it adds now, after decay")
    desc: str | None = Field(default=None, description="the finding's message")


class CaseInfo(_Ocsf):
    uid: str = Field(description="deterministic: the same findings yield the same case uid")
    title: str
    analytic: Analytic
    desc: str
    types: list[str] = Field(default_factory=list)
    first_seen_time: int
    last_seen_time: int
    related_events: list[ContributingFinding]
    related_events_count: int


class Case(_Ocsf):
    """One message of `daylight.cases`, keyed by the case's primary account id."""

    class_uid: Literal[2004] = 2004
    class_name: Literal["Detection Finding"] = "Detection Finding"
    category_uid: Literal[2] = 2
    category_name: Literal["Findings"] = "Findings"
    activity_id: Literal[1, 2, 3]
    activity_name: Literal["Create", "Update", "Close"]
    type_uid: Literal[200401, 200402, 200403]
    type_name: str
    status_id: Literal[1, 2, 3, 4, 99] = Field(
        description="1 New, 2 In Progress, 3 Suppressed, 4 Resolved, 99 Other (Merged)"
    )
    status: str
    status_detail: str | None = None
    severity_id: int = Field(ge=1, le=5)
    severity: str
    confidence_id: Confidence
    confidence: str
    risk_score: int = Field(ge=0, le=100)
    risk_level_id: Literal[0, 1, 2, 3, 4]
    risk_level: str
    verdict_id: Literal[1, 2, 5] | None = Field(
        default=None, description="1 False Positive, 2 True Positive, 5 Benign"
    )
    verdict: str | None = None
    comment: str | None = Field(default=None, description="the analyst and their comment")
    is_alert: bool = True
    count: int = Field(description="accounts in the case")
    time: int
    start_time: int
    end_time: int
    duration: int
    message: str
    finding_info: CaseInfo
    remediation: Remediation
    resources: list[Resource] = Field(min_length=1)
    observables: list[Observable]
    metadata: Metadata
    unmapped: dict[str, Any]

    @property
    def account_id(self) -> str:
        return self.resources[0].uid

    @property
    def uid(self) -> str:
        return self.finding_info.uid


# ------------------------------------------------------------------ daylight.feedback
class _Feedback(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)

    analyst: str = Field(min_length=1, max_length=200)
    occurred_at: AwareDatetime


class CaseVerdict(_Feedback):
    type: Literal["case_verdict"]
    case_uid: str = Field(min_length=1, max_length=200)
    verdict: Literal["false_positive", "benign_true_positive", "confirmed"]
    suppress_days: int | None = Field(default=None, ge=1, le=3650)
    comment: str | None = Field(default=None, max_length=2000)


class Suppression(_Feedback):
    type: Literal["suppression"]
    entity_kind: Literal[
        "account", "ip", "cidr", "payout_destination", "instrument", "address", "template"
    ]
    value: str = Field(min_length=1, max_length=200)
    detectors: list[str] | None = None
    until: AwareDatetime | None = None
    reason: str = Field(min_length=1, max_length=2000)

    @model_validator(mode="after")
    def _value_fits_its_kind(self) -> Suppression:
        if self.entity_kind == "ip":
            ipaddress.ip_address(self.value)  # a ValueError names the bad address
        elif self.entity_kind == "cidr":
            ipaddress.ip_network(self.value, strict=False)
        if self.until is not None and self.until <= self.occurred_at:
            raise ValueError("until must be after occurred_at")
        return self


Feedback = Annotated[CaseVerdict | Suppression, Field(discriminator="type")]
