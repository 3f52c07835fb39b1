"""The Faust app: input topics, the intake agent of each topic, one agent per detector."""

from __future__ import annotations

import asyncio
import logging
import ssl
import threading
import time
import weakref
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator, MutableMapping, Sequence
from typing import Any, cast

import faust
from faust.streams import _current_event
from faust.types import TP, EventT
from prometheus_client import CollectorRegistry

from detectors import DETECTOR_IDS
from detectors.base import Detector, Stage
from detectors.casework import CaseSettings
from detectors.engine import StageEngine
from detectors.parallel import partition_of as partition_for
from schemas.codec import encode_finding
from schemas.events import EventBase
from streams import topics
from streams.caseagent import add_case_agent
from streams.dlq import dead_letter_headers
from streams.metrics import Metrics, QuietMonitor, SkippedEvents
from streams.settings import Settings
from streams.wire import CODEC_NAME, Rejected, register, register_model

__all__ = ["Daylight", "admissible", "partition_for", "refusal"]

log = logging.getLogger("daylight")
_MAX_MESSAGE_BYTES = 4 * 1024 * 1024


def admissible(event: EventT[Any]) -> EventBase | None:
    """The decoded contract event, or None for a refused message (the intake dead-letters it)."""
    value = event.value
    if not isinstance(value, EventBase):
        return None
    key = event.key
    if key is not None and key != value.account_id.encode():
        return None
    return value


def refusal(event: EventT[Any]) -> tuple[str, str] | None:
    """(reason class, message) when the message must go to the dead-letter topic."""
    value = event.value
    if isinstance(value, Rejected):
        return value.reason, value.message
    if value is None:
        return "empty_value", "message value is empty"
    if not isinstance(value, EventBase):  # pragma: no cover - the codec returns only these
        return "invalid_event", f"unexpected value {type(value).__name__}"
    key = event.key
    if key is not None and key != value.account_id.encode():
        shown = key[:64].decode(errors="replace")
        return "key_mismatch", f"message key {shown!r} is not the account_id {value.account_id!r}"
    return None


def _credentials(settings: Settings) -> Any:
    context = None
    if settings.security_protocol in ("SSL", "SASL_SSL"):
        context = ssl.create_default_context(
            cafile=str(settings.ssl_cafile) if settings.ssl_cafile else None
        )
        if settings.ssl_certfile:
            context.load_cert_chain(
                str(settings.ssl_certfile),
                str(settings.ssl_keyfile) if settings.ssl_keyfile else None,
                settings.ssl_key_password.get_secret_value() if settings.ssl_key_password else None,
            )
    if settings.sasl_mechanism:
        return faust.SASLCredentials(
            username=settings.sasl_username,
            password=settings.sasl_password.get_secret_value() if settings.sasl_password else None,
            mechanism=settings.sasl_mechanism,
            ssl_context=context,
        )
    if context is not None:
        return faust.SSLCredentials(context)
    return None


class Daylight:
    """One worker's app: wires topics, tables and agents; owns no detection logic."""

    def __init__(
        self,
        settings: Settings,
        detectors: Sequence[Detector] = (),
        registry: CollectorRegistry | None = None,
        cases: CaseSettings | None = None,
    ) -> None:
        register()
        self.settings = settings
        self.registry = registry or CollectorRegistry()
        self.metrics = Metrics.create(self.registry)
        self.app = faust.App(
            settings.app_id,
            broker=[f"kafka://{server}" for server in settings.servers],
            broker_credentials=_credentials(settings),
            store="rocksdb://" if settings.store == "rocksdb" else "memory://",
            datadir=str(settings.data_dir),
            topic_partitions=settings.topic_partitions,
            topic_replication_factor=1,
            consumer_auto_offset_reset="earliest",
            broker_session_timeout=settings.session_timeout_seconds,
            # Do not wait for every in-flight message to be acknowledged before a rebalance or
            # a stop: one stuck message would hold the worker forever. What was not acknowledged
            # is not committed, and is read again by whoever owns the partition next.
            stream_wait_empty=False,
            broker_heartbeat_interval=min(3.0, settings.session_timeout_seconds / 3),
            producer_max_request_size=_MAX_MESSAGE_BYTES,
            # Faust sends every record the moment it is queued (linger 0): one produce request
            # per changelog record or routed event. A few milliseconds of linger batches them.
            producer_linger=settings.producer_linger_ms / 1000,
            producer_max_batch_size=1024 * 1024,
            consumer_max_fetch_size=_MAX_MESSAGE_BYTES,
            web_enabled=False,
            autodiscover=False,
            monitor=QuietMonitor(),
            key_serializer="raw",
            value_serializer="raw",
        )
        # The topics this worker reads: its detectors' (every input topic for a worker with
        # every detector, or none, so that bad input on any topic is dead-lettered).
        read = {topic for detector in detectors for topic in detector.metadata.topics}
        complete = not detectors or {d.metadata.id for d in detectors} >= set(DETECTOR_IDS)
        self.inputs = {
            name: self.app.topic(
                name,
                key_serializer="raw",
                value_serializer=CODEC_NAME,
                partitions=settings.topic_partitions,
            )
            for name in topics.INPUT_TOPICS
            if complete or name in read
        }
        self.alerts = self.app.topic(topics.ALERTS, key_serializer="raw", value_serializer="raw")
        self.dlq = self.app.topic(topics.DLQ, key_serializer="raw", value_serializer="raw")
        self.engines: dict[str, StageEngine[Any, Any]] = {}
        self._tables: list[tuple[str, Any]] = []
        # Repartition topics: created before the worker subscribes (streams.runner), since a
        # topic missing at subscription time is ignored by the consumer for good.
        self.internal_topics: list[str] = []
        # Each input topic is admitted once per worker (counted, checked, dead-lettered when
        # refused) by the first agent that reads it; a topic no detector reads has an intake
        # agent of its own.
        self._admitted: set[str] = set()
        self._offsets: Any = None  # a confluent-kafka client for end offsets, made on use
        self._offsets_lock = threading.Lock()  # asked from worker threads (asyncio.to_thread)
        self.app.timer(5.0, name="daylight-consumer-lag")(self._measure_lag)
        for detector in detectors:
            self._add_detector(detector)
        for name, topic in self.inputs.items():
            if name not in self._admitted:
                self._add_intake(name, topic)
        add_case_agent(self, cases or CaseSettings())
        self.registry.register(
            SkippedEvents(
                {
                    detector.metadata.id: skipped
                    for detector in detectors
                    for stage in detector.stages
                    if isinstance(skipped := getattr(stage, "skipped", None), Counter)
                }
            )
        )

    @property
    def changelog_topics(self) -> list[str]:
        """The changelog topic of every state table."""
        return [table.changelog_topic.get_topic_name() for _, table in self._tables]

    def _admission(self, names: Sequence[str]) -> Callable[..., Any]:
        """What the agent reading `names` does with each input event: counts it and
        dead-letters it when refused, for the topics it is the first to read; returns the
        event to process, or None."""
        owned = set(names) - self._admitted
        self._admitted |= owned
        consumed = {name: self.metrics.events_consumed.labels(name) for name in owned}
        lag = {name: self.metrics.event_time_lag_seconds.labels(name) for name in owned}

        async def admit(event: EventT[Any]) -> EventBase | None:
            topic = event.message.topic
            if topic not in owned:
                return admissible(event)
            consumed[topic].inc()
            problem = refusal(event)
            if problem is not None:
                await self._dead_letter(event, *problem)
                return None
            value = cast(EventBase, event.value)
            lag[topic].observe(max(0.0, time.time() - value.occurred_at.timestamp()))
            return value

        return admit

    def _add_intake(self, name: str, topic: faust.TopicT) -> None:
        admit = self._admission([name])

        async def intake(stream: faust.StreamT[Any]) -> None:
            """Counts every message of a topic no detector reads; dead-letters the refused."""
            async for event in stream.events():
                await admit(event)

        self.app.agent(topic, name=f"intake-{name}", concurrency=1)(intake)

    async def _measure_lag(self) -> None:
        """Every 5 s: consumer lag per topic read (end of topic minus our position), inputs
        and repartition topics, and the number of entities in each state table."""
        consumer = self.app.consumer
        totals = dict.fromkeys(self.inputs, 0)
        for tp in consumer.assignment():
            if tp.topic.endswith("-changelog"):
                continue  # restored, not consumed
            totals.setdefault(tp.topic, 0)  # inputs, and each detector's repartition topic
            position = self._position_now(tp)
            highwater = consumer.highwater(tp)
            if position is not None and highwater is not None:
                totals[tp.topic] += max(0, highwater - position)
        for topic, lag in totals.items():
            self.metrics.consumer_lag.labels(topic).set(lag)
        for stage_name, table in self._tables:  # sized here, not per event: RocksDB counts keys
            self.metrics.state_entries.labels(stage_name).set(len(table))
        for stage_name, engine in self.engines.items():
            if engine.deferring is not None:
                self.metrics.deferred_decisions.labels(stage_name).set(engine.deferred())

    def _position_now(self, tp: TP) -> int | None:
        """The consumer's position on `tp` if it has one now, else None; never waits.

        Not `consumer.position()`: it runs on the consumer thread's method queue (two workers)
        and waits until the partition has a position, which a partition paused in a table
        recovery gets only once the recovery is over. Two such waits (the lag timer, a
        deferring stage's timer) took both workers; the recovery's own fetches queued behind
        them and it never ended: the worker that took over a stopped worker's partitions
        read nothing more, and every finding after the rebalance was lost."""
        try:
            client = self.app.consumer._thread._ensure_consumer()  # type: ignore[attr-defined]
            state = client._subscription.subscription.assignment.state_value(tp)
        except (AttributeError, AssertionError):  # not started, or no assignment now
            return None
        if state is None or not state.has_valid_position:
            return None
        return int(state.position)

    def _end_offsets(self, tps: list[TP]) -> dict[TP, int]:
        """End offsets asked of the broker now (not the last fetch's), by a client of our
        own: asking through Faust's consumer thread blocked it and stopped its fetching.

        A client that failed is replaced: after a broker restart, librdkafka can keep a
        partition it saw missing while the broker started as "unknown" until its next
        metadata refresh (minutes), and every deferred decision would wait that long."""
        with self._offsets_lock:
            return self._ask_end_offsets(tps)

    def _ask_end_offsets(self, tps: list[TP]) -> dict[TP, int]:
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
        try:
            for tp in tps:
                _, high = self._offsets.get_watermark_offsets(
                    TopicPartition(tp.topic, tp.partition), timeout=2.0, cached=False
                )
                ends[tp] = int(high)
        except Exception as exc:
            log.warning("end offsets unknown (%s): asking with a new client next time", exc)
            client, self._offsets = self._offsets, None
            client.close()
            raise
        return ends

    async def _dead_letter(self, event: EventT[Any], reason: str, error: str) -> None:
        message = event.message
        self.metrics.events_rejected.labels(message.topic, reason).inc()
        log.warning(
            "dead-lettered %s[%d]@%d: %s: %s",
            message.topic,
            message.partition,
            message.offset,
            reason,
            error[:200],
        )
        delivery = await self.dlq.send(
            key=message.key,
            value=message.value,
            headers=dead_letter_headers(message, reason, error),
            timestamp=message.timestamp,
        )
        await delivery  # on the topic before the event's offset can be committed

    def _add_detector(self, detector: Detector) -> None:
        """One agent per stage; a stage keyed by something other than the account reads a
        repartition topic keyed by its entity, written by the agent before it."""
        meta = detector.metadata
        partitions = self.settings.topic_partitions
        stages = detector.stages
        inputs = self.app.topic(
            *meta.topics, key_serializer="raw", value_serializer=CODEC_NAME, partitions=partitions
        )
        # The channel each stage reads: stage 0 reads the input topics, unless it is keyed by
        # another entity; every later stage reads the topic its predecessor writes.
        channels: list[faust.TopicT] = []
        for index, stage in enumerate(stages):
            if index == 0 and stage.entity == "account":
                channels.append(inputs)
                continue
            if index == 0:
                serializer = CODEC_NAME
            elif stage.input_model is None:
                raise TypeError(f"{meta.id}: stage {index} must name its input_model")
            else:
                serializer = register_model(stage.input_model)
            internal_name = f"{self.settings.app_id}-{meta.id}-by-{stage.entity}"
            self.internal_topics.append(internal_name)
            channels.append(
                self.app.topic(
                    internal_name,
                    key_serializer="raw",
                    value_serializer=serializer,
                    partitions=partitions,
                    internal=True,
                )
            )
        if channels[0] is not inputs:
            admit = self._admission(meta.topics)
            self.app.agent(inputs, name=f"route-{meta.id}", concurrency=1)(
                self._router(stages[0], channels[0], admit)
            )
        for index, stage in enumerate(stages):
            name = meta.id if len(stages) == 1 else f"{meta.id}-{stage.entity}"
            sources = tuple(sorted(channels[index].topics))
            # What holds a partition's watermark back (`_source`): each input topic, or for a
            # repartition topic each input partition its events came from.
            feeds = (
                sources
                if channels[index] is inputs
                else tuple(f"{sources[0]}#{origin}" for origin in range(partitions))
            )
            engine = StageEngine(stage, sources=sources, feeds=feeds)
            self.engines[name] = engine
            table = self.app.Table(
                f"{name}-state",
                default=None,
                partitions=partitions,
                schema=faust.Schema(key_type=str, key_serializer="raw", value_serializer="json"),
            )
            following = stages[index + 1] if index + 1 < len(stages) else None
            from_input = channels[index] is inputs
            self.app.agent(channels[index], name=f"detector-{name}", concurrency=1)(
                self._stage_loop(
                    meta.id,
                    name,
                    engine,
                    table,
                    admit=self._admission(meta.topics) if from_input else None,
                    forward=(following, channels[index + 1]) if following else None,
                )
            )

    def _router(
        self, stage: Stage[Any, Any], by_entity: faust.TopicT, admit: Callable[..., Any]
    ) -> Callable[..., Any]:
        async def route(stream: faust.StreamT[Any]) -> None:
            """Re-keys the stage's events by the entity it watches.

            By hand rather than with group_by, whose key function sees only the value: the
            message key must be checked against account_id before the event leaves its input
            partition. The event goes on as the bytes it came in (nothing to re-encode). In
            batches, like the stages: an event is acknowledged only once what it routed is
            acknowledged by the broker (Faust flushes its producer when a worker stops, then
            lets its agents run on until they are cancelled: what they sent after the flush
            and before the last commit was lost).
            """
            producer = self.app.producer
            name = by_entity.get_topic_name()
            async for batch in batches(stream, self.settings.batch_max_events):
                deliveries = []
                for item in batch:
                    value = await admit(item)
                    entity = stage.key(value) if value is not None else None
                    if entity is not None:
                        origin = [(ORIGIN_HEADER, str(item.message.partition).encode())]
                        deliveries.append(await producer.send(
                            name, entity.encode(), item.message.value, None, None, origin
                        ))  # fmt: skip
                for delivery in deliveries:
                    await delivery

        return route

    def _stage_loop(
        self,
        detector_id: str,
        stage_name: str,
        engine: StageEngine[Any, Any],
        table: Any,
        *,
        admit: Callable[..., Any] | None,
        forward: tuple[Stage[Any, Any], faust.TopicT] | None,
    ) -> Callable[..., Any]:
        metrics = self.metrics
        processing = metrics.processing_seconds.labels(detector_id)
        errors = metrics.detector_errors.labels(detector_id)
        latency = metrics.end_to_end_latency_seconds.labels(detector_id)
        self._tables.append((stage_name, table))
        partitions = self.settings.topic_partitions
        rebalanced = [True]
        self.app.on_partitions_assigned.connect(_flagger(rebalanced))
        # Whether the tables are restored since the last assignment.
        recovered = [False]
        self.app.on_partitions_assigned.connect(_flagger(recovered, False))
        self.app.on_rebalance_complete.connect(_flagger(recovered, True))

        # Offsets this stage has processed, for deciding when an input partition is fully
        # consumed (deferred decisions, DeferringStage), and the lock that keeps the timer
        # which makes them while the stream is quiet from interleaving with a batch.
        processed: dict[TP, int] = {}
        stable: dict[TP, tuple[int | None, float]] = {}  # end offset, since when
        grace = self.settings.complete_grace_seconds
        lock: list[asyncio.Lock] = []
        queues: list[Any] = []

        async def run(stream: faust.StreamT[Any]) -> None:
            """Feeds one detector stage; findings go to daylight.alerts.

            Events are taken in batches: as many as are already waiting (up to the batch
            size), so an idle stream handles each event at once and a backlog amortises the
            round trips. A batch's events are acknowledged (their offsets become committable)
            only once its outputs, then its state changes, are acknowledged by the broker.
            """
            queues.append(stream.channel.queue)  # type: ignore[attr-defined]
            async for batch in batches(stream, self.settings.batch_max_events):
                async with _lock(lock):
                    await process(batch)

        def adopt_restored() -> None:
            """After a rebalance: the keys restored from the changelog join the expiry and
            timer indexes, and what this stage had processed is forgotten."""
            rebalanced[0] = False
            processed.clear()
            engine.adopt(table.items(), lambda key: partition_for(key, partitions))

        async def caught_up(partition: int) -> list[str]:
            """The stage's input topics consumed to their end on `partition`: every offset up
            to the end offset the broker gives now has been through this stage, and that end
            has not moved for the grace period (a producer mid-stream, or retrying after a
            broker restart, can still deliver an older event on another topic)."""
            tps = [TP(topic, partition) for topic in engine.sources]
            try:
                ends = await asyncio.to_thread(self._end_offsets, tps)
            except Exception:  # the broker cannot say now: nothing counts as complete
                return []
            now = time.monotonic()
            idle = all(queue.empty() for queue in queues)
            topics_done = []
            for tp in tps:
                end = ends.get(tp)
                if end is None:
                    continue
                if stable.get(tp, (None, 0.0))[0] != end:
                    stable[tp] = (end, now)
                if now - stable[tp][1] < grace:
                    continue
                if tp in processed:
                    reached = processed[tp]
                elif idle:  # nothing of it read since the start: read up to our position
                    position = self._position_now(tp)
                    if position is None:
                        continue
                    reached = position
                else:
                    continue
                if reached >= end:
                    topics_done.append(tp.topic)
            return topics_done

        async def release(writes: PendingWrites, deliveries: list[Any]) -> None:
            """Deferred decisions whose input is now complete (DeferringStage)."""
            for partition in engine.pending():
                done = await caught_up(partition)
                writes.partition = partition
                current = _PartitionOnly(partition)  # RocksDB reads look in its partition
                token = _current_event.set(weakref.ref(current))  # type: ignore[arg-type]
                try:
                    outputs = engine.release(writes, partition, done)
                finally:
                    _current_event.reset(token)
                await emit(outputs, deliveries, None, partition)

        async def emit(
            outputs: list[Any], deliveries: list[Any], at: float | None, origin: int
        ) -> None:
            for output in outputs:
                if forward is not None:
                    stage, topic = forward
                    entity = stage.key(output)
                    if entity is not None:
                        header = [(ORIGIN_HEADER, str(origin).encode())]
                        deliveries.append(
                            await topic.send(key=entity.encode(), value=output, headers=header)
                        )
                    continue
                finding = output.to_finding()
                deliveries.append(
                    await self.alerts.send(
                        key=finding.account_id.encode(), value=encode_finding(finding)
                    )
                )
                metrics.findings.labels(detector_id, finding.severity.lower()).inc()
                if at is not None:
                    latency.observe(max(0.0, time.time() - at))

        async def process(batch: list[EventT[Any]]) -> None:
            # The stage writes into a buffer; the table changes only once every output is
            # acknowledged by the broker, then every changelog record. A crash in between
            # re-processes the events against the old state and re-sends the same outputs
            # (same uids), instead of leaving a state that says "reported" for a finding
            # that never left.
            writes = PendingWrites(table)
            deliveries: list[Any] = []
            for event in batch:
                message = event.message
                value = await admit(event) if admit is not None else event.value
                tp = TP(message.topic, message.partition)
                processed[tp] = max(processed.get(tp, 0), message.offset + 1)
                if not isinstance(value, EventBase):
                    continue
                if rebalanced[0]:
                    adopt_restored()
                    processed[tp] = message.offset + 1
                started = time.perf_counter()
                # The stream set the batch's last event as current; RocksDB reads look in
                # the partition of the current event.
                _current_event.set(weakref.ref(event))
                writes.partition = message.partition
                try:
                    outputs = engine.process(writes, value, message.partition, _source(message))
                except Exception as exc:  # one bad event never stops the stream
                    errors.inc()
                    log.exception("%s failed on event %s", detector_id, value.event_id)
                    await self._dead_letter(event, "detector_error", f"{detector_id}: {exc!r}")
                    continue
                processing.observe(time.perf_counter() - started)
                await emit(outputs, deliveries, message.timestamp, message.partition)
            if engine.deferring is not None:
                await release(writes, deliveries)
            for delivery in deliveries:
                await delivery
            await writes.persist(self.app.producer)

        if engine.deferring is not None:

            async def release_when_quiet() -> None:
                """Every second: a stream that went quiet still makes its deferred decisions
                once its input is fully consumed."""
                if not engine.pending() and not rebalanced[0]:
                    return
                if rebalanced[0] and not recovered[0]:
                    return  # the tables are being restored
                async with _lock(lock):
                    if rebalanced[0]:
                        # No event since the rebalance (a partition taken over fully read):
                        # its pending decisions are indexed here, or they would wait for an
                        # event that may never come.
                        adopt_restored()
                    writes = PendingWrites(table)
                    deliveries: list[Any] = []
                    await release(writes, deliveries)
                    for delivery in deliveries:
                        await delivery
                    await writes.persist(self.app.producer)

            self.app.timer(1.0, name=f"daylight-release-{stage_name}")(release_when_quiet)

        return run


class PendingWrites(MutableMapping[str, Any]):
    """A write buffer over a Faust table: reads see the buffered writes; `persist` writes
    the changelog, waits for the broker to acknowledge it, then updates the local store.

    Faust's own `table[key] = value` queues the changelog record in a producer buffer that an
    offset commit does not reliably wait for, so a crash could commit an event whose state
    change never reached the changelog. Here the record is sent and awaited like any output,
    once per key per batch.
    """

    _DELETED = object()

    def __init__(self, table: Any) -> None:
        self._table = table
        self._writes: dict[str, tuple[Any, int]] = {}
        # What the batch read, as copies: a stage that changes its state in place changes
        # the copy, and the table only once `persist` has the changelog acknowledged. (Given
        # the table's own object, a batch abandoned in a rebalance left "reported" in
        # memory for a finding never sent: the re-read event then found nothing to report.)
        self._read: dict[str, Any] = {}
        #: The partition of the keys written now: the changelog partition they go to.
        self.partition: int | None = None

    def __getitem__(self, key: str) -> Any:
        if key in self._writes:
            value = self._writes[key][0]
            if value is self._DELETED:
                raise KeyError(key)
            return value
        copied = self._read.get(key, self._DELETED)
        if copied is self._DELETED:
            copied = self._read[key] = _clone(self._table[key])
        return copied

    def get(self, key: str, default: Any = None) -> Any:
        try:
            return self[key]
        except KeyError:
            return default

    def __contains__(self, key: object) -> bool:
        if isinstance(key, str) and key in self._writes:
            return self._writes[key][0] is not self._DELETED
        return key in self._table

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

    async def persist(self, producer: Any) -> None:
        table = self._table
        topic = table.changelog_topic
        changelog = topic.get_topic_name()
        sent = []
        for key, (value, partition) in self._writes.items():
            # Serialised as the table's own writes are, so that recovery reads them back.
            raw_key = topic.prepare_key(key, table.key_serializer)[0]
            raw_value = (
                None
                if value is self._DELETED
                else topic.prepare_value(value, table.value_serializer)[0]
            )
            sent.append(await producer.send(changelog, raw_key, raw_value, partition, None, None))
        written: dict[TP, int] = {}
        for record in sent:
            metadata = await record
            tp = TP(metadata.topic, metadata.partition)
            written[tp] = max(written.get(tp, -1), metadata.offset)
        data = table.data
        for key, (value, partition) in self._writes.items():
            # The RocksDB store files a key under the partition of the current event.
            current = _PartitionOnly(partition)
            _current_event.set(weakref.ref(current))  # type: ignore[arg-type]
            if value is self._DELETED:
                if key in data:
                    del data[key]
            else:
                data[key] = value
        for tp, offset in written.items():  # what RocksDB holds, so a restart reads on from it
            data.set_persisted_offset(tp, offset)
        self._writes.clear()
        self._read.clear()


def _clone(value: Any) -> Any:
    """A copy of a state as tables hold it (dicts and lists of JSON values)."""
    kind = type(value)
    if kind is dict:
        return {key: _clone(item) for key, item in value.items()}
    if kind is list:
        return [_clone(item) for item in value]
    return value


class _PartitionOnly:
    """What the RocksDB store reads of the current event: its message's partition."""

    def __init__(self, partition: int) -> None:
        self.message = self
        self.partition = partition


def _lock(holder: list[asyncio.Lock]) -> asyncio.Lock:
    """One lock per stage, made on the event loop that uses it."""
    if not holder:
        holder.append(asyncio.Lock())
    return holder[0]


#: On a repartitioned event: the input partition it was read from. A repartition topic mixes
#: every input partition, which a backlog or a re-read after a crash or a rebalance drains
#: days apart: the stage's event-time watermark is then the slowest input partition's, not
#: the newest event's, so no state is dropped while an input partition still has events
#: for it.
ORIGIN_HEADER = "daylight-from-partition"


async def batches(stream: faust.StreamT[Any], most: int) -> AsyncIterator[list[EventT[Any]]]:
    """The events of `stream` in batches: as many as are already waiting (up to `most`), so
    an idle stream hands on each event at once and a backlog amortises the round trips.

    Faust's own acknowledgement is off: a batch's events are acknowledged (their offsets
    become committable) only once the caller, having sent what they produce and waited for
    the broker's acknowledgements, asks for the next batch. A batch the caller abandons (an
    exception, a cancellation when the worker stops) is never acknowledged and is read
    again. Faust flushes its producer when a worker stops, then lets its agents run on until
    they are cancelled: what an agent sent after the flush and acknowledged at once was
    lost, with its offset committed."""
    stream.enable_acks = False
    queue = stream.channel.queue  # type: ignore[attr-defined]
    batch: list[EventT[Any]] = []
    async for event in stream.events():
        batch.append(event)
        if len(batch) < most and not queue.empty():
            continue
        yield batch
        for done in batch:
            await stream.ack(done)
        batch = []


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
