"""The finding Daylight publishes: the subset of an OCSF 1.8.0 Detection Finding (class 2004)."""

from __future__ import annotations

from enum import IntEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "OCSF_VERSION",
    "Analytic",
    "Attack",
    "Confidence",
    "Evidence",
    "Finding",
    "FindingInfo",
    "Location",
    "Metadata",
    "Observable",
    "Product",
    "RelatedEvent",
    "Remediation",
    "Resource",
    "Severity",
    "SrcEndpoint",
    "Tactic",
    "Technique",
    "User",
]

OCSF_VERSION = "1.8.0"


class Severity(IntEnum):
    """OCSF severity_id."""

    INFORMATIONAL = 1
    LOW = 2
    MEDIUM = 3
    HIGH = 4
    CRITICAL = 5


class Confidence(IntEnum):
    """OCSF confidence_id."""

    LOW = 1
    MEDIUM = 2
    HIGH = 3


class _Ocsf(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Analytic(_Ocsf):
    uid: str = Field(description="detector id, e.g. geo_velocity")
    name: str
    type_id: Literal[1] = Field(default=1, description="OCSF analytic type 1: Rule")
    type: Literal["Rule"] = "Rule"


class Technique(_Ocsf):
    uid: str = Field(description="MITRE ATT&CK technique id, e.g. T1078")
    name: str


class Tactic(_Ocsf):
    uid: str = Field(description="MITRE ATT&CK tactic id, e.g. TA0001")
    name: str


class Attack(_Ocsf):
    """An OCSF MITRE ATT&CK object: given only where the mapping is real."""

    technique: Technique
    tactic: Tactic
    version: str = "17"


class RelatedEvent(_Ocsf):
    """A platform event that triggered the finding (OCSF related_event)."""

    uid: str = Field(description="the event's event_id")
    created_time: int | None = Field(default=None, description="its occurred_at, epoch ms")
    type: str | None = Field(default=None, description="its contract type, when known")


class FindingInfo(_Ocsf):
    uid: str = Field(description="deterministic: the same evidence always yields the same uid")
    title: str
    analytic: Analytic
    desc: str | None = Field(default=None, description="what the detector found, in a sentence")
    types: list[str] = Field(default_factory=list)
    first_seen_time: int | None = None
    last_seen_time: int | None = None
    attacks: list[Attack] | None = Field(
        default=None, description="MITRE ATT&CK techniques, only where the mapping is real"
    )
    related_events: list[RelatedEvent] = Field(default_factory=list)
    related_events_count: int | None = None


class Remediation(_Ocsf):
    desc: str = Field(description="the runbook: what the analyst checks next")


class Product(_Ocsf):
    name: Literal["Daylight"] = "Daylight"
    vendor_name: str = "Daylight"
    version: str


class Metadata(_Ocsf):
    version: Literal["1.8.0"] = "1.8.0"
    product: Product


class Resource(_Ocsf):
    uid: str
    type: Literal["account"] = "account"


class Observable(_Ocsf):
    name: Literal["resources[].uid", "evidences[].src_endpoint.ip"] = Field(
        description="the path of the attribute that holds the value, as OCSF requires"
    )
    type_id: Literal[2, 10] = Field(description="2: IP Address, 10: Resource UID (account)")
    type: Literal["IP Address", "Resource UID"]
    value: str


class Location(_Ocsf):
    country: str | None = None
    city: str | None = None
    lat: float | None = None
    long: float | None = None


class SrcEndpoint(_Ocsf):
    ip: str | None = None
    port: int | None = None
    location: Location | None = None


class User(_Ocsf):
    uid: str


class Evidence(_Ocsf):
    src_endpoint: SrcEndpoint | None = None
    user: User | None = None
    data: dict[str, Any] = Field(default_factory=dict)


class Finding(_Ocsf):
    """One message of `daylight.alerts`, keyed by the primary account id."""

    class_uid: Literal[2004] = 2004
    class_name: Literal["Detection Finding"] = "Detection Finding"
    category_uid: Literal[2] = 2
    category_name: Literal["Findings"] = "Findings"
    activity_id: Literal[1, 2, 3] = Field(
        default=1, description="1: Create, 2: Update, 3: Close (a provisional finding superseded)"
    )
    activity_name: Literal["Create", "Update", "Close"] = "Create"
    type_uid: Literal[200401, 200402, 200403] = 200401
    type_name: str = "Detection Finding: Create"
    status_id: Literal[1, 99] = Field(default=1, description="1: New, 99: Other (Superseded)")
    status: Literal["New", "Superseded"] = "New"
    status_detail: str | None = Field(
        default=None, description="for a closed finding, the uid of the one that replaces it"
    )
    severity_id: Severity
    severity: str
    confidence_id: Confidence
    confidence: str
    time: int = Field(
        description="epoch ms when the finding was made (event time of its last evidence)"
    )
    start_time: int = Field(description="epoch ms of the earliest evidence")
    end_time: int = Field(description="epoch ms of the latest evidence")
    message: str
    is_alert: Literal[True] = True
    count: int | None = Field(
        default=None, description="how many of what the finding is about (accounts, reasons...)"
    )
    duration: int | None = Field(default=None, description="ms from start_time to end_time")
    finding_info: FindingInfo
    remediation: Remediation | None = None
    resources: list[Resource] = Field(min_length=1)
    evidences: list[Evidence] = Field(min_length=1)
    observables: list[Observable] = Field(default_factory=list)
    metadata: Metadata
    unmapped: dict[str, Any] = Field(default_factory=dict)

    @property
    def account_id(self) -> str:
        """The primary account: the message key on `daylight.alerts`."""
        return self.resources[0].uid

    @property
    def detector_id(self) -> str:
        return self.finding_info.analytic.uid
