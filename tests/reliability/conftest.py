"""Reliability tests: each runs on a Kafka broker of its own, so faults stay contained."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest

from detectors import all_detectors
from detectors.replay import replay
from detectors.simulate import lines, simulate
from streams.broker import LocalBroker
from tests.conftest import DAYLIGHT, free_port, metric_value, read_topic, run, wait_for

PROFILE_TYPES = (b'"type":"account_created"', b'"type":"identity_verified"')


@dataclass
class Broker:
    local: LocalBroker
    env: dict[str, str]

    @property
    def servers(self) -> str:
        return self.local.bootstrap


@pytest.fixture
def own_broker(tmp_path: Path) -> Iterator[Broker]:
    local = LocalBroker(
        port=free_port(),
        data_dir=tmp_path / "kafka",
        kafka_version=os.environ.get("DAYLIGHT_KAFKA_VERSION", "3.9.1"),
    )
    local.start()
    # A killed worker's partitions move once the group gives up on it: 10 s, not 30.
    env = {"DAYLIGHT_BOOTSTRAP_SERVERS": local.bootstrap, "DAYLIGHT_SESSION_TIMEOUT_SECONDS": "10"}
    try:
        run([DAYLIGHT, "topics", "create"], env=env, check=True)
        yield Broker(local, env)
    finally:
        local.stop()


@dataclass
class World:
    directory: Path
    profiles: Path
    activity: Path
    events: list[bytes]
    findings: list[dict[str, Any]]  # every finding of a replay of the same events

    @property
    def reference(self) -> set[tuple[str, int]]:
        return {(f["finding_info"]["uid"], f["activity_id"]) for f in self.findings}


def make_world(directory: Path, **shape: Any) -> World:
    directory.mkdir(parents=True, exist_ok=True)
    events = list(lines(simulate(**shape)))
    profiles = [e for e in events if any(t in e for t in PROFILE_TYPES)]
    activity = [e for e in events if not any(t in e for t in PROFILE_TYPES)]
    (directory / "profiles.jsonl").write_bytes(b"\n".join(profiles) + b"\n")
    (directory / "activity.jsonl").write_bytes(b"\n".join(activity) + b"\n")
    findings = [f.model_dump(mode="json") for f in replay(profiles + activity, all_detectors())]
    return World(directory, directory / "profiles.jsonl", directory / "activity.jsonl",
                 profiles + activity, findings)  # fmt: skip


@pytest.fixture(scope="session")
def small_world(tmp_path_factory: pytest.TempPathFactory) -> World:
    """About 60 accounts over 3 days with one team: findings from every detector."""
    return make_world(tmp_path_factory.mktemp("world"), seed=3, accounts=60, days=3, teams=1)


def identity(message: Any) -> tuple[str, int]:
    finding = orjson.loads(message.value())
    return finding["finding_info"]["uid"], finding["activity_id"]


def publish_profiles(broker: Broker, world: World, *metrics_ports: int) -> None:
    """Profiles first, and read, as on a live platform (README, "Event order")."""
    run([DAYLIGHT, "produce", str(world.profiles)], env=broker.env, check=True)
    count = world.profiles.read_bytes().count(b"\n")
    assert wait_for(
        lambda: sum(metric_value(port, "daylight_events_consumed_total",
                                 {"topic": "platform.accounts"}) for port in metrics_ports) >= count,
        timeout=120,
    )  # fmt: skip


def comparable(findings: list[dict[str, Any]]) -> dict[str, Any]:
    """What must be equal between a live run and the replay.

    By (uid, activity) for the detectors keyed by account, whose events keep their order in
    one partition. shared_ip is fed by every partition of platform.logins: when a worker drains
    a backlog (or re-reads one after a crash), which login of an IP it meets first can differ
    from the replay, and so can the day a case is filed under (its uid), when it closes, and
    how many accounts it had named at each update. What must hold is that the same IPs are
    reported (README, "Event order").
    """
    identities = {
        (f["finding_info"]["uid"], f["activity_id"])
        for f in findings
        if f["finding_info"]["analytic"]["uid"] != "shared_ip"
    }
    ips = {
        f["unmapped"]["ip"] for f in findings if f["finding_info"]["analytic"]["uid"] == "shared_ip"
    }
    return {"identities": identities, "shared_ip": ips}


def alerts_until(broker: Broker, world: World, timeout: float = 180) -> list[dict[str, Any]]:
    """Findings on daylight.alerts, read until they cover the replay's (or the timeout)."""
    want = comparable(world.findings)

    def complete(messages: list[Any]) -> bool:
        got = comparable([orjson.loads(m.value()) for m in messages])
        return want["identities"] <= got["identities"] and want["shared_ip"] <= got["shared_ip"]

    messages = read_topic(
        "daylight.alerts", complete, timeout=timeout, settle=3, servers=broker.servers
    )
    return [orjson.loads(m.value()) for m in messages]


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def wait_process(process: subprocess.Popen[Any], timeout: float) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        code = process.poll()
        if code is not None:
            return code
        time.sleep(0.2)
    raise AssertionError("process did not finish in time")


def assert_same_findings(alerts: list[dict[str, Any]], world: World) -> None:
    """Nothing invented, ever; nothing lost.

    One open defect is reported as xfail, with what is missing, never passed quietly: a
    shared_ip case not published within the wait after a fault (seen after a rebalance and a
    crash, not since the changelog fix). See docs/RELIABILITY.md.
    """
    live, reference = comparable(alerts), comparable(world.findings)
    assert live["identities"] <= reference["identities"], "a finding was invented"
    assert live["shared_ip"] <= reference["shared_ip"], "a shared_ip case was invented"
    lost = sorted(reference["identities"] - live["identities"])
    assert not lost, f"findings lost: {lost}"
    if live["shared_ip"] != reference["shared_ip"]:
        missing = sorted(reference["shared_ip"] - live["shared_ip"])
        pytest.xfail(f"known defect: shared_ip cases for {missing} not published after the fault")
