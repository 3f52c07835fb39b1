"""The Faust app: the input topics and the one agent that reads them, the detector stages
(streams.stages), the repartition topics and their agents, the case agent."""

from __future__ import annotations

import asyncio
import logging
import ssl
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any, cast

import faust
from faust.types import TP, EventT
from prometheus_client import CollectorRegistry, Histogram
from prometheus_client import Counter as MetricCounter

from detectors import DETECTOR_IDS
from detectors.core.base import Detector, Stage
from detectors.core.casework import CaseSettings
from detectors.core.engine import StageEngine
from detectors.core.parallel import partition_of as partition_for
from schemas.events import EventBase
from streams import fetch, topics
from streams.caseagent import add_case_agent
from streams.dlq import dead_letter_headers
from streams.metrics import CountTally, HistogramTally, Metrics, QuietMonitor, SkippedEvents
from streams.outbox import Outbox
from streams.settings import Settings
from streams.stages import (
    ORIGIN_HEADER,
    Outputs,
    PendingWrites,
    StageUnit,
    batches,
    lock_of,
    persist_all,
    state_table,
)
from streams.wire import CODEC_NAME, RawKeySchema, Rejected, register, register_model

__all__ = ["Daylight", "PendingWrites", "admissible", "partition_for", "refusal"]

log = logging.getLogger("daylight")
_MAX_MESSAGE_BYTES = 4 * 1024 * 1024
#: A partition behind its end whose committed offset and position hold this long is logged.
_STOPPED_AFTER_SECONDS = 20.0


def _drained(daylight: Any) -> bool:
    """No recovery running, the consumer's flow active and every stream buffer empty (what
    the fetch guards below wait for before they act)."""
    app = daylight.app
    if app.in_recovery or not getattr(app.consumer, "flow_active", False):
        return False
    return bool(daylight._queues) and all(queue.empty() for queue in daylight._queues)


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
        self._tallies: list[HistogramTally | CountTally] = []
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
            broker_commit_interval=settings.commit_interval_seconds,
            stream_buffer_maxsize=settings.stream_buffer_events,
            consumer_max_fetch_size=settings.fetch_partition_bytes,
            broker_max_poll_records=settings.fetch_max_records,
            web_enabled=False,
            autodiscover=False,
            monitor=QuietMonitor(),
            key_serializer="raw",
            value_serializer="raw",
        )
        fetch.install(
            self.app,
            inline=settings.fetch_loop == "daylight",
            aligned_topics=frozenset(topics.INPUT_TOPICS),
            read_ahead_ms=settings.read_ahead_ms,
        )
        # The topics this worker reads: its detectors' (every input topic for a worker with
        # every detector, or none, so that bad input on any topic is dead-lettered).
        read = {topic for detector in detectors for topic in detector.metadata.topics}
        complete = not detectors or {d.metadata.id for d in detectors} >= set(DETECTOR_IDS)
        self.inputs = {
            name: self.app.topic(
                name, schema=RawKeySchema(CODEC_NAME), partitions=settings.topic_partitions
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
        # The stages the input agent feeds, by topic, and the repartition topics it writes.
        self._input_units: dict[str, list[StageUnit]] = {}
        self._routes: dict[str, list[tuple[Stage[Any, Any], str]]] = {}
        #: Stages keyed by another entity that the input agent feeds in this process, by
        #: repartition topic, for the partitions of it this worker owns (`_owned`): their
        #: events then pay Faust's fetch, decoding and stream once, not twice.
        self._fed_here: dict[str, StageUnit] = {}
        self._owned: dict[str, frozenset[int]] = {}
        #: Revokes seen (a batch that fed a stage in process across one is not acknowledged).
        self.revokes = 0
        self._input_lock: list[asyncio.Lock] = []
        self._queues: list[Any] = []  # every agent's stream buffer (`_refetch_forgotten`)
        #: Agents inside a batch, since when (monotonic s), and each partition's committed
        #: offset and position with since when they hold (`_report_stopped`).
        self._busy: dict[str, float] = {}
        self._progress: dict[TP, tuple[tuple[int | None, int | None], float, bool]] = {}
        # Findings, changelog records, re-keyed events and cases go through librdkafka;
        # Faust's producer keeps what Faust sends and the dead-letter topic.
        self.outbox = Outbox(settings)
        self.app.on_partitions_revoked.connect(self._on_revoked)
        self.app.on_partitions_assigned.connect(self._on_assigned)
        self.app.on_before_shutdown.connect(self._close_outbox)
        self._offsets: Any = None  # a confluent-kafka client for end offsets, made on use
        self._offsets_lock = threading.Lock()  # asked from worker threads (asyncio.to_thread)
        self.app.timer(5.0, name="daylight-consumer-lag")(self._measure_lag)
        for detector in detectors:
            self._add_detector(detector)
        self._add_input_agent()
        if settings.cases:  # one case book per deployment, not one per group
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

    def outputs(self) -> Outputs:
        """A batch of records to send (findings, changelog records, re-keyed events)."""
        return self.outbox.batch()

    async def _on_revoked(self, *args: Any, **kwargs: Any) -> None:
        """A revoke: no stage is fed in process any more until the next assignment, and what
        was sent for the partitions that leave is delivered before they go."""
        self.revokes += 1
        self._owned = {}
        await self.outbox.flush()

    async def _on_assigned(self, *args: Any, **kwargs: Any) -> None:
        """The partitions of each repartition topic fed in process that this worker owns
        (with them, the partitions of their stage's table): the signal's argument after
        its sender, the whole new assignment."""
        assigned: set[TP] = args[1]
        self._owned = {
            name: frozenset(tp.partition for tp in assigned if tp.topic == name)
            for name in self._fed_here
        }

    async def _close_outbox(self, *args: Any, **kwargs: Any) -> None:
        """A stop: everything sent is delivered, then the producer goes."""
        await asyncio.to_thread(self.outbox.close)

    def tally(self, child: Histogram) -> HistogramTally:
        """A histogram series observed per event on the event loop and added to once per
        batch (`flush_tallies`)."""
        tally = HistogramTally(child)
        self._tallies.append(tally)
        return tally

    def count_tally(self, child: MetricCounter) -> CountTally:
        """A counter series counted per event and added to once per batch."""
        tally = CountTally(child)
        self._tallies.append(tally)
        return tally

    def flush_tallies(self) -> None:
        """What the per-event tallies gathered, into the metrics a scrape reads: before
        anything an event caused leaves the worker (a finding, a re-keyed event, a dead
        letter), so that whoever reads it then finds that event counted, at the end of each
        batch's events, and after a batch whatever its outcome."""
        for tally in self._tallies:
            tally.flush()

    def _admit(self) -> Callable[..., Any]:
        """What the input agent does with each event, once: counts it, measures its
        event-time lag; returns None, or for a refused event why (the caller dead-letters it)."""
        # Counted per event, added to the metrics once per batch (`flush_tallies`).
        consumed = {
            name: self.count_tally(self.metrics.events_consumed.labels(name))
            for name in self.inputs
        }
        lag = {
            name: self.tally(self.metrics.event_time_lag_seconds.labels(name))
            for name in self.inputs
        }

        def admit(event: EventT[Any]) -> tuple[str, str] | None:
            """None for an event admitted, else why it goes to the dead-letter topic."""
            topic = event.message.topic
            consumed[topic].inc()
            problem = refusal(event)
            if problem is None:
                value = cast(EventBase, event.value)
                # occurred_ms is worked out once per event, and the stages read it too
                lag[topic].observe(max(0.0, time.time() - value.occurred_ms / 1000))
            return problem

        return admit

    def _add_input_agent(self) -> None:
        """One agent reads every input topic: each event is decoded, checked, counted and
        dead-lettered once, then handed to every stage keyed by the account that reads its
        topic (in this process, in batches) and re-keyed to the repartition topic of every
        stage keyed by another entity. A batch's events are acknowledged (their offsets
        become committable) only once every stage's outputs, the re-keyed events, then
        every stage's state changes are acknowledged by the broker."""
        if not self.inputs:
            return
        admit = self._admit()
        by_topic = self._input_units
        routes = self._routes
        units = list(dict.fromkeys(unit for found in by_topic.values() for unit in found))
        deferring = [unit for unit in units if unit.engine.deferring is not None]
        # Stages whose next stage, on a repartition topic, waits for its input to be complete.
        marking = [u for u in units if u.forward is not None and hasattr(u.forward[0], "release")]
        source = self.app.topic(*self.inputs, schema=RawKeySchema(CODEC_NAME),
                                partitions=self.settings.topic_partitions)  # fmt: skip

        fed_here = self._fed_here
        partitions = self.settings.topic_partitions
        # What a repartitioned event's header names: its topic and input partition.
        sources = {name: [f"{name}#{p}" for p in range(partitions)] for name in fed_here}
        abandon = [False]

        async def process(batch: list[EventT[Any]]) -> None:
            writes = {unit: unit.writes() for unit in (*units, *fed_here.values())}
            out = self.outputs()
            revokes = self.revokes
            owned = self._owned
            rekeyed = Counter[tuple[str, str]]()
            for event in batch:
                problem = admit(event)
                value: EventBase | None = None
                if problem is None:
                    value = cast(EventBase, event.value)
                else:
                    await self._dead_letter(event, *problem)
                message = event.message
                for unit in by_topic.get(message.topic, ()):
                    waiting = unit.handle(event, value, writes[unit], out)
                    if waiting is not None:
                        await waiting
                if value is None:
                    continue
                for stage, name in routes.get(message.topic, ()):
                    entity = stage.key(value)
                    if entity is None:
                        continue
                    target = partition_for(entity, partitions)
                    if target in owned.get(name, ()):
                        unit = fed_here[name]
                        source = sources[name][message.partition]
                        waiting = unit.handle_rekeyed(
                            event, value, writes[unit], out, target, source
                        )
                        rekeyed[name, "in_process"] += 1
                        if waiting is not None:
                            await waiting
                        continue
                    origin = [(ORIGIN_HEADER, str(message.partition).encode())]
                    await out.send(name, entity.encode(), message.value, None, origin)
                    rekeyed[name, "topic"] += 1
            self.flush_tallies()  # counted before the batch waits on the broker
            for (name, path), count in rekeyed.items():
                self.metrics.rekeyed_events.labels(name, path).inc(count)
            for unit in deferring:
                if unit.engine.pending():
                    await unit.release(writes[unit], out)
            if marking:
                read = {event.message.partition for event in batch}
                for unit in marking:
                    await unit.send_marks(read, out)
            await out
            await persist_all(self, list(writes.values()))
            if self.revokes != revokes and any(path == "in_process" for _, path in rekeyed):
                # A revoke came while a stage was fed in process: the partition of its table
                # may have moved to a worker that restored it before these state changes
                # were written. Not acknowledged, the events are read again after the
                # rebalance, and go to whoever owns that partition now.
                abandon[0] = True
                log.info("a batch that fed %s in process straddled a revoke: read again",
                         sorted(fed_here))  # fmt: skip

        async def run(stream: faust.StreamT[Any]) -> None:
            """Every input topic, in batches (`batches`)."""
            queue = stream.channel.queue  # type: ignore[attr-defined]
            for unit in units:
                unit.queues.append(queue)
            self._queues.append(queue)
            busy = self._busy
            async for batch in batches(stream, self.settings.batch_max_events, abandon):
                busy["input"] = time.monotonic()
                async with lock_of(self._input_lock):
                    try:
                        await process(batch)
                    finally:
                        self.flush_tallies()
                del busy["input"]

        self.app.agent(source, name="input", concurrency=1)(run)

    def _refetch_forgotten(self) -> None:
        """Fetch again a partition Faust stopped fetching and never took back.

        Faust stops fetching a partition whose stream buffer is under pressure and fetches it
        again when the buffer drains (mode's queue calls back, only from a `get` on an empty
        queue or a `get_nowait`). A restarted worker was seen stopped part-way through its
        backlog (docs/RELIABILITY.md, "stall"): every thread idle, the fetcher waiting for
        records, input and repartition partitions behind. Once every agent's buffer is empty
        and no recovery runs, a partition assigned to a stream that is neither fetched nor
        paused is fetched again, with a warning naming it."""
        consumer: Any = self.app.consumer
        if not _drained(self):
            return
        active = consumer._active_partitions
        if active is None:
            return
        paused = consumer._paused_partitions
        buffered = consumer._buffered_partitions
        for tp in consumer.assignment():
            if tp in active or tp in paused or consumer._is_changelog_tp(tp):
                continue
            log.warning(
                "%s fetched again: left out of fetching (%s) with every stream buffer empty",
                tp,
                "buffered" if tp in buffered else "not buffered",
            )
            buffered.discard(tp)
            active.add(tp)

    async def _measure_lag(self) -> None:
        """Every 5 s: consumer lag per topic read (the end offset the broker gives now minus
        our position: the last fetch's high watermark is stale for a partition no longer
        fetched), inputs and repartition topics, and the number of entities in each state
        table; a partition whose reading stopped short of its end is reported."""
        self._refetch_forgotten()
        consumer: Any = self.app.consumer
        streamed = sorted(tp for tp in consumer.assignment() if not consumer._is_changelog_tp(tp))
        try:
            ends = await asyncio.to_thread(self._end_offsets, streamed) if streamed else {}
        except Exception:  # the broker cannot say now: the last fetch's high watermarks
            ends = {}
        totals = dict.fromkeys(self.inputs, 0)
        positions: dict[TP, tuple[int | None, int | None]] = {}
        for tp in streamed:
            totals.setdefault(tp.topic, 0)  # inputs, and each detector's repartition topic
            position = self._position_now(tp)
            end = ends.get(tp, consumer.highwater(tp))
            positions[tp] = (position, end)
            if position is not None and end is not None:
                totals[tp.topic] += max(0, end - position)
        for topic, lag in totals.items():
            self.metrics.consumer_lag.labels(topic).set(lag)
        self._report_stopped(positions)
        for stage_name, table in self._tables:  # sized here, not per event: RocksDB counts keys
            self.metrics.state_entries.labels(stage_name).set(len(table))
        for stage_name, engine in self.engines.items():
            if engine.deferring is not None:
                self.metrics.deferred_decisions.labels(stage_name).set(engine.deferred())

    def _report_stopped(self, positions: dict[TP, tuple[int | None, int | None]]) -> None:
        """A partition behind its end whose committed offset has not moved for 20 s is
        logged once, with what the worker's fetching knows of it and which agents are inside
        a batch (docs/RELIABILITY.md, "A worker that stops reading after a restart")."""
        consumer: Any = self.app.consumer
        now = time.monotonic()
        committed = getattr(consumer, "_committed_offset", {})
        # A partition held back for being ahead of the others is waiting, not stuck.
        ahead: frozenset[TP] = getattr(consumer, "ahead", frozenset())
        for tp, (position, end) in positions.items():
            done = committed.get(tp)
            behind = end is not None and (done or 0) < end and tp not in ahead
            mark = (done, position)
            seen = self._progress.get(tp)
            if not behind or seen is None or seen[0] != mark:
                self._progress[tp] = (mark, now, False)
                continue
            if seen[2] or now - seen[1] < _STOPPED_AFTER_SECONDS:
                continue
            self._progress[tp] = (mark, seen[1], True)
            log.warning(
                "%s stopped short of its end for %.0f s: %s; agents in a batch: %s",
                tp,
                now - seen[1],
                self._fetch_state(tp, end),
                {name: round(now - since, 1) for name, since in self._busy.items()} or "none",
            )
            self._read_again(tp)

    def _read_again(self, tp: TP) -> None:
        """A partition whose committed offset stopped short of its end while every agent is
        idle, every stream buffer empty, no recovery running and the flow active: events
        after the commit were handed on and never acknowledged (Faust's commit then waits for
        them for ever, and their findings are never made). The one cause found, Faust's
        buffer clear at the end of a recovery, is closed (`stages.keep_live_events`); this
        guard stays for any other. The partition is read again from the committed offset, as
        a restart would: the same events twice give the same findings, and the commit moves
        on once they are acknowledged in order."""
        app = self.app
        consumer: Any = app.consumer
        if self._busy or not _drained(self):
            return
        committed = consumer._committed_offset.get(tp)
        if committed is None:
            return
        if not app.flow_control.is_active():
            # Every stream skips what reaches it while the app's flow control is held; with
            # no recovery running and the consumer's flow active nothing will resume it.
            log.warning("the streams' flow control was held with no recovery running: resumed")
            app.flow_control.resume()
        try:
            client = consumer._thread._ensure_consumer()
            client.seek(tp, committed)
        except Exception as exc:  # not assigned any more: its next owner reads from the commit
            log.warning("%s not read again: %r", tp, exc)
            return
        consumer.seeks = getattr(consumer, "seeks", 0) + 1  # what was fetched before is stale
        consumer._acked[tp] = []
        consumer._acked_index[tp] = set()
        consumer._read_offset[tp] = committed
        self.metrics.partitions_read_again.labels(tp.topic).inc()
        log.warning("%s read again from its committed offset %d", tp, committed)

    def _fetch_state(self, tp: TP, end: int | None) -> str:
        """What Faust and aiokafka hold about `tp`, in one line (`_report_stopped`)."""
        consumer: Any = self.app.consumer
        active = getattr(consumer, "_active_partitions", None)
        parts = [
            f"end {end}",
            f"committed {getattr(consumer, '_committed_offset', {}).get(tp)}",
            f"handed on {getattr(consumer, '_read_offset', {}).get(tp)}",
            f"fetched by Faust {active is None or tp in active}",
            f"paused {tp in getattr(consumer, '_paused_partitions', ())}",
            f"buffer full {tp in getattr(consumer, '_buffered_partitions', ())}",
            f"flow active {getattr(consumer, 'flow_active', None)}",
            f"streams' flow control active {self.app.flow_control.is_active()}",
            f"in recovery {self.app.in_recovery}",
            f"stream buffers {[queue.qsize() for queue in self._queues]}",
        ]
        # Which offsets hold the commit: the lowest acknowledged ones, and those a stream
        # took (tracked) and nobody acknowledged: an offset in neither never reached a
        # stream; one in the second reached a stream and was never acknowledged.
        acked = sorted(getattr(consumer, "_acked", {}).get(tp, ()))
        taken = sorted(
            message.offset
            for message in list(getattr(consumer, "_unacked_messages", ()))
            if message.tp == tp
        )
        parts.append(f"lowest acknowledged {acked[:5]} of {len(acked)}")
        parts.append(f"taken, unacknowledged {taken[:5]} of {len(taken)}")
        gaps = sorted(getattr(consumer, "_gap", {}).get(tp, ()))
        parts.append(f"gaps {[(gap.begin, gap.end - 1) for gap in gaps[:5]]} of {len(gaps)}")
        try:
            client = consumer._thread._ensure_consumer()
            state = client._subscription.subscription.assignment.state_value(tp)
            held = client._fetcher._records.get(tp)
            parts.append(
                f"aiokafka position {state.position if state.has_valid_position else None}"
                f" paused {state.paused} highwater {state.highwater}"
                f" records held {held is not None}"
            )
        except Exception as exc:  # not started, or no assignment now
            parts.append(f"aiokafka {exc!r}")
        return ", ".join(parts)

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
        from confluent_kafka import OFFSET_END, Consumer, KafkaException, TopicPartition

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
            # One ListOffsets request per broker for every partition: the latest offset is
            # what a timestamp of -1 (OFFSET_END) asks for.
            asked = [TopicPartition(tp.topic, tp.partition, OFFSET_END) for tp in tps]
            for answer in self._offsets.offsets_for_times(asked, timeout=2.0):
                if answer.error is not None or answer.offset < 0:
                    raise KafkaException(answer.error or "no end offset")
                ends[TP(answer.topic, answer.partition)] = int(answer.offset)
        except Exception as exc:
            log.warning("end offsets unknown (%s): asking with a new client next time", exc)
            client, self._offsets = self._offsets, None
            client.close()
            raise
        return ends

    async def _dead_letter(self, event: EventT[Any], reason: str, error: str) -> None:
        self.flush_tallies()  # what a reader of the dead-letter topic sees is counted
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
        """A unit per stage. Stage 0 keyed by the account is fed by the input agent; a stage
        keyed by another entity reads a repartition topic keyed by its entity (written by
        the input agent, or by the stage before it), through an agent of its own."""
        meta = detector.metadata
        partitions = self.settings.topic_partitions
        stages = detector.stages
        # The channel each stage reads: None for the input topics.
        channels: list[faust.TopicT | None] = []
        for index, stage in enumerate(stages):
            if index == 0 and stage.entity == "account":
                channels.append(None)
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
                    schema=RawKeySchema(serializer),
                    partitions=partitions,
                    internal=True,
                )
            )
        first = channels[0]
        if first is not None:
            for topic in meta.topics:
                self._routes.setdefault(topic, []).append((stages[0], first.get_topic_name()))
        for index, stage in enumerate(stages):
            name = meta.id if len(stages) == 1 else f"{meta.id}-{stage.entity}"
            channel = channels[index]
            if channel is None:
                sources = tuple(sorted(meta.topics))
                feeds = sources  # what holds a partition's watermark back: each input topic
            else:
                sources = tuple(sorted(channel.topics))
                # ... or for a repartition topic each input partition its events came from
                feeds = tuple(f"{sources[0]}#{origin}" for origin in range(partitions))
            engine = StageEngine(stage, sources=sources, feeds=feeds)
            self.engines[name] = engine
            table = state_table(self.app, f"{name}-state", partitions)
            self._tables.append((name, table))
            following = channels[index + 1] if index + 1 < len(stages) else None
            forward = (stages[index + 1], following) if following is not None else None
            if channel is None:
                unit = StageUnit(self, meta.id, name, engine, table, forward,
                                 lambda: lock_of(self._input_lock))  # fmt: skip
                for topic in meta.topics:
                    self._input_units.setdefault(topic, []).append(unit)
            elif index == 0 and engine.deferring is None:
                # Fed by the input agent for the partitions this worker owns, by its agent
                # for the rest: both under the input agent's lock, over one table.
                unit = StageUnit(self, meta.id, name, engine, table, forward,
                                 lambda: lock_of(self._input_lock))  # fmt: skip
                self._fed_here[channel.get_topic_name()] = unit
            else:
                holder: list[asyncio.Lock] = []
                unit = StageUnit(self, meta.id, name, engine, table, forward,
                                 lambda holder=holder: lock_of(holder))  # type: ignore[misc]  # fmt: skip
            if channel is not None:
                self.app.agent(channel, name=f"detector-{name}", concurrency=1)(
                    self._stage_agent(unit)
                )

    def _stage_agent(self, unit: StageUnit) -> Callable[..., Any]:
        async def run(stream: faust.StreamT[Any]) -> None:
            """Feeds one stage from its repartition topic, in batches (`batches`)."""
            unit.queues.append(stream.channel.queue)  # type: ignore[attr-defined]
            self._queues.append(stream.channel.queue)  # type: ignore[attr-defined]
            busy = self._busy
            async for batch in batches(stream, self.settings.batch_max_events):
                busy[unit.name] = time.monotonic()
                async with unit.lock():
                    writes = unit.writes()
                    out = self.outputs()
                    try:
                        for event in batch:
                            waiting = unit.handle(event, event.value, writes, out)
                            if waiting is not None:
                                await waiting
                    finally:
                        self.flush_tallies()
                    await unit.release(writes, out)
                    await out
                    await writes.persist(self)
                del busy[unit.name]

        return run
