"""What every detector shares: its metadata, its interface, and how it words a finding."""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final, Literal, Protocol, TypeVar

from schemas.events import EventBase
from schemas.finding import (
    Analytic,
    Attack,
    Confidence,
    Evidence,
    Finding,
    FindingInfo,
    Metadata,
    Observable,
    Product,
    RelatedEvent,
    Remediation,
    Resource,
    Severity,
    Tactic,
    Technique,
)

__all__ = [
    "PRODUCT_VERSION",
    "UNCHANGED",
    "AttackMapping",
    "DeferringStage",
    "Detector",
    "DetectorMetadata",
    "EntityKind",
    "FindingDraft",
    "Stage",
    "StateT",
    "Unchanged",
    "dedup_bucket",
    "haversine_km",
    "remember_event_id",
    "to_ms",
]

PRODUCT_VERSION = "0.1.0"
EntityKind = Literal[
    "account",
    "ip",
    "payout_destination",
    "freelancer",
    "payment_fingerprint",
    "template_band",
    "template",
    "shipping_address",
]
StateT = TypeVar("StateT")


#: What `Stage.step` returns as the new state when the event changed nothing (and the state it
#: was given was not touched): the engine then writes nothing, so no changelog record either.
class Unchanged:
    def __repr__(self) -> str:
        return "UNCHANGED"


UNCHANGED: Final = Unchanged()
OutT = TypeVar("OutT")


@dataclass(frozen=True)
class AttackMapping:
    """A MITRE ATT&CK technique the red flag is an instance of, with the tactic it serves."""

    technique_id: str
    technique: str
    tactic_id: str
    tactic: str


@dataclass(frozen=True)
class DetectorMetadata:
    """A detector's identity card, reviewed with its code (panther-analysis style)."""

    id: str
    name: str
    title: str
    advisory_flag: str
    runbook: str
    topics: tuple[str, ...]
    dedup_window_hours: float
    types: tuple[str, ...] = ()
    #: What a finding of this detector says was found, in a sentence (finding_info.desc).
    description: str = ""
    #: MITRE ATT&CK techniques, only where the mapping is real; `attack_rationale` says why
    #: the mapping holds, or why there is none.
    attacks: tuple[AttackMapping, ...] = ()
    attack_rationale: str = ""


@dataclass
class FindingDraft:
    """What a detector decides; `to_finding` turns it into the OCSF finding of the contract."""

    detector: DetectorMetadata
    uid_parts: tuple[str, ...]
    accounts: Sequence[str]
    severity: Severity
    confidence: Confidence
    message: str
    start_ms: int
    end_ms: int
    evidences: list[Evidence]
    unmapped: dict[str, Any] = field(default_factory=dict)
    ips: Sequence[str] = ()
    update: bool = False
    #: Set on a provisional finding the evidence re-keyed: it is closed, naming this uid.
    closed_by: str | None = None
    #: How many of what the finding is about (OCSF `count`): accounts, reasons, signals.
    count: int | None = None
    #: The platform events that triggered it: (event_id, event time ms, type); by default
    #: those its evidences name.
    related: Sequence[tuple[str, int, str | None]] = ()

    @property
    def uid(self) -> str:
        digest = hashlib.sha256("\x1f".join((self.detector.id, *self.uid_parts)).encode())
        return f"{self.detector.id}-{digest.hexdigest()[:32]}"

    def _related_from_evidences(self) -> list[tuple[str, int, str | None]]:
        found: dict[str, tuple[str, int, str | None]] = {}
        for evidence in self.evidences:
            data = evidence.data
            event_id = data.get("event_id")
            if isinstance(event_id, str) and event_id not in found:
                at = data.get("time", data.get("first_time", self.start_ms))
                found[event_id] = (event_id, int(at), data.get("event_type"))
        return list(found.values())

    def to_finding(self) -> Finding:
        accounts = list(dict.fromkeys(self.accounts))
        # Observable names are the paths of the attributes holding the values (OCSF); an IP
        # is an observable only where an evidence holds it.
        shown_ips = {e.src_endpoint.ip for e in self.evidences if e.src_endpoint is not None}
        observables = [
            Observable(name="resources[].uid", type_id=10, type="Resource UID", value=account)
            for account in accounts
        ] + [
            Observable(name="evidences[].src_endpoint.ip", type_id=2, type="IP Address", value=ip)
            for ip in dict.fromkeys(self.ips)
            if ip in shown_ips
        ]
        related = [
            RelatedEvent(uid=uid, created_time=at, type=kind)
            for uid, at, kind in (self.related or self._related_from_evidences())
        ]
        attacks = [
            Attack(
                technique=Technique(uid=m.technique_id, name=m.technique),
                tactic=Tactic(uid=m.tactic_id, name=m.tactic),
            )
            for m in self.detector.attacks
        ]
        activity = 3 if self.closed_by else 2 if self.update else 1
        activity_name = ("Create", "Update", "Close")[activity - 1]
        return Finding(
            activity_id=activity,
            activity_name=activity_name,
            type_uid=200400 + activity,
            type_name=f"Detection Finding: {activity_name}",
            status_id=99 if self.closed_by else 1,
            status="Superseded" if self.closed_by else "New",
            status_detail=f"superseded by {self.closed_by}" if self.closed_by else None,
            severity_id=self.severity,
            severity=self.severity.name.title(),
            confidence_id=self.confidence,
            confidence=self.confidence.name.title(),
            time=self.end_ms,
            start_time=self.start_ms,
            end_time=self.end_ms,
            message=self.message,
            count=self.count,
            duration=self.end_ms - self.start_ms,
            finding_info=FindingInfo(
                uid=self.uid,
                title=self.detector.title,
                analytic=Analytic(uid=self.detector.id, name=self.detector.name),
                desc=self.detector.description or None,
                types=list(self.detector.types),
                first_seen_time=self.start_ms,
                last_seen_time=self.end_ms,
                attacks=attacks or None,
                related_events=related,
                related_events_count=len(related),
            ),
            remediation=Remediation(desc=self.detector.runbook),
            resources=[Resource(uid=account) for account in accounts],
            evidences=self.evidences,
            observables=observables,
            metadata=Metadata(product=Product(version=PRODUCT_VERSION)),
            unmapped=self.unmapped,
        )


class DeferringStage(Protocol[StateT, OutT]):
    """A stage some of whose decisions rest on the absence of an event (a payout judged
    against a profile that may not have been read yet). It keeps them pending in its state;
    the engine calls `release` once every topic it reads is complete up to their time."""

    def due_at_ms(self, state: StateT) -> int | None:
        """Event time of the earliest pending decision, or None when nothing is pending."""
        ...

    def release(self, state: StateT, complete_ms: int) -> tuple[StateT | None, list[OutT]]:
        """Make the pending decisions at or before `complete_ms`; return the new state."""
        ...


class Stage(Protocol[StateT, OutT]):
    """A pure state machine over typed events, keyed by one entity; it knows nothing of Kafka."""

    entity: EntityKind
    # What a later stage reads from the stage before it (None: contract events).
    input_model: type[EventBase] | None

    def key(self, event: Any) -> str | None:
        """The entity whose state this event touches, or None when the event is not for us."""
        ...

    def step(
        self, state: StateT | None, event: Any
    ) -> tuple[StateT | Unchanged | None, list[OutT]]:
        """Apply one event; return the new state (None to forget the entity, `UNCHANGED`
        when the event changed nothing) and outputs."""
        ...

    def expires_at_ms(self, state: StateT) -> int:
        """Event time (epoch ms) after which the whole state of the entity can be dropped."""
        ...


@dataclass(frozen=True)
class Detector:
    """One red flag: its metadata and its stages.

    Most detectors are one stage keyed by account, IP or payout destination. A detector whose
    evidence spans two entities (payout_routing: the account's profile, then the destination)
    chains stages: what one stage outputs, the next consumes, re-keyed by its own entity.
    Findings are the FindingDraft outputs of the last stage.
    """

    metadata: DetectorMetadata
    stages: tuple[Stage[Any, Any], ...]


def to_ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def dedup_bucket(event_ms: int, window_hours: float) -> int:
    """Index of the tumbling dedup window (aligned to the epoch, UTC) holding `event_ms`.

    A finding's uid is derived from (detector, entity, bucket), so re-delivery, disorder and
    replay all name the same finding.
    """
    return event_ms // int(window_hours * 3_600_000)


def check_readable(setting: str, where: object, kind: str, probe: Callable[[], object]) -> None:
    """Run `probe` (a first look-up in a database a detector reads); if it fails, a
    ValueError naming the environment variable `setting`, the file (`where`) and what it
    should have been (`kind`), for `detectors.prepare` to stop the command at start."""
    try:
        probe()
    except Exception as exc:  # the readers raise their own errors for a bad file
        raise ValueError(f"{setting}: {where} is not a readable {kind} ({exc})") from None


def remember_event_id(recent: list[str], event_id: str, keep: int = 8) -> bool:
    """Record `event_id` in a fixed-size list; False when it was already seen (a duplicate)."""
    if event_id in recent:
        return False
    recent.append(event_id)
    del recent[:-keep]
    return True


_EARTH_RADIUS_KM: Final = 6371.0088


def haversine_km(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle distance in km."""
    phi1, phi2 = math.radians(lat1), math.radians(lat2)
    dphi = phi2 - phi1
    dlambda = math.radians(lon2 - lon1)
    a = math.sin(dphi / 2) ** 2 + math.cos(phi1) * math.cos(phi2) * math.sin(dlambda / 2) ** 2
    return 2 * _EARTH_RADIUS_KM * math.asin(min(1.0, math.sqrt(a)))
