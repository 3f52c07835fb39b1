"""Offline detection: the live detector code over a JSON Lines file, no Kafka involved."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from detectors.base import Detector
from detectors.engine import DetectorEngine
from schemas.codec import InvalidEvent, decode_event
from schemas.finding import Finding

__all__ = ["ReplayReport", "replay"]


@dataclass
class ReplayReport:
    events: int = 0
    malformed: list[tuple[int, str, str]] = field(default_factory=list)
    findings: Counter[str] = field(default_factory=Counter)


def replay(
    lines: Iterable[bytes], detectors: Sequence[Detector[Any]], report: ReplayReport | None = None
) -> Iterator[Finding]:
    """Yield the findings of every detector over the events, in input order."""
    report = report if report is not None else ReplayReport()
    engines = [(DetectorEngine(detector), dict[str, Any]()) for detector in detectors]
    for number, raw in enumerate(lines, start=1):
        line = raw.strip()
        if not line:
            continue
        try:
            event = decode_event(line)
        except InvalidEvent as exc:
            report.malformed.append((number, exc.reason, exc.message))
            continue
        report.events += 1
        for engine, store in engines:
            for draft in engine.process(store, event):
                report.findings[draft.detector.id] += 1
                yield draft.to_finding()
