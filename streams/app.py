"""The Faust app: input topics, the intake agent of each topic, one agent per detector."""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
import weakref
from collections import Counter
from collections.abc import Callable, Iterator, MutableMapping, Sequence
from typing import Any, cast

import faust
from aiokafka.partitioner import murmur2
from faust.streams import _current_event
from faust.types import TP, EventT
from prometheus_client import CollectorRegistry

from detectors import DETECTOR_IDS
from detectors.base import Detector, Stage
from detectors.casework import CaseSettings
from detectors.engine import StageEngine
from schemas.events import EventBase
from streams import topics
from streams.caseagent import add_case_agent
from streams.dlq import dead_letter_headers
from streams.metrics import Metrics, SkippedEvents
from streams.settings import Settings
from streams.stage import ORIGIN_HEADER, Route, StageUnit, _PartitionOnly, batch_agent
from streams.wire import CODEC_NAME, Rejected, register, register_model

__all__ = ["Daylight", "partition_for", "refusal"]

log = logging.getLogger("daylight")
_MAX_MESSAGE_BYTES = 4 * 1024 * 1024


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
        # One agent reads every input topic: each event is admitted once per worker (counted,
        # checked, dead-lettered when refused) and handed to every stage that reads its topic.
        self._units: dict[str, list[StageUnit]] = {}  # input topic -> stages it feeds
        self._routes: dict[str, list[Route]] = {}  # input topic -> re-keying for stages
        self.app.timer(5.0, name="daylight-consumer-lag")(self._measure_lag)
        for detector in detectors:
            self._add_detector(detector)
        intake = self.app.topic(
            *self.inputs,
            key_serializer="raw",
            value_serializer=CODEC_NAME,
            partitions=settings.topic_partitions,
        )
        batch_agent(self, intake, "intake", self._units, self._routes, self._admit)
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

    async def _admit(self, event: EventT[Any]) -> EventBase | None:
        """Each input event, once per worker: counted, checked, dead-lettered when refused;
        returns the event to process, or None."""
        topic = event.message.topic
        self.metrics.events_consumed.labels(topic).inc()
        problem = refusal(event)
        if problem is not None:
            await self._dead_letter(event, *problem)
            return None
        value = cast(EventBase, event.value)
        self.metrics.event_time_lag_seconds.labels(topic).observe(
            max(0.0, time.time() - value.occurred_at.timestamp())
        )
        return value

    async def _measure_lag(self) -> None:
        """Every 5 s: consumer lag per topic read (end of topic minus our position), inputs
        and repartition topics, and the number of entities in each state table."""
        consumer = self.app.consumer
        totals = dict.fromkeys(self.inputs, 0)
        for tp in consumer.assignment():
            if tp.topic.endswith("-changelog"):
                continue  # restored, not consumed
            totals.setdefault(tp.topic, 0)  # inputs, and each detector's repartition topic
            position = await consumer.position(tp)
            highwater = consumer.highwater(tp)
            if position is not None and highwater is not None:
                totals[tp.topic] += max(0, highwater - position)
        for topic, lag in totals.items():
            self.metrics.consumer_lag.labels(topic).set(lag)
        for stage_name, table in self._tables:  # sized here, not per event: RocksDB counts keys
            self.metrics.state_entries.labels(stage_name).set(len(table))

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
        await self.dlq.send(
            key=message.key,
            value=message.value,
            headers=dead_letter_headers(message, reason, error),
            timestamp=message.timestamp,
        )

    def _add_detector(self, detector: Detector) -> None:
        """A stage keyed by the account is fed by the intake agent; a stage keyed by
        something else reads a repartition topic keyed by its entity (written by a route of
        the intake, or by the stage before it) in an agent of its own."""
        meta = detector.metadata
        partitions = self.settings.topic_partitions
        stages = detector.stages
        # The repartition topic each stage reads (None: the input topics, through the intake).
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
                    key_serializer="raw",
                    value_serializer=serializer,
                    partitions=partitions,
                    internal=True,
                )
            )
        first = channels[0]
        if first is not None:
            for topic in meta.topics:
                self._routes.setdefault(topic, []).append(self._route(stages[0], first))
        for index, stage in enumerate(stages):
            name = meta.id if len(stages) == 1 else f"{meta.id}-{stage.entity}"
            channel = channels[index]
            sources = meta.topics if channel is None else tuple(sorted(channel.topics))
            engine = StageEngine(stage, sources=tuple(sorted(sources)))
            self.engines[name] = engine
            table = self.app.Table(
                f"{name}-state",
                default=None,
                partitions=partitions,
                schema=faust.Schema(key_type=str, key_serializer="raw", value_serializer="json"),
            )
            self._tables.append((name, table))
            following = channels[index + 1] if index + 1 < len(stages) else None
            forward = (stages[index + 1], following) if following is not None else None
            unit = StageUnit(self, meta.id, name, engine, table, forward)
            if channel is None:
                for topic in meta.topics:
                    self._units.setdefault(topic, []).append(unit)
            else:
                batch_agent(self, channel, f"detector-{name}", {channel.get_topic_name(): [unit]},
                            {}, None)  # fmt: skip

    def _route(self, stage: Stage[Any, Any], by_entity: faust.TopicT) -> Route:
        name = by_entity.get_topic_name()

        async def route(event: EventT[Any], value: EventBase) -> Any:
            """Re-keys an event by the entity the stage watches, as the bytes it came in
            (nothing to re-encode); the event is acknowledged once this is delivered."""
            entity = stage.key(value)
            if entity is None:
                return None
            origin = [(ORIGIN_HEADER, str(event.message.partition).encode())]
            return await self.app.producer.send(
                name, entity.encode(), event.message.value, None, None, origin
            )

        return route


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
        #: The partition of the keys written now: the changelog partition they go to.
        self.partition: int | None = None

    def __getitem__(self, key: str) -> Any:
        if key in self._writes:
            value = self._writes[key][0]
            if value is self._DELETED:
                raise KeyError(key)
            return value
        return self._table[key]

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


def _lock(holder: list[asyncio.Lock]) -> asyncio.Lock:
    """One lock per stage, made on the event loop that uses it."""
    if not holder:
        holder.append(asyncio.Lock())
    return holder[0]


def partition_for(key: str, partitions: int) -> int:
    """The partition Kafka's default (murmur2) partitioner gives `key`, as producers use."""
    return int(murmur2(key.encode()) & 0x7FFFFFFF) % partitions


def _flagger(flag: list[bool]) -> Callable[..., Any]:
    async def on_assigned(*args: Any, **kwargs: Any) -> None:
        flag[0] = True

    return on_assigned
