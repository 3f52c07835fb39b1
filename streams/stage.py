"""Detector stages inside Faust agents: one pass of Faust's machinery per event.

An agent reads its topics in batches and hands each event to every stage unit that reads its
topic, in-process (and to every router that re-keys it for a stage keyed by another entity).
One agent reads all the input topics, so an event is fetched, decoded, checked and counted
once, whatever the number of red flags; a stage keyed by an IP or a payout destination has an
agent of its own on its repartition topic. A batch's events are acknowledged only once every
unit that read them has had its outputs, then its changelog records, acknowledged by the
broker: a crash re-processes them against the state before and re-sends the same findings.
"""

from __future__ import annotations

import asyncio
import logging
import time
import weakref
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any

import faust
from faust.streams import _current_event
from faust.types import TP, EventT

from detectors.base import Stage
from detectors.engine import StageEngine
from schemas.codec import encode_finding
from schemas.events import EventBase

if TYPE_CHECKING:
    from streams.app import Daylight

__all__ = ["ORIGIN_HEADER", "BatchReader", "Route", "StageUnit", "batch_agent"]

log = logging.getLogger("daylight")

#: Re-keys an event for a stage keyed by another entity: (event, decoded value) -> the
#: delivery to await before the event is acknowledged, or None when not for the stage.
Route = Callable[[EventT[Any], EventBase], Awaitable[Any]]


class _PartitionOnly:
    """What the RocksDB store reads of the current event: its message's partition."""

    def __init__(self, partition: int) -> None:
        self.message = self
        self.partition = partition


#: On a repartitioned event: the partition it was read from. A repartition topic mixes every
#: input partition, which a backlog or a re-read after a crash drains days apart: the stage's
#: event-time watermark is the slowest input partition's, not the newest event's, so state is
#: not dropped while an input partition still has its events to send.
ORIGIN_HEADER = "daylight-from-partition"


def _source(message: Any) -> str:
    """The source whose newest event time holds the watermark back: the topic, and for a
    repartition topic the input partition the event came from."""
    headers = message.headers
    if headers:
        items = headers.items() if isinstance(headers, dict) else headers
        for name, value in items:
            if name == ORIGIN_HEADER:
                return f"{message.topic}#{value.decode()}"
    return str(message.topic)


class BatchReader:
    """What an agent knows of how far it has read: for decisions that wait until an input
    partition is fully consumed (DeferringStage)."""

    def __init__(self, daylight: Daylight) -> None:
        self.app = daylight.app
        self.settings = daylight.settings
        self.grace = daylight.settings.complete_grace_seconds
        self._offsets: Any = None
        self.processed: dict[TP, int] = {}
        self.stable: dict[TP, tuple[int | None, float]] = {}  # end offset, since when
        self.queues: list[Any] = []
        self.lock = asyncio.Lock()

    async def caught_up(self, partition: int, sources: Sequence[str]) -> list[str]:
        """The topics of `sources` consumed to their end on `partition`: every offset up to
        the end offset the broker gives now has been read, and that end has not moved for
        the grace period (a producer mid-stream, or retrying after a broker restart, can
        still deliver an older event on another topic)."""
        consumer = self.app.consumer
        tps = [TP(topic, partition) for topic in sources]
        try:
            ends = await asyncio.to_thread(self._end_offsets, tps)
        except Exception:  # the broker cannot say now: nothing counts as complete
            return []
        now = time.monotonic()
        idle = all(queue.empty() for queue in self.queues)
        done = []
        for tp in tps:
            end = ends.get(tp)
            if end is None:
                continue
            if self.stable.get(tp, (None, 0.0))[0] != end:
                self.stable[tp] = (end, now)
            if now - self.stable[tp][1] < self.grace:
                continue
            if tp in self.processed:
                reached = self.processed[tp]
            elif idle:  # nothing of it read since the start: read up to our position
                reached = await consumer.position(tp) or 0
            else:
                continue
            if reached >= end:
                done.append(tp.topic)
        return done

    def _end_offsets(self, tps: list[TP]) -> dict[TP, int]:
        """End offsets asked of the broker now (not the last fetch's), by a client of our
        own: Faust's consumer thread may be busy fetching."""
        from confluent_kafka import Consumer, TopicPartition

        if self._offsets is None:
            self._offsets = Consumer(
                {
                    **self.settings.confluent_config(),
                    "group.id": f"{self.settings.app_id}-offsets",
                    "enable.auto.commit": False,
                }
            )
        ends = {}
        for tp in tps:
            _, high = self._offsets.get_watermark_offsets(
                TopicPartition(tp.topic, tp.partition), timeout=2.0, cached=False
            )
            ends[tp] = int(high)
        return ends


class StageUnit:
    """One detector stage: its engine, its table, its metrics, what it forwards."""

    def __init__(
        self,
        daylight: Daylight,
        detector_id: str,
        name: str,
        engine: StageEngine[Any, Any],
        table: Any,
        forward: tuple[Stage[Any, Any], faust.TopicT] | None,
    ) -> None:
        from streams.app import _flagger

        self.daylight = daylight
        self.detector_id = detector_id
        self.name = name
        self.engine = engine
        self.table = table
        self.forward = forward
        metrics = daylight.metrics
        self._metrics = metrics
        self._processing = metrics.processing_seconds.labels(detector_id)
        self._errors = metrics.detector_errors.labels(detector_id)
        self._latency = metrics.end_to_end_latency_seconds.labels(detector_id)
        self._partitions = daylight.settings.topic_partitions
        self.rebalanced = [True]
        daylight.app.on_partitions_assigned.connect(_flagger(self.rebalanced))
        self.writes: Any = None

    def begin(self) -> None:
        from streams.app import PendingWrites

        self.writes = PendingWrites(self.table)

    async def feed(self, event: EventT[Any], value: EventBase, deliveries: list[Any]) -> None:
        from streams.app import partition_for

        if self.rebalanced[0]:
            # Keys restored from the changelog join the event-time expiry index.
            self.rebalanced[0] = False
            self.engine.adopt(self.table.items(), lambda key: partition_for(key, self._partitions))
        message = event.message
        started = time.perf_counter()
        self.writes.partition = message.partition
        try:
            outputs = self.engine.process(self.writes, value, message.partition, _source(message))
        except Exception as exc:  # one bad event never stops the stream
            self._errors.inc()
            log.exception("%s failed on event %s", self.detector_id, value.event_id)
            await self.daylight._dead_letter(
                event, "detector_error", f"{self.detector_id}: {exc!r}"
            )
            return
        self._processing.observe(time.perf_counter() - started)
        if outputs:
            await self.emit(outputs, deliveries, message.timestamp)

    async def release(self, reader: BatchReader, deliveries: list[Any]) -> None:
        """Deferred decisions whose input is now complete (DeferringStage)."""
        for partition in self.engine.pending():
            done = await reader.caught_up(partition, self.engine.sources)
            self.writes.partition = partition
            current = _PartitionOnly(partition)  # RocksDB reads look in its partition
            token = _current_event.set(weakref.ref(current))  # type: ignore[arg-type]
            try:
                outputs = self.engine.release(self.writes, partition, done)
            finally:
                _current_event.reset(token)
            await self.emit(outputs, deliveries, None)

    async def emit(self, outputs: list[Any], deliveries: list[Any], at: float | None) -> None:
        daylight = self.daylight
        for output in outputs:
            if self.forward is not None:
                stage, topic = self.forward
                entity = stage.key(output)
                if entity is not None:
                    origin = [(ORIGIN_HEADER, str(self.writes.partition).encode())]
                    deliveries.append(
                        await topic.send(key=entity.encode(), value=output, headers=origin)
                    )
                continue
            finding = output.to_finding()
            deliveries.append(
                await daylight.alerts.send(
                    key=finding.account_id.encode(), value=encode_finding(finding)
                )
            )
            self._metrics.findings.labels(self.detector_id, finding.severity.lower()).inc()
            if at is not None:
                self._latency.observe(max(0.0, time.time() - at))

    async def persist(self) -> None:
        await self.writes.persist(self.daylight.app.producer)
        self.writes = None


def batch_agent(
    daylight: Daylight,
    channel: faust.TopicT,
    name: str,
    units: dict[str, list[StageUnit]],
    routes: dict[str, list[Route]],
    admit: Callable[[EventT[Any]], Awaitable[EventBase | None]] | None,
) -> None:
    """An agent over `channel` that feeds each event to the units and routes of its topic."""
    reader = BatchReader(daylight)
    every = [unit for topic_units in units.values() for unit in topic_units]
    every = list(dict.fromkeys(every))
    deferring = [unit for unit in every if unit.engine.deferring is not None]
    max_events = daylight.settings.batch_max_events
    rebalanced = [True]
    from streams.app import _flagger

    daylight.app.on_partitions_assigned.connect(_flagger(rebalanced))

    async def run(stream: faust.StreamT[Any]) -> None:
        stream.enable_acks = False
        queue = stream.channel.queue  # type: ignore[attr-defined]
        reader.queues.append(queue)
        batch: list[EventT[Any]] = []
        async for event in stream.events():
            batch.append(event)
            if len(batch) < max_events and not queue.empty():
                continue
            async with reader.lock:
                await process(batch)
            for done in batch:
                await stream.ack(done)
            batch.clear()

    async def process(batch: list[EventT[Any]]) -> None:
        if rebalanced[0]:
            rebalanced[0] = False
            reader.processed.clear()
        deliveries: list[Any] = []
        for unit in every:
            unit.begin()
        processed = reader.processed
        for event in batch:
            message = event.message
            topic = message.topic
            tp = TP(topic, message.partition)
            offset = message.offset + 1
            if processed.get(tp, 0) < offset:
                processed[tp] = offset
            value = await admit(event) if admit is not None else event.value
            if not isinstance(value, EventBase):
                continue
            # The stream set the batch's last event as current; RocksDB reads look in the
            # partition of the current event.
            _current_event.set(weakref.ref(event))
            for unit in units.get(topic, ()):
                await unit.feed(event, value, deliveries)
            for route in routes.get(topic, ()):
                delivery = await route(event, value)
                if delivery is not None:
                    deliveries.append(delivery)
        for unit in deferring:
            await unit.release(reader, deliveries)
        for delivery in deliveries:
            await delivery
        for unit in every:
            await unit.persist()

    async def release_when_quiet() -> None:
        """Every second: a stream that went quiet still makes its deferred decisions once
        its input is fully consumed."""
        pending = [unit for unit in deferring if unit.engine.pending() and not unit.rebalanced[0]]
        if not pending:
            return
        async with reader.lock:
            deliveries: list[Any] = []
            for unit in pending:
                unit.begin()
                await unit.release(reader, deliveries)
            for delivery in deliveries:
                await delivery
            for unit in pending:
                await unit.persist()

    if deferring:
        daylight.app.timer(1.0, name=f"daylight-release-{name}")(release_when_quiet)
    daylight.app.agent(channel, name=name, concurrency=1)(run)
