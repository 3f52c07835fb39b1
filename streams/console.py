"""What the CLI shows a person: finding lines, the live findings table, the evaluation table."""

from __future__ import annotations

from collections import Counter, deque
from datetime import UTC, datetime
from typing import Any

from rich.console import Group
from rich.table import Table

from simulator.evaluate import CaseEvaluation, Evaluation

__all__ = ["LiveFindings", "alert_line", "case_evaluation_table", "evaluation_table"]

_SEVERITY_STYLE = {"Critical": "bold red", "High": "red", "Medium": "yellow", "Low": "cyan"}


def _when(finding: dict[str, Any]) -> str:
    return datetime.fromtimestamp(finding["time"] / 1000, UTC).strftime("%Y-%m-%d %H:%M")


def alert_line(finding: dict[str, Any]) -> str:
    detector = finding["finding_info"]["analytic"]["uid"]
    account = finding["resources"][0]["uid"]
    return f"{_when(finding)}  {detector:<18} {finding['severity']:<8} {account:<20} {finding['message']}"


class LiveFindings:
    """The newest findings as a table, with the count per detector underneath."""

    def __init__(self, rows: int = 15) -> None:
        self._recent: deque[dict[str, Any]] = deque(maxlen=rows)
        self.counts: Counter[str] = Counter()

    def add(self, finding: dict[str, Any]) -> None:
        self._recent.append(finding)
        self.counts[finding["finding_info"]["analytic"]["uid"]] += 1

    def render(self) -> Group:
        table = Table(title="Findings on daylight.alerts (newest last)", expand=True)
        table.add_column("event time", no_wrap=True)
        # Identifiers are never shortened: a narrow screen folds them onto another line.
        table.add_column("detector", overflow="fold", min_width=_longest(self.counts))
        table.add_column("severity", no_wrap=True)
        table.add_column("account", overflow="fold")
        table.add_column("message", ratio=1)
        for finding in self._recent:
            severity = finding["severity"]
            table.add_row(
                _when(finding),
                finding["finding_info"]["analytic"]["uid"],
                f"[{_SEVERITY_STYLE.get(severity, '')}]{severity}[/]",
                finding["resources"][0]["uid"],
                finding["message"],
            )
        counts = ", ".join(f"{detector} {count}" for detector, count in sorted(self.counts.items()))
        return Group(table, f"{sum(self.counts.values())} findings: {counts or 'none yet'}")


def _longest(names: Any) -> int:
    return max((len(name) for name in names), default=8)


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{value:.0%}"


def evaluation_table(evaluation: Evaluation) -> Group:
    table = Table(title="Detection quality against the ground truth")
    table.add_column(
        "detector", overflow="fold", min_width=_longest(s.detector for s in evaluation.detectors)
    )
    for column in ("findings", "accounts named", "made to show", "recall", "precision",
                   "findings / account", "benign", "benign, no trap"):  # fmt: skip
        table.add_column(column, justify="right")
    for score in evaluation.detectors:
        table.add_row(
            score.detector,
            str(score.findings),
            str(score.flagged_accounts),
            str(score.made_to_show),
            _percent(score.recall),
            _percent(score.precision),
            "-" if score.findings_per_flagged_account is None
            else f"{score.findings_per_flagged_account:.2f}",
            str(score.benign_flagged),
            str(score.benign_flagged_without_trap),
        )  # fmt: skip
    overall = (
        f"team identities with a finding: {evaluation.team_identities_with_a_finding:.0%} of "
        f"{evaluation.team_identities}; benign accounts with a finding: "
        f"{evaluation.benign_accounts_with_a_finding:.1%} of {evaluation.benign_accounts}"
    )
    return Group(table, overall)


def case_evaluation_table(scored: CaseEvaluation) -> Group:
    table = Table(title="Cases against the ground truth")
    table.add_column("measure")
    table.add_column("value", justify="right")
    coherence = ", ".join(
        f"{team} {share:.0%}" for team, share in sorted(scored.team_coherence.items())
    )
    rows = [
        ("open cases", str(scored.open_cases)),
        ("findings per open case", "-" if scored.findings_per_case is None
         else f"{scored.findings_per_case:.1f}"),
        ("team identities with 2+ red flags in an open case",
         f"{_percent(scored.identity_recall)} of {scored.identities_with_two_flags}"),
        ("benign accounts in an open case", f"{scored.benign_in_open_case:.1%}"),
        ("team coherence (largest share of a team in one case)", coherence or "-"),
        ("most open cases holding one identity", str(scored.max_open_cases_per_identity)),
    ]  # fmt: skip
    for name, value in rows:
        table.add_row(name, value)
    return Group(table)
