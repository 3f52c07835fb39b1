"""Detection quality against a simulated platform's ground truth (`daylight evaluate`)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any

__all__ = ["CaseEvaluation", "DetectorScore", "Evaluation", "evaluate", "evaluate_cases"]


@dataclass(frozen=True)
class DetectorScore:
    detector: str
    findings: int  # distinct findings (uids)
    flagged_accounts: int
    team_accounts_flagged: int
    made_to_show: int  # team identities the simulator made show this red flag
    recall: float | None  # share of those the detector named
    precision: float | None  # share of the accounts it named that belong to a team
    findings_per_flagged_account: float | None
    # benign accounts named, and those of them without a trap for this flag (truth's
    # `trap_flags`): the second must be 0
    benign_flagged: int = 0
    benign_flagged_without_trap: int = 0


@dataclass(frozen=True)
class Evaluation:
    detectors: list[DetectorScore]
    team_identities: int
    team_identities_with_a_finding: float
    benign_accounts: int
    benign_accounts_with_a_finding: float

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def recall_below(self, minimum: float) -> list[str]:
        return [
            score.detector
            for score in self.detectors
            if score.recall is not None and score.recall < minimum
        ]


def _ratio(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


def evaluate(findings: Iterable[dict[str, Any]], truth: dict[str, Any]) -> Evaluation:
    identities: dict[str, list[str]] = truth["identities"]
    team = set(identities)
    benign = set(truth["benign"])
    detectors: list[str] = truth.get("flags", [])
    trap_flags: dict[str, list[str]] = truth.get("trap_flags", {})
    explained: dict[str, set[str]] = {}  # detector -> benign accounts with a trap for it
    for account, traps in truth.get("traps", {}).items():
        for trap in traps:
            for flag in trap_flags.get(trap, ()):
                explained.setdefault(flag, set()).add(account)
    uids: dict[str, set[str]] = {d: set() for d in detectors}
    named: dict[str, set[str]] = {d: set() for d in detectors}
    for finding in findings:
        detector = finding["finding_info"]["analytic"]["uid"]
        uids.setdefault(detector, set()).add(finding["finding_info"]["uid"])
        named.setdefault(detector, set()).update(r["uid"] for r in finding["resources"])
    scores = []
    for detector in sorted(
        named, key=lambda d: (d not in detectors, detectors.index(d) if d in detectors else 0, d)
    ):
        flagged = named[detector]
        made = {account for account, flags in identities.items() if detector in flags}
        scores.append(
            DetectorScore(
                detector=detector,
                findings=len(uids[detector]),
                flagged_accounts=len(flagged),
                team_accounts_flagged=len(flagged & team),
                made_to_show=len(made),
                recall=_ratio(len(flagged & made), len(made)),
                precision=_ratio(len(flagged & team), len(flagged)),
                findings_per_flagged_account=_ratio(len(uids[detector]), len(flagged)),
                benign_flagged=len(flagged & benign),
                benign_flagged_without_trap=len(
                    (flagged & benign) - explained.get(detector, set())
                ),
            )
        )
    anyone = set().union(*named.values()) if named else set()
    return Evaluation(
        detectors=scores,
        team_identities=len(team),
        team_identities_with_a_finding=_ratio(len(anyone & team), len(team)) or 0.0,
        benign_accounts=len(benign),
        benign_accounts_with_a_finding=_ratio(len(anyone & benign), len(benign)) or 0.0,
    )


@dataclass(frozen=True)
class CaseEvaluation:
    open_cases: int
    findings: int  # distinct findings (uids) the cases were made from
    findings_per_case: float | None
    identities_with_two_flags: int  # team identities made to show 2+ distinct red flags
    identity_recall: float | None  # share of those in an open case
    benign_in_open_case: float  # share of benign accounts in an open case
    team_coherence: dict[str, float]  # per team: the largest share of its identities in one case
    max_open_cases_per_identity: int

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def evaluate_cases(
    cases: Iterable[dict[str, Any]], findings: Iterable[dict[str, Any]], truth: dict[str, Any]
) -> CaseEvaluation:
    """The final state of every case (its last message), scored against the truth."""
    last: dict[str, dict[str, Any]] = {}
    for case in cases:
        last[case["finding_info"]["uid"]] = case
    opened = [c["unmapped"]["accounts"] for c in last.values() if c["activity_id"] != 3]
    identities: dict[str, list[str]] = truth["identities"]
    strong = {a for a, flags in identities.items() if len(set(flags)) >= 2}
    in_case: dict[str, int] = {}
    for accounts in opened:
        for account in accounts:
            in_case[account] = in_case.get(account, 0) + 1
    benign = set(truth["benign"])
    coherence = {}
    for team, members in truth["teams"].items():
        best = max((len(set(members) & set(accounts)) for accounts in opened), default=0)
        coherence[team] = round(best / len(members), 4) if members else 0.0
    uids = {f["finding_info"]["uid"] for f in findings}
    return CaseEvaluation(
        open_cases=len(opened),
        findings=len(uids),
        findings_per_case=_ratio(len(uids), len(opened)),
        identities_with_two_flags=len(strong),
        identity_recall=_ratio(len(strong & set(in_case)), len(strong)),
        benign_in_open_case=_ratio(len(benign & set(in_case)), len(benign)) or 0.0,
        team_coherence=coherence,
        max_open_cases_per_identity=max((in_case.get(a, 0) for a in identities), default=0),
    )
