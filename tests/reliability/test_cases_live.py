"""The case agent on a real broker: findings in, cases out, the same as `daylight replay
--cases`; a verdict closes a case and stays applied after a restart; bad feedback is
dead-lettered."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from tests.conftest import DAYLIGHT, read_topic, run, worker_process
from tests.reliability.conftest import (
    Broker,
    World,
    cases_until,
    consuming,
    open_cases,
)

pytestmark = pytest.mark.integration


def test_cases_live_equal_replay_and_a_verdict_survives_a_restart(
    own_broker: Broker, small_world: World, tmp_path: Path
) -> None:
    want = small_world.cases
    assert want, "the small world must open a case"
    with worker_process(tmp_path, app_id="cases", **own_broker.env) as worker:
        assert consuming(worker["metrics_port"])
        run([DAYLIGHT, "produce", str(small_world.path)], env=own_broker.env, check=True)
        live = open_cases(cases_until(own_broker, want))
        assert live == want  # live = replay: uids and accounts
        (uid,) = sorted(want)
        listed = run([DAYLIGHT, "cases", "list", "--open", "--json"], env=own_broker.env,
                     check=True)  # fmt: skip
        assert [
            orjson.loads(line)["finding_info"]["uid"] for line in listed.stdout.splitlines()
        ] == [uid]
        shown = run([DAYLIGHT, "cases", "show", uid], env=own_broker.env, check=True)
        assert "Contributing findings" in shown.stdout and "link: ip" in shown.stdout
        run([DAYLIGHT, "feedback", "verdict", uid, "--confirmed", "--analyst", "ana.lyst",
             "--comment", "team confirmed", "--at", "2026-03-10T00:00:00Z"],
            env=own_broker.env, check=True)  # fmt: skip
        closed = cases_until(own_broker, {})
    final = [c for c in closed if c["finding_info"]["uid"] == uid][-1]
    assert final["activity_name"] == "Close" and final["status"] == "Resolved"
    assert final["verdict"] == "True Positive" and "ana.lyst" in final["comment"]
    # A restarted worker restores the verdict: the same events again open nothing.
    with worker_process(tmp_path, app_id="cases", **own_broker.env) as worker:
        assert consuming(worker["metrics_port"])
        run([DAYLIGHT, "produce", str(small_world.path)], env=own_broker.env, check=True)
        again = cases_until(own_broker, {"never": frozenset()}, timeout=40)
    assert open_cases(again) == {}, "a case the analyst closed was opened again"


def test_malformed_feedback_goes_to_the_dead_letter_topic(
    own_broker: Broker, tmp_path: Path
) -> None:
    from confluent_kafka import Producer

    with worker_process(tmp_path, app_id="feedback-dlq", **own_broker.env) as worker:
        assert consuming(worker["metrics_port"])
        producer = Producer({"bootstrap.servers": own_broker.servers})
        producer.produce("daylight.feedback", key=b"case-x",
                         value=b'{"type": "case_verdict", "case_uid": "case-x", "verdict": "maybe"}')  # fmt: skip
        producer.flush(10)
        dead = read_topic("daylight.dlq", lambda got: len(got) >= 1, timeout=60,
                          servers=own_broker.servers)  # fmt: skip
    headers = dict(dead[0].headers())
    assert headers["daylight.errors.topic"] == b"daylight.feedback"
    assert headers["daylight.errors.exception.class.name"] == b"invalid_feedback"
    assert b"verdict" in headers["daylight.errors.exception.message"]
