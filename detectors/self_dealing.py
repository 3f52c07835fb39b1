"""self_dealing: a client and a freelancer pay themselves through one payment account.

Advisory red flag (freelance platforms): a fraudulent client account rates the developer, both
using the same PayPal account: the team pays itself to build its freelancers' reputations.

Two stages. The client's side (its payment instruments, its contracts and ratings) and the
freelancer's side (its payout destinations) live on different partitions, so:

1. keyed by the account (in the worker's input pass): each new payment instrument of an account,
   and each new payout destination, leaves as a use of its fingerprint; an instrument's use
   carries the freelancers the account has hired or rated, and leaves again when that list
   grows;
2. keyed by the payment fingerprint (a repartition topic): when one account funds through a
   fingerprint another account is paid into, that is the flag, more severe when the funder hired
   or rated the payee. One finding per fingerprint, naming every account on both sides, updated
   with the same uid as accounts join or the severity rises.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Final, TypedDict

from detectors.core.base import (
    AttackMapping,
    Detector,
    DetectorMetadata,
    EntityKind,
    FindingDraft,
    dedup_bucket,
)
from detectors.models.self_dealing import FingerprintUse, SelfDealingSettings
from schemas.events import (
    ContractStarted,
    EventBase,
    PaymentMethodAdded,
    Payout,
    PayoutMethodChanged,
    RatingGiven,
)
from schemas.finding import Confidence, Evidence, Severity, User

__all__ = ["METADATA", "FingerprintUse", "SelfDealingSettings", "build"]

METADATA = DetectorMetadata(
    id="self_dealing",
    name="Client and freelancer share a payment account",
    title="A client funds work through the account a freelancer is paid into",
    advisory_flag=(
        "a client account rates the developer, both using the same PayPal account "
        "(paying themselves)"
    ),
    runbook=(
        "Hold payouts to the shared account; review the funding client and every freelancer "
        "paid into it as one team: their contracts' deliverables, their ratings, their IPs and "
        "devices; ask the payment provider who holds the account."
    ),
    topics=("platform.accounts", "platform.payouts", "platform.marketplace"),
    dedup_window_hours=720.0,
    types=("Financial Risk", "Reputation Fraud"),
    description=(
        "One account funds work through a payment account that another account is paid into: "
        "the same people on both sides of the marketplace, paying themselves."
    ),
    attacks=(AttackMapping("T1078", "Valid Accounts", "TA0001", "Initial Access"),),
    attack_rationale=(
        "T1078 Valid Accounts: the client and freelancer accounts are operated by the same "
        "people, who control the payment account on both sides."
    ),
)


# ------------------------------------------------------------------ stage 1: the account
class AccountState(TypedDict):
    funds: dict[str, list[Any]]  # fingerprint -> [first ms, event id, method, occurred_at]
    paid: list[str]  # payout fingerprints already announced
    counterparties: list[str]
    last_ms: int


_MAX_FINGERPRINTS: Final = 32


class AccountStage:
    entity: EntityKind = "account"
    input_model: type[EventBase] | None = None

    def __init__(self, settings: SelfDealingSettings) -> None:
        self.settings = settings
        self._retention_ms = int(settings.retention_days * 86_400_000)

    def key(self, event: Any) -> str | None:
        if isinstance(event, PaymentMethodAdded | PayoutMethodChanged | Payout):
            return event.account_id
        if isinstance(event, ContractStarted):
            return event.client_id if event.client_id == event.account_id else None
        if isinstance(event, RatingGiven):
            return event.account_id
        return None

    def expires_at_ms(self, state: AccountState) -> int:
        return state["last_ms"] + self._retention_ms

    def step(
        self, state: AccountState | None, event: EventBase
    ) -> tuple[AccountState | None, list[FingerprintUse]]:
        event_ms = event.occurred_ms
        if state is None:
            state = {"funds": {}, "paid": [], "counterparties": [], "last_ms": event_ms}
        state["last_ms"] = max(state["last_ms"], event_ms)
        if isinstance(event, PaymentMethodAdded):
            instrument = event.instrument
            known = state["funds"].get(instrument.fingerprint)
            if known is not None and known[0] <= event_ms:
                return state, []
            state["funds"][instrument.fingerprint] = [
                event_ms, event.event_id, instrument.method, event.occurred_at.isoformat()
            ]  # fmt: skip
            if len(state["funds"]) > _MAX_FINGERPRINTS:
                newest = sorted(state["funds"].items(), key=lambda item: item[1][0])
                state["funds"] = dict(newest[-_MAX_FINGERPRINTS:])
            return state, [self._funds(event.account_id, instrument.fingerprint, state)]
        if isinstance(event, PayoutMethodChanged | Payout):
            fingerprint = event.destination.fingerprint
            if fingerprint in state["paid"]:
                return state, []
            state["paid"] = [*state["paid"], fingerprint][-_MAX_FINGERPRINTS:]
            method = event.method if isinstance(event, Payout) else "payout_method"
            use = FingerprintUse(
                event_id=event.event_id,
                occurred_at=event.occurred_at,
                account_id=event.account_id,
                fingerprint=fingerprint,
                side="paid",
                method=method,
            )
            return state, [use]
        other = event.freelancer_id if isinstance(event, ContractStarted) else None
        if isinstance(event, RatingGiven):
            other = event.to_account_id
        if other is None or other == event.account_id or other in state["counterparties"]:
            return state, []
        limit = self.settings.max_counterparties
        state["counterparties"] = sorted([*state["counterparties"], other])[-limit:]
        return state, [self._funds(event.account_id, fp, state) for fp in state["funds"]]

    def _funds(self, account: str, fingerprint: str, state: AccountState) -> FingerprintUse:
        first_ms, event_id, method, occurred_at = state["funds"][fingerprint]
        del first_ms
        return FingerprintUse(
            event_id=event_id, occurred_at=datetime.fromisoformat(occurred_at), account_id=account,
            fingerprint=fingerprint, side="funds", method=method,
            counterparties=list(state["counterparties"]),
        )  # fmt: skip


# ------------------------------------------------------------------ stage 2: the fingerprint
class FingerprintState(TypedDict):
    # account -> [first ms, event id, method, counterparties]
    funders: dict[str, list[Any]]
    payees: dict[str, list[Any]]  # account -> [first ms, event id, method]
    # [window the finding opened in, accounts named, severity, closed] per finding made
    reported: list[list[int]]
    last_ms: int


class FingerprintStage:
    entity: EntityKind = "payment_fingerprint"
    input_model: type[EventBase] | None = FingerprintUse

    def __init__(self, settings: SelfDealingSettings) -> None:
        self.settings = settings
        self._retention_ms = int(settings.retention_days * 86_400_000)

    def key(self, event: Any) -> str | None:
        return event.fingerprint if isinstance(event, FingerprintUse) else None

    def expires_at_ms(self, state: FingerprintState) -> int:
        return state["last_ms"] + self._retention_ms

    def step(
        self, state: FingerprintState | None, event: FingerprintUse
    ) -> tuple[FingerprintState | None, list[FindingDraft]]:
        event_ms = event.occurred_ms
        if state is None:
            state = {"funders": {}, "payees": {}, "reported": [], "last_ms": event_ms}
        state["last_ms"] = max(state["last_ms"], event_ms)
        side = state["funders"] if event.side == "funds" else state["payees"]
        known = side.get(event.account_id)
        entry: list[Any] = [event_ms, event.event_id, event.method]
        if event.side == "funds":
            entry.append(sorted(event.counterparties))
        if known is not None:
            entry[0:2] = known[0:2] if known[0] <= event_ms else entry[0:2]
            if entry == known:
                return state, []  # nothing new: a re-delivery
        side[event.account_id] = entry
        if len(side) > self.settings.max_accounts_per_fingerprint:
            oldest = sorted(side.items(), key=lambda item: item[1][0])
            for account, _ in oldest[: len(side) - self.settings.max_accounts_per_fingerprint]:
                del side[account]
        return state, self._report(event.fingerprint, state)

    def _pairs(self, state: FingerprintState) -> list[tuple[str, str, int, bool]]:
        """(funder, payee, time both used it, whether the funder hired or rated the payee)."""
        return [
            (funder, payee, max(funded[0], paid[0]), payee in funded[3])
            for funder, funded in state["funders"].items()
            for payee, paid in state["payees"].items()
            if funder != payee
        ]

    def _report(self, fingerprint: str, state: FingerprintState) -> list[FindingDraft]:
        pairs = self._pairs(state)
        if not pairs:
            return []
        opening = min(at for _, _, at, _ in pairs)
        bucket = dedup_bucket(opening, self.settings.dedup_window_hours)
        tied = any(tie for *_, tie in pairs)
        severity = Severity.HIGH if tied else Severity.MEDIUM
        accounts = len({a for f, p, _, _ in pairs for a in (f, p)})
        live = [entry for entry in state["reported"] if not entry[3]]
        findings: list[FindingDraft] = []
        current = next((entry for entry in live if entry[0] == bucket), None)
        for entry in live:
            if entry[0] > bucket:  # opened under a later window before earlier use was read
                closed = self._finding(fingerprint, state, pairs, entry[0], severity, True)
                closed.closed_by = self._finding(
                    fingerprint, state, pairs, bucket, severity, False
                ).uid
                entry[3] = 1
                findings.append(closed)
        if current is None:
            state["reported"] = [*state["reported"], [bucket, accounts, int(severity), 0]][-8:]
            return [*findings, self._finding(fingerprint, state, pairs, bucket, severity, False)]
        if accounts <= current[1] and severity <= current[2]:
            return findings
        current[1], current[2] = max(current[1], accounts), max(current[2], int(severity))
        return [*findings, self._finding(fingerprint, state, pairs, bucket, severity, True)]

    def _finding(
        self,
        fingerprint: str,
        state: FingerprintState,
        pairs: list[tuple[str, str, int, bool]],
        bucket: int,
        severity: Severity,
        update: bool,
    ) -> FindingDraft:
        funders = sorted({f for f, _, _, _ in pairs}, key=lambda a: (state["funders"][a][0], a))
        payees = sorted({p for _, p, _, _ in pairs}, key=lambda a: (state["payees"][a][0], a))
        tied = sorted({f"{f} -> {p}" for f, p, _, tie in pairs if tie})
        shown = ", ".join(payees[:10]) + (
            f" and {len(payees) - 10} more" if len(payees) > 10 else ""
        )
        method = state["funders"][funders[0]][2]
        message = (
            f"{len(funders)} client account{'s' if len(funders) > 1 else ''} "
            f"({', '.join(funders[:5])}) fund{'s' if len(funders) == 1 else ''} work through "
            f"payment account {fingerprint} ({method}) that {len(payees)} freelancer"
            f"{'s are' if len(payees) > 1 else ' is'} paid into: {shown}"
        )
        if tied:
            message += f"; hired or rated across it: {', '.join(tied[:5])}"
        start = min(at for _, _, at, _ in pairs)
        evidences = [
            Evidence(
                user=User(uid=account),
                data={
                    "event_id": entry[1],
                    "time": entry[0],
                    "side": side,
                    "fingerprint": fingerprint,
                    "method": entry[2],
                },
            )
            for side, accounts, table in (
                ("funds", funders, state["funders"]),
                ("paid", payees, state["payees"]),
            )
            for account in accounts
            for entry in (table[account],)
        ]
        return FindingDraft(
            detector=METADATA,
            uid_parts=(fingerprint, str(bucket)),
            accounts=[*funders, *payees],
            severity=severity,
            confidence=Confidence.HIGH if tied else Confidence.MEDIUM,
            message=message,
            start_ms=start,
            end_ms=max(
                entry[0]
                for table in (state["funders"], state["payees"])
                for entry in table.values()
            ),
            evidences=evidences,
            unmapped={
                "fingerprint": fingerprint,
                "funder_count": len(funders),
                "payee_count": len(payees),
                "tied_pairs": tied,
            },
            count=len(funders) + len(payees),
            update=update,
        )


def build(settings: SelfDealingSettings | None = None) -> Detector:
    settings = settings or SelfDealingSettings()
    return Detector(METADATA, (AccountStage(settings), FingerprintStage(settings)))
