"""continuous_session: an account active without a break for a day or more.

Advisory red flag: accounts logged in continuously for a day or more (identities worked in
shifts by several people so that activity never stops).
"""

from __future__ import annotations

from typing import Any, Final, TypedDict

from detectors.core.base import (
    Detector,
    DetectorMetadata,
    EntityKind,
    FindingDraft,
    dedup_bucket,
    remember_event_id,
)
from detectors.models.continuous_session import ContinuousSessionSettings
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
    description=(
        "The account was active without a break long enough for one person to sleep, as "
        "an identity worked in shifts is."
    ),
    attack_rationale=(
        "None: round-the-clock activity is a work pattern of the team behind the identity, "
        "not an adversary technique ATT&CK describes."
    ),
)


class SpanState(TypedDict):
    # Spans of activity, [start_ms, last_ms, events, reported, opened_ms, first event_id],
    # by start time.
    # reported: 0 none, 1 at min_span_hours, 2 escalated; opened_ms: the span's start when
    # first reported (the finding's identity). Several spans are kept, not just the latest:
    # logins and heartbeats come from two topics that a worker may read days apart in a
    # backlog, so a span can still grow after a later one began.
    spans: list[list[Any]]
    newest: dict[str, int]  # newest event time seen per source ("logins", "sessions")
    ips: list[str]
    recent: list[str]


_START: Final = 0
_LAST: Final = 1
_EVENTS: Final = 2
_REPORTED: Final = 3
_OPENED: Final = 4
_FIRST_ID: Final = 5
_ACTIVITY: Final = (Login, SessionEvent)
_MAX_SPANS: Final = 8
# Spans ending this long before the slower source's newest event are forgotten: the slower
# of the two topics decides, so a topic read days ahead never pushes out what the other
# topic is still adding to.
_KEEP_MS: Final = 3 * 86_400_000


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
        # After a gap longer than max_gap past the newest activity, every span is over.
        return int(max(span[_LAST] for span in state["spans"])) + self._gap_ms

    def step(
        self, state: SpanState | None, event: Login | SessionEvent
    ) -> tuple[SpanState | None, list[FindingDraft]]:
        event_ms = event.occurred_ms
        if state is None:
            state = {"spans": [], "newest": {}, "ips": [], "recent": []}
        if not remember_event_id(state["recent"], event.event_id):
            return state, []
        source = "logins" if isinstance(event, Login) else "sessions"
        newest = state["newest"]
        seen = newest.get(source)
        if seen is None or event_ms > seen:
            newest[source] = event_ms
        ip = event.ip
        if ip not in state["ips"]:
            state["ips"] = [*state["ips"], ip][-8:]
        gap = self._gap_ms
        horizon = min(newest.values()) - _KEEP_MS
        spans = state["spans"]
        if spans:
            # The usual case, a heartbeat inside the newest span with nothing to merge or
            # forget: the span grows in place (what the general path below would build).
            last = spans[-1]
            if (
                last[_START] <= event_ms <= last[_LAST] + gap
                and spans[0][_LAST] >= horizon
                and max(last[_LAST], event_ms) >= horizon
                and _apart_before(spans, len(spans) - 1, event_ms - gap)
            ):
                last[_LAST] = max(last[_LAST], event_ms)
                last[_EVENTS] += 1
                return self._judge(state, last, event)
            # The next usual case, the first event after a break, later than every span
            # ends, with nothing to merge or forget and room for one more: a new span
            # (again what the general path below would build).
            if len(spans) < _MAX_SPANS and all(horizon <= s[_LAST] < event_ms - gap for s in spans):
                span: list[Any] = [event_ms, event_ms, 1, 0, None, event.event_id]
                spans.append(span)
                return self._judge(state, span, event)
        # The spans this event touches merge into one with it; the others are kept while
        # they can still matter. One pass: an account with many short spans (a login now
        # and then) takes this path on every event.
        first_ms = event_ms
        last_ms, events, reported = event_ms, 1, 0
        opened: int | None = None
        first_id_of_span: str | None = event.event_id
        kept: list[list[Any]] = []
        for s in spans:
            if s[_START] - gap <= event_ms <= s[_LAST] + gap:
                if s[_START] < first_ms:  # the earliest start names the span (ties: the event)
                    first_ms, first_id_of_span = s[_START], _first_id(s)
                last_ms = max(last_ms, s[_LAST])
                events += s[_EVENTS]
                reported = max(reported, s[_REPORTED])
                if s[_OPENED] is not None and (opened is None or s[_OPENED] < opened):
                    opened = s[_OPENED]
            elif s[_LAST] >= horizon:
                kept.append(s)
        span = [first_ms, last_ms, events, reported, opened, first_id_of_span]
        if len(kept) >= _MAX_SPANS:
            # Past the limit, the spans with the least activity go first (a lone login); the
            # span this event belongs to always stays, however young: it may be the start of
            # a shift that will cross 24 h.
            kept = sorted(kept, key=lambda s: (s[_EVENTS], s[_LAST]))[-(_MAX_SPANS - 1) :]
        if span[_LAST] < horizon:  # the event belongs to a span too old to matter
            state["spans"] = sorted(kept, key=lambda s: s[_START])
            return state, []
        state["spans"] = sorted([*kept, span], key=lambda s: s[_START])
        return self._judge(state, span, event)

    def _judge(
        self, state: SpanState, span: list[Any], event: Login | SessionEvent
    ) -> tuple[SpanState | None, list[FindingDraft]]:
        length = span[_LAST] - span[_START]
        level = 2 if length >= self._escalate_ms else 1 if length >= self._min_ms else 0
        if level <= span[_REPORTED]:
            return state, []
        update = span[_REPORTED] > 0
        if span[_OPENED] is None:
            span[_OPENED] = span[_START]
        span[_REPORTED] = level
        return state, [self._finding(event, span, state["ips"], update)]

    def _finding(
        self, event: Login | SessionEvent, span: list[Any], ips: list[str], update: bool
    ) -> FindingDraft:
        account_id = event.account_id
        related: list[tuple[str, int, str | None]] = [
            (event.event_id, event.occurred_ms, event.type)
        ]
        opening = _first_id(span)
        if opening and opening != event.event_id:
            related.insert(0, (opening, int(span[_START]), None))
        hours = (span[_LAST] - span[_START]) / 3_600_000
        escalated = span[_REPORTED] >= 2
        return FindingDraft(
            detector=METADATA,
            # The day the span started, not its first event: a login read after the heartbeats
            # that follow it (another topic) moves the start by minutes, not the identity.
            uid_parts=(
                account_id,
                str(dedup_bucket(span[_OPENED], self.settings.dedup_window_hours)),
            ),
            accounts=[account_id],
            severity=Severity.HIGH if escalated else Severity.MEDIUM,
            confidence=Confidence.MEDIUM,
            message=(
                f"Account active for {hours:.1f} h with no gap over "
                f"{self.settings.max_gap_minutes:g} min ({span[_EVENTS]} events from "
                f"{len(ips)} IP address{'es' if len(ips) != 1 else ''})"
            ),
            start_ms=span[_START],
            end_ms=span[_LAST],
            evidences=[
                Evidence(src_endpoint=SrcEndpoint(ip=ip), user=User(uid=account_id)) for ip in ips
            ],
            unmapped={"max_gap_minutes": self.settings.max_gap_minutes},
            count=span[_EVENTS],
            related=related,
            ips=list(ips),
            update=update,
        )


def _apart_before(spans: list[list[Any]], count: int, before_ms: int) -> bool:
    """Whether each of the first `count` spans ended before `before_ms` (no slice copied:
    this runs on nearly every heartbeat, and mypyc makes the `all` a loop)."""
    return all(spans[index][_LAST] < before_ms for index in range(count))


def _first_id(span: list[Any]) -> str | None:
    """The event that opened the span (None in a span kept by an older version)."""
    return span[_FIRST_ID] if len(span) > _FIRST_ID else None


def build(settings: ContinuousSessionSettings | None = None) -> Detector:
    return Detector(METADATA, (ContinuousSession(settings or ContinuousSessionSettings()),))
