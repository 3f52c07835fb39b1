"""bid_pattern: intensive bidding with few bids accepted, and many bids per login.

Advisory red flag (freelance platforms): intensive bidding with few bids accepted; a team
works many identities in parallel and sprays proposals from each.

Two stages. The bidder's own events (its bids, its logins) and the acceptances a client
publishes live on different partitions, so:

1. keyed by the account (in the worker's input pass): each bid, once the account's logins are
   read up to its time (a `DeferringStage`), leaves with the number of logins of the account
   in the window before it, up to its own time; each `bid_accepted` naming its freelancer leaves as an acceptance;
2. keyed by the freelancer (a repartition topic): bids and acceptances meet. A decision at a
   bid's time (min_bids bids within the window, few of their jobs accepted; or bids per login
   far above the norm) rests on the absence of acceptances, so it waits until the stage's input
   is complete up to that time. One finding per freelancer per window.
"""

from __future__ import annotations

import bisect
from datetime import datetime
from typing import Any, Final, TypedDict

from detectors.core.base import (
    Detector,
    DetectorMetadata,
    EntityKind,
    FindingDraft,
    dedup_bucket,
    remember_event_id,
)
from detectors.models.bid_pattern import BidActivity, BidPatternSettings
from schemas.events import BidAccepted, BidSubmitted, EventBase, Login
from schemas.finding import Confidence, Evidence, Severity, User

__all__ = ["METADATA", "BidActivity", "BidPatternSettings", "BidderStage", "build"]

METADATA = DetectorMetadata(
    id="bid_pattern",
    name="Intensive bidding, few bids accepted",
    title="Freelancer bids intensively with few bids accepted",
    advisory_flag="intensive bidding with few bids accepted; many bids per login",
    runbook=(
        "Read a sample of the bids: the same template across accounts (template_reuse) and "
        "jobs far outside the profile's skills point to a team; check the account's logins "
        "(VPN exits, shared IPs) and whether other accounts bid on the same jobs at once."
    ),
    topics=("platform.logins", "platform.marketplace"),
    dedup_window_hours=168.0,
    types=("Marketplace Abuse",),
    description=(
        "The freelancer bid on many jobs within days and few of those bids were accepted, "
        "or bid far more per login than people do."
    ),
    attack_rationale=(
        "None: bidding on a marketplace is the platform's own business activity, which MITRE "
        "ATT&CK does not describe."
    ),
)

_DAY_MS: Final = 86_400_000


def _at(text: str) -> datetime:
    return datetime.fromisoformat(text)


# ------------------------------------------------------------------ stage 1: the account
class BidderState(TypedDict):
    # login times within the window (the newest `_MAX_LOGINS`): a bid counts those at or
    # before its own time, so the count does not depend on how far the logins were read
    logins: list[int]
    pending: list[dict[str, Any]]  # bids waiting for the logins up to their time
    last_ms: int
    recent: list[str]


_MAX_PENDING: Final = 256
_MAX_LOGINS: Final = 512


class BidderStage:
    """Counts the account's logins by day; each bid leaves with the count of the days before
    it once the logins are read up to its time; acceptances leave at once."""

    entity: EntityKind = "account"
    input_model: type[EventBase] | None = None

    def __init__(self, settings: BidPatternSettings) -> None:
        self.settings = settings

    def key(self, event: Any) -> str | None:
        if isinstance(event, Login):
            return event.account_id if event.type == "login" else None
        if isinstance(event, BidSubmitted):
            return event.account_id
        if isinstance(event, BidAccepted) and event.freelancer_id:
            return event.account_id
        return None

    def expires_at_ms(self, state: BidderState) -> int:
        return state["last_ms"] + (self.settings.window_days + 1) * _DAY_MS

    def due_at_ms(self, state: BidderState) -> int | None:
        pending = state.get("pending")
        return min(item["ms"] for item in pending) if pending else None

    def step(
        self, state: BidderState | None, event: EventBase
    ) -> tuple[BidderState | None, list[BidActivity]]:
        event_ms = event.occurred_ms
        if isinstance(event, BidAccepted):
            assert event.freelancer_id is not None
            accepted = BidActivity(
                event_id=event.event_id, occurred_at=event.occurred_at,
                account_id=event.account_id, kind="accepted",
                freelancer_id=event.freelancer_id, job_id=event.job_id,
            )  # fmt: skip
            return state, [accepted]
        if state is None:
            state = {"logins": [], "pending": [], "last_ms": event_ms, "recent": []}
        elif isinstance(state["logins"], dict):  # written by an earlier version: day counts
            state["logins"] = []
        if not remember_event_id(state["recent"], event.event_id):
            return state, []
        state["last_ms"] = max(state["last_ms"], event_ms)
        if isinstance(event, Login):
            oldest = state["last_ms"] - (self.settings.window_days + 1) * _DAY_MS
            logins = [ms for ms in state["logins"] if ms >= oldest]
            bisect.insort(logins, event_ms)
            state["logins"] = logins[-_MAX_LOGINS:]
            return state, []
        assert isinstance(event, BidSubmitted)
        item = {"ms": event_ms, "event_id": event.event_id, "job_id": event.job_id,
                "account_id": event.account_id,
                "occurred_at": event.occurred_at.isoformat()}  # fmt: skip
        pending = sorted([*state["pending"], item], key=lambda i: (i["ms"], i["event_id"]))
        state["pending"] = pending
        if len(pending) > _MAX_PENDING:  # bounded: the oldest leaves with what is known
            return self.release(state, pending[-_MAX_PENDING - 1]["ms"])
        return state, []

    def release(
        self, state: BidderState, complete_ms: int
    ) -> tuple[BidderState | None, list[BidActivity]]:
        due = [item for item in state["pending"] if item["ms"] <= complete_ms]
        state["pending"] = [item for item in state["pending"] if item["ms"] > complete_ms]
        outputs = []
        window_ms = self.settings.window_days * _DAY_MS
        for item in due:
            logins = sum(1 for ms in state["logins"] if item["ms"] - window_ms < ms <= item["ms"])
            outputs.append(
                BidActivity(
                    event_id=item["event_id"],
                    occurred_at=_at(item["occurred_at"]),
                    account_id=item["account_id"],
                    kind="bid",
                    freelancer_id=item["account_id"],
                    job_id=item["job_id"],
                    logins=logins,
                )
            )
        return state, outputs


# ------------------------------------------------------------------ stage 2: the freelancer
class FreelancerState(TypedDict):
    freelancer: str
    bids: list[list[Any]]  # [ms, event_id, job_id, logins] in time order
    accepted: dict[str, int]  # job_id -> acceptance time
    pending: list[int]  # bid times whose decision waits for the input to be complete
    reported: list[list[int]]  # [dedup window, severity] of each finding made
    last_ms: int


class FreelancerStage:
    entity: EntityKind = "freelancer"
    input_model: type[EventBase] | None = BidActivity

    def __init__(self, settings: BidPatternSettings) -> None:
        self.settings = settings
        self._window_ms = settings.window_days * _DAY_MS
        self._grace_ms = int(settings.acceptance_grace_hours * 3_600_000)

    def key(self, event: Any) -> str | None:
        return event.freelancer_id if isinstance(event, BidActivity) else None

    def expires_at_ms(self, state: FreelancerState) -> int:
        return state["last_ms"] + self._window_ms + self._grace_ms

    def due_at_ms(self, state: FreelancerState) -> int | None:
        return min(state["pending"]) + self._grace_ms if state.get("pending") else None

    def step(
        self, state: FreelancerState | None, event: BidActivity
    ) -> tuple[FreelancerState | None, list[FindingDraft]]:
        event_ms = event.occurred_ms
        if state is None:
            state = {"freelancer": event.freelancer_id, "bids": [], "accepted": {},
                     "pending": [], "reported": [], "last_ms": event_ms}  # fmt: skip
        state["last_ms"] = max(state["last_ms"], event_ms)
        horizon = state["last_ms"] - 2 * self._window_ms - self._grace_ms
        if event.kind == "accepted":
            state["accepted"][event.job_id] = min(
                event_ms, state["accepted"].get(event.job_id, event_ms)
            )
            state["accepted"] = {j: ms for j, ms in state["accepted"].items() if ms >= horizon}
            return state, []
        if any(bid[1] == event.event_id for bid in state["bids"]):
            return state, []  # a re-delivery
        bids = sorted([*state["bids"], [event_ms, event.event_id, event.job_id, event.logins]])
        state["bids"] = [bid for bid in bids if bid[0] >= horizon][-self.settings.max_bids :]
        if len(state["pending"]) < self.settings.max_bids:
            state["pending"] = sorted({*state["pending"], event_ms})
        return state, []

    def release(
        self, state: FreelancerState, complete_ms: int
    ) -> tuple[FreelancerState | None, list[FindingDraft]]:
        # A decision at a bid's time counts the acceptances up to a grace period after it.
        due = [ms for ms in state["pending"] if ms + self._grace_ms <= complete_ms]
        state["pending"] = [ms for ms in state["pending"] if ms + self._grace_ms > complete_ms]
        findings = []
        for moment in due:
            bucket = dedup_bucket(moment, self.settings.dedup_window_hours)
            made = next((entry for entry in state["reported"] if entry[0] == bucket), None)
            if made is not None and made[1] >= Severity.HIGH:
                continue  # nothing stronger to say in this window
            finding = self._judge(state, moment, bucket)
            if finding is None or (made is not None and finding.severity <= made[1]):
                continue
            if made is None:
                state["reported"] = sorted([*state["reported"], [bucket, int(finding.severity)]])[
                    -4:
                ]
            else:  # the same finding, grown stronger
                made[1] = int(finding.severity)
                finding.update = True
            findings.append(finding)
        return state, findings

    def _judge(self, state: FreelancerState, moment: int, bucket: int) -> FindingDraft | None:
        settings = self.settings
        window = [bid for bid in state["bids"] if moment - self._window_ms < bid[0] <= moment]
        if not window:
            return None
        accepted = {job for job, ms in state["accepted"].items() if ms <= moment + self._grace_ms}
        accepted_bids = sum(1 for bid in window if bid[2] in accepted)
        share = accepted_bids / len(window)
        logins = window[-1][3]
        per_login = len(window) / max(1, logins)
        reasons, codes = [], []
        if len(window) >= settings.min_bids and share <= settings.max_accepted_share:
            reasons.append(
                f"{len(window)} bids within {settings.window_days} days, "
                f"{accepted_bids} accepted ({share:.0%})"
            )
            codes.append("few_accepted")
        if len(window) >= settings.min_bids_for_rate and per_login > settings.bids_per_login_max:
            reasons.append(f"{per_login:.1f} bids per login ({logins} logins)")
            codes.append("bids_per_login")
        if not codes:
            return None
        freelancer = state["freelancer"]
        return FindingDraft(
            detector=METADATA,
            uid_parts=(freelancer, str(bucket)),
            accounts=[freelancer],
            severity=Severity.HIGH if len(codes) == 2 else Severity.MEDIUM,
            confidence=Confidence.MEDIUM,
            message=f"Freelancer {freelancer}: " + "; ".join(reasons),
            start_ms=window[0][0],
            end_ms=moment,
            evidences=[
                Evidence(
                    user=User(uid=freelancer),
                    data={
                        "event_id": bid[1],
                        "time": bid[0],
                        "event_type": "bid_submitted",
                        "job_id": bid[2],
                        "accepted": bid[2] in accepted,
                    },
                )
                for bid in window[-20:]
            ],
            unmapped={
                "reasons": codes,
                "bid_count": len(window),
                "accepted_count": accepted_bids,
                "accepted_share": round(share, 4),
                "login_count": logins,
                "bids_per_login": round(per_login, 2),
                "window_days": settings.window_days,
            },
            count=len(window),
        )


def build(settings: BidPatternSettings | None = None) -> Detector:
    settings = settings or BidPatternSettings()
    return Detector(METADATA, (BidderStage(settings), FreelancerStage(settings)))
