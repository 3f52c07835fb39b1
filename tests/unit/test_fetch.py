"""The fetch loop (streams/fetch.py): a record's callback that has to wait finishes as Faust
would have run it, one cancelled while waiting cleans up; records Faust's getmany would drop
are given back to aiokafka."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from types import SimpleNamespace
from typing import Any

import pytest
from faust.transport.consumer import Consumer as FaustConsumer
from faust.transport.utils import DefaultSchedulingStrategy
from faust.types import TP

from streams.fetch import DaylightConsumer, RewindingConsumer, _rest


async def deliver(queue: asyncio.Queue[int], value: int, log: list[str]) -> str:
    try:
        await queue.put(value)
    except asyncio.CancelledError:
        log.append(f"abandoned {value}")
        raise
    return f"delivered {value}"


def test_a_record_that_waits_for_room_is_delivered_once_there_is_room() -> None:
    async def scenario() -> tuple[list[int], str]:
        queue: asyncio.Queue[int] = asyncio.Queue(maxsize=1)
        coro = deliver(queue, 1, [])
        with pytest.raises(StopIteration):  # room: delivered at the first step, no task
            coro.send(None)
        coro = deliver(queue, 2, [])
        yielded = coro.send(None)  # the buffer is full: the coroutine waits
        task = asyncio.ensure_future(_rest(coro, yielded))
        await asyncio.sleep(0.01)
        assert not task.done()
        taken = [queue.get_nowait()]
        result = await asyncio.wait_for(task, 1)
        taken.append(queue.get_nowait())
        return taken, result

    taken, result = asyncio.run(scenario())
    assert taken == [1, 2]
    assert result == "delivered 2"


def test_a_record_abandoned_while_waiting_is_not_delivered() -> None:
    """A rebalance suspends the flow: Faust cancels the waiting callback; the record is not
    put in the buffer, and it is read again from the committed offset."""

    async def scenario() -> tuple[list[str], int]:
        queue: asyncio.Queue[int] = asyncio.Queue(maxsize=1)
        queue.put_nowait(1)
        log: list[str] = []
        coro = deliver(queue, 2, log)
        task = asyncio.ensure_future(_rest(coro, coro.send(None)))
        await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        queue.get_nowait()
        return log, queue.qsize()

    log, left = asyncio.run(scenario())
    assert log == ["abandoned 2"]
    assert left == 0


class _Record:
    def __init__(self, offset: int, timestamp: int = 0) -> None:
        self.offset = offset
        self.timestamp = timestamp  # Kafka record time (ms)


class _Assignment:
    """aiokafka's assignment: its partitions, each with its position (after the last record
    fetched unless given)."""

    def __init__(self, records: dict[TP, list[_Record]]) -> None:
        self.tps = set(records)
        self.positions = {tp: rs[-1].offset + 1 for tp, rs in records.items() if rs}
        self.highwaters: dict[TP, int] = {}  # the end of each partition, once fetched

    def state_value(self, tp: TP) -> Any:
        position = self.positions.get(tp)
        return SimpleNamespace(
            has_valid_position=position is not None,
            position=position,
            highwater=self.highwaters.get(tp),
        )


class _AiokafkaConsumer:
    """What `RewindingConsumer` reads of aiokafka's consumer: the assignment, and seek."""

    def __init__(self, assignment: _Assignment) -> None:
        self.sought: list[tuple[TP, int]] = []
        self._subscription = SimpleNamespace(subscription=SimpleNamespace(assignment=assignment))

    def seek(self, tp: TP, offset: int) -> None:
        self.sought.append((tp, offset))


class _Consumer(RewindingConsumer):
    """`RewindingConsumer.getmany` over a fetch that pauses `pause` after `after` records were
    handed on (what table recovery does while the fetch loop delivers), with a rebalance
    (a new aiokafka assignment) while `getmany` waits for the flow, before the fetch
    (`rebalance="before"`), or right after the fetch (`"after"`)."""

    def __init__(
        self,
        records: dict[TP, list[_Record]],
        *,
        pause: TP | None = None,
        after: int = 0,
        rebalance: str = "",
    ) -> None:
        self.aiokafka = _AiokafkaConsumer(_Assignment(records))
        self._thread = SimpleNamespace(
            _consumer=self.aiokafka, _ensure_consumer=lambda: self.aiokafka, fetched_under=None
        )
        self._records = records
        self._active = set(records)
        self._pause, self._after, self._rebalance = pause, after, rebalance
        self.app = SimpleNamespace(
            consumer_generation_id=1,
            monitor=SimpleNamespace(track_tp_end_offset=lambda tp, offset: None),
        )
        self._buffered_partitions = set()
        self._paused_partitions: set[TP] = set()
        self._frontier: dict[Any, int] = {}
        self._moved: dict[Any, tuple[int | None, float]] = {}
        self._fetched: set[Any] = set()
        self.scheduler = DefaultSchedulingStrategy()
        self.flow_active = True
        self.log = SimpleNamespace(info=lambda *args: None, warning=lambda *args: None)

    @property
    def should_stop(self) -> bool:
        return False

    def _get_active_partitions(self) -> set[TP]:
        return self._active

    def _reassign(self) -> None:
        self.aiokafka._subscription.subscription.assignment = _Assignment(self._records)

    async def _wait_next_records(self, timeout: float) -> Any:
        if self._rebalance == "before":
            self._reassign()
        self._thread.fetched_under = self.aiokafka._subscription.subscription.assignment
        if self._rebalance == "after":
            self._reassign()
        return self._records, self._active

    def _to_message(self, tp: TP, record: Any) -> Any:
        return record.offset

    def highwater(self, tp: TP) -> int:
        return 0

    async def read(self) -> list[tuple[TP, int]]:
        handed: list[tuple[TP, int]] = []
        async for tp, offset in self.getmany(timeout=0):
            handed.append((tp, offset))
            if len(handed) == self._after and self._pause is not None:
                self._active.discard(self._pause)
        return handed


A = TP("platform.sessions", 0)
B = TP("platform.sessions", 1)


def test_records_of_a_partition_paused_mid_batch_are_given_back_from_the_first_skipped() -> None:
    """Table recovery pauses partition A after one of its records went on: the other four are
    not dropped (Faust's getmany drops them; aiokafka's position is past them and a partition
    without a commit is never sought again): A is sought back to offset 11."""
    records = {A: [_Record(o) for o in range(10, 15)], B: [_Record(o) for o in range(3)]}
    consumer = _Consumer(records, pause=A, after=1)
    handed = asyncio.run(consumer.read())
    assert handed[0] == (A, 10)
    assert (A, 11) not in handed
    assert [o for tp, o in handed if tp == B] == [0, 1, 2]
    assert consumer.aiokafka.sought == [(A, 11)]
    assert consumer.rewound == 4


def test_records_fetched_under_an_assignment_since_replaced_are_not_sought() -> None:
    """A new assignment starts from the committed offsets: its positions are left alone."""
    records = {A: [_Record(o) for o in range(5)]}
    consumer = _Consumer(records, rebalance="after")
    consumer._active.discard(A)
    handed = asyncio.run(consumer.read())
    assert handed == []
    assert consumer.aiokafka.sought == []


def test_records_fetched_under_the_assignment_made_while_getmany_waited_are_sought() -> None:
    """`getmany` waits for the flow through a whole rebalance; the records it then fetches
    belong to the new assignment, and one partition is still paused for table recovery:
    sought back to its first record (seen in the rebalance test: ~290 offsets of three
    `platform.sessions` partitions never read)."""
    records = {A: [_Record(o) for o in range(4)], B: [_Record(o) for o in range(2)]}
    consumer = _Consumer(records, rebalance="before")
    consumer._active.discard(A)
    handed = asyncio.run(consumer.read())
    assert handed == [(B, 0), (B, 1)]
    assert consumer.aiokafka.sought == [(A, 0)]


def _flow_stopped(consumer: _Consumer) -> list[list[tuple[TP, int]]]:
    """The consumer's flow stopped, its seek to the committed offsets stubbed: what had been
    sought when each such seek ran."""
    consumer.flow_active = False
    seeks: list[list[tuple[TP, int]]] = []

    async def perform_seek() -> None:
        seeks.append(list(consumer.aiokafka.sought))

    consumer.perform_seek = perform_seek  # type: ignore[method-assign]
    return seeks


def test_a_fetch_back_while_the_flow_is_stopped_gives_every_partition_back() -> None:
    """A fetch comes back between table recovery's seek of a changelog partition and its
    resuming of the flow: Faust drops the fetch and seeks to the committed offsets, which a
    changelog partition has none of, so recovery waited for ever for records already fetched
    (seen in the rebalance test: "No event received for active tp ... since recovery start").
    Each partition is sought back to its first record fetched, then Faust's seek runs."""
    changelog = TP("pair-anonymizer-state-changelog", 1)
    records = {changelog: [_Record(o) for o in range(10)], A: [_Record(o) for o in range(4, 7)]}
    consumer = _Consumer(records)
    seeks = _flow_stopped(consumer)
    handed = asyncio.run(consumer.read())
    assert handed == []
    assert sorted(consumer.aiokafka.sought) == [(changelog, 0), (A, 4)]
    assert seeks == [consumer.aiokafka.sought]  # Faust's seek still runs, after
    assert consumer.rewound == 13


def test_a_fetch_dropped_under_an_assignment_since_replaced_seeks_nothing() -> None:
    records = {A: [_Record(o) for o in range(3)]}
    consumer = _Consumer(records, rebalance="after")
    seeks = _flow_stopped(consumer)
    assert asyncio.run(consumer.read()) == []
    assert consumer.aiokafka.sought == []
    assert seeks == [[]]


def test_a_batch_read_to_its_end_seeks_nothing() -> None:
    records = {A: [_Record(o) for o in range(3)], B: [_Record(o) for o in range(2)]}
    consumer = _Consumer(records)
    handed = asyncio.run(consumer.read())
    assert sorted(handed) == [(A, 0), (A, 1), (A, 2), (B, 0), (B, 1)]
    assert consumer.aiokafka.sought == []


def test_a_revoke_commits_what_was_acknowledged_before_faust_forgets_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Faust clears the agents' buffers at a revoke and reads them again from the committed
    offsets: the commit must come first, or a partition never committed on loses them."""
    calls: list[Any] = []

    async def faust_revoke(self: Any, revoked: set[TP]) -> None:
        calls.append(("faust revoke", sorted(revoked)))

    async def commit() -> bool:
        calls.append("commit")
        return True

    monkeypatch.setattr(FaustConsumer, "on_partitions_revoked", faust_revoke)
    consumer = _Consumer({A: [_Record(0)]})
    consumer.commit = commit  # type: ignore[method-assign]
    asyncio.run(consumer.on_partitions_revoked({A}))
    assert calls == ["commit", ("faust revoke", [A])]


def test_a_revoke_goes_on_when_the_commit_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    revoked: list[set[TP]] = []

    async def faust_revoke(self: Any, tps: set[TP]) -> None:
        revoked.append(tps)

    async def commit() -> bool:
        raise RuntimeError("coordinator gone")

    monkeypatch.setattr(FaustConsumer, "on_partitions_revoked", faust_revoke)
    consumer = _Consumer({A: [_Record(0)]})
    consumer.commit = commit  # type: ignore[method-assign]
    asyncio.run(consumer.on_partitions_revoked({A}))
    assert revoked == [{A}], "the events are read again from the last commit; the revoke goes on"


def test_a_stream_partition_without_a_committed_offset_is_sought_to_its_beginning() -> None:
    """Faust's seek to the committed offsets leaves such a partition where it is, past what
    it dropped; the changelog partitions are left to table recovery."""
    committed_one, never, zero = TP("platform.logins", 0), TP("platform.logins", 1), B
    changelog = TP("pair-geo_velocity-state-changelog", 0)
    consumer = _Consumer({A: [_Record(0)]})
    read_on = TP("platform.logins", 2)  # no commit yet, but read since the assignment
    consumer._read_offset = {read_on: 53}
    consumer._committed_offset = {}
    consumer.app.tables = SimpleNamespace(changelog_topics={changelog.topic})
    consumer._thread.seek = consumer.aiokafka.seek

    async def seek_to_committed() -> dict[TP, int | None]:
        return {committed_one: 7, never: None, zero: 0, changelog: None, read_on: None}

    consumer.seek_to_committed = seek_to_committed  # type: ignore[method-assign]
    asyncio.run(consumer.perform_seek())
    assert sorted(consumer.aiokafka.sought) == sorted([(never, 0), (zero, 0)])
    assert consumer._read_offset[committed_one] == 7
    assert consumer._read_offset[never] is None
    assert consumer._read_offset[read_on] == 53, "a later seek (flow suspended) does not re-read it"
    assert consumer._committed_offset[committed_one] == 7


def test_a_paused_partition_whose_buffer_drains_stays_paused() -> None:
    """Faust re-activates a partition once its buffer drains; one paused meanwhile by table
    recovery must not be fetched (its events would reach the agents before the tables)."""
    consumer = _Consumer({A: [_Record(0)], B: [_Record(0)]})
    consumer._active.discard(A)
    consumer._active.discard(B)
    consumer._buffered_partitions.update({A, B})  # both under pressure
    consumer._paused_partitions.add(A)  # then recovery pauses A
    consumer.on_buffer_drop(A)
    consumer.on_buffer_drop(B)
    assert A not in consumer._active and A not in consumer._buffered_partitions
    assert B in consumer._active


def test_records_of_a_paused_partition_are_not_handed_on_because_it_was_under_pressure() -> None:
    consumer = _Consumer({A: [_Record(5), _Record(6)], B: [_Record(0)]})
    consumer._active.discard(A)
    consumer._buffered_partitions.add(A)
    consumer._paused_partitions.add(A)
    handed = asyncio.run(consumer.read())
    assert handed == [(B, 0)]
    assert consumer.aiokafka.sought == [(A, 5)], "read again once recovery resumes it"


def test_a_partition_sought_to_its_committed_offset_meanwhile_is_not_sought_forward() -> None:
    """Recovery's seek to the committed offsets (here 2) ran while a batch fetched before it was
    handed on, with the partition still paused: rewinding to the batch's first record (16)
    would skip 2-15."""
    records = {A: [_Record(o) for o in range(16, 20)], B: [_Record(0)]}
    consumer = _Consumer(records)
    consumer._active.discard(A)
    consumer._paused_partitions.add(A)
    consumer.aiokafka._subscription.subscription.assignment.positions[A] = 2
    handed = asyncio.run(consumer.read())
    assert handed == [(B, 0)]
    assert consumer.aiokafka.sought == []


def test_a_seek_while_a_batch_is_handed_on_stops_the_batch_and_rewinds_what_it_did_not_move() -> (
    None
):
    """Recovery's seek to the committed offsets runs while the fetch loop hands on a batch
    fetched before it (the stream partitions were resumed just before). The rest of the batch
    is stale: A was sought to its commit (2) and is read again from there; B, with no commit,
    was not moved and is sought back to its first record not handed on."""
    records = {A: [_Record(o) for o in range(16, 20)], B: [_Record(o) for o in range(30, 34)]}
    consumer = _Consumer(records)
    positions = consumer.aiokafka._subscription.subscription.assignment.positions

    async def read() -> list[tuple[TP, int]]:
        handed: list[tuple[TP, int]] = []
        async for tp, offset in consumer.getmany(timeout=0):
            handed.append((tp, offset))
            if len(handed) == 3:  # the seek, between two records
                consumer.seeks += 2
                positions[A] = 2
        return handed

    handed = asyncio.run(read())
    assert len(handed) == 3
    last = {tp: max(o for t, o in handed if t == tp) for tp in {tp for tp, _ in handed}}
    expected = [(B, last[B] + 1)] if B in last else [(B, 30)]
    assert consumer.aiokafka.sought == expected, "B was not moved by the seek: given back"


class _Draining(_Consumer, DaylightConsumer):
    """`DaylightConsumer._drain_messages` over one fetched batch, then a stop."""

    def __init__(self, records: dict[TP, list[_Record]], callback: Any) -> None:
        super().__init__(records)
        self.callback = callback
        self._stopped = asyncio.Event()
        self.suspend_flow = asyncio.Event()
        self.diag = SimpleNamespace(set_flag=lambda flag: None, unset_flag=lambda flag: None)
        self._commit_every = None
        self._read_offset: dict[TP, int | None] = defaultdict(lambda: None)  # Faust's
        self._committed_offset: dict[TP, int | None] = {}
        self.log = SimpleNamespace(info=lambda *args: None, warning=lambda *args: None,
                                   exception=lambda *args: None)  # fmt: skip
        self.app.topics = SimpleNamespace(acks_enabled_for=lambda topic: True)
        self.app.tables = SimpleNamespace(changelog_topics=set())
        self._thread.seek = self.aiokafka.seek
        self.gaps: list[tuple[TP, int, int]] = []
        self._fetches = 0

    async def _wait_next_records(self, timeout: float) -> Any:
        self._fetches += 1
        if self._fetches > 1:
            self._stopped.set()
            return {}, self._active
        return await super()._wait_next_records(timeout)

    def _to_message(self, tp: TP, record: Any) -> Any:
        return SimpleNamespace(tp=tp, topic=tp.topic, offset=record.offset)

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)

    async def wait_first(self, *coros: Any) -> Any:  # mode's: the first done, the rest cancelled
        futures = {coro: asyncio.ensure_future(coro) for coro in coros}
        done, pending = await asyncio.wait(futures.values(), return_when=asyncio.FIRST_COMPLETED)
        for future in pending:
            future.cancel()
        return SimpleNamespace(done=[coro for coro, future in futures.items() if future in done])

    async def _add_gap(self, tp: TP, offset_from: int, offset_to: int) -> None:
        self.gaps.append((tp, offset_from, offset_to))


def test_a_record_handed_on_while_the_partition_was_sought_does_not_mark_it_read() -> None:
    """The record at 11 waits for room in a full buffer while recovery seeks A to its commit
    (5). Faust then noted 11 as read: the records 5-10, read again after the seek, were taken
    as read already and skipped, never acknowledged, and the commit stayed at 5 for ever
    (the stall's second path). The read mark stays at the commit, and the rest of the batch,
    fetched before the seek, is not handed on."""
    delivered: list[int] = []
    waiting, room = asyncio.Event(), asyncio.Event()

    async def callback(message: Any) -> None:
        if message.offset == 11:
            waiting.set()
            await room.wait()
        delivered.append(message.offset)

    async def scenario(consumer: _Draining) -> None:
        async def seek_to_committed() -> dict[TP, int | None]:
            consumer.aiokafka._subscription.subscription.assignment.positions[A] = 5
            return {A: 5}

        consumer.seek_to_committed = seek_to_committed  # type: ignore[method-assign]
        drain = asyncio.ensure_future(
            consumer._drain_messages(SimpleNamespace(_stopped=asyncio.Event()))
        )
        await asyncio.wait_for(waiting.wait(), 1)
        await consumer.perform_seek()
        room.set()
        await asyncio.wait_for(drain, 1)

    consumer = _Draining({A: [_Record(o) for o in range(10, 14)]}, callback)
    asyncio.run(scenario(consumer))
    assert delivered == [10, 11]
    assert consumer._read_offset[A] == 5, "5-10 are read again after the seek"
    assert consumer.aiokafka.sought == [], "A's position is the seek's"
    assert consumer.gaps == []


def test_a_record_abandoned_at_a_revoke_does_not_mark_its_partition_read() -> None:
    """A rebalance suspends the flow while the record at 3 waits for room: its hand-on is
    abandoned. Faust noted it as read anyway; a partition without a commit then kept that mark
    across the rebalance, so the seek after the assignment did not send it back to its
    beginning, and 0-2, handed on before but not processed, were never read again."""

    async def callback(message: Any) -> None:
        if message.offset == 3:
            await asyncio.Event().wait()  # never room

    async def scenario(consumer: _Draining) -> None:
        drain = asyncio.ensure_future(
            consumer._drain_messages(SimpleNamespace(_stopped=asyncio.Event()))
        )
        await asyncio.sleep(0.05)
        consumer.flow_active = False
        consumer.suspend_flow.set()
        await asyncio.wait_for(drain, 1)

    consumer = _Draining({A: [_Record(o) for o in range(5)]}, callback)
    asyncio.run(scenario(consumer))
    assert consumer._read_offset[A] == 2


L = TP("platform.logins", 0)
R = TP("pair-shared_ip-by-ip", 0)  # a repartition topic: never held, holds nobody


def _in_step(records: dict[TP, list[_Record]], *behind: TP) -> tuple[_Consumer, list[set[TP]]]:
    """A consumer handing `platform.*` on in step (1 s of record time), `behind` partitions
    with 100 records left to read; returns it and the partition sets each fetch asked for."""
    consumer = _Consumer(records)
    consumer.aligned_topics = frozenset({"platform.sessions", "platform.logins"})
    consumer.read_ahead_ms = 1000
    assignment = consumer.aiokafka._subscription.subscription.assignment
    for tp in records:
        assignment.highwaters[tp] = assignment.positions[tp] + (100 if tp in behind else 0)
    fetched: list[set[TP]] = []

    async def getmany(active: set[TP], timeout: float) -> dict[TP, list[_Record]]:
        fetched.append(set(active))
        return {}

    consumer._thread.getmany = getmany
    return consumer, fetched


def _fetch(consumer: _Consumer, active: set[TP]) -> Any:
    return asyncio.run(consumer._getmany(active, timeout=0))


def test_getmany_notes_the_record_time_each_partition_was_handed_on_to() -> None:
    records = {A: [_Record(0, 5_000), _Record(1, 9_000)], L: [_Record(0, 1_000)]}
    consumer, _ = _in_step(records)
    asyncio.run(consumer.read())
    assert consumer._frontier == {A: 9_000, L: 1_000}


def test_a_partition_ahead_of_the_slowest_behind_its_end_waits_until_it_catches_up() -> None:
    """Heartbeats handed on to 9 s of record time, logins to 1 s and both behind: the
    heartbeats are left out of the fetch (their prefetched records stay in aiokafka) until the
    logins are within a second of them."""
    records = {A: [_Record(0, 9_000)], B: [_Record(0, 1_500)], L: [_Record(0, 1_000)]}
    consumer, fetched = _in_step(records, A, B, L)
    asyncio.run(consumer.read())
    _fetch(consumer, {A, B, L})
    assert fetched[-1] == {B, L}
    assert consumer.ahead == {A}, "what the stopped-partition watchdog leaves alone"
    consumer._frontier[L] = 8_500  # B (1.5 s) is now the slowest: L waits for it too
    _fetch(consumer, {A, B, L})
    assert fetched[-1] == {B}
    consumer._frontier[B] = 8_200
    _fetch(consumer, {A, B, L})
    assert fetched[-1] == {A, B, L}
    assert consumer.ahead == frozenset()


def test_a_partition_read_to_its_end_holds_nobody_back() -> None:
    """Live, every partition is at its end: nothing waits, however far apart their times."""
    records = {A: [_Record(0, 9_000)], L: [_Record(0, 1_000)]}
    consumer, fetched = _in_step(records, A)  # the logins are read to their end
    asyncio.run(consumer.read())
    _fetch(consumer, {A, L})
    assert fetched == [{A, L}]


def test_a_partition_that_hands_nothing_on_stops_holding_the_others(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A stuck partition must not stop the worker: after 5 s without a record handed on it no
    longer holds the others back."""
    now = [100.0]
    monkeypatch.setattr("streams.fetch.time.monotonic", lambda: now[0])
    records = {A: [_Record(0, 9_000)], L: [_Record(0, 1_000)]}
    consumer, fetched = _in_step(records, A, L)
    asyncio.run(consumer.read())
    _fetch(consumer, {A, L})
    now[0] += 4
    _fetch(consumer, {A, L})
    assert fetched == [{L}, {L}]
    now[0] += 2
    _fetch(consumer, {A, L})
    assert fetched[-1] == {A, L}
    consumer._frontier[L] = 2_000  # it moves again: it holds again
    _fetch(consumer, {A, L})
    assert fetched[-1] == {L}


def test_a_partition_paused_for_recovery_and_a_repartition_topic_hold_nobody_back() -> None:
    records = {A: [_Record(0, 9_000)], L: [_Record(0, 1_000)], R: [_Record(0, 50)]}
    consumer, fetched = _in_step(records, A, L, R)
    asyncio.run(consumer.read())
    consumer._frontier[R] = 99_000  # far ahead, but not a topic handed on in step
    consumer._paused_partitions.add(L)
    _fetch(consumer, {A, R})
    assert fetched == [{A, R}]
    consumer._paused_partitions.clear()
    _fetch(consumer, {A, L, R})
    assert fetched[-1] == {L, R}


def test_a_fetch_whose_every_partition_is_ahead_waits_without_fetching() -> None:
    """The slowest partition's stream buffer is full (it is not fetched now): the others wait
    for it rather than being fetched anyway."""
    records = {A: [_Record(0, 9_000)], L: [_Record(0, 1_000)]}
    consumer, fetched = _in_step(records, A, L)
    asyncio.run(consumer.read())
    assert _fetch(consumer, {A}) == {}
    assert fetched == []


def test_a_revoke_forgets_how_far_each_partition_was_handed_on(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The partitions read on from their committed offsets: times noted before do not hold."""

    async def faust_revoke(self: Any, revoked: set[TP]) -> None:
        pass

    async def commit() -> bool:
        return True

    monkeypatch.setattr(FaustConsumer, "on_partitions_revoked", faust_revoke)
    records = {A: [_Record(0, 9_000)], L: [_Record(0, 1_000)]}
    consumer, fetched = _in_step(records, A, L)
    asyncio.run(consumer.read())
    consumer.commit = commit  # type: ignore[method-assign]
    asyncio.run(consumer.on_partitions_revoked({L}))
    _fetch(consumer, {A, L})
    assert fetched == [{A, L}]


def test_a_partition_counts_as_fetched_from_its_first_fetch_until_a_revoke(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """What a deferring stage reads to know nothing of a partition is on its way to it: a
    partition is fetched as soon as aiokafka returns its records (before any is handed on),
    and no longer once a revoke (or a seek) sends the worker back to the committed offsets."""

    async def faust_revoke(self: Any, revoked: set[TP]) -> None:
        pass

    async def commit() -> bool:
        return True

    monkeypatch.setattr(FaustConsumer, "on_partitions_revoked", faust_revoke)
    consumer = _Consumer({A: [_Record(0), _Record(1)]})
    assert not consumer.fetched_since_seek(A)
    seen: list[bool] = []

    async def first() -> None:
        async for tp, _offset in consumer.getmany(timeout=0):
            seen.append(consumer.fetched_since_seek(tp))

    asyncio.run(first())
    assert seen == [True, True]
    assert not consumer.fetched_since_seek(B)
    consumer.commit = commit  # type: ignore[method-assign]
    asyncio.run(consumer.on_partitions_revoked({A}))
    assert not consumer.fetched_since_seek(A)
