"""rating_burst: one client rates several freelancers highly within days.

Advisory red flag (freelance platforms): several developer accounts receiving high ratings
from one client in a short time; a team's own client account builds its freelancers'
reputations.

Keyed by the rating client (`rating_given` is the client's event, on the client's partition).
One finding per burst: created when the min_freelancers-th distinct freelancer is rated highly
within the window, updated with the same uid each time another joins, naming the client and
every freelancer rated. Its uid is (client, the window of the burst's opening time), computed
from the ratings' own times: live, replay and a re-read after a crash name the same finding,
and a burst a backlog opened provisionally under a later window is closed, naming the
canonical one.
"""

from __future__ import annotations

from typing import Any, TypedDict

from detectors.core.base import (
    Detector,
    DetectorMetadata,
    EntityKind,
    FindingDraft,
    dedup_bucket,
)
from detectors.models.rating_burst import RatingBurstSettings
from schemas.events import EventBase, RatingGiven
from schemas.finding import Confidence, Evidence, Severity, User

__all__ = ["METADATA", "RatingBurst", "RatingBurstSettings", "build"]

METADATA = DetectorMetadata(
    id="rating_burst",
    name="Burst of high ratings from one client",
    title="One client rated several freelancers highly within days",
    advisory_flag="several developer accounts receiving high ratings from one client in a short time",
    runbook=(
        "Review the client and every rated freelancer together: who funds the client (same "
        "payment instrument as a freelancer's payout: self_dealing), whether the contracts "
        "had real deliverables, and whether the freelancers share IPs, devices or payouts."
    ),
    topics=("platform.marketplace",),
    dedup_window_hours=168.0,
    types=("Reputation Fraud",),
    description=(
        "One client gave high ratings to several distinct freelancers within a few days, "
        "as a team's own client account does to build its freelancers' reputations."
    ),
    attack_rationale=(
        "None: rating fraud manipulates the platform's reputation system, which MITRE ATT&CK "
        "does not describe."
    ),
)


class Rated(TypedDict):
    ms: int
    freelancer: str
    score: int
    event_id: str
    contract_id: str


class RatingBurstState(TypedDict):
    ratings: list[Rated]  # high ratings in time order
    # One entry per finding made: [window it opened in, freelancers named, first ms, last ms,
    # closed]; a burst is matched to its finding by overlapping time span.
    reported: list[list[int]]
    last_ms: int


class RatingBurst:
    entity: EntityKind = "account"
    input_model: type[EventBase] | None = None

    _MAX_REPORTED = 16

    def __init__(self, settings: RatingBurstSettings) -> None:
        self.settings = settings
        self._window_ms = int(settings.window_days * 86_400_000)

    def key(self, event: Any) -> str | None:
        if not isinstance(event, RatingGiven) or event.score < self.settings.min_score:
            return None
        return event.account_id if event.to_account_id != event.account_id else None

    def expires_at_ms(self, state: RatingBurstState) -> int:
        return state["last_ms"] + 2 * self._window_ms

    def step(
        self, state: RatingBurstState | None, event: RatingGiven
    ) -> tuple[RatingBurstState | None, list[FindingDraft]]:
        event_ms = event.occurred_ms
        if state is None:
            state = {"ratings": [], "reported": [], "last_ms": event_ms}
        if any(r["event_id"] == event.event_id for r in state["ratings"]):
            return state, []  # a re-delivery
        state["last_ms"] = max(state["last_ms"], event_ms)
        rated: Rated = {
            "ms": event_ms, "freelancer": event.to_account_id, "score": event.score,
            "event_id": event.event_id, "contract_id": event.contract_id,
        }  # fmt: skip
        ratings = sorted([*state["ratings"], rated], key=lambda r: (r["ms"], r["event_id"]))
        horizon = state["last_ms"] - 3 * self._window_ms
        state["ratings"] = [r for r in ratings if r["ms"] >= horizon][-self.settings.max_ratings :]
        findings: list[FindingDraft] = []
        for burst in self._bursts(state["ratings"]):
            findings.extend(self._report(event.account_id, state, burst))
        state["reported"] = state["reported"][-self._MAX_REPORTED :]
        return state, findings

    def _bursts(self, ratings: list[Rated]) -> list[list[Rated]]:
        """The ratings that take part in a burst, grouped into bursts: a rating belongs to
        one when min_freelancers distinct freelancers are rated within the window ending
        at it; overlapping such windows are one burst."""
        window, needed = self._window_ms, self.settings.min_freelancers
        bursts: list[list[Rated]] = []
        for position, rating in enumerate(ratings):
            inside = [r for r in ratings[: position + 1] if r["ms"] > rating["ms"] - window]
            if len({r["freelancer"] for r in inside}) < needed:
                continue
            if bursts and bursts[-1][-1]["ms"] > inside[0]["ms"] - window:
                known = {r["event_id"] for r in bursts[-1]}
                bursts[-1].extend(r for r in inside if r["event_id"] not in known)
            else:
                bursts.append(list(inside))
        return [sorted(b, key=lambda r: (r["ms"], r["event_id"])) for b in bursts]

    def _report(
        self, client: str, state: RatingBurstState, burst: list[Rated]
    ) -> list[FindingDraft]:
        freelancers = list(dict.fromkeys(r["freelancer"] for r in burst))
        first, last = burst[0]["ms"], burst[-1]["ms"]
        opening = self._opening_ms(burst)
        bucket = dedup_bucket(opening, self.settings.dedup_window_hours)
        overlapping = [
            entry for entry in state["reported"]
            if not entry[4] and entry[2] <= last and first <= entry[3]
        ]  # fmt: skip
        same = [entry for entry in overlapping if entry[0] == bucket]
        findings: list[FindingDraft] = []
        for entry in overlapping:
            if entry[0] != bucket:  # opened provisionally under another window: closed
                closed = self._finding(client, burst, freelancers, entry[0], update=True)
                closed.closed_by = self._finding(client, burst, freelancers, bucket, False).uid
                entry[4] = 1
                findings.append(closed)
        if same:
            entry = same[0]
            entry[2], entry[3] = min(entry[2], first), max(entry[3], last)
            if len(freelancers) <= entry[1]:
                return findings
            entry[1] = len(freelancers)
            return [*findings, self._finding(client, burst, freelancers, bucket, update=True)]
        state["reported"].append([bucket, len(freelancers), first, last, 0])
        return [*findings, self._finding(client, burst, freelancers, bucket, update=False)]

    def _opening_ms(self, burst: list[Rated]) -> int:
        """The time of the rating at which the burst first had min_freelancers freelancers."""
        needed = self.settings.min_freelancers
        for position, rating in enumerate(burst):
            inside = {
                r["freelancer"]
                for r in burst[: position + 1]
                if r["ms"] > rating["ms"] - self._window_ms
            }
            if len(inside) >= needed:
                return rating["ms"]
        return burst[-1]["ms"]

    def _finding(
        self, client: str, burst: list[Rated], freelancers: list[str], bucket: int, update: bool
    ) -> FindingDraft:
        count = len(freelancers)
        first, last = burst[0]["ms"], burst[-1]["ms"]
        scores = sorted({r["score"] for r in burst})
        stars = f"{scores[0]} stars" if len(scores) == 1 else f"{scores[0]}-{scores[-1]} stars"
        shown = ", ".join(freelancers[:10]) + (f" and {count - 10} more" if count > 10 else "")
        days = (last - first) / 86_400_000
        high = count >= self.settings.high_severity_freelancers
        return FindingDraft(
            detector=METADATA,
            uid_parts=(client, str(bucket)),
            accounts=[client, *freelancers],
            severity=Severity.HIGH if high else Severity.MEDIUM,
            confidence=Confidence.MEDIUM,
            message=(
                f"{count} freelancers rated {stars} by client {client} within "
                f"{days:.1f} days ({len(burst)} ratings): {shown}"
            ),
            start_ms=first,
            end_ms=last,
            evidences=[
                Evidence(
                    user=User(uid=r["freelancer"]),
                    data={
                        "event_id": r["event_id"],
                        "time": r["ms"],
                        "event_type": "rating_given",
                        "score": r["score"],
                        "contract_id": r["contract_id"],
                        "client": client,
                    },
                )
                for r in burst[:50]
            ],
            unmapped={
                "freelancer_count": count,
                "rating_count": len(burst),
                "span_days": round(days, 2),
                "window_days": self.settings.window_days,
            },
            count=count,
            update=update,
        )


def build(settings: RatingBurstSettings | None = None) -> Detector:
    return Detector(METADATA, (RatingBurst(settings or RatingBurstSettings()),))
