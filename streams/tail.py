"""`daylight alerts tail`: reads findings from daylight.alerts."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any

from confluent_kafka import Consumer, KafkaError

from streams.topics import ALERTS

__all__ = ["tail_alerts"]


def tail_alerts(
    client_config: dict[str, Any],
    from_beginning: bool,
    idle_seconds: float | None,
    topic: str = ALERTS,
) -> Iterator[bytes]:
    """Yield alert values as they arrive; stop after `idle_seconds` without a new one."""
    consumer = Consumer(
        {
            **client_config,
            # A private group that commits nothing: tailing never moves a SOC consumer's offsets.
            "group.id": f"daylight-tail-{uuid.uuid4().hex[:12]}",
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest" if from_beginning else "latest",
        }
    )
    consumer.subscribe([topic])
    last = time.monotonic()
    try:
        while idle_seconds is None or time.monotonic() - last < idle_seconds:
            message = consumer.poll(0.5)
            if message is None:
                continue
            error = message.error()
            if error is not None:
                if error.code() == KafkaError._PARTITION_EOF:
                    continue
                raise RuntimeError(f"reading {topic}: {error.str()}")
            last = time.monotonic()
            value = message.value()
            if value is not None:
                yield value
    finally:
        consumer.close()
