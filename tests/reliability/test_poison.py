"""Poison input never stops a worker and is never lost: each lands in daylight.dlq with its
reason, and the good events around it still make their findings."""

from __future__ import annotations

import json
from pathlib import Path

import orjson
import pytest
from confluent_kafka import Producer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import metric_value, read_topic, wait_for, worker_process
from tests.reliability.conftest import Broker

pytestmark = pytest.mark.integration

LOGIN = {"event_id": "x", "type": "login", "occurred_at": "2026-03-20T07:00:00Z",
         "ip": "198.51.100.9"}  # fmt: skip


def nested(depth: int) -> bytes:
    return b'{"a":' * depth + b"1" + b"}" * depth


HAND_PICKED: list[tuple[bytes, str]] = [  # (value, reason); the key is added per message
    (b"\x00\x01\xfe\xff", "invalid_json"),
    (b"", "empty_value"),
    (b"{" + b" " * (1024 * 1024) + b"}", "invalid_event"),  # 1 MB
    (nested(5000), "invalid_json"),
    (b"[" * 3000 + b"]" * 3000, "invalid_json"),
    (orjson.dumps({**LOGIN, "event_id": 7}), "invalid_event"),
    (orjson.dumps({**LOGIN, "type": "wormhole"}), "unknown_type"),
    (orjson.dumps({**LOGIN, "ip": "10.0.0.256"}), "invalid_event"),
    (orjson.dumps({**LOGIN, "geo": {"country": "ZZ", "lat": 0, "lon": 0}}), "invalid_event"),
    (orjson.dumps({**LOGIN, "occurred_at": "2026-03-20 07:00:00"}), "invalid_event"),
    (b'"a string"', "not_an_object"),
]

# Values hypothesis invents: random bytes, and JSON documents of every shape that are not events.
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=20,
)
poison = st.one_of(
    st.binary(min_size=1, max_size=200).filter(lambda b: not b.strip().startswith((b"{", b"["))),
    json_values.map(lambda v: json.dumps(v).encode()),
    st.dictionaries(st.sampled_from(["type", "event_id", "account_id", "ip", "occurred_at"]),
                    json_values, max_size=5).map(lambda d: json.dumps(d).encode()),
)  # fmt: skip


@settings(max_examples=1, deadline=None, database=None,
          suppress_health_check=list(HealthCheck))  # fmt: skip
@given(generated=st.lists(poison, min_size=60, max_size=60))
def run_poison(generated: list[bytes], broker: Broker, tmp_path: Path) -> None:
    messages: list[tuple[str, bytes, bytes, str | None]] = []  # topic, key, value, reason
    for n, (value, reason) in enumerate(HAND_PICKED):
        account = f"hand-{n}"
        body = value
        if value.startswith(b'{"event_id"'):
            body = orjson.dumps({**orjson.loads(value), "account_id": account})
        messages.append(("platform.logins", account.encode(), body, reason))
    for n, value in enumerate(generated):
        topic = ("platform.logins", "platform.sessions", "platform.payouts")[n % 3]
        messages.append((topic, f"gen-{n}".encode(), value, None))
    # A key that is not the event's account_id.
    messages.append(("platform.logins", b"somebody-else",
                     orjson.dumps({**LOGIN, "account_id": "victim"}), "key_mismatch"))  # fmt: skip
    # The good pair after the poison: its finding proves the worker went on.
    good = [
        {**LOGIN, "event_id": "g1", "account_id": "survivor",
         "geo": {"country": "US", "lat": 40.7, "lon": -74.0, "city": "New York"}},
        {**LOGIN, "event_id": "g2", "account_id": "survivor", "occurred_at": "2026-03-20T07:25:00Z",
         "geo": {"country": "KP", "lat": 39.0, "lon": 125.7, "city": "Pyongyang"}},
    ]  # fmt: skip
    with worker_process(tmp_path, app_id="poison", **broker.env) as worker:
        producer = Producer({"bootstrap.servers": broker.servers, "partitioner": "murmur2_random",
                             "message.max.bytes": 2_000_000})  # fmt: skip
        for topic, key, value, _ in messages:
            producer.produce(topic, key=key, value=value)
        for event in good:
            producer.produce("platform.logins", key=b"survivor", value=orjson.dumps(event))
        assert producer.flush(30) == 0
        dead = read_topic("daylight.dlq", lambda got: len(got) >= len(messages), timeout=120,
                          servers=broker.servers)  # fmt: skip
        alerts = read_topic("daylight.alerts", lambda got: len(got) >= 1, timeout=60,
                            servers=broker.servers)  # fmt: skip
        consumed = metric_value(worker["metrics_port"], "daylight_events_consumed_total")
        assert wait_for(lambda: worker["process"].poll() is None, timeout=1)
    by_key = {message.key(): message for message in dead}
    for topic, key, value, reason in messages:
        assert key in by_key, f"{key!r} was lost"
        message = by_key[key]
        headers = dict(message.headers())
        assert message.value() == value and message.topic() == "daylight.dlq"
        assert headers["daylight.errors.topic"] == topic.encode()
        if reason is not None:
            assert headers["daylight.errors.exception.class.name"] == reason.encode(), key
    assert len(dead) == len(messages)  # only the poison, each once
    assert [orjson.loads(m.value())["resources"][0]["uid"] for m in alerts] == ["survivor"]
    assert consumed == len(messages) + len(good)


def test_poison_input(own_broker: Broker, tmp_path: Path) -> None:
    run_poison(broker=own_broker, tmp_path=tmp_path)
