"""Detection quality against a simulated platform's ground truth (`daylight evaluate`)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any

__all__ = ["DetectorScore", "Evaluation", "evaluate"]


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
