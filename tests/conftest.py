"""Shared test helpers: the broker `make test` started, a worker process, topic readers."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer

ROOT = Path(__file__).resolve().parents[1]
DAYLIGHT = str(Path(sys.executable).parent / "daylight")


def bootstrap_servers() -> str:
    return os.environ.get("DAYLIGHT_BOOTSTRAP_SERVERS", "127.0.0.1:9092")


@pytest.fixture(scope="session")
def kafka() -> str:
    """The bootstrap address of the real broker `make test` started; fails if none answers."""
    from streams.broker import broker_answers

    servers = bootstrap_servers()
    if not broker_answers(servers, timeout=10):
        pytest.fail(f"no Kafka broker at {servers}: run the suite with `make test`")
    run([DAYLIGHT, "topics", "create"], check=True)
    return servers


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def run(
    args: list[str], env: dict[str, str] | None = None, check: bool = False, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        args,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
        cwd=ROOT,
    )
    if check and result.returncode != 0:
        raise AssertionError(
            f"{args} exited {result.returncode}:\n{result.stdout}\n{result.stderr}"
        )
    return result


@contextmanager
def worker_process(tmp_path: Path, **env: str) -> Iterator[dict[str, Any]]:
    """A real `daylight worker` in its own consumer group; stopped with SIGTERM afterwards."""
    app_id = env.pop("app_id", f"test-{uuid.uuid4().hex[:8]}")
    port = free_port()
    log_path = tmp_path / f"{app_id}-{port}.log"
    full_env = {
        **os.environ,
        "DAYLIGHT_APP_ID": app_id,
        "DAYLIGHT_DATA_DIR": str(tmp_path / app_id),
        "DAYLIGHT_METRICS_PORT": str(port),
        "DAYLIGHT_LOG_LEVEL": "info",
        **env,
    }
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [DAYLIGHT, "worker"], env=full_env, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT
        )
    try:
        yield {"process": process, "metrics_port": port, "log": log_path, "app_id": app_id}
    finally:
        process.terminate()
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def read_topic(
    topic: str,
    done: Callable[[list[Any]], bool],
    timeout: float = 90.0,
    settle: float = 0.0,
    servers: str | None = None,
) -> list[Any]:
    """Every message of `topic` from the beginning until `done(messages)` (or the timeout),
    then `settle` more seconds to catch anything extra."""
    consumer = Consumer(
        {
            "bootstrap.servers": servers or bootstrap_servers(),
            "group.id": f"test-reader-{uuid.uuid4().hex[:8]}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    consumer.subscribe([topic])
    messages: list[Any] = []
    deadline = time.monotonic() + timeout
    settle_until: float | None = None
    try:
        while time.monotonic() < deadline:
            if settle_until is None and done(messages):
                settle_until = time.monotonic() + settle
            if settle_until is not None and time.monotonic() >= settle_until:
                break
            message = consumer.poll(0.5)
            if message is not None and message.error() is None:
                messages.append(message)
    finally:
        consumer.close()
    return messages


def metric_value(port: int, name: str, labels: dict[str, str] | None = None) -> float:
    """One sample of the worker's /metrics (0 when absent or not served yet)."""
    from urllib.error import URLError
    from urllib.request import urlopen

    try:
        text = urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2).read().decode()
    except (URLError, OSError):
        return 0.0
    from prometheus_client.parser import text_string_to_metric_families

    total = 0.0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(
                sample.labels.get(k) == v for k, v in (labels or {}).items()
            ):
                total += sample.value
    return total


def wait_for(predicate: Callable[[], bool], timeout: float = 60.0, every: float = 0.5) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(every)
    return predicate()
