"""No finding lost, none invented: crashes, rebalances, broker restarts, duplicates, disorder.

Every test compares the open findings on daylight.alerts, by uid with the accounts each names
and its highest severity, with a replay of the same events (`daylight replay`'s code): equal
sets mean nothing lost and nothing invented; re-deliveries may repeat a message, never open a
new uid (a case opened provisionally under another uid is closed as superseded).
"""

from __future__ import annotations

import os
import random
import subprocess
import time
from datetime import datetime
from pathlib import Path

import orjson
import pytest

from tests.conftest import DAYLIGHT, ROOT, read_topic, worker_process
from tests.reliability.conftest import (
    Broker,
    World,
    alerts_until,
    assert_same_findings,
    cases_until,
    consuming,
    make_world,
    open_cases,
    wait_process,
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
        produce(own_broker, small_world.path)
        findings_seen(own_broker, len(small_world.reference) // 4)
        first["process"].kill()  # SIGKILL: no flush, no commit, no goodbye
        first["process"].wait()
    with worker_process(tmp_path, app_id="crash", **own_broker.env):
        alerts = alerts_until(own_broker, small_world)
        cases = cases_until(own_broker, small_world.cases)
    # Strict: nothing lost, nothing invented (docs/RELIABILITY.md, "stall": both its paths
    # fixed, the buffer clear after recovery's seek and the fetch loop's read mark).
    assert_same_findings(alerts, small_world)
    assert open_cases(cases) == small_world.cases


def test_rebalance_when_one_of_two_workers_stops(own_broker: Broker, small_world: World,
                                                 tmp_path: Path) -> None:  # fmt: skip
    with worker_process(tmp_path, app_id="pair", **own_broker.env) as first, \
            worker_process(tmp_path, app_id="pair", DAYLIGHT_DATA_DIR=str(tmp_path / "second"),
                           **own_broker.env) as second:  # fmt: skip
        # Both in the group, each with its partitions, before any event.
        assert consuming(first["metrics_port"]) and consuming(second["metrics_port"])
        time.sleep(3)
        produce(own_broker, small_world.path)
        findings_seen(own_broker, len(small_world.reference) // 4)
        second["process"].terminate()  # a deploy stops one worker: its partitions move
        second["process"].wait(timeout=60)
        alerts = alerts_until(own_broker, small_world)
        cases = cases_until(own_broker, small_world.cases)
        assert first["process"].poll() is None
    # Strict (docs/RELIABILITY.md, "Findings lost in a rebalance": every cause found is
    # fixed): the replay's findings, and its cases, each with the replay's accounts.
    assert_same_findings(alerts, small_world)
    assert open_cases(cases) == small_world.cases


@pytest.fixture(scope="module")
def medium_world(tmp_path_factory: pytest.TempPathFactory) -> World:
    """Large enough that publishing it takes a while: 150 accounts over 4 days."""
    return make_world(tmp_path_factory.mktemp("medium"), seed=5, accounts=150, days=4, teams=1)


def test_broker_restart_mid_stream(own_broker: Broker, medium_world: World,
                                   tmp_path: Path) -> None:  # fmt: skip
    with worker_process(tmp_path, app_id="restart", **own_broker.env) as worker:
        # The fault is a broker restart mid-stream, not during the worker's start-up.
        assert consuming(worker["metrics_port"]), worker["log"].read_text()[-2000:]
        producer = subprocess.Popen(
            [DAYLIGHT, "produce", str(medium_world.path)],
            env={**os.environ, **own_broker.env},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            cwd=ROOT,
        )
        time.sleep(1.5)  # the producer and the worker are both mid-stream
        own_broker.local.stop()
        time.sleep(3)
        own_broker.local.start()
        assert wait_process(producer, timeout=240) == 0, producer.stderr.read()  # type: ignore[union-attr]
        alerts = alerts_until(own_broker, medium_world, timeout=240)
        assert worker["process"].poll() is None, "the worker must ride out the restart"
    assert_same_findings(alerts, medium_world)


def test_duplicates_and_five_minutes_of_disorder_add_no_finding(
    own_broker: Broker, small_world: World, tmp_path: Path
) -> None:
    """Each event published twice for a tenth of them, and the stream shuffled by up to
    5 minutes of event time: the same findings as the clean replay, none more."""
    rng = random.Random(42)
    events = small_world.path.read_bytes().splitlines()
    noisy: list[tuple[float, bytes]] = []
    for line in events:
        at = datetime.fromisoformat(orjson.loads(line)["occurred_at"].replace("Z", "+00:00"))
        noisy.append((at.timestamp() + rng.uniform(0, 300), line))
        if rng.random() < 0.1:
            noisy.append((at.timestamp() + rng.uniform(0, 300), line))
    noisy.sort(key=lambda item: item[0])
    messy = tmp_path / "messy.jsonl"
    messy.write_bytes(b"\n".join(line for _, line in noisy) + b"\n")
    with worker_process(tmp_path, app_id="messy", **own_broker.env):
        produce(own_broker, messy)
        alerts = alerts_until(own_broker, small_world)
    assert_same_findings(alerts, small_world)
    # A growing case is updated once per size it reaches, never twice for one size.
    sent = [(f["finding_info"]["uid"], f["activity_id"], f.get("count"))
            for f in alerts]  # fmt: skip
    assert len(sent) == len(set(sent)), "a duplicate event re-sent a finding"
