"""payout_holder_change: the payout account is replaced by one in another person's name.

Advisory red flag (employers and platforms): a payout account closed, or another account
requested, under another name. The identity is borrowed; the money goes to whoever runs it, or
to a facilitator. By account: the verified legal name (`identity_verified`) against the holder of
each new payout destination (`payout_method_changed`, or a payout to a destination not seen
before), with the name folding `payout_routing` uses (case, accents, word order, a dropped
middle name). More severe when the new destination replaces one in the verified name, or when
the destination changes again within days. A change is judged against the name verified at its
own time, once the input is complete up to it (the verification may be read after the change).
"""

from __future__ import annotations

from typing import Any, Final, TypedDict

from detectors.core.base import (
    Detector,
    DetectorMetadata,
    EntityKind,
    FindingDraft,
    remember_event_id,
)
from detectors.core.profile import as_of, defer, due_at, judge_due, overflow_ms, record
from detectors.models.payout_holder_change import PayoutHolderChangeSettings
from detectors.payout_routing import names_match
from schemas.events import EventBase, IdentityVerified, Payout, PayoutMethodChanged
from schemas.finding import Confidence, Evidence, Severity, User

__all__ = ["METADATA", "HolderChangeStage", "PayoutHolderChangeSettings", "build"]

METADATA = DetectorMetadata(
    id="payout_holder_change",
    name="Payout account changed to another person's name",
    title="Payout destination changed to a holder unlike the verified identity",
    advisory_flag="a payout account closed, or another account requested, under another name",
    runbook=(
        "Hold payouts to the new destination; ask the account holder to confirm the change "
        "through a channel tied to the verified identity; look up the new holder among other "
        "accounts' destinations (payout_routing, self_dealing) and review them together."
    ),
    topics=("platform.accounts", "platform.payouts"),
    dedup_window_hours=24.0,
    types=("Financial Risk",),
    description=(
        "The account's payout destination was changed to an account held by someone other "
        "than the verified identity."
    ),
    attack_rationale=(
        "None: redirecting earnings to another person's account is financial crime, outside "
        "what MITRE ATT&CK describes."
    ),
)


class HolderChangeState(TypedDict):
    verified: list[list[Any]]  # [ms, legal name]
    # Destinations in the order they were first used: [ms, fingerprint, holder, changed]
    # (`changed`: 1 when a payout_method_changed event set it)
    destinations: list[list[Any]]
    pending: list[dict[str, Any]]  # changes waiting for the input to be complete
    alerted: list[str]  # fingerprints already reported
    last_ms: int
    recent: list[str]


_DESTINATIONS: Final = 8
_MAX_PENDING: Final = 64


class HolderChangeStage:
    """Judges each new payout destination of an account against its verified name
    (a `DeferringStage`: once the input is complete up to the change)."""

    entity: EntityKind = "account"
    input_model: type[EventBase] | None = None

    def __init__(self, settings: PayoutHolderChangeSettings) -> None:
        self.settings = settings
        self._ttl_ms = int(settings.profile_ttl_days * 86_400_000)
        self._rechange_ms = int(settings.rechange_window_days * 86_400_000)

    def key(self, event: Any) -> str | None:
        if isinstance(event, IdentityVerified | PayoutMethodChanged | Payout):
            return event.account_id
        return None

    def expires_at_ms(self, state: HolderChangeState) -> int:
        return state["last_ms"] + self._ttl_ms

    def due_at_ms(self, state: HolderChangeState) -> int | None:
        return due_at(state["pending"])

    def step(
        self, state: HolderChangeState | None, event: EventBase
    ) -> tuple[HolderChangeState | None, list[FindingDraft]]:
        event_ms = event.occurred_ms
        if state is None:
            state = {"verified": [], "destinations": [], "pending": [], "alerted": [],
                     "last_ms": event_ms, "recent": []}  # fmt: skip
        state["last_ms"] = max(state["last_ms"], event_ms)
        if isinstance(event, IdentityVerified):
            state["verified"] = record(state["verified"], [event_ms, event.legal_name])
            return state, []
        assert isinstance(event, PayoutMethodChanged | Payout)
        seen = "payout:" + event.payout_id if isinstance(event, Payout) else event.event_id
        if not remember_event_id(state["recent"], seen, keep=16):
            return state, []
        destination = event.destination
        changed = int(isinstance(event, PayoutMethodChanged))
        known = next((d for d in state["destinations"] if d[1] == destination.fingerprint), None)
        if known is not None and known[0] <= event_ms and known[3] >= changed:
            return state, []  # a destination already used: no change
        others = [d for d in state["destinations"] if d[1] != destination.fingerprint]
        entry = [event_ms, destination.fingerprint, destination.holder_name, changed]
        if known is not None:
            entry = [min(event_ms, known[0]), known[1], known[2], max(changed, known[3])]
        state["destinations"] = record(others, entry, keep=_DESTINATIONS)
        item = {"ms": event_ms, "id": event.event_id, "account": event.account_id, "changed": changed,
                "destination": destination.model_dump(mode="json")}  # fmt: skip
        state["pending"] = defer(state["pending"], item)
        oldest = overflow_ms(state["pending"], _MAX_PENDING)
        if oldest is not None:  # bounded: the oldest is judged as it stands
            return self.release(state, oldest)
        return state, []

    def release(
        self, state: HolderChangeState, complete_ms: int
    ) -> tuple[HolderChangeState | None, list[FindingDraft]]:
        return state, judge_due(state, complete_ms, self._judge)

    def _judge(self, state: HolderChangeState, item: dict[str, Any]) -> FindingDraft | None:
        destination = item["destination"]
        fingerprint, holder = destination["fingerprint"], destination["holder_name"]
        if fingerprint in state["alerted"] or not holder:
            return None
        at = item["ms"]
        verified = as_of(state["verified"], at)
        if verified is None:
            return None  # nothing verified to compare with (unverified_activity's concern)
        legal = verified[1]
        similarity = self.settings.name_similarity_min
        if names_match(holder, legal, similarity):
            return None
        before = [d for d in state["destinations"] if d[0] < at and d[1] != fingerprint]
        if not before and not item["changed"]:
            return None  # the first destination the account pays into: not a change
        reasons = [f"holder {holder!r} is not the verified {legal!r}"]
        previous = before[-1] if before else None
        replaced_own = bool(
            previous and previous[2] and names_match(previous[2], legal, similarity)
        )
        if previous is not None:
            named = f"held by {previous[2]!r}" if previous[2] else "holder unknown"
            own = " (the verified name)" if replaced_own else ""
            reasons.append(f"replaces {previous[1]} {named}{own}")
        recent = [d for d in before if d[0] >= at - self._rechange_ms]
        if recent:
            reasons.append(
                f"{len(recent) + 1} destinations within {self.settings.rechange_window_days:g} days"
            )
        strong = replaced_own or bool(recent)
        state["alerted"] = [*state["alerted"], fingerprint][-16:]
        return FindingDraft(
            detector=METADATA,
            uid_parts=(item["account"], fingerprint),
            accounts=[item["account"]],
            severity=Severity.HIGH if strong else Severity.MEDIUM,
            confidence=Confidence.HIGH if replaced_own and recent else Confidence.MEDIUM,
            message=(
                f"Payout destination changed to {fingerprint} "
                f"({destination.get('institution') or 'institution unknown'}, "
                f"{destination.get('country') or 'country unknown'}): " + "; ".join(reasons)
            ),
            start_ms=previous[0] if previous else at,
            end_ms=at,
            evidences=[
                Evidence(
                    user=User(uid=item["account"]),
                    data={
                        "event_id": item["id"],
                        "time": at,
                        "destination": destination,
                        "legal_name": legal,
                        "previous_destination": previous[1] if previous else None,
                        "previous_holder": previous[2] if previous else None,
                    },
                )
            ],
            unmapped={
                "destination_fingerprint": fingerprint,
                "replaced_own_name": replaced_own,
                "recent_changes": len(recent),
            },
            count=len(recent) + 1,
        )


def build(settings: PayoutHolderChangeSettings | None = None) -> Detector:
    return Detector(METADATA, (HolderChangeStage(settings or PayoutHolderChangeSettings()),))
