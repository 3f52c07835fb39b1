"""The local broker and the commands around it, against the broker `make test` started."""

from __future__ import annotations

import os
import time

import pytest

from tests.conftest import DAYLIGHT, free_port, run

pytestmark = pytest.mark.integration


def broker_args() -> list[str]:
    port = os.environ["DAYLIGHT_BOOTSTRAP_SERVERS"].rsplit(":", 1)[1]
    return ["--port", port, "--data-dir", os.environ["DAYLIGHT_TEST_BROKER_DATA"]]


def test_status_says_the_broker_runs(kafka: str) -> None:
    result = run([DAYLIGHT, "broker", "status", *broker_args()])
    assert result.returncode == 0, result.stderr
    assert "running on" in result.stdout


def test_start_twice_is_fine(kafka: str) -> None:
    result = run([DAYLIGHT, "broker", "start", *broker_args()])
    assert result.returncode == 0, result.stderr
    assert "already running" in result.stdout


def test_status_of_a_broker_that_is_not_running(tmp_path: object) -> None:
    result = run(
        [DAYLIGHT, "broker", "status", "--port", str(free_port()), "--data-dir", str(tmp_path)]
    )
    assert result.returncode == 1
    assert "not running" in result.stdout


def test_topics_create_is_idempotent(kafka: str) -> None:
    from streams.admin import load_topic_specs

    result = run([DAYLIGHT, "topics", "create"], check=True)
    assert result.stdout.count("exists") == len(load_topic_specs()) == 9
    assert "created" not in result.stdout


def test_worker_fails_fast_without_a_broker() -> None:
    started = time.monotonic()
    result = run(
        [DAYLIGHT, "worker"],
        env={
            "DAYLIGHT_BOOTSTRAP_SERVERS": f"127.0.0.1:{free_port()}",
            "DAYLIGHT_BROKER_CHECK_TIMEOUT_SECONDS": "3",
        },
        timeout=60,
    )
    assert result.returncode == 3
    assert "no Kafka broker answers" in result.stderr
    assert time.monotonic() - started < 30


def test_worker_with_a_bad_setting_fails_naming_it() -> None:
    result = run([DAYLIGHT, "worker"], env={"DAYLIGHT_TOPIC_PARTITIONS": "many"})
    assert result.returncode == 2
    assert "DAYLIGHT_TOPIC_PARTITIONS" in result.stderr
