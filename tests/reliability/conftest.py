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
from tests.conftest import DAYLIGHT, free_port, read_topic, run


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
    path: Path  # every event, all topics in time order: one file, as the platform's bus has it
    events: list[bytes]
    findings: list[dict[str, Any]]  # every finding of a replay of the same events

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


def shared_ip_cases(findings: list[dict[str, Any]]) -> dict[str, frozenset[str]]:
    """The open shared_ip cases: uid -> every account any of its messages named. A case
    closed as superseded (opened provisionally under another uid) is not open."""
    named: dict[str, set[str]] = {}
    closed = set()
    for finding in findings:
        if finding["finding_info"]["analytic"]["uid"] != "shared_ip":
            continue
        uid = finding["finding_info"]["uid"]
        if finding["activity_id"] == 3:
            closed.add(uid)
        else:
            named.setdefault(uid, set()).update(r["uid"] for r in finding["resources"])
    return {uid: frozenset(accounts) for uid, accounts in named.items() if uid not in closed}


def comparable(findings: list[dict[str, Any]]) -> dict[str, Any]:
    """What must be equal between a live run and the replay: every finding by (uid,
    activity), and shared_ip's open cases by uid with every account they named (a provisional
    case a backlog opened under another uid may exist live, closed in favour of the canonical
    one; README, "Event order")."""
    identities = {
        (f["finding_info"]["uid"], f["activity_id"])
        for f in findings
        if f["finding_info"]["analytic"]["uid"] != "shared_ip"
    }
    return {"identities": identities, "shared_ip": shared_ip_cases(findings)}


def alerts_until(broker: Broker, world: World, timeout: float = 180) -> list[dict[str, Any]]:
    """Findings on daylight.alerts, read until they cover the replay's (or the timeout)."""
    want = comparable(world.findings)

    def complete(messages: list[Any]) -> bool:
        got = comparable([orjson.loads(m.value()) for m in messages])
        return want["identities"] <= got["identities"] and want["shared_ip"] == got["shared_ip"]

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
    """Nothing invented, ever; nothing lost; shared_ip compared by uid like the others."""
    live, reference = comparable(alerts), comparable(world.findings)
    assert live["identities"] <= reference["identities"], (
        f"findings invented: {sorted(live['identities'] - reference['identities'])}"
    )
    lost = sorted(reference["identities"] - live["identities"])
    assert not lost, f"findings lost: {lost}"
    invented = {u: a for u, a in live["shared_ip"].items() if u not in reference["shared_ip"]}
    assert not invented, f"shared_ip cases open live that replay does not have: {invented}"
    missing = sorted(set(reference["shared_ip"]) - set(live["shared_ip"]))
    assert not missing, f"shared_ip cases of the replay never published: {missing}"
    for uid, accounts in reference["shared_ip"].items():
        assert live["shared_ip"][uid] == accounts, f"{uid}: accounts differ"
