"""continuous_session: an account active without a break for a day or more.

Advisory red flag: accounts logged in continuously for a day or more (identities worked in
shifts by several people so that activity never stops).
"""

from __future__ import annotations

from typing import Any, TypedDict

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from detectors.base import (
    Detector,
    DetectorMetadata,
    EntityKind,
    FindingDraft,
    dedup_bucket,
    remember_event_id,
    to_ms,
)
from detectors.settings import DetectorSettings
from schemas.events import EventBase, Login, SessionEvent
from schemas.finding import Confidence, Evidence, Severity, SrcEndpoint, User

__all__ = ["METADATA", "ContinuousSession", "ContinuousSessionSettings", "build"]

METADATA = DetectorMetadata(
    id="continuous_session",
    name="Continuous activity for a day or more",
    title="Account active without a break for 24 hours or more",
    advisory_flag="accounts logged in continuously for a day or more",
    runbook=(
        "Look at the activity by hour: shift changes show as a change of IP, device or typing "
        "pattern; check for other accounts active from the same IPs."
    ),
    topics=("platform.logins", "platform.sessions"),
    dedup_window_hours=24.0,
    types=("Anomalous Activity",),
)


class ContinuousSessionSettings(DetectorSettings):
    model_config = SettingsConfigDict(env_prefix="DAYLIGHT_CONTINUOUS_SESSION_", frozen=True)

    max_gap_minutes: float = Field(default=30.0, gt=0, description="a longer gap ends a span")
    min_span_hours: float = Field(default=24.0, gt=0, description="span that opens a finding")
    escalate_span_hours: float = Field(default=48.0, gt=0, description="span that raises severity")


class SpanState(TypedDict):
    start_ms: int
    last_ms: int
    events: int
    ips: list[str]
    reported: int  # 0 none, 1 reported at min_span_hours, 2 escalated
    opened_ms: int | None  # span start when first reported: the finding's identity
    recent: list[str]
    # The span before this one, [start_ms, last_ms, reported, opened_ms]: a heartbeat that
    # arrives late can prove the gap between them never was, and join them again.
    previous: list[Any] | None


_ACTIVITY = (Login, SessionEvent)


class ContinuousSession:
    entity: EntityKind = "account"
    input_model: type[EventBase] | None = None

    def __init__(self, settings: ContinuousSessionSettings) -> None:
        self.settings = settings
        self._gap_ms = int(settings.max_gap_minutes * 60_000)
        self._min_ms = int(settings.min_span_hours * 3_600_000)
        self._escalate_ms = int(settings.escalate_span_hours * 3_600_000)

    def key(self, event: Any) -> str | None:
        if isinstance(event, _ACTIVITY) and event.type != "login_failed":
            return event.account_id
        return None

    def expires_at_ms(self, state: SpanState) -> int:
        # After a gap longer than max_gap the span is over; only a late event within the gap
        # could still extend it.
        return state["last_ms"] + self._gap_ms

    def step(
        self, state: SpanState | None, event: Login | SessionEvent
    ) -> tuple[SpanState | None, list[FindingDraft]]:
        event_ms = to_ms(event.occurred_at)
        ip = str(event.ip)
        if state is None or event_ms > state["last_ms"] + self._gap_ms:
            previous = None
            if state is not None:
                previous = [
                    state["start_ms"], state["last_ms"], state["reported"], state["opened_ms"]
                ]  # fmt: skip
            return _new_span(event_ms, ip, event.event_id, previous), []
        if not remember_event_id(state["recent"], event.event_id):
            return state, []
        if event_ms < state["start_ms"] - self._gap_ms:
            return state, []  # a late event of an earlier span: that span is closed
        earlier = state["previous"]
        if event_ms < state["start_ms"] and earlier and event_ms <= earlier[1] + self._gap_ms:
            # The late event bridges the gap: the two spans were one.
            start_ms, _, reported, opened_ms = earlier
            state["start_ms"] = int(start_ms)
            state["reported"] = max(state["reported"], int(reported))
            if opened_ms is not None:
                state["opened_ms"] = int(opened_ms)
            state["previous"] = None
        state["start_ms"] = min(state["start_ms"], event_ms)
        state["last_ms"] = max(state["last_ms"], event_ms)
        state["events"] += 1
        if ip not in state["ips"]:
            state["ips"] = [*state["ips"], ip][-8:]
        span_ms = state["last_ms"] - state["start_ms"]
        level = 2 if span_ms >= self._escalate_ms else 1 if span_ms >= self._min_ms else 0
        if level <= state["reported"]:
            return state, []
        update = state["reported"] > 0
        if state["opened_ms"] is None:
            state["opened_ms"] = state["start_ms"]
        state["reported"] = level
        return state, [self._finding(event.account_id, state, update)]

    def _finding(self, account_id: str, state: SpanState, update: bool) -> FindingDraft:
        hours = (state["last_ms"] - state["start_ms"]) / 3_600_000
        escalated = state["reported"] >= 2
        return FindingDraft(
            detector=METADATA,
            # The day the span started, not its first event: a login read after the heartbeats
            # that follow it (another topic) moves the start by minutes, not the identity.
            uid_parts=(
                account_id,
                str(dedup_bucket(state["opened_ms"] or 0, self.settings.dedup_window_hours)),
            ),
            accounts=[account_id],
            severity=Severity.HIGH if escalated else Severity.MEDIUM,
            confidence=Confidence.MEDIUM,
            message=(
                f"Account active for {hours:.1f} h with no gap over "
                f"{self.settings.max_gap_minutes:g} min ({state['events']} events from "
                f"{len(state['ips'])} IP address{'es' if len(state['ips']) != 1 else ''})"
            ),
            start_ms=state["start_ms"],
            end_ms=state["last_ms"],
            evidences=[
                Evidence(src_endpoint=SrcEndpoint(ip=ip), user=User(uid=account_id))
                for ip in state["ips"]
            ],
            unmapped={
                "span_hours": round(hours, 2),
                "event_count": state["events"],
                "max_gap_minutes": self.settings.max_gap_minutes,
            },
            ips=list(state["ips"]),
            update=update,
        )


def _new_span(event_ms: int, ip: str, event_id: str, previous: list[Any] | None) -> SpanState:
    return {
        "start_ms": event_ms,
        "last_ms": event_ms,
        "events": 1,
        "ips": [ip],
        "reported": 0,
        "opened_ms": None,
        "recent": [event_id],
        "previous": previous,
    }


def build(settings: ContinuousSessionSettings | None = None) -> Detector:
    return Detector(METADATA, (ContinuousSession(settings or ContinuousSessionSettings()),))
