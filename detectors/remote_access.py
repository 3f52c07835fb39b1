"""remote_access: the account works through remote desktop or remote-control software.

Advisory red flag: router port 3389 and other remote-desktop configurations (workers abroad
drive laptops hosted by "facilitators" in the employer's country).
"""

from __future__ import annotations

from typing import Any, TypedDict

from detectors.core.base import (
    AttackMapping,
    Detector,
    DetectorMetadata,
    EntityKind,
    FindingDraft,
    dedup_bucket,
    remember_event_id,
)
from detectors.models.remote_access import RemoteAccessSettings
from schemas.events import EventBase, SessionEvent
from schemas.finding import Confidence, Evidence, Severity, SrcEndpoint, User

__all__ = ["METADATA", "RemoteAccess", "RemoteAccessSettings", "build"]

METADATA = DetectorMetadata(
    id="remote_access",
    name="Remote desktop or remote-control access",
    title="Account works through remote desktop or remote-control software",
    advisory_flag="router port 3389 and other remote-desktop configurations",
    runbook=(
        "Ask where the worker's machine physically is; check the source IP for a residential "
        "'laptop farm' hosting several accounts (shared_ip) and the account's payout routing."
    ),
    topics=("platform.sessions",),
    dedup_window_hours=24.0,
    types=("Remote Access",),
    description=(
        "The account worked through remote access: a remote-desktop session, RDP (port 3389) "
        "in use or open on its source, or remote-control software running."
    ),
    attacks=(AttackMapping("T1219", "Remote Access Tools", "TA0011", "Command and Control"),),
    attack_rationale=(
        "T1219 Remote Access Tools: the session is driven through remote-control software or "
        "RDP from elsewhere, as a laptop farm's machines are driven from abroad."
    ),
)


class RemoteAccessState(TypedDict):
    last_ms: int
    alerted: list[int]
    recent: list[str]


class RemoteAccess:
    entity: EntityKind = "account"
    input_model: type[EventBase] | None = None

    def __init__(self, settings: RemoteAccessSettings) -> None:
        self.settings = settings
        self._tools = frozenset(settings.remote_tools)
        self._ports = frozenset(settings.rdp_ports)
        self._ttl_ms = int(settings.dedup_window_hours * 3_600_000)

    def key(self, event: Any) -> str | None:
        if isinstance(event, SessionEvent) and event.connection is not None:
            return event.account_id
        return None

    def expires_at_ms(self, state: RemoteAccessState) -> int:
        return state["last_ms"] + self._ttl_ms

    def signals(self, event: SessionEvent) -> list[str]:
        """Each remote-access sign the session shows, in words."""
        connection = event.connection
        if connection is None:
            return []
        found = []
        if connection.rdp_session:
            found.append("the desktop client runs inside a remote-desktop session")
        if connection.src_port in self._ports:
            found.append(f"connects from source port {connection.src_port}")
        # Most heartbeats list no open port and no remote tool: nothing to build then.
        if connection.open_ports:
            open_ports = sorted(self._ports.intersection(connection.open_ports))
            if open_ports:
                found.append(f"port {', '.join(map(str, open_ports))} open on the source IP")
        if connection.remote_tools:
            tools = sorted({t.strip().lower() for t in connection.remote_tools} & self._tools)
            if tools:
                found.append(f"remote-control software running: {', '.join(tools)}")
        return found

    def step(
        self, state: RemoteAccessState | None, event: SessionEvent
    ) -> tuple[RemoteAccessState | None, list[FindingDraft]]:
        event_ms = event.occurred_ms
        if state is None:
            state = {"last_ms": event_ms, "alerted": [], "recent": []}
        state["last_ms"] = max(state["last_ms"], event_ms)
        if not remember_event_id(state["recent"], event.event_id):
            return state, []
        signals = self.signals(event)
        if not signals:
            return state, []
        bucket = dedup_bucket(event_ms, self.settings.dedup_window_hours)
        if bucket in state["alerted"]:
            return state, []
        state["alerted"] = [*state["alerted"][-1:], bucket]
        return state, [self._finding(event, signals, bucket, event_ms)]

    def _finding(
        self, event: SessionEvent, signals: list[str], bucket: int, event_ms: int
    ) -> FindingDraft:
        connection = event.connection
        assert connection is not None  # key() admits only sessions with a connection
        rdp = bool(connection.rdp_session) or connection.src_port in self._ports
        severity = Severity.HIGH if rdp or len(signals) > 1 else Severity.MEDIUM
        confidence = Confidence.HIGH if connection.rdp_session else Confidence.MEDIUM
        return FindingDraft(
            detector=METADATA,
            uid_parts=(event.account_id, str(bucket)),
            accounts=[event.account_id],
            severity=severity,
            confidence=confidence,
            message=f"Session {event.session_id} from {event.ip}: " + "; ".join(signals),
            start_ms=event_ms,
            end_ms=event_ms,
            evidences=[
                Evidence(
                    src_endpoint=SrcEndpoint(ip=str(event.ip), port=connection.src_port),
                    user=User(uid=event.account_id),
                    data={
                        "event_id": event.event_id,
                        "session_id": event.session_id,
                        "rdp_session": connection.rdp_session,
                        "open_ports": list(connection.open_ports),
                        "remote_tools": list(connection.remote_tools),
                    },
                )
            ],
            unmapped={"signals": signals},
            count=len(signals),
            ips=[str(event.ip)],
        )


def build(settings: RemoteAccessSettings | None = None) -> Detector:
    return Detector(METADATA, (RemoteAccess(settings or RemoteAccessSettings()),))
