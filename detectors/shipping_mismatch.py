"""shipping_mismatch: equipment shipped abroad, or to an address several identities share.

Advisory red flag (employers): work equipment to be sent to an address not on the identity
documents. The 2024-2025 prosecutions found the other half: laptop farms, one address receiving
the laptops of many identities. Two stages:

1. keyed by the account: each shipping address change leaves at once as a use of the address
   fingerprint, and is judged against the identity document as it stood at its time once the
   input is complete up to it: another country than the document's leaves as a mismatch;
2. keyed by the address (a repartition topic): an address used by `farm_min_accounts` or more
   accounts within `farm_window_days` is a farm, one finding naming every account, updated with
   the same uid as accounts join (High); a country mismatch is reported per account and
   address (Medium), naming how many other accounts ship there.
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
    remember_event_id,
)
from detectors.core.profile import as_of, defer, due_at, judge_due, overflow_ms, record
from detectors.models.shipping_mismatch import AddressUse, ShippingMismatchSettings
from schemas.events import EventBase, IdentityVerified, ShippingAddressChanged
from schemas.finding import Confidence, Evidence, Severity, User

__all__ = ["METADATA", "AddressUse", "ShippingMismatchSettings", "build"]

METADATA = DetectorMetadata(
    id="shipping_mismatch",
    name="Equipment shipped away from the identity",
    title="Shipping address abroad, or shared by several identities",
    advisory_flag="work equipment to be sent to an address not on the identity documents",
    runbook=(
        "Hold equipment shipments to the address; for a shared address list every account "
        "shipping there and review them as one team (their logins' remote-desktop signs, their "
        "payouts); for an address abroad ask the account for proof of residence matching the "
        "identity document."
    ),
    topics=("platform.accounts",),
    dedup_window_hours=720.0,
    types=("Account Risk",),
    description=(
        "Equipment for the account is to be shipped to another country than its identity "
        "document's, or to an address several accounts ship to (a laptop farm)."
    ),
    attacks=(AttackMapping("T1078", "Valid Accounts", "TA0001", "Initial Access"),),
    attack_rationale=(
        "T1078 Valid Accounts: the identity is a borrowed or rented one, worked from wherever "
        "its equipment is really sent."
    ),
)


# ------------------------------------------------------------------ stage 1: the account
class AccountState(TypedDict):
    verified: list[list[Any]]  # [ms, document country, address fingerprint on the document]
    pending: list[dict[str, Any]]  # shipping changes waiting for the input to be complete
    last_ms: int
    recent: list[str]


_MAX_PENDING: Final = 64


class AccountStage:
    entity: EntityKind = "account"
    input_model: type[EventBase] | None = None

    def __init__(self, settings: ShippingMismatchSettings) -> None:
        self.settings = settings
        self._ttl_ms = int(settings.profile_ttl_days * 86_400_000)

    def key(self, event: Any) -> str | None:
        if isinstance(event, IdentityVerified | ShippingAddressChanged):
            return event.account_id
        return None

    def expires_at_ms(self, state: AccountState) -> int:
        return state["last_ms"] + self._ttl_ms

    def due_at_ms(self, state: AccountState) -> int | None:
        return due_at(state["pending"])

    def step(
        self, state: AccountState | None, event: EventBase
    ) -> tuple[AccountState | None, list[AddressUse]]:
        event_ms = event.occurred_ms
        if state is None:
            state = {"verified": [], "pending": [], "last_ms": event_ms, "recent": []}
        state["last_ms"] = max(state["last_ms"], event_ms)
        if isinstance(event, IdentityVerified):
            entry = [event_ms, event.document_country, event.address_fingerprint]
            state["verified"] = record(state["verified"], entry)
            return state, []
        assert isinstance(event, ShippingAddressChanged)
        if not remember_event_id(state["recent"], event.event_id, keep=16):
            return state, []
        item = {"ms": event_ms, "id": event.event_id, "account": event.account_id,
                "at": event.occurred_at.isoformat(), "address": event.address_fingerprint,
                "country": event.country}  # fmt: skip
        use = AddressUse(
            event_id=event.event_id,
            occurred_at=event.occurred_at,
            account_id=event.account_id,
            address_fingerprint=event.address_fingerprint,
            country=event.country,
        )
        state["pending"] = defer(state["pending"], item)
        oldest = overflow_ms(state["pending"], _MAX_PENDING)
        if oldest is not None:  # bounded: the oldest is judged as it stands
            return state, [use, *judge_due(state, oldest, self._judge)]
        return state, [use]

    def release(
        self, state: AccountState, complete_ms: int
    ) -> tuple[AccountState | None, list[AddressUse]]:
        return state, judge_due(state, complete_ms, self._judge)

    @staticmethod
    def _judge(state: AccountState, item: dict[str, Any]) -> AddressUse | None:
        """A shipping change in another country than the document's, as a mismatch."""
        document = as_of(state["verified"], item["ms"])
        # The document's own address is home, whatever its country field says.
        if document is None or document[2] == item["address"] or document[1] == item["country"]:
            return None
        return AddressUse(
            event_id=item["id"],
            occurred_at=datetime.fromisoformat(item["at"]),
            account_id=item["account"],
            address_fingerprint=item["address"],
            country=item["country"],
            document_country=document[1],
        )


# ------------------------------------------------------------------ stage 2: the address
class AddressState(TypedDict):
    accounts: dict[str, list[Any]]  # account -> [first ms, event id, country]
    mismatched: list[str]  # accounts whose mismatch was reported
    farm: list[int]  # [window the farm finding opened in, accounts named]; empty until then
    last_ms: int


class AddressStage:
    entity: EntityKind = "shipping_address"
    input_model: type[EventBase] | None = AddressUse

    def __init__(self, settings: ShippingMismatchSettings) -> None:
        self.settings = settings
        self._window_ms = int(settings.farm_window_days * 86_400_000)

    def key(self, event: Any) -> str | None:
        return event.address_fingerprint if isinstance(event, AddressUse) else None

    def expires_at_ms(self, state: AddressState) -> int:
        return state["last_ms"] + self._window_ms

    def step(
        self, state: AddressState | None, event: AddressUse
    ) -> tuple[AddressState | None, list[FindingDraft]]:
        event_ms = event.occurred_ms
        if state is None:
            state = {"accounts": {}, "mismatched": [], "farm": [], "last_ms": event_ms}
        state["last_ms"] = max(state["last_ms"], event_ms)
        if event.document_country is not None:  # a change judged against the document
            if event.account_id in state["mismatched"]:
                return state, []
            state["mismatched"] = [*state["mismatched"], event.account_id][-32:]
            return state, [self._mismatch(event)]
        accounts = state["accounts"]
        known = accounts.get(event.account_id)
        if known is not None and known[0] <= event_ms:
            return state, []  # this account already ships here
        accounts[event.account_id] = [event_ms, event.event_id, event.country]
        horizon = state["last_ms"] - self._window_ms
        kept = sorted(
            (entry[0], account) for account, entry in accounts.items() if entry[0] > horizon
        )[-self.settings.max_accounts_per_address :]
        state["accounts"] = {account: accounts[account] for _, account in kept}
        return state, self._farm(event.address_fingerprint, state)

    def _farm(self, address: str, state: AddressState) -> list[FindingDraft]:
        """One finding per address once enough accounts ship to it; its uid is the window the
        threshold-th account first shipped in, from every account's first use (not from the
        order they are read in); one opened under a later window is closed, naming it."""
        needed = self.settings.farm_min_accounts
        accounts = state["accounts"]
        if len(accounts) < needed:
            return []
        joined = sorted(entry[0] for entry in accounts.values())
        bucket = dedup_bucket(joined[needed - 1], self.settings.dedup_window_hours)
        previous = state["farm"]
        if previous and bucket >= previous[0] and len(accounts) <= previous[1]:
            return []
        state["farm"] = [min(bucket, previous[0]) if previous else bucket, len(accounts)]
        if not previous:
            return [self._farm_finding(address, state, bucket, False)]
        if bucket >= previous[0]:  # another account: the finding grows, same uid
            return [self._farm_finding(address, state, previous[0], True)]
        canonical = self._farm_finding(address, state, bucket, False)
        superseded = self._farm_finding(address, state, previous[0], True)
        superseded.closed_by = canonical.uid
        return [superseded, canonical]

    def _farm_finding(
        self, address: str, state: AddressState, bucket: int, update: bool
    ) -> FindingDraft:
        entries = sorted(state["accounts"].items(), key=lambda item: (item[1][0], item[0]))
        names = [account for account, _ in entries]
        shown = ", ".join(names[:10]) + (f" and {len(names) - 10} more" if len(names) > 10 else "")
        countries = sorted({entry[2] for _, entry in entries})
        days = (entries[-1][1][0] - entries[0][1][0]) / 86_400_000
        message = (
            f"{len(names)} accounts ship equipment to one address ({address}, "
            f"{'/'.join(countries)}) within {days:.0f} days: {shown}"
        )
        return FindingDraft(
            detector=METADATA,
            uid_parts=("farm", address, str(bucket)),
            accounts=names,
            severity=Severity.HIGH,
            confidence=Confidence.HIGH
            if len(names) > self.settings.farm_min_accounts
            else Confidence.MEDIUM,
            message=message,
            start_ms=entries[0][1][0],
            end_ms=entries[-1][1][0],
            evidences=[
                Evidence(
                    user=User(uid=account),
                    data={
                        "event_id": entry[1],
                        "time": entry[0],
                        "address_fingerprint": address,
                        "country": entry[2],
                    },
                )
                for account, entry in entries
            ],
            unmapped={"address_fingerprint": address, "account_count": len(names)},
            count=len(names),
            update=update,
        )

    def _mismatch(self, event: AddressUse) -> FindingDraft:
        event_ms = event.occurred_ms
        message = (
            f"Shipping address {event.address_fingerprint} is in {event.country}, the identity "
            f"document in {event.document_country}"
        )
        return FindingDraft(
            detector=METADATA,
            uid_parts=("abroad", event.account_id, event.address_fingerprint),
            accounts=[event.account_id],
            # Medium whatever the order the address's uses are read in: a farm's own finding
            # is the High one.
            severity=Severity.MEDIUM,
            confidence=Confidence.MEDIUM,
            message=message,
            start_ms=event_ms,
            end_ms=event_ms,
            evidences=[
                Evidence(
                    user=User(uid=event.account_id),
                    data={
                        "event_id": event.event_id,
                        "time": event_ms,
                        "address_fingerprint": event.address_fingerprint,
                        "country": event.country,
                        "document_country": event.document_country,
                    },
                )
            ],
            unmapped={
                "address_fingerprint": event.address_fingerprint,
                "country": event.country,
                "document_country": event.document_country,
            },
            count=1,
        )


def build(settings: ShippingMismatchSettings | None = None) -> Detector:
    settings = settings or ShippingMismatchSettings()
    return Detector(METADATA, (AccountStage(settings), AddressStage(settings)))
