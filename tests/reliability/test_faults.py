"""No finding lost, none invented: crashes, rebalances, broker restarts, duplicates, disorder.

Every test compares the findings on daylight.alerts, by (uid, activity), with a replay of the
same events (`daylight replay`'s code): equal sets mean nothing lost and nothing invented;
re-deliveries may repeat a message, never a new uid.
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest

from tests.conftest import DAYLIGHT, ROOT, read_topic, worker_process
from tests.reliability.conftest import (
    Broker,
    World,
    alerts_until,
    comparable,
    publish_profiles,
)

pytestmark = pytest.mark.integration


def produce(broker: Broker, path: Path) -> None:
    subprocess.run([DAYLIGHT, "produce", str(path)], env={**os.environ, **broker.env},
                   check=True, capture_output=True, cwd=ROOT)  # fmt: skip


def findings_seen(broker: Broker, at_least: int, timeout: float = 120) -> None:
    read_topic("daylight.alerts", lambda got: len(got) >= at_least, timeout=timeout,
               servers=broker.servers)  # fmt: skip


def test_worker_killed_mid_stream_then_restarted(own_broker: Broker, small_world: World,
                                                 tmp_path: Path) -> None:  # fmt: skip
    with worker_process(tmp_path, app_id="crash", **own_broker.env) as first:
        publish_profiles(own_broker, small_world, first["metrics_port"])
        subprocess.run(
            [DAYLIGHT, "produce", str(small_world.activity)],
            env={**__import__("os").environ, **own_broker.env},
            check=True,
            capture_output=True,
            cwd=ROOT,
        )
        findings_seen(own_broker, len(small_world.reference) // 4)
        first["process"].kill()  # SIGKILL: no flush, no commit, no goodbye
        first["process"].wait()
    with worker_process(tmp_path, app_id="crash", **own_broker.env):
        alerts = alerts_until(own_broker, small_world)
    assert comparable(alerts) == comparable(small_world.findings)


def test_rebalance_when_one_of_two_workers_stops(own_broker: Broker, small_world: World,
                                                 tmp_path: Path) -> None:  # fmt: skip
    with worker_process(tmp_path, app_id="pair", **own_broker.env) as first, \
            worker_process(tmp_path, app_id="pair", DAYLIGHT_DATA_DIR=str(tmp_path / "second"),
                           **own_broker.env) as second:  # fmt: skip
        time.sleep(5)  # both in the group before any event
        publish_profiles(own_broker, small_world, first["metrics_port"], second["metrics_port"])
        subprocess.run(
            [DAYLIGHT, "produce", str(small_world.activity)],
            env={**__import__("os").environ, **own_broker.env},
            check=True,
            capture_output=True,
            cwd=ROOT,
        )
        findings_seen(own_broker, len(small_world.reference) // 4)
        second["process"].terminate()  # a deploy stops one worker: its partitions move
        second["process"].wait(timeout=60)
        alerts = alerts_until(own_broker, small_world)
        assert first["process"].poll() is None
    assert comparable(alerts) == comparable(small_world.findings)
