"""unverified_activity: the account bids, contracts or asks for money before it is verified.

Advisory mitigation for platforms: allow no activity before full verification. A team works a
new identity before its documents are checked, or never gets them checked. By account: bids
(`bid_submitted`), contracts (`contract_started`, counted for the account that publishes it)
and payout requests (`payout_requested`) made before the account's first `identity_verified`.

"Before verification" rests on the absence of an event: the activity waits in the state until
the input is complete up to its time plus the allowed lateness (the slowest input topic's
event-time watermark), so a backlog that delivers the marketplace ahead of the accounts topic
invents nothing. Only accounts whose creation Daylight has read are judged (by default): an
account created before the history Daylight holds may have been verified before it too.
One finding per account per window, updated as the count of unverified actions doubles;
High when money was asked for before verification.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Final, TypedDict

from detectors.core.base import (
    Detector,
    DetectorMetadata,
    EntityKind,
    FindingDraft,
    dedup_bucket,
    remember_event_id,
)
from detectors.core.profile import defer, due_at, judge_due, overflow_ms
from detectors.models.unverified_activity import UnverifiedActivitySettings
from schemas.events import (
    AccountCreated,
    BidSubmitted,
    ContractStarted,
    EventBase,
    IdentityVerified,
    Payout,
)
from schemas.finding import Confidence, Evidence, Severity, User

__all__ = ["METADATA", "UnverifiedActivitySettings", "UnverifiedStage", "build"]

METADATA = DetectorMetadata(
    id="unverified_activity",
    name="Activity before identity verification",
    title="Account active on the marketplace before its identity is verified",
    advisory_flag="activity on accounts before full verification",
    runbook=(
        "Suspend bidding and payouts until verification completes; when it does, compare the "
        "verified identity with the profile the account bid under (country, time zone, "
        "languages) and with the accounts it shares IPs, devices or payout destinations with."
    ),
    topics=("platform.accounts", "platform.marketplace", "platform.payouts"),
    dedup_window_hours=168.0,
    types=("Account Risk",),
    description=(
        "The account bid, started contracts or asked for a payout before its identity was verified."
    ),
    attack_rationale=(
        "None: working an account before its owner is verified is a policy breach on the "
        "platform, not an intrusion technique MITRE ATT&CK describes."
    ),
)

_KINDS: Final = ("bid", "contract", "payout request")


class UnverifiedState(TypedDict):
    created_ms: int | None
    verified_ms: int | None
    pending: list[dict[str, Any]]  # actions waiting for the input to be complete
    # [window, bids, contracts, payout requests, first ms, reported total, reported severity]
    windows: list[list[int]]
    last_ms: int
    recent: list[str]


_MAX_PENDING: Final = 256


class UnverifiedStage:
    """Holds an account's actions until the input is complete up to them, then judges them
    against its first verification (a `DeferringStage`)."""

    entity: EntityKind = "account"
    input_model: type[EventBase] | None = None

    def __init__(self, settings: UnverifiedActivitySettings) -> None:
        self.settings = settings
        self._ttl_ms = int(settings.account_ttl_days * 86_400_000)

    def key(self, event: Any) -> str | None:
        if isinstance(event, AccountCreated | IdentityVerified | BidSubmitted | ContractStarted):
            return event.account_id
        if isinstance(event, Payout) and event.type == "payout_requested":
            return event.account_id
        return None

    def expires_at_ms(self, state: UnverifiedState) -> int:
        return state["last_ms"] + self._ttl_ms

    def due_at_ms(self, state: UnverifiedState) -> int | None:
        return due_at(state["pending"])

    def step(
        self, state: UnverifiedState | None, event: EventBase
    ) -> tuple[UnverifiedState | None, list[FindingDraft]]:
        event_ms = event.occurred_ms
        if state is None:
            state = {"created_ms": None, "verified_ms": None, "pending": [], "windows": [],
                     "last_ms": event_ms, "recent": []}  # fmt: skip
        state["last_ms"] = max(state["last_ms"], event_ms)
        if isinstance(event, AccountCreated):
            state["created_ms"] = _earliest(state["created_ms"], event_ms)
            return state, []
        if isinstance(event, IdentityVerified):
            state["verified_ms"] = _earliest(state["verified_ms"], event_ms)
            return state, []
        verified = state["verified_ms"]
        if verified is not None and verified <= event_ms:
            return state, []  # verified before: nothing to wait for
        if not remember_event_id(state["recent"], event.event_id, keep=16):
            return state, []
        kind = (
            0 if isinstance(event, BidSubmitted) else 1 if isinstance(event, ContractStarted) else 2
        )
        item = {"ms": event_ms, "id": event.event_id, "account": event.account_id, "kind": kind}
        state["pending"] = defer(state["pending"], item)
        oldest = overflow_ms(state["pending"], _MAX_PENDING)
        if oldest is not None:  # bounded: the oldest is judged as it stands
            return self.release(state, oldest)
        return state, []

    def release(
        self, state: UnverifiedState, complete_ms: int
    ) -> tuple[UnverifiedState | None, list[FindingDraft]]:
        return state, judge_due(state, complete_ms, self._judge)

    def _judge(self, state: UnverifiedState, item: dict[str, Any]) -> FindingDraft | None:
        at = item["ms"]
        verified, created = state["verified_ms"], state["created_ms"]
        if verified is not None and verified <= at:
            return None
        if self.settings.require_account_created and (created is None or created > at):
            return None  # created before the history Daylight holds: its verification may be
        bucket = dedup_bucket(at, self.settings.dedup_window_hours)
        window = next((w for w in state["windows"] if w[0] == bucket), None)
        if window is None:
            window = [bucket, 0, 0, 0, at, 0, 0]
            state["windows"] = [*state["windows"], window][-4:]
        window[1 + item["kind"]] += 1
        window[4] = min(window[4], at)
        total = window[1] + window[2] + window[3]
        severity = Severity.HIGH if window[3] else Severity.MEDIUM
        if window[5] and total < 2 * window[5] and severity <= window[6]:
            return None  # the finding says as much already
        update = bool(window[5])
        window[5], window[6] = total, max(int(severity), window[6])
        counts = [
            f"{n} {name}{'s' if n > 1 else ''}"
            for n, name in zip(window[1:4], _KINDS, strict=True)
            if n
        ]
        said = ", ".join(counts[:-1]) + (" and " if len(counts) > 1 else "") + counts[-1]
        created_text = f"account created {_moment(created)}" if created is not None else ""
        message = (
            f"{said} before identity verification, from {_moment(window[4])} "
            f"({created_text}{'; ' if created_text else ''}no verification by {_moment(at)})"
        )
        return FindingDraft(
            detector=METADATA,
            uid_parts=(item["account"], str(bucket)),
            accounts=[item["account"]],
            severity=Severity(max(int(severity), window[6])),
            confidence=Confidence.HIGH,
            message=message,
            start_ms=window[4],
            end_ms=at,
            evidences=[
                Evidence(
                    user=User(uid=item["account"]),
                    data={
                        "event_id": item["id"],
                        "time": at,
                        "action": _KINDS[item["kind"]],
                        "account_created": created,
                    },
                )
            ],
            unmapped={"bids": window[1], "contracts": window[2], "payout_requests": window[3]},
            count=total,
            update=update,
        )


def _earliest(current: int | None, moment: int) -> int:
    return moment if current is None else min(current, moment)


def _moment(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M UTC")


def build(settings: UnverifiedActivitySettings | None = None) -> Detector:
    return Detector(METADATA, (UnverifiedStage(settings or UnverifiedActivitySettings()),))
