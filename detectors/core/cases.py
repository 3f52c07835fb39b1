"""The detectors' positive and negative cases (detectors/cases/<id>.yaml) as contract events.

The same cases are the detectors' unit tests and the demo's sample events.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import yaml

__all__ = ["CASES_DIR", "Case", "ExpectedFinding", "case_events", "load_cases"]

CASES_DIR = Path(__file__).parents[1] / "cases"


@dataclass(frozen=True)
class ExpectedFinding:
    account: str
    severity: str
    update: bool
    closed: bool
    contains: str | None
    accounts: tuple[str, ...] | None


@dataclass(frozen=True)
class Case:
    detector: str
    name: str
    why: str
    events: tuple[dict[str, Any], ...]
    findings: tuple[ExpectedFinding, ...]

    @property
    def id(self) -> str:
        return f"{self.detector}/{self.name}"

    def account(self, local: str) -> str:
        """Accounts are local to a case so that cases never see each other's state."""
        return f"{self.name}.{local}"


def load_cases(directory: Path = CASES_DIR) -> list[Case]:
    cases = []
    for path in sorted(directory.glob("*.yaml")):
        document = yaml.safe_load(path.read_text())
        detector = document["detector"]
        for raw in document["cases"]:
            case = Case(
                detector=detector,
                name=raw["name"],
                why=raw.get("why", ""),
                events=(),
                findings=(),
            )
            expected = tuple(
                ExpectedFinding(
                    account=case.account(item["account"]),
                    severity=item["severity"],
                    update=bool(item.get("update", False)),
                    closed=bool(item.get("closed", False)),
                    contains=item.get("contains"),
                    accounts=tuple(case.account(a) for a in item["accounts"])
                    if "accounts" in item
                    else None,
                )
                for item in raw.get("findings") or []
            )
            events = tuple(_expand(case, raw["events"]))
            cases.append(Case(detector, case.name, case.why, events=events, findings=expected))
    return cases


def _expand(case: Case, shorthand: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    number = 0
    for item in shorthand:
        item = dict(item)
        at = _parse(str(item.pop("at")))
        until = _parse(str(item.pop("until"))) if "until" in item else at
        step = timedelta(minutes=float(item.pop("every_minutes", 1)))
        account = case.account(str(item.pop("account")))
        nth = 0
        while at <= until:
            number += 1
            nth += 1
            # In a repeated event, "{n}" in a field is its rank in the series (a job per bid).
            fields = {k: v.replace("{n}", str(nth)) if isinstance(v, str) else v
                      for k, v in item.items()}  # fmt: skip
            yield {
                "schema_version": 1,
                "event_id": f"{case.detector}.{case.name}.{number}",
                "occurred_at": at.isoformat().replace("+00:00", "Z"),
                "account_id": account,
                **_localise(case, fields),
            }
            at += step


_ACCOUNT_FIELDS = ("to_account_id", "freelancer_id", "client_id")


def _localise(case: Case, fields: dict[str, Any]) -> dict[str, Any]:
    """Payout destinations, payment instruments and the other accounts an event names are
    local to a case too, like its actor."""
    fields = dict(fields)
    for name in ("destination", "instrument"):
        if isinstance(fields.get(name), dict):
            value = dict(fields[name])
            value["fingerprint"] = f"{case.name}.{value['fingerprint']}"
            fields[name] = value
    if isinstance(fields.get("address_fingerprint"), str):
        fields["address_fingerprint"] = f"{case.name}.{fields['address_fingerprint']}"
    for name in _ACCOUNT_FIELDS:
        if isinstance(fields.get(name), str):
            fields[name] = case.account(fields[name])
    return fields


def _parse(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def case_events(cases: list[Case]) -> list[dict[str, Any]]:
    """Every case's events in one stream, ordered by event time (the demo's input)."""
    events = [event for case in cases for event in case.events]
    return sorted(events, key=lambda event: _parse(event["occurred_at"]))
