"""A worker's state outlives the worker: stopped after the first of two logins (its offset
committed), restarted, it must still know the first login when the second arrives."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import orjson
import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

from tests.conftest import bootstrap_servers, read_topic, wait_for, worker_process

pytestmark = pytest.mark.integration


def _login(account: str, n: int, at: str, country: str, lat: float, lon: float) -> bytes:
    return orjson.dumps(
        {
            "event_id": f"{account}-{n}",
            "type": "login",
            "occurred_at": at,
            "account_id": account,
            "ip": f"203.0.113.{n}",
            "geo": {"country": country, "lat": lat, "lon": lon},
        }
    )


def _produce(account: str, value: bytes) -> tuple[int, int]:
    producer = Producer({"bootstrap.servers": bootstrap_servers(), "partitioner": "murmur2_random"})
    where: list[tuple[int, int]] = []
    producer.produce(
        "platform.logins",
        key=account.encode(),
        value=value,
        on_delivery=lambda err, msg: where.append((msg.partition(), msg.offset())),
    )
    producer.flush(30)
    return where[0]


def _committed(group: str, partition: int) -> int:
    consumer = Consumer({"bootstrap.servers": bootstrap_servers(), "group.id": group})
    try:
        [tp] = consumer.committed([TopicPartition("platform.logins", partition)], timeout=10)
        return int(tp.offset)
    finally:
        consumer.close()


@pytest.mark.parametrize("store", ["memory", "rocksdb"])
def test_state_is_restored_after_a_restart(kafka: str, tmp_path: Path, store: str) -> None:
    app_id = f"restart-{store}-{uuid.uuid4().hex[:6]}"
    account = f"restart-{uuid.uuid4().hex[:8]}"
    env = {"app_id": app_id, "DAYLIGHT_STORE": store}
    with worker_process(tmp_path, **env) as first:
        partition, offset = _produce(
            account, _login(account, 1, "2026-05-01T08:00:00Z", "US", 40.71, -74.01)
        )
        # Only once the first login is committed does the second worker not read it again:
        # then only the restored state can remember it.
        assert wait_for(lambda: _committed(app_id, partition) > offset, timeout=120), first[
            "log"
        ].read_text()[-3000:]
    _produce(account, _login(account, 2, "2026-05-01T08:20:00Z", "KP", 39.02, 125.75))
    with worker_process(tmp_path, **env) as second:
        found: list[Any] = read_topic(
            "daylight.alerts",
            lambda got: any(m.key() == account.encode() for m in got),
            timeout=120,
        )
        log = second["log"].read_text()
    mine = [orjson.loads(m.value()) for m in found if m.key() == account.encode()]
    assert mine, f"no finding after the restart:\n{log[-3000:]}"
    assert mine[0]["finding_info"]["analytic"]["uid"] == "geo_velocity"
    assert {e["data"]["event_id"] for e in mine[0]["evidences"]} >= {f"{account}-1"}
    assert "Error in recovery" not in log
