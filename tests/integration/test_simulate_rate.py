"""`daylight simulate --rate N` publishes the world to Kafka, paced. Runs after the pipeline
module (file order), whose worker reads the topics from the beginning."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.conftest import DAYLIGHT, read_topic, run

pytestmark = pytest.mark.integration


def test_simulate_publishes_at_the_rate_asked(kafka: str, tmp_path: Path) -> None:
    started = time.monotonic()
    result = run(
        [DAYLIGHT, "simulate", "--out", str(tmp_path), "--accounts", "10", "--days", "2",
         "--teams", "0", "--seed", "1", "--rate", "2000"],
        check=True,
    )  # fmt: skip
    elapsed = time.monotonic() - started
    events = (tmp_path / "events.jsonl").read_bytes().splitlines()
    assert f"published {len(events)} events at 2000/s" in result.stderr
    # Paced, not dumped: the run lasts at least as long as the rate implies.
    assert elapsed >= len(events) / 2000
    first_id = events[0].split(b'"event_id":"')[1].split(b'"')[0]
    seen = read_topic(
        "platform.accounts",
        lambda got: any(first_id in message.value() for message in got),
        timeout=30,
    )
    assert any(first_id in message.value() for message in seen)
