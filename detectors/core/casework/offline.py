"""Cases offline: the findings of a replay, with analysts' feedback, through the case book."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from detectors.core.casework.book import CaseBook, facts_of
from detectors.core.casework.settings import CaseSettings
from schemas.case import Case, CaseVerdict, Suppression

__all__ = ["replay_cases"]


def replay_cases(
    findings: Iterable[dict[str, Any]],
    feedback: Iterable[CaseVerdict | Suppression] = (),
    settings: CaseSettings | None = None,
) -> Iterator[Case]:
    """The case messages the live case agent publishes for these findings (in the order
    given) and this feedback, each applied once the findings before its time are in."""
    book = CaseBook(settings)
    store: dict[str, Any] = {}
    decisions = sorted(feedback, key=lambda item: item.occurred_at)
    position = 0
    for finding in findings:
        facts = facts_of(finding)
        while position < len(decisions) and _ms(decisions[position]) <= facts.time_ms:
            yield from book.apply_feedback(store, decisions[position])
            position += 1
        yield from book.apply_finding(store, facts)
    for decision in decisions[position:]:
        yield from book.apply_feedback(store, decision)


def _ms(item: CaseVerdict | Suppression) -> int:
    return int(item.occurred_at.timestamp() * 1000)
