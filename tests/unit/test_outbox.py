"""The librdkafka outbox (streams/outbox.py) with a stand-in producer: a batch is settled only
once every record's delivery report is in, a full queue is waited out, a failed delivery
fails the batch, and a closed outbox never lets a batch through."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest
from confluent_kafka import KafkaError

from streams import outbox as outbox_module
from streams.settings import load_settings


class FakeMessage:
    def __init__(self, topic: str, partition: int, offset: int) -> None:
        self._where = (topic, partition, offset)

    def topic(self) -> str:
        return self._where[0]

    def partition(self) -> int:
        return self._where[1]

    def offset(self) -> int:
        return self._where[2]


class FakeProducer:
    """Queues records; `poll` reports them delivered (or failed, for topic "broken");
    the first `full` calls to produce find the queue full."""

    full = 2

    def __init__(self, config: dict[str, Any]) -> None:
        self.config = config
        self.queued: list[tuple[str, Any, int]] = []
        self.offsets: dict[tuple[str, int], int] = {}
        self.lock = threading.Lock()

    def produce(self, topic: str, value: Any, key: Any, on_delivery: Any, **extra: Any) -> None:
        if FakeProducer.full > 0:
            FakeProducer.full -= 1
            raise BufferError("Local: Queue full")
        with self.lock:
            self.queued.append((topic, on_delivery, extra.get("partition", 0)))

    def poll(self, timeout: float) -> int:
        with self.lock:
            queued, self.queued = self.queued, []
        for topic, report, partition in queued:
            offset = self.offsets[(topic, partition)] = self.offsets.get((topic, partition), -1) + 1
            error = KafkaError(KafkaError._MSG_TIMED_OUT) if topic == "broken" else None
            report(error, FakeMessage(topic, partition, offset))
        if not queued:
            threading.Event().wait(timeout)
        return len(queued)

    def flush(self, timeout: float) -> int:
        return self.poll(0)


@pytest.fixture
def outbox(monkeypatch: pytest.MonkeyPatch) -> outbox_module.Outbox:
    monkeypatch.setattr(outbox_module, "Producer", FakeProducer)
    FakeProducer.full = 2
    return outbox_module.Outbox(load_settings())


def test_a_batch_is_settled_once_every_record_is_delivered(outbox: outbox_module.Outbox) -> None:
    async def scenario() -> dict[tuple[str, int], int]:
        batch = outbox.batch()
        for number in range(5):  # the first two find the queue full and wait for room
            await batch.send("daylight.alerts", b"k", b"v%d" % number, partition=number % 2)
        await asyncio.wait_for(batch, 5)
        outbox.close()
        return batch.offsets

    assert asyncio.run(scenario()) == {("daylight.alerts", 0): 2, ("daylight.alerts", 1): 1}


def test_records_sent_all_at_once_settle_the_batch_once_delivered(
    outbox: outbox_module.Outbox,
) -> None:
    """A changelog's records in one call: the first two find the queue full and wait for room;
    the batch settles only once every record is delivered, with each partition's offset."""

    async def scenario() -> dict[tuple[str, int], int]:
        batch = outbox.batch()
        await batch.send("daylight.alerts", b"k", b"v")
        records = [(b"k%d" % n, None if n == 3 else b"v", n % 3) for n in range(7)]
        await batch.send_all("t-changelog", records)
        await batch.send_all("t-changelog", [])
        await asyncio.wait_for(batch, 5)
        outbox.close()
        return batch.offsets

    assert asyncio.run(scenario()) == {
        ("daylight.alerts", 0): 0,
        ("t-changelog", 0): 2,
        ("t-changelog", 1): 1,
        ("t-changelog", 2): 1,
    }


@pytest.mark.parametrize("all_at_once", [False, True])
def test_a_failed_delivery_fails_the_batch(outbox: outbox_module.Outbox, all_at_once: bool) -> None:
    """One record at a time, or a changelog's records in one call: a failed one fails all."""

    async def scenario() -> None:
        batch = outbox.batch()
        if all_at_once:
            await batch.send_all("broken", [(b"a", b"v", 0), (b"b", b"v", 1)])
        else:
            await batch.send("daylight.alerts", b"k", b"v")
            await batch.send("broken", b"k", b"v")
        try:
            await asyncio.wait_for(batch, 5)
        finally:
            outbox.close()

    with pytest.raises(outbox_module.KafkaException):
        asyncio.run(scenario())


def test_a_closed_outbox_holds_the_batch_until_the_worker_cancels_it(
    outbox: outbox_module.Outbox,
) -> None:
    """A stopping worker: what is sent after the close is never acknowledged (its events are
    read again by the partition's next owner), and the agent does not crash."""

    async def scenario() -> None:
        outbox.close()
        batch = outbox.batch()
        await asyncio.wait_for(batch.send("daylight.alerts", b"k", b"v"), 0.2)

    with pytest.raises(asyncio.TimeoutError):
        asyncio.run(scenario())
