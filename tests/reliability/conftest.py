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
from detectors.core.casework import replay_cases
from detectors.core.replay import replay
from schemas.codec import encode_case
from simulator.simulate import lines, simulate
from streams.broker import LocalBroker
from tests.conftest import DAYLIGHT, free_port, read_topic, run, wait_for


@dataclass
class Broker:
    local: LocalBroker
    env: dict[str, str]

    @property
    def servers(self) -> str:
        return self.local.bootstrap


@pytest.fixture
def own_broker(tmp_path: Path) -> Iterator[Broker]:
    from streams.broker import BrokerError

    for attempt in range(3):
        local = LocalBroker(
            port=free_port(),
            data_dir=tmp_path / f"kafka-{attempt}",
            kafka_version=os.environ.get("DAYLIGHT_KAFKA_VERSION", "3.9.1"),
        )
        try:
            local.start()
            break
        except BrokerError as exc:
            # A free port can be taken between our asking and Kafka binding it (its
            # controller listens next to it): another port, not a failed test.
            if "Address already in use" not in str(exc) or attempt == 2:
                raise
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
    path: Path  # every event, all topics in time order: one file, as the platform's bus has it
    events: list[bytes]
    findings: list[dict[str, Any]]  # every finding of a replay of the same events

    @property
    def cases(self) -> dict[str, frozenset[str]]:
        """The open cases `daylight replay --cases` gives: uid -> accounts."""
        replayed = [orjson.loads(encode_case(c)) for c in replay_cases(self.findings)]
        return open_cases(replayed)

    @property
    def reference(self) -> set[tuple[str, int]]:
        return {(f["finding_info"]["uid"], f["activity_id"]) for f in self.findings}


def make_world(directory: Path, **shape: Any) -> World:
    directory.mkdir(parents=True, exist_ok=True)
    events = list(lines(simulate(**shape)))
    (directory / "events.jsonl").write_bytes(b"\n".join(events) + b"\n")
    findings = [f.model_dump(mode="json") for f in replay(events, all_detectors())]
    return World(directory, directory / "events.jsonl", events, findings)


@pytest.fixture(scope="session")
def small_world(tmp_path_factory: pytest.TempPathFactory) -> World:
    """About 60 accounts over 3 days with one team: findings from every detector."""
    return make_world(tmp_path_factory.mktemp("world"), seed=3, accounts=60, days=3, teams=1)


def identity(message: Any) -> tuple[str, int]:
    finding = orjson.loads(message.value())
    return finding["finding_info"]["uid"], finding["activity_id"]


def consuming(metrics_port: int, timeout: float = 120) -> bool:
    """True once the worker has its partitions and measures its lag (it is fully started)."""
    from urllib.error import URLError
    from urllib.request import urlopen

    def measured() -> bool:
        try:
            text = urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=2).read()
        except (URLError, OSError):
            return False
        return b'daylight_consumer_lag_messages{topic="platform.logins"}' in text

    return wait_for(measured, timeout=timeout)


def open_findings(findings: list[dict[str, Any]]) -> dict[str, tuple[frozenset[str], int]]:
    """uid -> (every account its messages named, its highest severity), for every finding
    not closed as superseded: a case that a backlog read out of order opened under another
    uid (shared_ip, a shared payout destination) is closed in favour of the canonical one and
    does not count (README, "Event order")."""
    named: dict[str, set[str]] = {}
    severity: dict[str, int] = {}
    closed = set()
    for finding in findings:
        uid = finding["finding_info"]["uid"]
        if finding["activity_id"] == 3:
            closed.add(uid)
            continue
        named.setdefault(uid, set()).update(r["uid"] for r in finding["resources"])
        severity[uid] = max(severity.get(uid, 0), finding["severity_id"])
    return {uid: (frozenset(a), severity[uid]) for uid, a in named.items() if uid not in closed}


def open_cases(messages: list[dict[str, Any]]) -> dict[str, frozenset[str]]:
    """uid -> accounts of every case whose last message is not a Close."""
    last: dict[str, dict[str, Any]] = {}
    for case in messages:
        last[case["finding_info"]["uid"]] = case
    return {
        uid: frozenset(case["unmapped"]["accounts"])
        for uid, case in last.items()
        if case["activity_id"] != 3
    }


def cases_until(
    broker: Broker, want: dict[str, frozenset[str]], timeout: float = 120
) -> list[dict[str, Any]]:
    """Messages of daylight.cases, read until the open cases are `want` (or the timeout)."""
    messages = read_topic(
        "daylight.cases",
        lambda got: open_cases([orjson.loads(m.value()) for m in got]) == want,
        timeout=timeout,
        settle=3,
        servers=broker.servers,
    )
    return [orjson.loads(m.value()) for m in messages]


def alerts_until(broker: Broker, world: World, timeout: float = 180) -> list[dict[str, Any]]:
    """Findings on daylight.alerts, read until they cover the replay's (or the timeout)."""
    want = open_findings(world.findings)

    def complete(messages: list[Any]) -> bool:
        return open_findings([orjson.loads(m.value()) for m in messages]) == want

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
    """Nothing invented, nothing lost: the same open findings, by uid, each naming the same
    accounts at the same highest severity as the replay."""
    live, reference = open_findings(alerts), open_findings(world.findings)
    invented = {uid: found for uid, found in live.items() if uid not in reference}
    assert not invented, f"findings open live that replay does not have: {invented}"
    differ = {uid: (live[uid], reference[uid]) for uid in reference
              if uid in live and live[uid] != reference[uid]}  # fmt: skip
    assert not differ, f"findings that differ (live, replay): {differ}"
    lost = sorted(set(reference) - set(live))
    assert not lost, f"findings lost: {lost}"
