"""Offline detection: the live detector code over a JSON Lines file, no Kafka involved."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field

from detectors.core.base import Detector
from detectors.core.engine import DetectorRunner
from schemas.codec import InvalidEvent, decode_event
from schemas.finding import Finding

__all__ = ["ReplayReport", "replay"]


@dataclass
class ReplayReport:
    events: int = 0
    malformed: list[tuple[int, str, str]] = field(default_factory=list)
    findings: Counter[str] = field(default_factory=Counter)


def replay(
    lines: Iterable[bytes],
    detectors: Sequence[Detector],
    report: ReplayReport | None = None,
    allowed_lateness_ms: int = 300_000,
) -> Iterator[Finding]:
    """Yield the findings of every detector over the events, in input order (an event up to
    `allowed_lateness_ms` older than the newest still meets the state it belongs to)."""
    report = report if report is not None else ReplayReport()
    runners = [DetectorRunner(detector, allowed_lateness_ms) for detector in detectors]
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
        for runner in runners:
            for draft in runner.feed(event):
                report.findings[draft.detector.id] += 1
                yield draft.to_finding()
    # The end of the file: nothing older can still come, the deferred decisions are made.
    for runner in runners:
        for draft in runner.finish():
            report.findings[draft.detector.id] += 1
            yield draft.to_finding()
