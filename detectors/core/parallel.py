"""Replay on every core: the events split by entity over N processes, as Kafka partitions
split them live.

Live, a detector stage keyed by the account reads the input partitions its worker owns, and a
stage keyed by another entity (an IP, a payout destination) reads a repartition topic keyed by
that entity. Offline with N jobs it is the same, in rounds: in round r every job runs stage r
of each detector over the inputs whose entity the live partitioner (murmur2, N partitions)
puts in its partition. Round 0 reads the input lines: before it, the jobs work out together,
a slice of the file each, which job owns each line (its account's) and which job each
detector whose first stage is keyed by another entity sends it to (shared_ip's IP), so that
round 0 runs every first stage in one pass over the lines. What a stage hands to the next one
is collected, ordered by the input line that caused it, and split by the next stage's entity
for round r + 1. Each job keeps its own event-time watermark, as each live partition does, so
a job gives the findings a worker owning that partition would.

The jobs are forked processes that read the events from the parent's memory: the events are
held in memory (the one-job path streams the file instead). Findings are merged in a fixed
order (the input line that caused them, then the job, then the order the job emitted them):
the same for a given N, whatever the scheduling.
"""

from __future__ import annotations

import functools
import gc
import multiprocessing
import os
from array import array
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from detectors.core.base import Detector, FindingDraft
from detectors.core.engine import StageEngine
from detectors.core.replay import readers_by_type
from schemas.codec import InvalidEvent, decode_event, encode_finding
from schemas.events import TOPIC_BY_TYPE

__all__ = ["Parallel", "default_jobs", "replay_parallel"]

#: Outputs of a stage's end-of-input flush sort after every input line.
_END = 1 << 62


def default_jobs() -> int:
    """The cores this process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover (not Linux)
        return max(1, os.cpu_count() or 1)


@functools.lru_cache(maxsize=1 << 17)
def partition_of(key: str, partitions: int) -> int:
    """The partition Kafka's default partitioner (murmur2) gives `key` (a pure-Python hash:
    cached, as accounts and IPs recur). aiokafka is imported here, by the jobs that need it:
    a one-job replay does not pay for the import of its client (70 ms)."""
    from aiokafka.partitioner import murmur2

    return int(murmur2(key.encode()) & 0x7FFFFFFF) % partitions


@dataclass
class Parallel:
    """What a parallel replay found: findings as encoded JSON, and what it counted."""

    findings: list[bytes] = field(default_factory=list)
    events: int = 0
    malformed: list[tuple[int, str, str]] = field(default_factory=list)
    by_detector: Counter[str] = field(default_factory=Counter)


# What the forked jobs read (set by the parent before each round's fork).
_LINES: Sequence[bytes] = ()
#: Per line, `1 + len(routed)` jobs (`_routes_of`): the line's owner, then the job each
#: detector whose first stage is keyed by another entity sends it to (`_NOWHERE`: none).
_ROUTES: Sequence[int] = ()
#: The indexes of those detectors, in `_DETECTORS`, and the event types each reads.
_ROUTED: Sequence[int] = ()
_ROUTED_READS: Sequence[frozenset[str]] = ()
_DETECTORS: Sequence[Detector] = ()
#: job -> detector index -> [(seq, sending job, sub, item)]
_INBOUND: dict[int, dict[int, list[tuple[int, int, int, Any]]]] = {}

_Found = tuple[int, int, int, str, bytes]  # seq, job, sub, detector id, encoded finding
_Sent = tuple[int, int, int, int, int, Any]  # target job, detector, seq, job, sub, item


#: No job: the line is not sent to that detector (its key is None, or it is not its topic).
_NOWHERE = 0xFFFF


class _Job:
    """One job's share of one round: the stages of that round, the findings and what goes on."""

    def __init__(self, job: int, jobs: int, level: int) -> None:
        self.job, self.jobs, self.level = job, jobs, level
        self.findings: list[_Found] = []
        self.forward: list[_Sent] = []
        self.sub = 0

    def stage_index(self, index: int) -> int | None:
        """Which stage of detector `index` runs in this round, if any."""
        return self.level if self.level < len(_DETECTORS[index].stages) else None

    def out(self, index: int, stage: int, seq: int, outputs: list[Any]) -> None:
        detector = _DETECTORS[index]
        for output in outputs:
            self.sub += 1
            if stage + 1 < len(detector.stages):
                key = detector.stages[stage + 1].key(output)
                if key is not None:
                    target = partition_of(key, self.jobs)
                    self.forward.append((target, index, seq, self.job, self.sub, output))
            elif isinstance(output, FindingDraft):
                value = encode_finding(output.to_finding())
                self.findings.append((seq, self.job, self.sub, output.detector.id, value))


def _round_zero(job: int, jobs: int) -> tuple[list[_Found], list[_Sent], int, list[Any]]:
    """One pass over the lines: those of the accounts in this job's partition through every
    first stage keyed by the account, and those whose other entity (an IP) is in its
    partition through that detector's first stage, as its repartition topic feeds it live.
    A line is decoded once by each job that reads it."""
    state = _Job(job, jobs, 0)
    routed = set(_ROUTED)
    engines = {
        index: StageEngine(detector.stages[0])
        for index, detector in enumerate(_DETECTORS)
        if index not in routed
    }
    stores: dict[int, dict[str, Any]] = {index: {} for index in range(len(_DETECTORS))}
    # An event reaches the detectors that read its topic, as live.
    read_here = readers_by_type(list(engines.items()), lambda item: _DETECTORS[item[0]])
    sent_here = [(slot, index, StageEngine(_DETECTORS[index].stages[0]))
                 for slot, index in enumerate(_ROUTED, start=1)]  # fmt: skip
    width = 1 + len(_ROUTED)
    malformed: list[tuple[int, str, str]] = []
    events = 0
    for number, raw in enumerate(_LINES, start=1):
        at = (number - 1) * width
        owned = _ROUTES[at] == job
        if not owned and all(_ROUTES[at + slot] != job for slot in range(1, width)):
            continue
        line = raw.strip()
        if not line:
            continue
        try:
            event = decode_event(line)
        except InvalidEvent as exc:
            if owned:
                malformed.append((number, exc.reason, exc.message))
            continue
        if owned:
            events += 1
            for index, engine in read_here[event.type]:
                state.out(index, 0, number, engine.process(stores[index], event))
        for slot, index, engine in sent_here:
            if _ROUTES[at + slot] == job:
                state.out(index, 0, number, engine.process(stores[index], event))
    for index, engine in engines.items():
        state.out(index, 0, _END, engine.flush(stores[index]))
    for _, index, engine in sent_here:
        state.out(index, 0, _END, engine.flush(stores[index]))
    return state.findings, state.forward, events, malformed


def _routes(line: bytes, jobs: int) -> list[int]:
    """The jobs of a line: its account's partition (job 0 for a line that is not an event,
    so that it is reported once), then for each detector in `_ROUTED` the partition of its
    first stage's key. Only a line of a type such a detector reads is decoded for that."""
    routes = [0] + [_NOWHERE] * len(_ROUTED)
    try:
        fields = orjson.loads(line)
        account, kind = fields.get("account_id"), fields.get("type")
    except (orjson.JSONDecodeError, AttributeError):
        return routes
    if isinstance(account, str):
        routes[0] = partition_of(account, jobs)
    if isinstance(kind, str) and any(kind in kinds for kinds in _ROUTED_READS):
        try:
            event = decode_event(line)
        except InvalidEvent:
            return routes
        for slot, (index, kinds) in enumerate(zip(_ROUTED, _ROUTED_READS, strict=True), start=1):
            if event.type in kinds:
                key = _DETECTORS[index].stages[0].key(event)
                if key is not None:
                    routes[slot] = partition_of(key, jobs)
    return routes


def _routes_of(args: tuple[int, int, int]) -> bytes:
    """The jobs of each line in `start:stop`: the jobs share this out, a slice each at a
    time (finding a line's entities parses it, and decodes a login: every job doing it for
    every line made a cost more jobs could not divide)."""
    start, stop, jobs = args
    routes = array("H")
    for line in _LINES[start:stop]:
        routes.extend(_routes(line.strip(), jobs))
    return routes.tobytes()


def _round_next(
    job: int, jobs: int, level: int
) -> tuple[list[_Found], list[_Sent], int, list[Any]]:
    """The stages of this round over what the round before sent to this job, in order."""
    state = _Job(job, jobs, level)
    for index, items in sorted(_INBOUND.get(job, {}).items()):
        stage_index = state.stage_index(index)
        assert stage_index is not None
        engine: StageEngine[Any, Any] = StageEngine(_DETECTORS[index].stages[stage_index])
        store: dict[str, Any] = {}
        for seq, _, _, item in items:
            state.out(index, stage_index, seq, engine.process(store, item))
        state.out(index, stage_index, _END, engine.flush(store))
    return state.findings, state.forward, 0, []


def _run(args: tuple[int, int, int]) -> tuple[list[_Found], list[_Sent], int, list[Any]]:
    # What the job inherited (the lines, what the round before sent) stays out of its
    # collections: traversing it would cost time, and copy the pages it shares with the parent.
    gc.freeze()
    job, jobs, level = args
    return _round_zero(job, jobs) if level == 0 else _round_next(job, jobs, level)


def replay_parallel(
    lines: Sequence[bytes],
    detectors: Sequence[Detector],
    jobs: int,
    ready: Callable[[], None] | None = None,
) -> Parallel:
    """Every detector over `lines` in `jobs` processes; the findings in a fixed order.

    `ready` (loading what the detectors read besides events) runs in this process while the
    jobs work out which job owns each line: the two overlap, and the jobs that run the
    detectors fork after it and inherit what it loaded."""
    global _LINES, _DETECTORS, _INBOUND, _ROUTES, _ROUTED, _ROUTED_READS
    result = Parallel()
    collected: list[_Found] = []
    context = multiprocessing.get_context("fork")
    _LINES, _DETECTORS, _INBOUND = lines, detectors, {}
    _ROUTED = [i for i, detector in enumerate(detectors) if detector.stages[0].entity != "account"]
    _ROUTED_READS = [
        frozenset(kind for kind, topic in TOPIC_BY_TYPE.items() if topic in topics)
        for topics in (detectors[index].metadata.topics for index in _ROUTED)
    ]
    try:
        # Eight slices a job: the types are not spread evenly over a file (a login costs more
        # to route than a heartbeat), and a job given a slice of logins finished last.
        share = max(4096, -(-len(lines) // (8 * jobs)))
        with context.Pool(jobs) as pool:
            routing = pool.map_async(
                _routes_of,
                [(start, start + share, jobs) for start in range(0, len(lines), share)],
                chunksize=1,
            )
            if ready is not None:
                ready()
            slices = routing.get()
        routes = array("H")
        for part in slices:
            routes.frombytes(part)
        _ROUTES = routes
        level = 0
        while True:
            with context.Pool(jobs) as pool:
                outcomes = pool.map(_run, [(job, jobs, level) for job in range(jobs)])
            inbound: dict[int, dict[int, list[tuple[int, int, int, Any]]]] = {}
            for findings, forward, events, malformed in outcomes:
                collected += findings
                result.events += events
                result.malformed += malformed
                for target, index, seq, job, sub, item in forward:
                    inbound.setdefault(target, {}).setdefault(index, []).append(
                        (seq, job, sub, item)
                    )
            if not inbound:
                break
            for per_detector in inbound.values():
                for items in per_detector.values():
                    items.sort(key=lambda entry: entry[:3])
            _INBOUND = inbound
            level += 1
    finally:
        _LINES, _DETECTORS, _INBOUND, _ROUTES, _ROUTED, _ROUTED_READS = (), (), {}, (), (), ()
    collected.sort(key=lambda entry: entry[:3])
    result.malformed.sort()
    for _, _, _, detector_id, value in collected:
        result.findings.append(value)
        result.by_detector[detector_id] += 1
    return result
