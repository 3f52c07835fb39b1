"""What Daylight sends, through librdkafka: findings, changelog records, re-keyed events.

Faust's own producer (aiokafka, pure Python) costs tens of microseconds a record on the event
loop; librdkafka batches, compresses and retries in its own threads. Faust keeps its producer
for what Faust sends itself (offset commits go through the consumer; the dead-letter topic).

A `Batch` gathers the records of one batch of events: `send` queues each one (the key is
partitioned by librdkafka's `murmur2_random`, the Java client's and aiokafka's murmur2, so a
re-keyed event lands where Faust would have put it), and `await batch` waits until the broker
has acknowledged every one of them, or raises the first delivery error. Delivery reports are
served by a thread that polls the producer and resolved on the event loop's thread, one future
per batch. What librdkafka holds is bounded (`queue.buffering.max.*`); when it is full, `send`
waits for room instead of failing. `flush` waits until nothing is in flight (a revoke, a stop).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Generator, Sequence
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Message, Producer

from streams.settings import Settings

__all__ = ["Batch", "Outbox"]

_MAX_MESSAGE_BYTES = 4 * 1024 * 1024


class Batch:
    """The records of one batch of events, and the offsets the broker gave them."""

    def __init__(self, outbox: Outbox) -> None:
        self._outbox = outbox
        self._loop = asyncio.get_running_loop()
        self._future: asyncio.Future[None] = self._loop.create_future()
        self._pending = 0
        self._sealed = False
        self._error: BaseException | None = None
        # Delivery reports come on the polling thread and, during `flush` (a revoke, a stop),
        # on the thread that flushes: two writers, so the counts stay under a lock.
        self._lock = threading.Lock()
        #: (topic, partition) -> highest offset written there by this batch (changelogs).
        self.offsets: dict[tuple[str, int], int] = {}

    async def send(
        self,
        topic: str,
        key: bytes | None,
        value: bytes | None,
        partition: int | None = None,
        headers: list[tuple[str, bytes]] | None = None,
    ) -> None:
        await self.send_all(topic, [(key, value, partition)], headers)

    async def send_all(
        self,
        topic: str,
        records: Sequence[tuple[bytes | None, bytes | None, int | None]],
        headers: list[tuple[str, bytes]] | None = None,
    ) -> None:
        """Queues (key, value, partition) records to one topic: a changelog's in one call, so
        that the coroutine and the lock are paid once, not per record. A full librdkafka
        queue is waited out; a record that cannot be queued (too large, unknown topic...)
        raises, and neither it nor the rest will be reported."""
        if not records:
            return
        with self._lock:
            self._pending += len(records)
        queued = 0
        try:
            producer = await self._outbox._ready()
            produce, delivered = producer.produce, self._delivered
            for key, value, partition in records:
                extra: dict[str, Any] = {}
                if partition is not None:
                    extra["partition"] = partition
                if headers:
                    extra["headers"] = headers
                while True:
                    try:
                        produce(topic, value, key, on_delivery=delivered, **extra)
                        break
                    except BufferError:  # librdkafka's queue is full: wait for room
                        await asyncio.sleep(0.005)
                queued += 1
        except BaseException:
            with self._lock:
                self._pending -= len(records) - queued
            raise

    def _delivered(self, error: KafkaError | None, message: Message) -> None:
        """librdkafka's delivery report (on the polling thread)."""
        with self._lock:
            self._pending -= 1
            if error is not None and self._error is None:
                self._error = KafkaException(error)
            elif error is None:
                where = (str(message.topic()), int(message.partition() or 0))
                offset = int(message.offset() or 0)
                if offset > self.offsets.get(where, -1):
                    self.offsets[where] = offset
            finished = self._sealed and (self._pending == 0 or self._error is not None)
        if finished:
            self._loop.call_soon_threadsafe(self._finish)

    def _finish(self) -> None:
        if self._future.done():
            return
        if self._error is not None:
            self._future.set_exception(self._error)
        else:
            self._future.set_result(None)

    def __await__(self) -> Generator[Any, None, None]:
        with self._lock:
            self._sealed = True
            finished = self._pending == 0 or self._error is not None
        if finished:
            self._finish()
        return self._future.__await__()


class Outbox:
    """Daylight's librdkafka producer, with the worker's connection and security settings."""

    def __init__(self, settings: Settings) -> None:
        self._config = {
            **settings.confluent_config(),
            "client.id": f"{settings.app_id}-outbox",
            "partitioner": "murmur2_random",
            "acks": "all",
            "enable.idempotence": True,  # retries keep each partition's order (changelogs)
            "linger.ms": settings.producer_linger_ms,
            "compression.type": "lz4",
            "message.max.bytes": _MAX_MESSAGE_BYTES,
            "queue.buffering.max.messages": 200_000,
            "queue.buffering.max.kbytes": 256 * 1024,
            "log_level": 3,
        }
        self._producer: Producer | None = None
        self._poller: threading.Thread | None = None
        self._stopping = threading.Event()
        self._closed = False

    def batch(self) -> Batch:
        return Batch(self)

    def _started(self) -> Producer:
        if self._producer is None:
            self._producer = Producer(self._config)
            self._stopping.clear()
            self._poller = threading.Thread(target=self._poll, name="daylight-outbox", daemon=True)
            self._poller.start()
        return self._producer

    def _poll(self) -> None:
        producer = self._producer
        assert producer is not None
        while not self._stopping.is_set():
            producer.poll(0.05)

    async def _ready(self) -> Producer:
        """The producer; for ever, once the outbox is closed: the worker is stopping and its
        agents are about to be cancelled, so the batch waits here, is never acknowledged, and
        is read again by the partition's next owner (raising would crash the agent and have
        Faust restart it while stopping)."""
        if self._closed:
            await asyncio.get_running_loop().create_future()
        return self._started()

    async def flush(self) -> None:
        """Wait until every record sent is acknowledged or failed (a revoke, a stop)."""
        if self._producer is not None:
            await asyncio.to_thread(self._producer.flush, 30.0)

    def close(self) -> None:
        """Everything sent is delivered (or has failed), then the producer goes."""
        self._closed = True
        if self._producer is not None:
            self._producer.flush(30.0)
            self._stopping.set()
            if self._poller is not None:
                self._poller.join(timeout=5)
            self._producer = None
