"""`daylight produce`: publishes JSON Lines events to their topics, keyed by account_id."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import orjson
from confluent_kafka import Producer

from schemas.events import TOPIC_BY_TYPE

__all__ = ["ProduceReport", "produce_lines", "publish_paced", "route"]


@dataclass
class ProduceReport:
    sent: Counter[str] = field(default_factory=Counter)
    unroutable: list[tuple[int, str]] = field(default_factory=list)
    failed: int = 0


def route(line: bytes) -> tuple[str, bytes]:
    """(topic, key) of one JSON line; ValueError when it cannot be routed.

    No further validation: bad events are the workers' to dead-letter.
    """
    try:
        document = orjson.loads(line)
    except orjson.JSONDecodeError as exc:
        raise ValueError(f"not JSON: {exc}") from None
    if not isinstance(document, dict):
        raise ValueError("not a JSON object")
    event_type = document.get("type")
    topic = TOPIC_BY_TYPE.get(event_type) if isinstance(event_type, str) else None
    if topic is None:
        raise ValueError(f"unknown or missing type {event_type!r}")
    account_id = document.get("account_id")
    if not isinstance(account_id, str) or not account_id:
        raise ValueError("missing account_id (the message key)")
    return topic, account_id.encode()


def produce_lines(
    client_config: dict[str, Any],
    lines: Iterable[bytes],
    on_progress: Callable[[int], None] | None = None,
) -> ProduceReport:
    """Send every routable line; wait until the broker acknowledged all of them."""
    report = ProduceReport()
    producer = Producer(
        {
            **client_config,
            # Java-compatible murmur2, as Faust's aiokafka transport: topics stay co-partitioned.
            "partitioner": "murmur2_random",
            "linger.ms": 20,
            "enable.idempotence": True,
            "compression.type": "lz4",
            # Warnings such as a coordinator still loading right after a broker start are
            # retried by librdkafka; only errors are worth a line on the terminal.
            "log_level": 3,
        }
    )

    def delivered(error: Any, message: Any) -> None:
        if error is not None:
            report.failed += 1
        else:
            report.sent[message.topic()] += 1

    for number, raw in enumerate(lines, start=1):
        line = raw.strip()
        if not line:
            continue
        try:
            topic, key = route(line)
        except ValueError as exc:
            report.unroutable.append((number, str(exc)))
            continue
        while True:
            try:
                producer.produce(topic, value=line, key=key, on_delivery=delivered)
                break
            except BufferError:
                producer.poll(0.1)
        producer.poll(0)
        if on_progress is not None:
            on_progress(number)
    remaining = producer.flush(60)
    report.failed += remaining
    return report


def publish_paced(
    client_config: dict[str, Any], lines: Iterable[bytes], rate: float, console: Any
) -> int:
    """Publish events at `rate` per second, for dashboards to move as if the platform were live."""
    import time

    if rate <= 0:
        raise ValueError("rate must be positive")
    producer = Producer({**client_config, "partitioner": "murmur2_random", "log_level": 3})
    started = time.monotonic()
    sent = 0
    for line in lines:
        topic, key = route(line)
        producer.produce(topic, value=line, key=key)
        sent += 1
        ahead = sent / rate - (time.monotonic() - started)
        if ahead > 0:
            producer.poll(0)
            time.sleep(ahead)
        if sent % 1000 == 0:
            console.print(f"{sent} events published", highlight=False)
    producer.flush(60)
    return sent
