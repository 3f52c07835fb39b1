"""template_reuse: the same document template across several accounts.

Advisory red flag (freelance platforms): the same document templates used across developer
accounts; a team writes one cover letter and every identity sends it, with a word or two
changed.

Near-duplicate text, found the way search engines find it: each text (a bid's proposal, an
uploaded document's extracted text) becomes the set of its 5-word shingles (case folded,
digits blanked), summarised by a MinHash signature (the `datasketch` package), cut into bands;
two texts alike enough share a band with high probability (locality-sensitive hashing). Three
stages:

1. keyed by the account (in the worker's input pass): each text's bands the account has not
   sent before leave, keyed by band: an account reusing its own letter sends nothing new, and a
   text shorter than `min_words` (a common greeting) is no template;
2. keyed by the band (a repartition topic): the accounts whose texts fell in it; once
   `min_accounts` distinct accounts' texts are alike enough to the band's earliest text (the
   signatures' estimated Jaccard similarity), the group leaves, keyed by that earliest text.
   Which text is the earliest rests on the absence of an earlier one: the texts of a band come
   from every input partition, which a backlog (or a re-read after a crash) drains hours
   apart, so the group waits until the band's input is complete up to its earliest text
   (the event-time watermark, plus the allowed lateness). Reported at once, a later text
   taken for the origin would open a finding under its uid that the true origin's then
   closes, and groups of other bands naming that later text would be lost with it;
3. keyed by the earliest text of the template: the groups of every band meet; one finding per
   template, naming every account, updated with the same uid as accounts join.
"""

from __future__ import annotations

import hashlib
import operator
import re
from datetime import UTC, datetime
from typing import Any, Required, TypedDict

from detectors.core.base import (
    AttackMapping,
    Detector,
    DetectorMetadata,
    EntityKind,
    FindingDraft,
    dedup_bucket,
)
from detectors.models.template_reuse import TemplateBand, TemplateGroup, TemplateReuseSettings
from schemas.events import BidSubmitted, DocumentUploaded, EventBase
from schemas.finding import Confidence, Evidence, Severity, User

__all__ = [
    "METADATA",
    "TemplateBand",
    "TemplateGroup",
    "TemplateReuseSettings",
    "build",
    "shingles",
]

METADATA = DetectorMetadata(
    id="template_reuse",
    name="One document template across accounts",
    title="Several accounts send near-identical documents",
    advisory_flag="the same document templates used across developer accounts",
    runbook=(
        "Read the shared text and each account's profile: one team's template across "
        "identities comes with shared IPs, devices or payout destinations; review the listed "
        "accounts as one case. An agency's accounts may share a template legitimately."
    ),
    topics=("platform.marketplace", "platform.accounts"),
    dedup_window_hours=720.0,
    types=("Shared Infrastructure",),
    description=(
        "Several distinct accounts sent near-identical text (bids or documents), as one team's "
        "identities send the team's template."
    ),
    attacks=(AttackMapping("T1078", "Valid Accounts", "TA0001", "Initial Access"),),
    attack_rationale=(
        "T1078 Valid Accounts: borrowed identities operated by one team, recognisable by the "
        "team's shared documents."
    ),
)

_WORD = re.compile(r"[^\W\d_]+|\d+", re.UNICODE)


def shingles(text: str, size: int) -> list[str]:
    """The text's `size`-word shingles: case folded, each number one placeholder."""
    words = ["#" if token.isdigit() else token for token in _WORD.findall(text.casefold())]
    return [" ".join(words[i : i + size]) for i in range(len(words) - size + 1)]


# ------------------------------------------------------------------ stage 1: the account
class AccountState(TypedDict):
    bands: list[str]  # bands this account has sent (oldest first)
    last_ms: int


class TextStage:
    entity: EntityKind = "account"
    input_model: type[EventBase] | None = None

    def __init__(self, settings: TemplateReuseSettings) -> None:
        self.settings = settings
        self._retention_ms = int(settings.retention_days * 86_400_000)
        self._permutations: Any = None  # the MinHash's, drawn once (seed 1), not per text

    def key(self, event: Any) -> str | None:
        if isinstance(event, BidSubmitted) and event.text:
            return event.account_id
        if isinstance(event, DocumentUploaded) and event.text and event.document_kind != "id":
            return event.account_id
        return None

    def expires_at_ms(self, state: AccountState) -> int:
        return state["last_ms"] + self._retention_ms

    def prepare(self) -> None:
        """datasketch imported and the permutations drawn now (`detectors.prepare`), not at
        the first proposal (the import alone takes about 0.3 s)."""
        from datasketch import MinHash

        if self._permutations is None:
            self._permutations = MinHash(num_perm=self.settings.num_perm, seed=1).permutations

    def signature(self, text: str) -> list[int] | None:
        """The MinHash signature of the text's shingles, or None for a text too short."""
        from datasketch import MinHash

        settings = self.settings
        grams = shingles(text, settings.shingle_words)
        if len(grams) + settings.shingle_words - 1 < settings.min_words:
            return None
        if self._permutations is None:
            self.prepare()
        # The scheme named is datasketch's default, which drew the permutations.
        minhash = MinHash(
            num_perm=settings.num_perm,
            seed=1,
            permutations=self._permutations,
            scheme="affine32",
        )
        minhash.update_batch([gram.encode() for gram in grams])
        signature: list[int] = minhash.hashvalues.tolist()  # Python ints (numpy's, in C)
        return signature

    def step(
        self, state: AccountState | None, event: BidSubmitted | DocumentUploaded
    ) -> tuple[AccountState | None, list[TemplateBand]]:
        assert event.text is not None
        event_ms = event.occurred_ms
        signature = self.signature(event.text)
        if signature is None:
            return state, []
        if state is None:
            state = {"bands": [], "last_ms": event_ms}
        state["last_ms"] = max(state["last_ms"], event_ms)
        rows = self.settings.num_perm // self.settings.bands
        snippet = " ".join(event.text.split())[:160]
        known = set(state["bands"])
        outputs = []
        for index in range(self.settings.bands):
            values = signature[index * rows : (index + 1) * rows]
            digest = hashlib.blake2b(repr(values).encode(), digest_size=10).hexdigest()
            band = f"{index}:{digest}"
            if band in known:
                continue  # the account's own text again
            known.add(band)
            state["bands"].append(band)
            outputs.append(
                TemplateBand(
                    event_id=event.event_id,
                    occurred_at=event.occurred_at,
                    account_id=event.account_id,
                    band=band,
                    signature=signature,
                    snippet=snippet,
                )
            )
        state["bands"] = state["bands"][-self.settings.max_bands_per_account :]
        return state, outputs


# ------------------------------------------------------------------ stage 2: the band
class BandState(TypedDict, total=False):
    members: Required[dict[str, list[Any]]]  # account -> [first ms, event id, signature, snippet]
    origin: Required[str | None]  # the earliest text the group was reported under
    reported: Required[int]  # accounts named under it
    last_ms: Required[int]
    # The earliest text's time while a group waits for the input to be complete up to it.
    due: int | None


def similarity(a: list[int], b: list[int]) -> float:
    """The signatures' estimated Jaccard similarity: the share of equal values."""
    if len(a) != len(b):
        raise ValueError(f"signatures of {len(a)} and {len(b)} values")
    equal: int = sum(map(operator.eq, a, b))
    return equal / len(a)


class BandStage:
    entity: EntityKind = "template_band"
    input_model: type[EventBase] | None = TemplateBand

    def __init__(self, settings: TemplateReuseSettings) -> None:
        self.settings = settings
        self._retention_ms = int(settings.retention_days * 86_400_000)

    def key(self, event: Any) -> str | None:
        return event.band if isinstance(event, TemplateBand) else None

    def expires_at_ms(self, state: BandState) -> int:
        return state["last_ms"] + self._retention_ms

    def due_at_ms(self, state: BandState) -> int | None:
        return state.get("due")

    def step(
        self, state: BandState | None, event: TemplateBand
    ) -> tuple[BandState | None, list[TemplateGroup]]:
        event_ms = event.occurred_ms
        if state is None:
            state = {"members": {}, "origin": None, "reported": 0, "last_ms": event_ms}
        state["last_ms"] = max(state["last_ms"], event_ms)
        members = state["members"]
        known = members.get(event.account_id)
        if known is not None and (known[0], known[1]) <= (event_ms, event.event_id):
            return state, []  # the account is in the band already, with an earlier text
        members[event.account_id] = [event_ms, event.event_id, event.signature, event.snippet]
        if len(members) > self.settings.max_accounts_per_band:
            earliest = sorted(members.items(), key=lambda item: (item[1][0], item[1][1]))
            state["members"] = members = dict(earliest[: self.settings.max_accounts_per_band])
        _, first, alike = self._group(state)
        if len(alike) >= self.settings.min_accounts and (
            state["origin"] != first[1] or len(alike) > state["reported"]
        ):
            state["due"] = first[0]  # judged once the input is complete up to the origin
        return state, []

    def release(
        self, state: BandState, complete_ms: int
    ) -> tuple[BandState | None, list[TemplateGroup]]:
        due = state.get("due")
        if due is None or due > complete_ms:
            return state, []
        state["due"] = None
        first_account, first, alike = self._group(state)
        origin = first[1]
        previous = state["origin"]
        if len(alike) < self.settings.min_accounts or (
            previous == origin and len(alike) <= state["reported"]
        ):
            return state, []
        group = TemplateGroup(
            event_id=origin, occurred_at=datetime.fromtimestamp(first[0] / 1000, tz=UTC),
            account_id=first_account, origin=origin, origin_ms=first[0], members=alike,
            snippet=first[3],
        )  # fmt: skip
        outputs = [group]
        if previous is not None and previous != origin:  # an earlier text came too late
            outputs.insert(
                0, group.model_copy(update={"origin": previous, "superseded_by": origin})
            )
        state["origin"], state["reported"] = origin, len(alike)
        return state, outputs

    def _group(self, state: BandState) -> tuple[str, list[Any], dict[str, list[Any]]]:
        """The band's earliest text (its account and entry) and the accounts whose texts are
        alike to it: account -> [first ms, event id, similarity]."""
        members = state["members"]
        first_account, first = min(members.items(), key=lambda item: (item[1][0], item[1][1]))
        alike = {}
        for account, entry in members.items():
            alike_by = similarity(first[2], entry[2])
            if account == first_account or alike_by >= self.settings.similarity_min:
                alike[account] = [entry[0], entry[1], round(alike_by, 3)]
        return first_account, first, alike


# ------------------------------------------------------------------ stage 3: the template
class TemplateState(TypedDict):
    members: dict[str, list[Any]]  # account -> [first ms, event id, similarity]
    origin_ms: int
    snippet: str
    reported: int
    closed: bool
    last_ms: int


class TemplateStage:
    entity: EntityKind = "template"
    input_model: type[EventBase] | None = TemplateGroup

    def __init__(self, settings: TemplateReuseSettings) -> None:
        self.settings = settings
        self._retention_ms = int(settings.retention_days * 86_400_000)

    def key(self, event: Any) -> str | None:
        return event.origin if isinstance(event, TemplateGroup) else None

    def expires_at_ms(self, state: TemplateState) -> int:
        return state["last_ms"] + self._retention_ms

    def step(
        self, state: TemplateState | None, event: TemplateGroup
    ) -> tuple[TemplateState | None, list[FindingDraft]]:
        if event.superseded_by is not None:  # an earlier text of the template turned up
            if state is None or not state["reported"] or state["closed"]:
                return state, []
            state["closed"] = True
            closed = self._finding(event.origin, state, update=True)
            closed.closed_by = self.uid(event.superseded_by, event.origin_ms)
            return state, [closed]
        if state is None:
            state = {"members": {}, "origin_ms": event.origin_ms, "snippet": event.snippet,
                     "reported": 0, "closed": False, "last_ms": event.origin_ms}  # fmt: skip
        for account, entry in event.members.items():
            known = state["members"].get(account)
            if known is None or (entry[0], entry[1]) < (known[0], known[1]):
                state["members"][account] = list(entry)
        if len(state["members"]) > self.settings.max_accounts_per_band:
            earliest = sorted(state["members"].items(), key=lambda item: (item[1][0], item[1][1]))
            state["members"] = dict(earliest[: self.settings.max_accounts_per_band])
        state["last_ms"] = max(entry[0] for entry in state["members"].values())
        if state["closed"] or len(state["members"]) <= state["reported"]:
            return state, []
        update = state["reported"] > 0
        state["reported"] = len(state["members"])
        return state, [self._finding(event.origin, state, update)]

    def uid(self, origin: str, origin_ms: int) -> str:
        bucket = dedup_bucket(origin_ms, self.settings.dedup_window_hours)
        return FindingDraft(METADATA, (origin, str(bucket)), [], Severity.LOW,
                            Confidence.LOW, "", 0, 0, []).uid  # fmt: skip

    def _finding(self, origin: str, state: TemplateState, update: bool) -> FindingDraft:
        ordered = sorted(state["members"].items(), key=lambda item: (item[1][0], item[0]))
        accounts = [account for account, _ in ordered]
        count = len(accounts)
        shown = ", ".join(accounts[:10]) + (f" and {count - 10} more" if count > 10 else "")
        lowest = min(entry[2] for _, entry in ordered)
        days = (ordered[-1][1][0] - ordered[0][1][0]) / 86_400_000
        bucket = dedup_bucket(state["origin_ms"], self.settings.dedup_window_hours)
        return FindingDraft(
            detector=METADATA,
            uid_parts=(origin, str(bucket)),
            accounts=accounts,
            severity=Severity.HIGH if count >= 5 else Severity.MEDIUM,
            confidence=Confidence.MEDIUM,
            message=(
                f"{count} accounts sent near-identical text (similarity {lowest:.2f} or more) "
                f'within {days:.1f} days: {shown}; text: "{state["snippet"][:100]}"'
            ),
            start_ms=ordered[0][1][0],
            end_ms=ordered[-1][1][0],
            evidences=[
                Evidence(
                    user=User(uid=account),
                    data={"event_id": entry[1], "time": entry[0], "similarity": entry[2]},
                )
                for account, entry in ordered[:50]
            ],
            unmapped={
                "account_count": count,
                "similarity_min": self.settings.similarity_min,
                "template_origin_event": origin,
            },
            count=count,
            update=update,
        )


def build(settings: TemplateReuseSettings | None = None) -> Detector:
    settings = settings or TemplateReuseSettings()
    return Detector(METADATA, (TextStage(settings), BandStage(settings), TemplateStage(settings)))
