"""shared_ip's logins, for the partitions of its repartition topic this worker owns, reach the
stage in the input agent's batch (no second trip through Kafka); the others go to the topic;
a batch that fed the stage across a revoke is not acknowledged (it is read again)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest
from faust.events import Event
from faust.types import TP
from faust.types.tuples import Message
from mode.utils.queues import FlowControlEvent, ThrowableQueue

from detectors import all_detectors
from detectors.core.parallel import partition_of
from schemas.codec import decode_event
from streams.app import Daylight
from streams.settings import load_settings

IPS = [f"203.0.113.{n}" for n in range(1, 13)]


class _Outputs:
    """Records what a batch sends; the broker acknowledges at once."""

    def __init__(self, sent: list[tuple[str, bytes | None, int | None]]) -> None:
        self._sent = sent
        self.offsets: dict[tuple[str, int], int] = {}

    async def send(self, topic: str, key: bytes | None, value: bytes | None,
                   partition: int | None = None, headers: Any = None) -> None:  # fmt: skip
        self._sent.append((topic, key, partition))
        if partition is not None:
            self.offsets[topic, partition] = self.offsets.get((topic, partition), -1) + 1

    async def send_all(self, topic: str, records: Any, headers: Any = None) -> None:
        for key, value, partition in records:
            await self.send(topic, key, value, partition)

    def __await__(self) -> Any:
        return asyncio.sleep(0).__await__()


class _Stream:
    """The input agent's stream over a list of events: one batch, then what was acked."""

    def __init__(self, app: Any, events: list[Event]) -> None:
        self.app = app
        self.channel = type(
            "Channel", (), {"queue": ThrowableQueue(flow_control=FlowControlEvent())}
        )()
        self.enable_acks = True
        self._events = events
        self.acked: list[int] = []

    async def events(self) -> AsyncIterator[Event]:
        for event in self._events:
            yield event

    async def ack(self, event: Event) -> bool:
        self.acked.append(event.message.offset)
        return True


def _login(offset: int, ip: str) -> Event:
    raw = orjson.dumps({
        "event_id": f"e{offset}", "type": "login", "occurred_at": "2026-03-20T07:00:00Z",
        "account_id": f"acct-{offset}", "ip": ip,
        "geo": {"country": "US", "lat": 40.7, "lon": -74.0, "city": "New York"},
    })  # fmt: skip
    message = Message("platform.logins", 0, offset, 0.0, 0, {}, f"acct-{offset}".encode(), raw,
                      None, generation_id=1)  # fmt: skip
    return Event(None, message.key, decode_event(raw), {}, message)  # type: ignore[arg-type]


def _worker(monkeypatch: pytest.MonkeyPatch) -> tuple[Daylight, list[Any], str]:
    monkeypatch.setenv("DAYLIGHT_DETECTORS", "shared_ip")
    daylight = Daylight(
        load_settings(), [d for d in all_detectors() if d.metadata.id == "shared_ip"]
    )
    sent: list[Any] = []
    monkeypatch.setattr(daylight, "outputs", lambda: _Outputs(sent))
    (topic,) = daylight._fed_here
    return daylight, sent, topic


def _drain(daylight: Daylight, stream: _Stream) -> None:
    agent = next(a for a in daylight.app.agents.values() if a.name.endswith("input"))
    asyncio.run(agent.fun(stream))


def test_owned_partitions_are_fed_in_process_the_others_sent(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    daylight, sent, topic = _worker(monkeypatch)
    partitions = daylight.settings.topic_partitions
    owned = {0, 1, 2}
    asyncio.run(daylight._on_assigned(daylight.app, {TP(topic, p) for p in owned}))
    events = [_login(offset, ip) for offset, ip in enumerate(IPS)]
    stream = _Stream(daylight.app, events)
    _drain(daylight, stream)

    here = {ip for ip in IPS if partition_of(ip, partitions) in owned}
    assert here and len(here) < len(IPS), "the test's IPs fall on both sides"
    rekeyed = [key.decode() for name, key, _ in sent if name == topic and key is not None]
    assert sorted(rekeyed) == sorted(set(IPS) - here)
    unit = daylight._fed_here[topic]
    assert set(unit.table.data.data) == here, "the stage's state: the IPs handed over here"
    count = daylight.metrics.rekeyed_events.labels
    assert count(topic, "in_process")._value.get() == len(here)
    assert count(topic, "topic")._value.get() == len(IPS) - len(here)
    assert stream.acked == list(range(len(IPS)))


def test_a_batch_fed_in_process_across_a_revoke_is_not_acknowledged(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    daylight, _sent, topic = _worker(monkeypatch)
    partitions = daylight.settings.topic_partitions
    asyncio.run(daylight._on_assigned(daylight.app, {TP(topic, p) for p in range(partitions)}))
    unit = daylight._fed_here[topic]
    process = unit.engine.process

    def revoked_meanwhile(*args: Any) -> Any:  # a rebalance while the batch is handled
        daylight.revokes += 1
        return process(*args)

    monkeypatch.setattr(unit.engine, "process", revoked_meanwhile)
    stream = _Stream(daylight.app, [_login(offset, ip) for offset, ip in enumerate(IPS[:3])])
    _drain(daylight, stream)
    assert stream.acked == [], "read again after the rebalance, by whoever owns it then"
