"""payout_routing: pay leaving the platform the way DPRK teams route it.

Advisory red flags: frequent transfers to China-based banks, routed through several
companies; payout destinations under another name; one collector account paid from many
identities. Two stages: the account's profile (declared and verified country, legal name)
judges each payout, then the payout is re-keyed by its destination to see who else pays it.
One finding per payout names every reason found.
"""

from __future__ import annotations

import difflib
import re
import unicodedata
from typing import Any, Final, NotRequired, TypedDict, cast

import orjson

from detectors.core.base import (
    Detector,
    DetectorMetadata,
    EntityKind,
    FindingDraft,
    dedup_bucket,
    remember_event_id,
)
from detectors.core.profile import as_of, record
from detectors.models.payout_routing import PayoutRoutingSettings, ProfiledPayout
from schemas.events import AccountCreated, EventBase, IdentityVerified, Payout, ProfileUpdated
from schemas.finding import Confidence, Evidence, Severity, User

__all__ = [
    "METADATA",
    "DestinationStage",
    "PayoutRoutingSettings",
    "ProfileStage",
    "ProfiledPayout",
    "build",
    "names_match",
]

METADATA = DetectorMetadata(
    id="payout_routing",
    name="Suspicious payout routing",
    title="Payout routed the way DPRK IT-worker pay is routed",
    advisory_flag="frequent transfers to China-based banks, routed through several companies",
    runbook=(
        "Hold the payout; compare the destination holder with the verified identity; list every "
        "account paid into this destination and review them as one case."
    ),
    topics=("platform.accounts", "platform.payouts"),
    dedup_window_hours=24.0,
    types=("Financial Risk",),
    description=(
        "A payout went where DPRK IT-worker pay goes: a high-risk country the profile does not "
        "explain, a chain of intermediaries, a holder unlike the verified name, or a "
        "destination several accounts pay into."
    ),
    attack_rationale=(
        "None: moving earnings after the work is done is financial crime, outside what MITRE "
        "ATT&CK describes."
    ),
)


# ------------------------------------------------------------------ names
_PUNCTUATION: Final = re.compile(r"[^\w\s]", re.UNICODE)


def _tokens(name: str) -> list[str]:
    decomposed = unicodedata.normalize("NFKD", name)
    plain = "".join(ch for ch in decomposed if not unicodedata.combining(ch))
    return sorted(_PUNCTUATION.sub(" ", plain.casefold()).split())


def names_match(holder: str, legal: str, similarity_min: float = 0.85) -> bool:
    """Same person, tolerant of case, accents, word order, a dropped middle name and typos."""
    a, b = _tokens(holder), _tokens(legal)
    if not a or not b:
        return False
    if a == b:
        return True
    small, large = (set(a), set(b)) if len(a) <= len(b) else (set(b), set(a))
    if len(small) >= 2 and small <= large:
        return True
    return difflib.SequenceMatcher(None, " ".join(a), " ".join(b)).ratio() >= similarity_min


# ------------------------------------------------------------------ stage 1: the account
class ProfileState(TypedDict):
    # What the profile said and since when, in event-time order (the newest few): a payout
    # is judged against the profile as it stood at the payout's time, whatever the order the
    # events were read in.
    declared: list[list[Any]]  # [ms, declared country]
    verified: list[list[Any]]  # [ms, document country, legal name]
    # Payouts read but not judged yet: "none declared" rests on the absence of a profile
    # event, so a payout waits until every topic of the stage is complete up to its time.
    pending: list[dict[str, Any]]
    last_ms: int
    recent: list[str]


_PROFILE_EVENTS: Final = (AccountCreated, IdentityVerified, ProfileUpdated, Payout)
_MAX_PENDING: Final = 256


class ProfileStage:
    """Keeps each account's declared and verified facts; judges its payouts against them
    once its input is complete up to the payout's time (a `DeferringStage`)."""

    entity: EntityKind = "account"
    input_model: type[EventBase] | None = None

    def __init__(self, settings: PayoutRoutingSettings) -> None:
        self.settings = settings
        self._high_risk = frozenset(settings.high_risk_countries)
        self._ttl_ms = int(settings.profile_ttl_days * 86_400_000)

    def key(self, event: Any) -> str | None:
        return event.account_id if isinstance(event, _PROFILE_EVENTS) else None

    def expires_at_ms(self, state: ProfileState) -> int:
        return state["last_ms"] + self._ttl_ms

    def due_at_ms(self, state: ProfileState) -> int | None:
        pending = state.get("pending")
        return min(item["ms"] for item in pending) if pending else None

    def step(
        self, state: ProfileState | None, event: EventBase
    ) -> tuple[ProfileState | None, list[ProfiledPayout]]:
        event_ms = event.occurred_ms
        state = _upgrade(state, event_ms)
        state["last_ms"] = max(state["last_ms"], event_ms)
        if isinstance(event, AccountCreated | ProfileUpdated):
            if event.declared_country:
                state["declared"] = record(state["declared"], [event_ms, event.declared_country])
        elif isinstance(event, IdentityVerified):
            entry = [event_ms, event.document_country, event.legal_name]
            state["verified"] = record(state["verified"], entry)
        elif isinstance(event, Payout):
            # payout_requested then payout_sent are one payout: judge it once.
            if not remember_event_id(state["recent"], "payout:" + event.payout_id, keep=16):
                return state, []
            pending = [*state["pending"], {"ms": event_ms, "payout": event.model_dump(mode="json")}]
            pending.sort(key=lambda item: (item["ms"], item["payout"]["event_id"]))
            state["pending"] = pending
            if len(pending) > _MAX_PENDING:  # bounded: the oldest is judged as things stand
                return self.release(state, pending[-_MAX_PENDING - 1]["ms"])
        return state, []

    def release(
        self, state: ProfileState, complete_ms: int
    ) -> tuple[ProfileState | None, list[ProfiledPayout]]:
        due = [item for item in state["pending"] if item["ms"] <= complete_ms]
        state["pending"] = [item for item in state["pending"] if item["ms"] > complete_ms]
        judged = [self._judge(state, _payout(item["payout"])) for item in due]
        return state, judged

    def _judge(self, profile: ProfileState, payout: Payout) -> ProfiledPayout:
        reasons, codes = [], []
        destination = payout.destination
        country = destination.country
        payout_ms = payout.occurred_ms
        declared_entry = as_of(profile["declared"], payout_ms)
        verified_entry = as_of(profile["verified"], payout_ms)
        declared = declared_entry[1] if declared_entry else None
        document, legal = (verified_entry[1], verified_entry[2]) if verified_entry else (None, None)
        home = {declared, document} - {None}
        if country in self._high_risk and country not in home:
            said = "/".join(sorted(c for c in home if c)) or "none declared or verified"
            reasons.append(f"paid to {country} ({said} on the profile)")
            codes.append("high_risk_country")
        route = payout.route
        if len(route) >= self.settings.min_intermediaries:
            hops = " -> ".join(f"{hop.name} ({hop.country})" for hop in route)
            reasons.append(f"routed through {len(route)} intermediaries: {hops}")
            codes.append("intermediaries")
        holder = destination.holder_name
        if legal and holder and not names_match(holder, legal, self.settings.name_similarity_min):
            reasons.append(f"holder {holder!r} is not the verified {legal!r}")
            codes.append("holder_name")
        return ProfiledPayout(
            event_id=payout.event_id,
            occurred_at=payout.occurred_at,
            account_id=payout.account_id,
            payout=payout,
            declared_country=declared,
            document_country=document,
            legal_name=legal,
            reasons=reasons,
            codes=codes,
        )


def _payout(stored: dict[str, Any]) -> Payout:
    """A pending payout as kept in the state (its JSON form) back as the contract event."""
    return Payout.model_validate_json(orjson.dumps(stored))


def _upgrade(state: Any, event_ms: int) -> ProfileState:
    """A new state, or one written by an older version (plain fields, no history)."""
    if state is None:
        return {"declared": [], "verified": [], "pending": [], "last_ms": event_ms, "recent": []}
    if "declared" not in state:
        since = -(2**62)
        declared = state.get("declared_country")
        document, legal = state.get("document_country"), state.get("legal_name")
        return {
            "declared": [[since, declared]] if declared else [],
            "verified": [[since, document, legal]] if document or legal else [],
            "pending": [],
            "last_ms": state["last_ms"],
            "recent": state.get("recent", []),
        }
    return cast(ProfileState, state)


# ------------------------------------------------------------------ stage 2: the destination
class DestinationState(TypedDict):
    accounts: dict[str, list[int]]  # paying account -> [first, last] payout time
    alerted: list[str]  # "account:bucket" already reported
    last_ms: int
    # The shared-destination case: [window it opened in, payers it has named]; absent until
    # one opens.
    shared: NotRequired[list[int]]


class DestinationStage:
    """Who else pays this destination; emits one finding per flagged payout."""

    entity: EntityKind = "payout_destination"
    input_model: type[EventBase] | None = ProfiledPayout

    def __init__(self, settings: PayoutRoutingSettings) -> None:
        self.settings = settings
        self._window_ms = int(settings.shared_destination_window_days * 86_400_000)

    def key(self, event: Any) -> str | None:
        return event.payout.destination.fingerprint if isinstance(event, ProfiledPayout) else None

    def expires_at_ms(self, state: DestinationState) -> int:
        return state["last_ms"] + max(
            self._window_ms, int(self.settings.dedup_window_hours * 3_600_000)
        )

    def step(
        self, state: DestinationState | None, event: ProfiledPayout
    ) -> tuple[DestinationState | None, list[FindingDraft]]:
        event_ms = event.occurred_ms
        if state is None:
            state = {"accounts": {}, "alerted": [], "last_ms": event_ms}
        state["last_ms"] = max(state["last_ms"], event_ms)
        accounts = state["accounts"]
        first, last = accounts.get(event.account_id, [event_ms, event_ms])
        accounts[event.account_id] = [min(first, event_ms), max(last, event_ms)]
        horizon = state["last_ms"] - self._window_ms
        recent = sorted(
            ((span[1], account) for account, span in accounts.items() if span[1] > horizon),
            reverse=True,
        )[: self.settings.max_accounts_per_destination]
        state["accounts"] = {account: accounts[account] for _, account in recent}
        payers = sorted(state["accounts"], key=lambda a: (state["accounts"][a][0], a))
        shared = len(payers) >= self.settings.shared_destination_min_accounts
        reasons, codes = list(event.reasons), list(event.codes)
        primary = event.account_id
        if codes:  # the payout is suspect on its own: one finding for it, all reasons named
            tag = f"{event.account_id}:{dedup_bucket(event_ms, self.settings.dedup_window_hours)}"
            if tag in state["alerted"]:
                return state, []
            state["alerted"] = [*state["alerted"], tag][-16:]
            others = [a for a in payers if a != primary] if shared else []
            if shared:
                reasons.append(self._shared_reason(primary, others))
                codes.append("shared_destination")
            return state, [self._finding(event, reasons, codes, primary, others, tag, False)]
        if not shared:
            return state, []
        return state, self._shared_case(state, event, payers, reasons, codes)

    def _shared_reason(self, primary: str, others: list[str]) -> str:
        shown = ", ".join(others[:10]) + (
            f" and {len(others) - 10} more" if len(others) > 10 else ""
        )
        return f"destination paid from {len(others) + 1} accounts: {primary}, {shown}"

    def _shared_case(
        self,
        state: DestinationState,
        event: ProfiledPayout,
        payers: list[str],
        reasons: list[str],
        codes: list[str],
    ) -> list[FindingDraft]:
        """One case per destination, updated each time another payer joins. Its uid is the
        window the threshold-th payer first paid in, computed from every payer's first payout
        (not from the order the payouts are read in); a case a backlog opened under a later
        window is closed, naming the canonical one."""
        joined = sorted(span[0] for span in state["accounts"].values())
        opened = joined[self.settings.shared_destination_min_accounts - 1]
        bucket = dedup_bucket(opened, self.settings.dedup_window_hours)
        primary, others = payers[0], payers[1:]
        reasons = [*reasons, self._shared_reason(primary, others)]
        codes = [*codes, "shared_destination"]
        previous = state.get("shared")
        if previous is not None and bucket >= previous[0] and len(payers) <= previous[1]:
            return []
        state["shared"] = [min(bucket, previous[0]) if previous else bucket, len(payers)]
        if previous is None:
            return [
                self._finding(event, reasons, codes, primary, others, f"shared:{bucket}", False)
            ]
        old = f"shared:{previous[0]}"
        if bucket >= previous[0]:  # another payer: the case grows, same uid
            return [self._finding(event, reasons, codes, primary, others, old, True)]
        canonical = self._finding(event, reasons, codes, primary, others, f"shared:{bucket}", False)
        superseded = self._finding(event, reasons, codes, primary, others, old, True)
        superseded.closed_by = canonical.uid
        return [superseded, canonical]

    def _finding(
        self,
        event: ProfiledPayout,
        reasons: list[str],
        codes: list[str],
        primary: str,
        others: list[str],
        tag: str,
        update: bool,
    ) -> FindingDraft:
        payout = event.payout
        destination = payout.destination
        event_ms = event.occurred_ms
        strong = len(codes) >= 2
        return FindingDraft(
            detector=METADATA,
            uid_parts=(destination.fingerprint, tag),
            accounts=[primary, *others],
            severity=Severity.HIGH if strong else Severity.MEDIUM,
            confidence=Confidence.HIGH if strong else Confidence.MEDIUM,
            message=(
                f"Payout {payout.payout_id} of {payout.amount} {payout.currency} via "
                f"{payout.method}: " + "; ".join(reasons)
            ),
            start_ms=event_ms,
            end_ms=event_ms,
            evidences=[
                Evidence(
                    user=User(uid=event.account_id),
                    data={
                        "event_id": payout.event_id,
                        "payout_id": payout.payout_id,
                        "amount": str(payout.amount),
                        "currency": payout.currency,
                        "method": payout.method,
                        "destination": destination.model_dump(mode="json"),
                        "route": [hop.model_dump(mode="json") for hop in payout.route],
                        "declared_country": event.declared_country,
                        "document_country": event.document_country,
                    },
                )
            ],
            unmapped={
                "reasons": codes,
                "reason_count": len(codes),
                "destination_country": destination.country,
                "intermediary_count": len(payout.route),
            },
            count=len(others) + 1,
            update=update,
        )


def build(settings: PayoutRoutingSettings | None = None) -> Detector:
    settings = settings or PayoutRoutingSettings()
    return Detector(METADATA, (ProfileStage(settings), DestinationStage(settings)))
