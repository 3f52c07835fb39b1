"""A broker listener with TLS and SASL/SCRAM: workers and the CLI connect with the documented
settings; a wrong password fails with a clear message; no secret reaches logs or help."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from streams.broker import LocalBroker
from tests.conftest import DAYLIGHT, free_port, run, worker_process

pytestmark = pytest.mark.integration

PASSWORD = "Sc0pe-Tr3e-Lantern-91"
KEYSTORE_PASSWORD = "Ks-Pa55-Orchard-42"


def openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def make_certificates(directory: Path) -> None:
    """A CA, and a broker certificate for 127.0.0.1 signed by it, as a PKCS12 keystore."""
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem",
            "-days", "2", "-subj", "/CN=daylight-test-ca", cwd=directory)  # fmt: skip
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "broker.key", "-out", "broker.csr",
            "-subj", "/CN=127.0.0.1", cwd=directory)  # fmt: skip
    (directory / "san.ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    openssl("x509", "-req", "-in", "broker.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
            "-CAcreateserial", "-out", "broker.pem", "-days", "2", "-extfile", "san.ext",
            cwd=directory)  # fmt: skip
    openssl("pkcs12", "-export", "-in", "broker.pem", "-inkey", "broker.key", "-certfile",
            "ca.pem", "-out", "broker.p12", "-passout", f"pass:{KEYSTORE_PASSWORD}",
            cwd=directory)  # fmt: skip


def impossible_travel(directory: Path, account: str) -> Path:
    """New York, then Pyongyang 30 minutes later: one geo_velocity finding on `account`."""
    events = directory / f"{account}-pair.jsonl"
    pair = [
        {"event_id": f"{account}-1", "type": "login", "occurred_at": "2026-03-20T07:00:00Z",
         "account_id": account, "ip": "198.51.100.5",
         "geo": {"country": "US", "lat": 40.7, "lon": -74.0, "city": "New York"}},
        {"event_id": f"{account}-2", "type": "login", "occurred_at": "2026-03-20T07:30:00Z",
         "account_id": account, "ip": "198.51.100.6",
         "geo": {"country": "KP", "lat": 39.0, "lon": 125.7, "city": "Pyongyang"}},
    ]  # fmt: skip
    events.write_bytes(b"\n".join(orjson.dumps(e) for e in pair) + b"\n")
    return events


@pytest.fixture
def secure_broker(tmp_path: Path) -> Iterator[dict[str, str]]:
    yield from _secure_broker(tmp_path)


def _secure_broker(
    tmp_path: Path, extra: tuple[str, ...] = (), users: tuple[str, ...] = ()
) -> Iterator[dict[str, str]]:
    certs = tmp_path / "certs"
    certs.mkdir()
    make_certificates(certs)
    port, secure = free_port(), free_port()
    local = LocalBroker(
        port=port,
        data_dir=tmp_path / "kafka",
        kafka_version=os.environ.get("DAYLIGHT_KAFKA_VERSION", "3.9.1"),
        extra_properties=(
            f"listeners=PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{port + 1},"
            f"SASL_SSL://127.0.0.1:{secure}",
            f"advertised.listeners=PLAINTEXT://127.0.0.1:{port},SASL_SSL://127.0.0.1:{secure}",
            "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT,"
            "SASL_SSL:SASL_SSL",
            "sasl.enabled.mechanisms=SCRAM-SHA-512",
            "listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config="
            "org.apache.kafka.common.security.scram.ScramLoginModule required;",
            f"ssl.keystore.location={certs / 'broker.p12'}",
            "ssl.keystore.type=PKCS12",
            f"ssl.keystore.password={KEYSTORE_PASSWORD}",
            f"ssl.key.password={KEYSTORE_PASSWORD}",
            *extra,
        ),
        scram_users=(f"SCRAM-SHA-512=[name=daylight,password={PASSWORD}]", *users),
    )
    local.start()
    try:
        yield {
            "DAYLIGHT_BOOTSTRAP_SERVERS": f"127.0.0.1:{secure}",
            "DAYLIGHT_SECURITY_PROTOCOL": "SASL_SSL",
            "DAYLIGHT_SASL_MECHANISM": "SCRAM-SHA-512",
            "DAYLIGHT_SASL_USERNAME": "daylight",
            "DAYLIGHT_SASL_PASSWORD": PASSWORD,
            "DAYLIGHT_SSL_CAFILE": str(certs / "ca.pem"),
            "PLAINTEXT": f"127.0.0.1:{port}",
        }
    finally:
        local.stop()


def test_workers_and_cli_work_over_tls_and_scram(secure_broker: dict[str, str],
                                                 tmp_path: Path) -> None:  # fmt: skip
    env = {**secure_broker, "DAYLIGHT_BROKER_CHECK_TIMEOUT_SECONDS": "20"}
    env.pop("PLAINTEXT")
    created = run([DAYLIGHT, "topics", "create"], env=env)
    assert created.returncode == 0, created.stderr
    events = impossible_travel(tmp_path, "secure")
    with worker_process(tmp_path, app_id="secure", **env) as worker:
        assert run([DAYLIGHT, "produce", str(events)], env=env).returncode == 0
        tail = run([DAYLIGHT, "alerts", "tail", "--from-beginning", "--json", "--idle", "20"],
                   env=env, timeout=180)  # fmt: skip
        assert tail.returncode == 0, tail.stderr
        findings = [orjson.loads(line) for line in tail.stdout.splitlines()]
        assert [f["resources"][0]["uid"] for f in findings] == ["secure"]
        assert worker["process"].poll() is None
    log = worker["log"].read_text()
    assert PASSWORD not in log and KEYSTORE_PASSWORD not in log
    for output in (created.stdout, created.stderr, tail.stderr):
        assert PASSWORD not in output


def test_a_wrong_password_fails_with_a_clear_message(secure_broker: dict[str, str]) -> None:
    env = {**secure_broker, "DAYLIGHT_SASL_PASSWORD": "not-the-password",
           "DAYLIGHT_BROKER_CHECK_TIMEOUT_SECONDS": "5"}  # fmt: skip
    for command in (["worker"], ["topics", "create"], ["alerts", "tail", "--idle", "1"]):
        result = run([DAYLIGHT, *command], env=env, timeout=120)
        assert result.returncode == 3, (command, result.stderr)
        assert "refused the credentials of user 'daylight'" in result.stderr
        assert "DAYLIGHT_SASL_PASSWORD" in result.stderr
        assert "not-the-password" not in result.stderr + result.stdout


def test_help_never_prints_the_password(secure_broker: dict[str, str]) -> None:
    for command in (["--help"], ["worker", "--help"], ["alerts", "tail", "--help"]):
        result = run([DAYLIGHT, *command], env=secure_broker)
        assert PASSWORD not in result.stdout + result.stderr


@pytest.fixture
def authorizing_broker(tmp_path: Path) -> Iterator[dict[str, str]]:
    """The SASL listener under KRaft's StandardAuthorizer: the SCRAM users get only what
    `daylight topics acls` grants; the plaintext and controller listeners (the operator's)
    are super users."""
    yield from _secure_broker(
        tmp_path,
        extra=(
            "authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer",
            "super.users=User:ANONYMOUS",
            "allow.everyone.if.no.acl.found=false",
        ),
        users=(
            f"SCRAM-SHA-512=[name=soc,password={PASSWORD}]",
            f"SCRAM-SHA-512=[name=mallory,password={PASSWORD}]",
        ),
    )


def test_only_the_socs_principal_may_write_feedback(
    authorizing_broker: dict[str, str], tmp_path: Path
) -> None:
    from confluent_kafka import Consumer

    operator = {"DAYLIGHT_BOOTSTRAP_SERVERS": authorizing_broker["PLAINTEXT"]}
    run([DAYLIGHT, "topics", "create"], env=operator, check=True)
    granted = run([DAYLIGHT, "topics", "acls", "--worker", "User:daylight", "--soc", "User:soc",
                   "--reader", "User:mallory"], env=operator, check=True)  # fmt: skip
    assert "only User:soc may write daylight.feedback" in granted.stdout
    secure = {k: v for k, v in authorizing_broker.items() if k != "PLAINTEXT"}
    suppress = ["feedback", "suppress", "--account", "user-9001", "--reason", "looks fine",
                "--analyst", "mallory"]  # fmt: skip
    for principal in ("mallory", "daylight"):  # a case reader, and the worker itself
        refused = run([DAYLIGHT, *suppress], env={**secure, "DAYLIGHT_SASL_USERNAME": principal},
                      timeout=120)  # fmt: skip
        assert refused.returncode == 3, (principal, refused.stdout, refused.stderr)
        assert "refused to let this principal write daylight.feedback" in refused.stderr
    allowed = run([*(DAYLIGHT, "feedback", "verdict", "case-0", "--benign"), "--analyst", "ana"],
                  env={**secure, "DAYLIGHT_SASL_USERNAME": "soc"}, timeout=120)  # fmt: skip
    assert allowed.returncode == 0, allowed.stderr
    consumer = Consumer({"bootstrap.servers": authorizing_broker["PLAINTEXT"],
                         "group.id": "acl-check", "auto.offset.reset": "earliest"})  # fmt: skip
    consumer.subscribe(["daylight.feedback"])
    written = []
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not written:
        message = consumer.poll(0.5)
        if message is not None and message.error() is None:
            written.append(orjson.loads(message.value()))
    consumer.close()
    # Only the SOC's verdict reached the topic: nothing the others wrote can suppress anything.
    assert [(m["type"], m["analyst"]) for m in written] == [("case_verdict", "ana")]
    # The worker runs under the grants `daylight topics acls` gives its principal.
    events = impossible_travel(tmp_path, "acl")
    with worker_process(tmp_path, app_id="daylight", **secure) as worker:
        run([DAYLIGHT, "produce", str(events)], env=operator, check=True)
        tail = run([DAYLIGHT, "alerts", "tail", "--from-beginning", "--json", "--idle", "20"],
                   env={**secure, "DAYLIGHT_SASL_USERNAME": "soc"}, timeout=180)  # fmt: skip
        assert tail.returncode == 0, tail.stderr
        assert [orjson.loads(line)["resources"][0]["uid"] for line in tail.stdout.splitlines()] == [
            "acl"
        ], worker["log"].read_text()[-3000:]
        assert worker["process"].poll() is None
