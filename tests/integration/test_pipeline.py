"""Produce -> worker -> daylight.alerts / daylight.dlq on the real broker, against a replay."""

from __future__ import annotations

import json
import time
from collections import Counter
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson
import pytest
from confluent_kafka import Producer

from detectors import DETECTOR_IDS, geo_velocity
from detectors.core.engine import DetectorRunner
from schemas.codec import decode_event
from tests.conftest import (
    DAYLIGHT,
    ROOT,
    bootstrap_servers,
    free_port,
    metric_value,
    read_topic,
    run,
    wait_for,
    worker_process,
)

pytestmark = pytest.mark.integration

AFTER_POISON = [  # a good pair produced after the poison messages: the worker must go on
    {"event_id": "after-1", "type": "login", "occurred_at": "2026-03-20T08:00:00Z",
     "account_id": "after-poison", "ip": "198.51.100.200",
     "geo": {"country": "US", "lat": 40.71, "lon": -74.01, "city": "New York"}},
    {"event_id": "after-2", "type": "login", "occurred_at": "2026-03-20T08:20:00Z",
     "account_id": "after-poison", "ip": "175.45.176.200",
     "geo": {"country": "KP", "lat": 39.02, "lon": 125.75, "city": "Pyongyang"}},
]  # fmt: skip

LOGIN = {"event_id": "p", "type": "login", "occurred_at": "2026-03-20T07:00:00Z", "ip": "1.2.3.4"}
POISON: list[tuple[str, bytes, bytes, str]] = [  # (topic, key, value, reason)
    ("platform.logins", b"poison-1", b"\x00\xff not json at all", "invalid_json"),
    ("platform.logins", b"poison-2", b"", "empty_value"),
    ("platform.logins", b"poison-3", b'"just a string"', "not_an_object"),
    ("platform.logins", b"poison-4",
     orjson.dumps({**LOGIN, "account_id": "poison-4", "type": "teleport"}), "unknown_type"),
    ("platform.logins", b"poison-5",
     orjson.dumps({**LOGIN, "account_id": "poison-5", "ip": "1.2.3.999"}), "invalid_event"),
    ("platform.logins", b"poison-6",
     orjson.dumps({**LOGIN, "account_id": "poison-6", "occurred_at": "2026-03-20T07:00:00"}),
     "invalid_event"),
    ("platform.payouts", b"poison-7",
     orjson.dumps({**LOGIN, "type": "payout_sent", "account_id": "poison-7"}), "invalid_event"),
    ("platform.logins", b"someone-else",
     orjson.dumps({**LOGIN, "account_id": "poison-8"}), "key_mismatch"),
]  # fmt: skip


@pytest.fixture(scope="module")
def pipeline(kafka: str, tmp_path_factory: pytest.TempPathFactory) -> Any:
    tmp = tmp_path_factory.mktemp("pipeline")
    events = tmp / "events.jsonl"
    run([DAYLIGHT, "cases", "export", str(events)], check=True)
    lines = events.read_bytes().splitlines()
    lines += [orjson.dumps(event) for event in AFTER_POISON]
    # As a platform publishes: every topic in one stream, in event-time order. The first
    # half is a backlog already on the topics when the worker starts (a first deployment,
    # a restart after an outage), which the worker drains at each topic's own pace, so out
    # of order across topics; the second half is published while the worker runs.
    lines.sort(key=lambda line: datetime.fromisoformat(orjson.loads(line)["occurred_at"]))
    after = [line for line in lines if b'"after-poison"' in line]
    ordered = [line for line in lines if line not in after]
    backlog, live = ordered[: len(ordered) // 2], ordered[len(ordered) // 2 :]
    (tmp / "backlog.jsonl").write_bytes(b"\n".join(backlog) + b"\n")
    (tmp / "live.jsonl").write_bytes(b"\n".join(live) + b"\n")
    (tmp / "after.jsonl").write_bytes(b"\n".join(after) + b"\n")
    (tmp / "all.jsonl").write_bytes(b"\n".join(ordered + after) + b"\n")

    offline = geo_velocity.build()
    runner = DetectorRunner(offline)
    for line in ordered + after:
        runner.feed(decode_event(line))
    skipped_offline = offline.stages[0].skipped["no_location"]  # type: ignore[attr-defined]

    reference = tmp / "reference.jsonl"
    run([DAYLIGHT, "replay", str(tmp / "all.jsonl"), "--out", str(reference)], check=True)
    expected = [orjson.loads(line) for line in reference.read_bytes().splitlines()]

    run([DAYLIGHT, "produce", str(tmp / "backlog.jsonl")], check=True)
    with worker_process(tmp) as worker:
        port = worker["metrics_port"]
        consumed = lambda: metric_value(port, "daylight_events_consumed_total")  # noqa: E731
        assert wait_for(lambda: consumed() >= len(backlog), timeout=180), worker["log"].read_text()
        run([DAYLIGHT, "produce", str(tmp / "live.jsonl")], check=True)
        producer = Producer(
            {"bootstrap.servers": bootstrap_servers(), "partitioner": "murmur2_random"}
        )
        for topic, key, value, _ in POISON:
            producer.produce(topic, key=key, value=value, headers=[("origin", b"test")])
        producer.flush(30)
        run([DAYLIGHT, "produce", str(tmp / "after.jsonl")], check=True)
        from tests.reliability.conftest import open_findings

        want = open_findings(expected)
        alerts = read_topic(
            "daylight.alerts",
            lambda got: open_findings([orjson.loads(m.value()) for m in got]) == want,
            timeout=120,
            settle=3,
        )
        dead = read_topic("daylight.dlq", lambda got: len(got) >= len(POISON), timeout=60)
        yield {
            "events": [orjson.loads(line) for line in ordered + after],
            "expected": expected,
            "alerts": [orjson.loads(m.value()) for m in alerts],
            "alert_keys": [m.key() for m in alerts],
            "dlq": dead,
            "metrics_port": port,
            "worker": worker,
            "skipped_offline": skipped_offline,
        }


def _identity(message: Any) -> tuple[str, int]:
    finding = orjson.loads(message.value())
    return finding["finding_info"]["uid"], finding["activity_id"]


def test_kafka_path_gives_the_findings_of_replay(pipeline: Any) -> None:
    """Parity: the same events through `daylight replay` and through Kafka, the same open
    findings (uids, accounts, severity); a case opened provisionally live under another uid
    is closed as superseded."""
    from tests.reliability.conftest import open_findings

    live, replayed = open_findings(pipeline["alerts"]), open_findings(pipeline["expected"])
    assert live == replayed
    assert len(replayed) >= 15
    superseded = {f["finding_info"]["uid"] for f in pipeline["alerts"] if f["activity_id"] == 3}
    assert not superseded & set(replayed)


def test_a_worker_owning_every_partition_hands_shared_ip_its_logins_in_process(
    pipeline: Any,
) -> None:
    """One worker owns every partition of shared_ip's repartition topic: the logins reach the
    stage in process (the parity above holds with them), none makes a second trip through
    Kafka."""
    port = pipeline["metrics_port"]
    rekeyed = "daylight_rekeyed_events_total"
    logins = sum(1 for event in pipeline["events"] if event.get("type") == "login")
    assert metric_value(port, rekeyed, {"path": "in_process"}) == logins
    assert metric_value(port, rekeyed, {"path": "topic"}) == 0


def test_the_worker_runs_on_uvloop(pipeline: Any) -> None:
    assert "event loop: uvloop.Loop" in pipeline["worker"]["log"].read_text()


@pytest.mark.parametrize("detector", DETECTOR_IDS)
def test_each_agent_publishes_its_findings(pipeline: Any, detector: str) -> None:
    """Per agent: its findings on daylight.alerts are its findings in replay, field by field
    where arrival order cannot change them."""

    def mine(findings: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
        """The last message of each open finding of this detector. The alerts topic is keyed
        by a finding's primary account, which can change as a case grows, so its messages may
        sit on several partitions and be read out of order: the last is the one whose
        evidence reaches furthest (its time, then the accounts it names)."""
        closed = {f["finding_info"]["uid"] for f in findings if f["activity_id"] == 3}
        ordered = sorted(findings, key=lambda f: (f["time"], len(f["resources"])))
        return {
            f["finding_info"]["uid"]: f
            for f in ordered
            if f["finding_info"]["analytic"]["uid"] == detector
            and f["finding_info"]["uid"] not in closed
        }

    live, replayed = mine(pipeline["alerts"]), mine(pipeline["expected"])
    assert live and live.keys() == replayed.keys()
    for uid, finding in live.items():
        expected = replayed[uid]
        assert finding["severity_id"] == expected["severity_id"]
        assert finding["metadata"] == expected["metadata"]
        assert finding["finding_info"]["attacks" if "attacks" in expected["finding_info"]
                                       else "uid"] == expected["finding_info"].get(
            "attacks", uid)  # fmt: skip
        # Every account the replay names, the last live message names too; the primary may
        # differ for a case whose accounts came through several partitions.
        assert {r["uid"] for r in finding["resources"]} == {r["uid"] for r in expected["resources"]}


def test_a_login_with_no_location_is_skipped_and_counted(pipeline: Any) -> None:
    skipped = metric_value(
        pipeline["metrics_port"],
        "daylight_events_skipped_total",
        {"detector": "geo_velocity", "reason": "no_location"},
    )
    assert skipped == pipeline["skipped_offline"] > 0  # e.g. 10.1.2.3, 203.0.113.0/24


def test_alerts_are_keyed_by_the_primary_account(pipeline: Any) -> None:
    for key, finding in zip(pipeline["alert_keys"], pipeline["alerts"], strict=True):
        assert key.decode() == finding["resources"][0]["uid"]


def test_poison_lands_in_the_dlq_with_its_reason_and_origin(pipeline: Any) -> None:
    by_key = {message.key(): message for message in pipeline["dlq"]}
    for topic, key, value, reason in POISON:
        message = by_key[key]
        headers = dict(message.headers())
        assert message.value() == value
        assert headers["origin"] == b"test"
        assert headers["daylight.errors.topic"] == topic.encode()
        assert headers["daylight.errors.exception.class.name"] == reason.encode()
        assert int(headers["daylight.errors.partition"]) >= 0
        assert int(headers["daylight.errors.offset"]) >= 0
        assert headers["daylight.errors.exception.message"]


def test_the_worker_goes_on_after_poison(pipeline: Any) -> None:
    after = [f for f in pipeline["alerts"] if f["resources"][0]["uid"] == "after-poison"]
    assert len(after) == 1 and "Pyongyang" in after[0]["message"]
    assert pipeline["worker"]["process"].poll() is None


def test_rejections_are_counted_by_reason(pipeline: Any) -> None:
    port = pipeline["metrics_port"]
    for reason, count in Counter(p[3] for p in POISON).items():
        assert metric_value(port, "daylight_events_rejected_total", {"reason": reason}) == count
    findings = metric_value(port, "daylight_findings_total")
    assert findings == len(pipeline["alerts"])


def test_no_decision_is_left_waiting_once_the_input_is_read(pipeline: Any) -> None:
    """payout_routing judges a payout once its input is complete; once the worker has read
    everything, nothing waits (the gauge is refreshed every 5 s)."""
    port = pipeline["metrics_port"]
    deadline = time.monotonic() + 30
    waiting = metric_value(port, "daylight_deferred_decisions")
    while waiting and time.monotonic() < deadline:
        time.sleep(1)
        waiting = metric_value(port, "daylight_deferred_decisions")
    assert waiting == 0


def test_demo_dataset_findings_per_detector_are_reported(pipeline: Any) -> None:
    counts = Counter(f["finding_info"]["analytic"]["uid"] for f in pipeline["expected"])
    print(json.dumps(dict(sorted(counts.items()))))
    assert all(count >= 3 for count in counts.values())


def test_a_real_prometheus_scrapes_the_worker_and_every_query_answers(
    pipeline: Any, tmp_path: Path
) -> None:
    """Every alerting rule and every dashboard query parses on a real Prometheus scraping a
    real worker; every dashboard query returns data."""
    import importlib.util
    import shutil
    import subprocess
    import urllib.parse
    import urllib.request

    import yaml

    binary = shutil.which("prometheus")
    assert binary, "prometheus is missing: `make prometheus` installs it"
    port = free_port()
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(ROOT / "deploy" / "prometheus" / "rules.yml")],
        "scrape_configs": [
            {
                "job_name": "daylight",
                "static_configs": [{"targets": [f"127.0.0.1:{pipeline['metrics_port']}"]}],
            }
        ],
    }
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    server = subprocess.Popen(
        [
            binary,
            f"--config.file={tmp_path / 'prometheus.yml'}",
            f"--storage.tsdb.path={tmp_path / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=(tmp_path / "prometheus.log").open("wb"),
    )

    def query(expr: str) -> dict[str, Any]:
        url = f"http://127.0.0.1:{port}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                return json.loads(response.read())  # type: ignore[no-any-return]
        except urllib.error.HTTPError as error:
            return json.loads(error.read())  # type: ignore[no-any-return]
        except OSError:
            return {"status": "down"}

    try:
        assert wait_for(
            lambda: bool(query('up{job="daylight"} == 1').get("data", {}).get("result")), 60
        )
        time.sleep(8)  # enough scrapes for rate() over the dashboard's window
        spec = importlib.util.spec_from_file_location(
            "dashboard", ROOT / "deploy" / "grafana" / "dashboard.py"
        )
        assert spec and spec.loader
        dashboard = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(dashboard)
        for expr in dashboard.queries():
            answer = query(expr.replace("$__rate_interval", "1m"))
            assert answer["status"] == "success", (expr, answer)
            assert answer["data"]["result"], f"no data for panel query {expr}"
        rules = yaml.safe_load((ROOT / "deploy" / "prometheus" / "rules.yml").read_text())
        for rule in rules["groups"][0]["rules"]:
            answer = query(rule["expr"])
            assert answer["status"] == "success", (rule["alert"], answer)
    finally:
        server.terminate()
        server.wait(timeout=30)
