"""Offline detection: the live detector code over a JSON Lines file, no Kafka involved."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

from detectors.core.base import Detector
from detectors.core.engine import DetectorRunner
from schemas.codec import InvalidEvent, decode_event
from schemas.events import TOPIC_BY_TYPE
from schemas.finding import Finding

__all__ = ["ReplayReport", "readers_by_type", "replay"]

T = TypeVar("T")


def readers_by_type(items: Sequence[T], detector_of: Callable[[T], Detector]) -> dict[str, list[T]]:
    """For each event type of the contract, the items whose detector reads the topic that
    type is published to: live, a detector sees only its topics' events, so offline it is
    handed only those (every other event's key would be None: nothing to do)."""
    return {
        kind: [item for item in items if topic in detector_of(item).metadata.topics]
        for kind, topic in TOPIC_BY_TYPE.items()
    }


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
    # An event reaches the detectors that read its topic, as live (`readers_by_type`).
    readers = readers_by_type(runners, lambda runner: runner.detector)
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
        for runner in readers[event.type]:
            for draft in runner.feed(event):
                report.findings[draft.detector.id] += 1
                yield draft.to_finding()
    # The end of the file: nothing older can still come, the deferred decisions are made.
    for runner in runners:
        for draft in runner.finish():
            report.findings[draft.detector.id] += 1
            yield draft.to_finding()
