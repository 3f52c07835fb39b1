"""crypto_payout: the account is paid in virtual currency.

Advisory red flag: requests for payment in virtual currency, to avoid KYC/AML checks. By
account: payouts whose method is `crypto`, and payout destinations at a crypto exchange or
wallet (by institution name, a configurable list), judged once the input is complete up to
them. Many people take a crypto payout now and then: alone it is reported at Low severity for
the case to weigh. Each of these makes it stronger, one step each (Medium, then High): a new
account (created less than `new_account_days` before), a switch (the payout method changed
from a bank or wallet in the verified holder's own name to a crypto destination), repeated
crypto payouts within the window.
"""

from __future__ import annotations

import itertools
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
from detectors.core.profile import as_of, defer, due_at, judge_due, overflow_ms, record
from detectors.models.crypto_payout import CryptoPayoutSettings
from detectors.payout_routing import names_match
from schemas.events import (
    AccountCreated,
    Destination,
    EventBase,
    IdentityVerified,
    Payout,
    PayoutMethodChanged,
)
from schemas.finding import Confidence, Evidence, Severity, User

__all__ = ["METADATA", "CryptoPayoutSettings", "CryptoStage", "build"]

METADATA = DetectorMetadata(
    id="crypto_payout",
    name="Payout in virtual currency",
    title="Account paid out in virtual currency",
    advisory_flag="requests for payment in virtual currency, to avoid KYC/AML checks",
    runbook=(
        "Check the account's age and earlier payout methods; ask why the payout method "
        "changed; look for the same wallet or exchange account among other accounts' "
        "destinations (payout_routing) and weigh the account's other red flags."
    ),
    topics=("platform.accounts", "platform.payouts"),
    dedup_window_hours=720.0,
    types=("Financial Risk",),
    description=(
        "The account was paid, or set its payouts to be paid, in virtual currency, which "
        "escapes the bank's identity checks."
    ),
    attack_rationale=(
        "None: taking earnings in virtual currency to avoid KYC/AML is financial crime, "
        "outside what MITRE ATT&CK describes."
    ),
)

_NEW: Final = 1
_SWITCH: Final = 2
_REPEATED: Final = 4
_CODES: Final = ((_NEW, "new_account"), (_SWITCH, "switch_from_own_name"), (_REPEATED, "repeated"))


class CryptoState(TypedDict):
    created_ms: int | None
    verified: list[list[Any]]  # [ms, legal name]
    # [ms, fingerprint, holder, crypto 0/1, set by a payout method change 0/1], first use each
    destinations: list[list[Any]]
    pending: list[dict[str, Any]]  # crypto payouts and method changes waiting for the input
    payouts: list[list[int]]  # [ms] of judged crypto payouts (the newest few)
    reported: list[list[int]]  # [window, reason codes reported]
    last_ms: int
    recent: list[str]


_DESTINATIONS: Final = 8
_MAX_PENDING: Final = 64


class CryptoStage:
    """Judges an account's crypto payouts and crypto payout methods against its age and its
    earlier destinations (a `DeferringStage`)."""

    entity: EntityKind = "account"
    input_model: type[EventBase] | None = None

    def __init__(self, settings: CryptoPayoutSettings) -> None:
        self.settings = settings
        self._ttl_ms = int(settings.profile_ttl_days * 86_400_000)
        self._new_ms = int(settings.new_account_days * 86_400_000)
        self._window_ms = int(settings.dedup_window_hours * 3_600_000)

    def key(self, event: Any) -> str | None:
        if isinstance(event, AccountCreated | IdentityVerified | PayoutMethodChanged | Payout):
            return event.account_id
        return None

    def expires_at_ms(self, state: CryptoState) -> int:
        return state["last_ms"] + self._ttl_ms

    def due_at_ms(self, state: CryptoState) -> int | None:
        return due_at(state["pending"])

    def is_crypto(self, destination: Destination) -> bool:
        institution = (destination.institution or "").lower()
        return bool(institution) and any(
            name in institution for name in self.settings.crypto_institutions
        )

    def step(
        self, state: CryptoState | None, event: EventBase
    ) -> tuple[CryptoState | None, list[FindingDraft]]:
        event_ms = event.occurred_ms
        if state is None:
            state = {"created_ms": None, "verified": [], "destinations": [], "pending": [],
                     "payouts": [], "reported": [], "last_ms": event_ms, "recent": []}  # fmt: skip
        state["last_ms"] = max(state["last_ms"], event_ms)
        if isinstance(event, AccountCreated):
            created = state["created_ms"]
            state["created_ms"] = event_ms if created is None else min(created, event_ms)
            return state, []
        if isinstance(event, IdentityVerified):
            state["verified"] = record(state["verified"], [event_ms, event.legal_name])
            return state, []
        assert isinstance(event, PayoutMethodChanged | Payout)
        seen = "payout:" + event.payout_id if isinstance(event, Payout) else event.event_id
        if not remember_event_id(state["recent"], seen, keep=16):
            return state, []
        destination = event.destination
        crypto_destination = self.is_crypto(destination)
        changed = isinstance(event, PayoutMethodChanged)
        self._remember(state, event_ms, destination, crypto_destination, changed)
        paid_in_crypto = isinstance(event, Payout) and (
            event.method == "crypto" or crypto_destination
        )
        changed_to_crypto = isinstance(event, PayoutMethodChanged) and crypto_destination
        if not (paid_in_crypto or changed_to_crypto):
            return state, []
        item: dict[str, Any] = {
            "ms": event_ms,
            "id": event.event_id,
            "account": event.account_id,
            "kind": "payout" if isinstance(event, Payout) else "method",
            "destination": destination.model_dump(mode="json"),
        }
        if isinstance(event, Payout):
            item["payout"] = [event.payout_id, str(event.amount), event.currency, event.method]
        state["pending"] = defer(state["pending"], item)
        oldest = overflow_ms(state["pending"], _MAX_PENDING)
        if oldest is not None:  # bounded: the oldest is judged as it stands
            return self.release(state, oldest)
        return state, []

    def _remember(
        self, state: CryptoState, at: int, destination: Destination, crypto: bool, changed: bool
    ) -> None:
        known = next((d for d in state["destinations"] if d[1] == destination.fingerprint), None)
        if known is not None and known[0] <= at and known[4] >= changed:
            return
        others = [d for d in state["destinations"] if d[1] != destination.fingerprint]
        entry = [at, destination.fingerprint, destination.holder_name, int(crypto), int(changed)]
        if known is not None:
            entry = [min(at, known[0]), *known[1:4], max(int(changed), known[4])]
        state["destinations"] = record(others, entry, keep=_DESTINATIONS)

    def release(
        self, state: CryptoState, complete_ms: int
    ) -> tuple[CryptoState | None, list[FindingDraft]]:
        return state, judge_due(state, complete_ms, self._judge)

    def _judge(self, state: CryptoState, item: dict[str, Any]) -> FindingDraft | None:
        at = item["ms"]
        bucket = dedup_bucket(at, self.settings.dedup_window_hours)
        if item["kind"] == "payout":
            state["payouts"] = sorted([*state["payouts"], [at]])[-16:]
        start = bucket * self._window_ms
        payouts = [p[0] for p in state["payouts"] if start <= p[0] <= at]
        reasons, codes = [], 0
        created = state["created_ms"]
        if created is not None and created <= at and at - created < self._new_ms:
            codes |= _NEW
            reasons.append(f"the account is {(at - created) / 86_400_000:.0f} days old")
        own = self._own_name_destination(state, at)
        if own is not None:
            codes |= _SWITCH
            holder = own[2]
            reasons.append(f"the payout method was changed from {own[1]} held by {holder!r}, the "
                           "verified name, to a crypto destination")  # fmt: skip
        if len(payouts) >= self.settings.repeat_min_payouts:
            codes |= _REPEATED
            reasons.append(f"{len(payouts)} crypto payouts since {_day(start)}")
        current = next((r for r in state["reported"] if r[0] == bucket), None)
        if current is not None and codes | current[1] == current[1]:
            return None  # nothing the finding does not say already
        if current is None:
            state["reported"] = [*state["reported"], [bucket, codes]][-4:]
        else:
            current[1] |= codes
            codes = current[1]
        strength = bin(codes).count("1")
        severity = (Severity.LOW, Severity.MEDIUM, Severity.HIGH)[min(strength, 2)]
        destination = item["destination"]
        what = (
            "Payout {} of {} {} via {}".format(*item["payout"])
            if item["kind"] == "payout"
            else "Payout method changed"
        )
        where = destination.get("institution") or "a wallet"
        message = f"{what} to {destination['fingerprint']} at {where}, in crypto"
        if reasons:
            message += ": " + "; ".join(reasons)
        else:
            message += " (an established account, its first crypto payout in the window)"
        return FindingDraft(
            detector=METADATA,
            uid_parts=(item["account"], str(bucket)),
            accounts=[item["account"]],
            severity=severity,
            confidence=Confidence.HIGH if strength >= 2 else Confidence.MEDIUM,
            message=message,
            start_ms=min([at, *payouts]),
            end_ms=at,
            evidences=[
                Evidence(
                    user=User(uid=item["account"]),
                    data={
                        "event_id": item["id"],
                        "time": at,
                        "kind": item["kind"],
                        "destination": destination,
                        "crypto_payouts_in_window": len(payouts),
                    },
                )
            ],
            unmapped={
                "reasons": [name for bit, name in _CODES if codes & bit],
                "crypto_payouts": len(payouts),
                "destination_fingerprint": destination["fingerprint"],
            },
            count=max(1, len(payouts)),
            update=current is not None,
        )

    def _own_name_destination(self, state: CryptoState, at: int) -> list[Any] | None:
        """The destination in the verified holder's own name that a payout method change at
        or before `at` replaced with a crypto destination, if any."""
        verified = as_of(state["verified"], at)
        if verified is None:
            return None
        used = [d for d in state["destinations"] if d[0] <= at]
        for previous, destination in itertools.pairwise(used):
            if not (destination[3] and destination[4]) or previous[3] or not previous[2]:
                continue
            if names_match(previous[2], verified[1], self.settings.name_similarity_min):
                return previous
        return None


def _day(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d")


def build(settings: CryptoPayoutSettings | None = None) -> Detector:
    return Detector(METADATA, (CryptoStage(settings or CryptoPayoutSettings()),))
