"""One detector stage in a worker: its engine, its table, its outputs and its metrics.

A stage does not own an agent. Stages keyed by the account are fed by the worker's one input
agent, which reads every input topic once and hands each event to every stage that reads its
topic; a stage keyed by another entity (an IP, a payout destination) is fed by an agent of
its own over its repartition topic. Either way a batch goes through `handle` event by event,
then `release` (deferred decisions); its outputs, then its state changes, are acknowledged by
the broker before any of its events is (`batches`).
"""

from __future__ import annotations

import asyncio
import logging
import time
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, MutableMapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol

import faust as _faust
import orjson
from faust.stores.memory import Store as MemoryStore
from faust.streams import Stream as FaustStream
from faust.streams import _current_event
from faust.types import TP, EventT

from detectors.core.base import Stage
from detectors.core.engine import StageEngine
from detectors.core.parallel import partition_of as partition_for
from schemas.codec import encode_finding
from schemas.events import EventBase
from streams.topics import ALERTS
from streams.wire import Mark, encode_mark

if TYPE_CHECKING:
    import faust

    from streams.app import Daylight

__all__ = [
    "ORIGIN_HEADER",
    "Outputs",
    "PendingWrites",
    "StageUnit",
    "batches",
    "decoded_items",
    "state_table",
]

log = logging.getLogger("daylight")
_dumps = orjson.dumps
_loads = orjson.loads
_JSON_OPTIONS = orjson.OPT_NON_STR_KEYS | orjson.OPT_UTC_Z  # as Faust's json codec writes

#: On a repartitioned event: the input partition it was read from. A repartition topic mixes
#: every input partition, which a backlog or a re-read after a crash or a rebalance drains
#: days apart: the stage's event-time watermark is then the slowest input partition's, not
#: the newest event's, so no state is dropped while an input partition still has events
#: for it.
ORIGIN_HEADER = "daylight-from-partition"


class Outputs(Protocol):
    """The records one batch of events produces: `send` queues one, `send_all` many to one
    topic, `await` waits until the broker has acknowledged every one (or raises the first
    delivery error); `offsets` is then the highest offset written to each (topic, partition)."""

    offsets: dict[tuple[str, int], int]

    async def send(
        self,
        topic: str,
        key: bytes | None,
        value: bytes | None,
        partition: int | None = None,
        headers: list[tuple[str, bytes]] | None = None,
    ) -> None: ...

    async def send_all(
        self,
        topic: str,
        records: Sequence[tuple[bytes | None, bytes | None, int | None]],
        headers: list[tuple[str, bytes]] | None = None,
    ) -> None: ...

    def __await__(self) -> Any: ...


class StageUnit:
    """A detector stage as the worker runs it (see the module docstring)."""

    def __init__(
        self,
        daylight: Daylight,
        detector_id: str,
        name: str,
        engine: StageEngine[Any, Any],
        table: Any,
        forward: tuple[Stage[Any, Any], faust.TopicT] | None,
        lock: Callable[[], asyncio.Lock],
    ) -> None:
        self.daylight = daylight
        self.detector_id = detector_id
        self.name = name
        self.engine = engine
        self.table = table
        #: The next stage and the repartition topic it reads, for a stage that feeds another.
        self.forward = forward
        self.lock = lock
        metrics = daylight.metrics
        # Observed per event, added to the histogram once per batch (`Daylight.flush_tallies`).
        self._processing = daylight.tally(metrics.processing_seconds.labels(detector_id))
        self._errors = metrics.detector_errors.labels(detector_id)
        self._latency = metrics.end_to_end_latency_seconds.labels(detector_id)
        self._findings = metrics.findings
        self._partitions = daylight.settings.topic_partitions
        self._rocksdb = daylight.settings.store == "rocksdb"
        self._grace = daylight.settings.complete_grace_seconds
        app = daylight.app
        self.rebalanced = [True]
        app.on_partitions_assigned.connect(_flagger(self.rebalanced))
        # Whether the tables are restored since the last assignment.
        self._recovered = [False]
        app.on_partitions_assigned.connect(_flagger(self._recovered, False))
        app.on_rebalance_complete.connect(_flagger(self._recovered, True))
        # Offsets this stage has processed, for deciding when an input partition is fully
        # consumed (deferred decisions), and the queues of the streams that feed it.
        self.processed: dict[TP, int] = {}
        self._stable: dict[TP, tuple[int | None, float]] = {}  # end offset, since when
        # When the broker was last asked for each partition's end offsets (`_caught_up`).
        self._asked: dict[int, float] = {}
        self.queues: list[Any] = []
        #: Newest watermark mark sent for each input partition (`send_marks`).
        self._marks_sent: dict[int, int] = {}
        if engine.deferring is not None:
            app.timer(1.0, name=f"daylight-release-{name}")(self._release_when_quiet)

    def writes(self) -> PendingWrites:
        return PendingWrites(self.table)

    def adopt_restored(self) -> None:
        """After a rebalance: the keys restored from the changelog join the expiry and timer
        indexes, and what this stage had processed is forgotten."""
        self.rebalanced[0] = False
        self.processed.clear()
        partitions = self._partitions
        self.engine.adopt(decoded_items(self.table), lambda key: partition_for(key, partitions))

    # ------------------------------------------------------------------ one batch
    def handle(
        self, event: EventT[Any], value: Any, writes: PendingWrites, out: Outputs
    ) -> Awaitable[None] | None:
        """One event of a batch: the stage's state changes go to `writes`, its outputs to
        `out` (both settled by the caller once the batch is through). `value` is the
        decoded event, or None for one refused (it still counts as read).

        Not a coroutine: most events make no output, and a coroutine per stage per event was
        measurable. What has to wait (outputs to send, a watermark mark, a dead letter) is
        returned, and the caller awaits it before the next event."""
        message = event.message
        deferring = self.engine.deferring is not None
        if deferring:  # what `_caught_up` reads; no other stage needs it
            tp = TP(message.topic, message.partition)
            self.processed[tp] = max(self.processed.get(tp, 0), message.offset + 1)
        if isinstance(value, Mark):
            return self._observe(event, value, writes, out)
        if not isinstance(value, EventBase):
            return None
        if self.rebalanced[0]:
            self.adopt_restored()
            if deferring:
                self.processed[tp] = message.offset + 1
        if self._rocksdb:  # RocksDB reads look in the partition of the current event
            _current_event.set(weakref.ref(event))
        return self._process(event, value, writes, out, message.partition, _source(message))

    def handle_rekeyed(
        self, event: EventT[Any], value: EventBase, writes: PendingWrites, out: Outputs,
        partition: int, source: str,
    ) -> Awaitable[None] | None:  # fmt: skip
        """An input event this stage, keyed by another entity, takes in this process instead
        of reading it back from its repartition topic: as if read from `partition` of that
        topic (its key's partition, which this worker owns now), `source` naming the input
        partition it came from (the watermark the repartition header would have given)."""
        if self.rebalanced[0]:
            self.adopt_restored()
        if self._rocksdb:  # RocksDB reads look in the key's partition (held until processed)
            current = _PartitionOnly(partition)
            _current_event.set(weakref.ref(current))  # type: ignore[arg-type]
        return self._process(event, value, writes, out, partition, source)

    def _process(
        self, event: EventT[Any], value: EventBase, writes: PendingWrites, out: Outputs,
        partition: int, source: str,
    ) -> Awaitable[None] | None:  # fmt: skip
        started = time.perf_counter()
        writes.partition = partition
        try:
            outputs = self.engine.process(writes, value, partition, source)
        except Exception as exc:  # one bad event never stops the stream
            self._errors.inc()
            log.exception("%s failed on event %s", self.detector_id, value.event_id)
            return self.daylight._dead_letter(
                event, "detector_error", f"{self.detector_id}: {exc!r}"
            )
        self._processing.observe(time.perf_counter() - started)
        if outputs:
            # What reads the finding (or the next stage's record) then finds the event counted.
            self.daylight.flush_tallies()
            return self._emit(outputs, out, event.message.timestamp, partition)
        return None

    async def _observe(
        self, event: EventT[Any], mark: Mark, writes: PendingWrites, out: Outputs
    ) -> None:
        """A watermark mark from an input partition: the stage's watermark for it advances,
        and the deferred decisions it makes possible are made."""
        if self.rebalanced[0]:
            self.adopt_restored()
        message = event.message
        _current_event.set(weakref.ref(event))
        writes.partition = message.partition
        outputs = self.engine.observe(writes, message.partition, _source(message), mark.ms)
        if outputs:
            self.daylight.flush_tallies()
            await self._emit(outputs, out, None, message.partition)

    async def send_marks(self, partitions: set[int], out: Outputs) -> None:
        """For a stage whose next stage defers decisions: a watermark mark from each input
        partition read, on every partition of the repartition topic, once it has moved a
        minute of event time since the last one."""
        if self.forward is None:
            return
        topic = self.forward[1].get_topic_name()
        for origin in partitions:
            mark = self.engine.mark_ms(origin)
            if mark is None or mark < self._marks_sent.get(origin, -(2**62)) + 60_000:
                continue
            self._marks_sent[origin] = mark
            header = [(ORIGIN_HEADER, str(origin).encode())]
            value = encode_mark(mark)
            for target in range(self._partitions):
                await out.send(topic, None, value, target, header)

    async def release(self, writes: PendingWrites, out: Outputs) -> None:
        """Deferred decisions whose input is now complete (DeferringStage)."""
        engine = self.engine
        if engine.deferring is None:
            return
        for partition in engine.pending():
            done = await self._caught_up(partition)
            writes.partition = partition
            current = _PartitionOnly(partition)  # RocksDB reads look in its partition
            token = _current_event.set(weakref.ref(current))  # type: ignore[arg-type]
            try:
                outputs = engine.release(writes, partition, done)
            finally:
                _current_event.reset(token)
            await self._emit(outputs, out, None, partition)

    async def _emit(self, outputs: list[Any], out: Outputs, at: float | None, origin: int) -> None:
        for output in outputs:
            if self.forward is not None:
                stage, topic = self.forward
                entity = stage.key(output)
                if entity is not None:
                    header = [(ORIGIN_HEADER, str(origin).encode())]
                    value = topic.prepare_value(output, None)[0]  # the topic's serializer
                    await out.send(topic.get_topic_name(), entity.encode(), value, None, header)
                continue
            finding = output.to_finding()
            await out.send(ALERTS, finding.account_id.encode(), encode_finding(finding))
            self._findings.labels(self.detector_id, finding.severity.lower()).inc()
            if at is not None:
                self._latency.observe(max(0.0, time.time() - at))

    async def _caught_up(self, partition: int) -> list[str]:
        """The stage's input topics consumed to their end on `partition`: every offset up
        to the end offset the broker gives now has been through this stage, and that end
        has not moved for the grace period (a producer mid-stream, or retrying after a
        broker restart, can still deliver an older event on another topic)."""
        daylight = self.daylight
        # At most once a second per partition: an answer counts only once the end offsets
        # have held for the grace period, and a stage with decisions pending on every batch
        # (a backlog) would otherwise ask the broker on each one and slow to a crawl, its
        # full buffer then holding back Faust's fetching of every topic.
        now = time.monotonic()
        if now - self._asked.get(partition, -1e9) < 1.0:
            return []
        self._asked[partition] = now
        tps = [TP(topic, partition) for topic in self.engine.sources]
        # The positions before whether anything was fetched: aiokafka moves a position as it
        # returns records, a moment before the consumer thread notes them as fetched, and the
        # round trip below lets it. Read the other way round, a position moved by records
        # still on their way to this stage could count as consumed.
        positions = {tp: daylight._position_now(tp) for tp in tps}
        try:
            ends = await asyncio.to_thread(daylight._end_offsets, tps)
        except Exception:  # the broker cannot say now: nothing counts as complete
            return []
        now = time.monotonic()
        idle = all(queue.empty() for queue in self.queues)
        consumer = daylight.app.consumer
        fetched = getattr(consumer, "fetched_since_seek", None)
        topics_done = []
        for tp in tps:
            end = ends.get(tp)
            if end is None:
                continue
            if self._stable.get(tp, (None, 0.0))[0] != end:
                self._stable[tp] = (end, now)
            if now - self._stable[tp][1] < self._grace:
                continue
            if tp in self.processed:
                reached = self.processed[tp]
            elif idle or (fetched is not None and not fetched(tp)):
                # Nothing of it through this stage since the start: read up to our position
                # when nothing is on its way to the stage, either because every stream
                # buffer is empty or because nothing of it was fetched since the last seek
                # (an input topic with no new events: without this, a stage behind a
                # backlog on its other topics never made a deferred decision, and kept
                # every state waiting for one).
                position = positions[tp]
                if position is None:
                    continue
                reached = position
            else:
                continue
            if reached >= end:
                topics_done.append(tp.topic)
        return topics_done

    async def _release_when_quiet(self) -> None:
        """Every second: a stream that went quiet still makes its deferred decisions once
        its input is fully consumed."""
        if not self.engine.pending() and not self.rebalanced[0]:
            return
        if self.rebalanced[0] and not self._recovered[0]:
            return  # the tables are being restored
        async with self.lock():
            if self.rebalanced[0]:
                # No event since the rebalance (a partition taken over fully read): its
                # pending decisions are indexed here, or they would wait for an event that
                # may never come.
                self.adopt_restored()
            writes = self.writes()
            out = self.daylight.outputs()
            await self.release(writes, out)
            await out
            await writes.persist(self.daylight)


def state_table(app: faust.App, name: str, partitions: int) -> Any:
    """A state table as `PendingWrites` uses it: string keys (JSON in the changelog, as
    Faust writes them) and each state held as its changelog record's bytes (JSON)."""
    return app.Table(
        name,
        default=None,
        partitions=partitions,
        key_type=str,
        value_type=bytes,
        schema=_faust.Schema(
            key_type=str, value_type=bytes, key_serializer="json", value_serializer="raw"
        ),
    )


def decoded_items(table: Any) -> Iterator[tuple[str, Any]]:
    """Every (key, state) a state table holds, decoded (after a rebalance)."""
    for key, raw in table.items():
        yield key, _loads(raw)


class PendingWrites(MutableMapping[str, Any]):
    """A write buffer over a Faust table: reads see the buffered writes; `persist` writes
    the changelog, waits for the broker to acknowledge it, then updates the local store.

    The table holds each state as the bytes of its changelog record (JSON): a read decodes
    them, so the batch works on a private copy, and the bytes a write sends to the changelog
    are what the table then keeps (no second serialisation, no deep copy).

    Faust's own `table[key] = value` queues the changelog record in a producer buffer that an
    offset commit does not reliably wait for, so a crash could commit an event whose state
    change never reached the changelog. Here the record is sent and awaited like any output,
    once per key per batch.
    """

    _DELETED = object()

    def __init__(self, table: Any) -> None:
        self._table = table
        self._writes: dict[str, tuple[Any, int]] = {}
        # What the batch read, decoded: a stage that changes its state in place changes this
        # copy, and the table only once `persist` has the changelog acknowledged. (Given the
        # table's own object, a batch abandoned in a rebalance left "reported" in memory
        # for a finding never sent: the re-read event then found nothing to report.)
        self._read: dict[str, Any] = {}
        store = table.data
        # A memory store's own dict, read and written directly; RocksDB files a key under
        # the partition of the current event (`apply` sets it).
        self._memory = isinstance(store, MemoryStore)
        self._data = store.data if self._memory else store
        #: The changelog records of the writes, once serialised (`records`).
        self._encoded: dict[str, bytes | None] = {}
        #: The partition of the keys written now: the changelog partition they go to.
        self.partition: int | None = None

    def __getitem__(self, key: str) -> Any:
        value = self.get(key, self._DELETED)
        if value is self._DELETED:
            raise KeyError(key)
        return value

    def get(self, key: str, default: Any = None) -> Any:
        # The engine asks once per event and stage, often for a key never seen (a new
        # entity): answered without raising and catching a KeyError.
        written = self._writes.get(key)
        if written is not None:
            value = written[0]
            return default if value is self._DELETED else value
        copied = self._read.get(key, self._DELETED)
        if copied is self._DELETED:
            raw = self._data.get(key)
            if raw is None:
                return default
            copied = self._read[key] = _loads(raw)
        return copied

    def __contains__(self, key: object) -> bool:
        if isinstance(key, str) and key in self._writes:
            return self._writes[key][0] is not self._DELETED
        return key in self._data

    def __setitem__(self, key: str, value: Any) -> None:
        assert self.partition is not None, "a write outside a partition"
        self._writes[key] = (value, self.partition)

    def __delitem__(self, key: str) -> None:
        if key not in self:
            raise KeyError(key)
        assert self.partition is not None, "a write outside a partition"
        self._writes[key] = (self._DELETED, self.partition)

    def __iter__(self) -> Iterator[str]:
        raise TypeError("a pending write buffer is not iterated")

    def __len__(self) -> int:
        return len(self._table)

    def __bool__(self) -> bool:
        return bool(self._writes)

    def send(self, out: Outputs) -> Any:
        """Queues the changelog records on `out` (a coroutine to await)."""
        return self._send(out)

    def records(self) -> Iterator[tuple[bytes, bytes | None, int]]:
        """The changelog records of the writes: (key, value, partition), serialised as the
        table's own writes are (JSON keys and values, orjson with the options Faust's json
        codec uses), so that recovery reads them back; without Faust's codec registry."""
        encoded = self._encoded
        for key, (value, partition) in self._writes.items():
            raw_value = None if value is self._DELETED else _dumps(value, option=_JSON_OPTIONS)
            encoded[key] = raw_value
            yield _dumps(key), raw_value, partition

    async def _send(self, out: Outputs) -> None:
        changelog = self._table.changelog_topic.get_topic_name()
        await out.send_all(changelog, list(self.records()))

    def apply(self, offsets: dict[tuple[str, int], int]) -> None:
        """The changelog is acknowledged (`offsets` as the broker gave them): the local
        store takes the writes."""
        table = self._table
        changelog = table.changelog_topic.get_topic_name()
        data = self._data
        encoded = self._encoded
        memory = self._memory
        for key, (value, partition) in self._writes.items():
            if not memory:  # RocksDB files a key under the partition of the current event
                current = _PartitionOnly(partition)
                _current_event.set(weakref.ref(current))  # type: ignore[arg-type]
            if value is self._DELETED:
                if key in data:
                    del data[key]
            else:
                raw = encoded.get(key)
                data[key] = raw if raw is not None else _dumps(value, option=_JSON_OPTIONS)
        for (name, partition), offset in offsets.items():
            if name == changelog:  # what RocksDB holds, so a restart reads on from it
                table.data.set_persisted_offset(TP(name, partition), offset)
        self._writes.clear()
        self._read.clear()
        encoded.clear()

    async def persist(self, daylight: Daylight) -> None:
        """The changelog written and acknowledged, then the local store updated."""
        await persist_all(daylight, [self])


async def persist_all(daylight: Daylight, pending: list[PendingWrites]) -> None:
    """Several stages' changelog records in one round trip, then their local stores."""
    pending = [writes for writes in pending if writes]
    if not pending:
        return
    out = daylight.outputs()
    for writes in pending:
        await writes.send(out)
    await out
    for writes in pending:
        writes.apply(out.offsets)


class _PartitionOnly:
    """What the RocksDB store reads of the current event: its message's partition."""

    def __init__(self, partition: int) -> None:
        self.message = self
        self.partition = partition


def lock_of(holder: list[asyncio.Lock]) -> asyncio.Lock:
    """One lock per holder, made on the event loop that uses it."""
    if not holder:
        holder.append(asyncio.Lock())
    return holder[0]


def keep_live_events(queue: Any, app: Any) -> None:
    """A clear of the stream buffer `queue` drops only events of an earlier generation.

    Faust clears every stream buffer each time it resumes its flow control, and a table
    recovery resumes it after its seek to the committed offsets, when the stream partitions
    are fetched again: events of the new assignment, handed on and counted as read, were
    dropped, never acknowledged, and nothing reads them again. The partition's commit waited
    for them for ever and their findings were never made (docs/RELIABILITY.md, "stall"). An
    event of the live generation is kept (its stream processes or skips it as it would have);
    one fetched before the assignment is dropped, as Faust drops it, since the seek that
    follows every assignment reads it again. A put waiting for room is woken, not cancelled:
    its event is delivered once there is room (Faust cancelled it, and it was lost too)."""
    items = queue._queue
    errors = queue._errors
    putters = queue._putters

    def clear() -> None:
        live = app.consumer_generation_id
        kept = [
            item
            for item in items
            if isinstance(item, EventT) and item.message.generation_id == live
        ]
        dropped = len(items) - len(kept)
        items.clear()
        items.extend(kept)
        errors.clear()
        if kept:
            log.info("a buffer clear kept %d events of the live generation (dropped %d)",
                     len(kept), dropped)  # fmt: skip
        while putters and not queue.full():
            wakeup(putters)

    wakeup = queue._wakeup_next
    queue.clear = clear


def refill_at_low_water(queue: Any) -> None:
    """Once the stream buffer `queue` is full, it counts as full until it has drained to half:
    what waits to put an event in it waits until then, and is woken then, not by each event
    taken from it.

    An agent takes its batch event by event and lets the loop run between them. Behind a
    backlog the fetch loop then ran after every event taken: it handed on one record, found
    the buffer full again, and waited with Faust's full-buffer path (a task for the put, and
    the four tasks of `wait_first`). In the nineteenth session's drain that was 40,000 waits
    for 274,197 events (docs/PERFORMANCE.md). Now the fetch loop waits once per half buffer
    and hands on the next half without waiting. An agent drains its buffer on every batch, so
    a put never waits for ever; a clear (`keep_live_events`) leaves the buffer below half."""
    maxsize: int = queue.maxsize
    if maxsize <= 0:
        return  # unbounded: never full
    putters = queue._putters
    items = queue._queue
    low = maxsize // 2
    wakeup = queue._wakeup_next
    draining = [False]

    def put(item: Any) -> None:
        items.append(item)
        if len(items) >= maxsize:
            draining[0] = True

    def full() -> bool:
        size = len(items)
        if draining[0]:
            if size > low:
                return True
            draining[0] = False
        return size >= maxsize

    def wake_at_low_water(waiters: Any) -> None:
        if waiters is putters and len(items) > low:
            return
        wakeup(waiters)

    queue._put = put
    queue.full = full
    queue._wakeup_next = wake_at_low_water


async def batches(
    stream: faust.StreamT[Any], most: int, abandon: list[bool] | None = None
) -> AsyncIterator[list[EventT[Any]]]:
    """The events of `stream` in batches: as many as are already waiting (up to `most`), so
    an idle stream hands on each event at once and a backlog amortises the round trips.

    Faust's own acknowledgement is off: a batch's events are acknowledged (their offsets
    become committable) only once the caller, having sent what they produce and waited for
    the broker's acknowledgements, asks for the next batch. A batch the caller abandons (an
    exception, a cancellation when the worker stops) is never acknowledged and is read
    again. Faust flushes its producer when a worker stops, then lets its agents run on until
    they are cancelled: what an agent sent after the flush and acknowledged at once was
    lost, with its offset committed.

    The caller abandons a batch it has finished by setting `abandon[0]`: its events are not
    acknowledged, and are read again from the committed offset after the rebalance."""
    stream.enable_acks = False
    queue = stream.channel.queue  # type: ignore[attr-defined]
    keep_live_events(queue, stream.app)
    refill_at_low_water(queue)
    # Faust's own stream (a stand-in in some unit tests is taken event by event and acked
    # through its own `ack`).
    faust_stream = isinstance(stream, FaustStream)
    take = _taker(stream, queue) if faust_stream else None
    ack = _acker(stream) if faust_stream else None
    batch: list[EventT[Any]] = []
    async for event in stream.events():
        batch.append(event)
        if take is not None and len(batch) < most:
            take(batch, most)
        if len(batch) < most and not queue.empty():
            continue
        yield batch
        if abandon is not None and abandon[0]:
            abandon[0] = False
        elif ack is not None:
            for done in batch:
                ack(done)
        else:
            for done in batch:
                await stream.ack(done)
        batch = []


def _taker(stream: Any, queue: Any) -> Callable[[list[EventT[Any]], int], None]:
    """What Faust's stream iterator does for each event it hands on, for the events already
    waiting in `queue`, taken at once onto a batch (up to `most`).

    Faust's iterator (`faust/_cython/streams.pyx`, `StreamIterator.next`) lets the event loop
    run once before each event (`await sleep(0)`), then takes it through the channel's
    coroutine `get`: behind a backlog, a loop turn and three coroutines per event. Here the
    first event of each turn comes through Faust's iterator, and the others waiting then are
    taken as it takes them: an event of an earlier consumer generation, or any event while
    the flow is suspended (a rebalance), is skipped, not acknowledged, as Faust skips it (the
    seek that follows reads it again); the others are tracked as unacknowledged, with the
    same sensor calls. A queued error is left for Faust's iterator to raise."""
    app = stream.app
    consumer = app.consumer
    flow = app.flow_control
    acking = app.topics._acking_topics
    track = consumer._unacked_messages.add
    on_message_in = stream._on_message_in
    on_event_in = stream._on_stream_event_in
    on_event_out = stream._on_stream_event_out
    items = queue._queue
    errors = queue._errors
    pending_drops = queue._pending_pressure_drop_callbacks
    endorse_drop = queue.maybe_endorse_pressure_drop
    wakeup = queue._wakeup_next
    putters = queue._putters
    pop = items.popleft

    def take(batch: list[EventT[Any]], most: int) -> None:
        if not flow.is_active() or errors or not items:
            return
        generation = app.consumer_generation_id
        handed = 0
        while items and len(batch) < most:
            event = pop()
            if not isinstance(event, EventT):
                continue  # Faust's iterator hands on no event for it either
            message = event.message
            if message.generation_id != generation:
                continue
            tp = message.tp
            offset = message.offset
            if message.topic in acking and not message.tracked:
                message.tracked = True
                track(message)
                on_message_in(tp, offset, message)
            on_event_out(tp, offset, stream, event, on_event_in(tp, offset, stream, event))
            batch.append(event)
            handed += 1
        stream.events_total += handed
        # What the `get_nowait` of each would have done on the way: the partitions paused
        # under pressure resumed once the buffer is below the mark, and a put waiting for
        # room woken.
        while pending_drops and len(items) <= queue.pressure_drop_size:
            endorse_drop()
            if not items:
                break
        wakeup(putters)

    return take


def _acker(stream: Any) -> Callable[[EventT[Any]], None]:
    """Faust's `Stream.ack` without a coroutine per event (it awaits nothing)."""
    on_event_out = stream._on_stream_event_out
    on_message_out = stream._on_message_out

    def ack(event: EventT[Any]) -> None:
        last = event.ack()
        message = event.message
        on_event_out(message.tp, message.offset, stream, event)
        if last:
            on_message_out(message.tp, message.offset, message)

    return ack


def _source(message: Any) -> str:
    """What holds the stage's watermark back: the topic, and for a repartition topic the
    input partition the event came from."""
    headers = message.headers
    if headers:
        items = headers.items() if isinstance(headers, dict) else headers
        for name, value in items:
            if name == ORIGIN_HEADER:
                return f"{message.topic}#{value.decode()}"
    return str(message.topic)


def _flagger(flag: list[bool], value: bool = True) -> Callable[..., Any]:
    async def on_signal(*args: Any, **kwargs: Any) -> None:
        flag[0] = value

    return on_signal
