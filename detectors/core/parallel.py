"""Replay on every core: the events split by entity over N processes, as Kafka partitions
split them live.

Live, a detector stage keyed by the account reads the input partitions its worker owns, and a
stage keyed by another entity (an IP, a payout destination) reads a repartition topic keyed by
that entity. Offline with N jobs it is the same, in rounds: in round r every job runs stage r
of each detector over the inputs whose entity the live partitioner (murmur2, N partitions)
puts in its partition; what a stage hands to the next one is split by the next stage's
entity, sent to that entity's job for round r + 1 as one pickled parcel per pair of jobs
(the parent hands the bytes on unread), and ordered there by the input line that caused it.
A round small enough runs in the parent, job after job, rather than forking them again.
Each job keeps its own event-time watermark, as each live partition does, so a job gives
the findings a worker owning that partition would.

The jobs are forked processes that read the events from the parent's memory: the events are
held in memory (the one-job path streams the file instead). Findings are merged in a fixed
order (the input line that caused them, then the job, then the order the job emitted them):
the same for a given N, whatever the scheduling.
"""

from __future__ import annotations

import functools
import multiprocessing
import os
import pickle
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
#: The job of each line (`_owner`), worked out by the jobs together before round 0.
_OWNERS: Sequence[int] = ()
_DETECTORS: Sequence[Detector] = ()
#: job -> what each job sent it in the round before, in the order of the sending jobs: a
#: pickled `_Parcel`, unpickled by the receiving job only (the parent hands the bytes on).
_INBOUND: dict[int, list[tuple[int, bytes]]] = {}

_Found = tuple[int, int, int, str, bytes]  # seq, job, sub, detector id, encoded finding
_Item = tuple[int, int, int, Any]  # seq, sending job, sub, item (None: input line `seq`)
#: What one job sends another: detector index -> the input lines a stage keyed by another
#: entity reads (their numbers, an array: a hundred thousand logins cost no tuple each),
#: and detector index -> [(seq, sub, output)] in the order the sending job made them.
_Parcel = tuple[dict[int, "array[int]"], dict[int, list[tuple[int, int, Any]]]]
#: A job's share of a round: its findings, the pickled parcel for each job it sends to, how
#: many items those hold, the events it decoded and the malformed lines it met.
_Outcome = tuple[list[_Found], dict[int, bytes], int, int, list[tuple[int, str, str]]]

#: A round with no more items than this runs in the parent: forking the jobs again would
#: cost more than the work (the last round of the bench backlog has 1,800).
_IN_PARENT = 5_000


def _first_round(detector: Detector) -> int:
    """The round a detector's stage 0 runs in: 0 when it is keyed by the account (the owner
    of the line reads it), 1 otherwise (the line goes to its entity's job)."""
    return 0 if detector.stages[0].entity == "account" else 1


class _Job:
    """One job's share of one round: the stages of that round, the findings and what goes on."""

    def __init__(self, job: int, jobs: int, level: int) -> None:
        self.job, self.jobs, self.level = job, jobs, level
        self.findings: list[_Found] = []
        self.parcels: dict[int, _Parcel] = {}
        self.sent = 0
        self.sub = 0

    def parcel(self, target: int) -> _Parcel:
        parcel = self.parcels.get(target)
        if parcel is None:
            parcel = self.parcels[target] = ({}, {})
        return parcel

    def send_line(self, target: int, index: int, seq: int) -> None:
        lines = self.parcel(target)[0]
        seqs = lines.get(index)
        if seqs is None:
            seqs = lines[index] = array("q")
        seqs.append(seq)
        self.sent += 1

    def outcome(self, events: int = 0, malformed: list[Any] | None = None) -> _Outcome:
        """What the parent collects: the parcels stay pickled until their job reads them."""
        sent = {
            target: pickle.dumps(parcel, pickle.HIGHEST_PROTOCOL)
            for target, parcel in self.parcels.items()
        }
        return self.findings, sent, self.sent, events, malformed or []

    def stage_index(self, index: int) -> int | None:
        """Which stage of detector `index` runs in this round, if any."""
        stage = self.level - _first_round(_DETECTORS[index])
        return stage if 0 <= stage < len(_DETECTORS[index].stages) else None

    def out(self, index: int, stage: int, seq: int, outputs: list[Any]) -> None:
        detector = _DETECTORS[index]
        for output in outputs:
            self.sub += 1
            if stage + 1 < len(detector.stages):
                key = detector.stages[stage + 1].key(output)
                if key is not None:
                    items = self.parcel(partition_of(key, self.jobs))[1]
                    items.setdefault(index, []).append((seq, self.sub, output))
                    self.sent += 1
            elif isinstance(output, FindingDraft):
                value = encode_finding(output.to_finding())
                self.findings.append((seq, self.job, self.sub, output.detector.id, value))


def _round_zero(job: int, jobs: int) -> _Outcome:
    """The lines of the accounts in this job's partition: decoded once, through every stage
    keyed by the account; the events a stage keyed by another entity reads go to that
    entity's job (as line numbers)."""
    state = _Job(job, jobs, 0)
    engines = {
        index: StageEngine(detector.stages[0])
        for index, detector in enumerate(_DETECTORS)
        if _first_round(detector) == 0
    }
    routed = [index for index, detector in enumerate(_DETECTORS) if _first_round(detector)]
    stores: dict[int, dict[str, Any]] = {index: {} for index in engines}
    # An event reaches the detectors that read its topic, as live.
    read_here = readers_by_type(list(engines.items()), lambda item: _DETECTORS[item[0]])
    read_there = readers_by_type(routed, lambda index: _DETECTORS[index])
    malformed: list[tuple[int, str, str]] = []
    events = 0
    for number, raw in enumerate(_LINES, start=1):
        if _OWNERS[number - 1] != job:
            continue
        line = raw.strip()
        if not line:
            continue
        try:
            event = decode_event(line)
        except InvalidEvent as exc:
            malformed.append((number, exc.reason, exc.message))
            continue
        events += 1
        for index, engine in read_here[event.type]:
            state.out(index, 0, number, engine.process(stores[index], event))
        for index in read_there[event.type]:
            key = _DETECTORS[index].stages[0].key(event)
            if key is not None:
                state.send_line(partition_of(key, jobs), index, number)
    for index, engine in engines.items():
        state.out(index, 0, _END, engine.flush(stores[index]))
    return state.outcome(events, malformed)


def _owner(line: bytes, jobs: int) -> int:
    """The job of a line: its account's partition (job 0 for a line that is not an event, so
    that it is reported once)."""
    try:
        account = orjson.loads(line).get("account_id")
    except (orjson.JSONDecodeError, AttributeError):
        return 0
    return partition_of(account, jobs) if isinstance(account, str) else 0


def _owners_of(args: tuple[int, int, int]) -> bytes:
    """The job of each line in `start:stop` (a slice of the file per job: finding a line's
    account parses it, which every job doing for every line made a cost more jobs could not
    divide)."""
    start, stop, jobs = args
    return array("H", [_owner(line.strip(), jobs) for line in _LINES[start:stop]]).tobytes()


def _inbound(job: int) -> dict[int, list[_Item]]:
    """What the jobs sent `job` in the round before: detector index -> items in the order
    they are processed (the input line that caused them, the sending job, then the order
    that job made them), whatever order the parcels were collected in."""
    by_index: dict[int, list[_Item]] = {}
    for sender, blob in _INBOUND.get(job, ()):
        lines, outputs = pickle.loads(blob)
        for index, seqs in lines.items():
            by_index.setdefault(index, []).extend((seq, sender, 0, None) for seq in seqs)
        for index, made in outputs.items():
            by_index.setdefault(index, []).extend(
                (seq, sender, sub, item) for seq, sub, item in made
            )
    for items in by_index.values():
        items.sort(key=lambda entry: entry[:3])
    return by_index


def _round_next(job: int, jobs: int, level: int) -> _Outcome:
    """The stages of this round over what the round before sent to this job, in order."""
    state = _Job(job, jobs, level)
    for index, items in sorted(_inbound(job).items()):
        stage_index = state.stage_index(index)
        assert stage_index is not None
        engine: StageEngine[Any, Any] = StageEngine(_DETECTORS[index].stages[stage_index])
        store: dict[str, Any] = {}
        for seq, _, _, item in items:
            value = decode_event(_LINES[seq - 1].strip()) if item is None else item
            state.out(index, stage_index, seq, engine.process(store, value))
        state.out(index, stage_index, _END, engine.flush(store))
    return state.outcome()


def _run(args: tuple[int, int, int]) -> _Outcome:
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
    global _LINES, _DETECTORS, _INBOUND, _OWNERS
    result = Parallel()
    collected: list[_Found] = []
    context = multiprocessing.get_context("fork")
    _LINES, _DETECTORS, _INBOUND = lines, detectors, {}
    try:
        share = -(-len(lines) // jobs)
        with context.Pool(jobs) as pool:
            owning = pool.map_async(
                _owners_of, [(j * share, (j + 1) * share, jobs) for j in range(jobs)]
            )
            try:
                if ready is not None:
                    ready()
            finally:
                # A `ready` that fails (an unreadable database) leaves the pool only once
                # its jobs are done: torn down under jobs still at work, the pool's
                # `terminate` once hung the command in a full test run.
                owning.wait()
            slices = owning.get()
        owners = array("H")
        for part in slices:
            owners.frombytes(part)
        _OWNERS = owners
        level, pending = 0, -1
        while pending:
            tasks = [(job, jobs, level) for job in range(jobs)]
            if 0 <= pending <= _IN_PARENT:
                outcomes = [_run(task) for task in tasks]
            else:
                with context.Pool(jobs) as pool:
                    outcomes = pool.map(_run, tasks)
            inbound: dict[int, list[tuple[int, bytes]]] = {}
            pending = 0
            for sender, (findings, sent, count, events, malformed) in enumerate(outcomes):
                collected += findings
                result.events += events
                result.malformed += malformed
                pending += count
                for target, blob in sent.items():
                    inbound.setdefault(target, []).append((sender, blob))
            _INBOUND = inbound
            level += 1
    finally:
        _LINES, _DETECTORS, _INBOUND, _OWNERS = (), (), {}, ()
    collected.sort(key=lambda entry: entry[:3])
    result.malformed.sort()
    for _, _, _, detector_id, value in collected:
        result.findings.append(value)
        result.by_detector[detector_id] += 1
    return result
