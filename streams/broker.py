"""A local Apache Kafka (KRaft, one broker+controller node) run from Maven Central jars."""

from __future__ import annotations

import base64
import os
import signal
import subprocess
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from string import Template
from typing import Any

__all__ = [
    "DEFAULT_KAFKA_VERSION",
    "PROJECT_ROOT",
    "BrokerError",
    "LocalBroker",
    "broker_answers",
    "probe_broker",
]

PROJECT_ROOT = Path(__file__).resolve().parents[1]
DEPLOY_KAFKA = PROJECT_ROOT / "deploy" / "kafka"
DEFAULT_KAFKA_VERSION = "3.9.1"
# Kafka 3.x logs through reload4j, 4.x through log4j2 (slf4j 2).
_LOG_BINDINGS = {
    "3": (
        "org.slf4j",
        "slf4j-reload4j",
        "1.7.36",
        "1.7.36",
        "log4j.properties",
        "log4j.configuration",
    ),
    "4": (
        "org.apache.logging.log4j",
        "log4j-slf4j2-impl",
        "2.24.3",
        "2.0.17",
        "log4j2.properties",
        "log4j2.configurationFile",
    ),
}


class BrokerError(RuntimeError):
    """The local broker could not be fetched, started or stopped; the message says why."""


def broker_answers(
    bootstrap: str, timeout: float = 2.0, config: dict[str, Any] | None = None
) -> bool:
    """True when a broker at `bootstrap` answers a metadata request within `timeout` seconds."""
    return probe_broker(bootstrap, timeout, config) is None


def probe_broker(
    bootstrap: str, timeout: float = 2.0, config: dict[str, Any] | None = None
) -> str | None:
    """None when a broker answers a metadata request; else why not ("authentication" when
    it refused the credentials, "unreachable" otherwise)."""
    from confluent_kafka import KafkaError
    from confluent_kafka.admin import AdminClient

    refused: list[KafkaError] = []

    def on_error(error: KafkaError) -> None:
        if error.code() in (KafkaError._AUTHENTICATION, KafkaError.SASL_AUTHENTICATION_FAILED):
            refused.append(error)

    settings: dict[str, Any] = {
        "bootstrap.servers": bootstrap,
        "log_level": 0,
        "error_cb": on_error,
        **(config or {}),
    }
    settings.setdefault("logger", _SilentLogger())
    client = AdminClient(settings)
    try:
        metadata = client.list_topics(timeout=timeout)
    except Exception:
        client.poll(0.5)  # serves the error callbacks queued meanwhile
        return "authentication" if refused else "unreachable"
    return None if metadata.brokers else "unreachable"


class _SilentLogger:
    """librdkafka logs connection refusals loudly; a readiness probe expects them."""

    def log(self, *args: object, **kwargs: object) -> None:
        pass

    def isEnabledFor(self, level: int) -> bool:
        return False


def _cluster_id() -> str:
    """A Kafka cluster id: 16 random bytes, base64url; never starting with '-' (read as a flag)."""
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cluster_id.startswith("-"):
            return cluster_id


@dataclass(frozen=True)
class LocalBroker:
    port: int = 9092
    data_dir: Path = PROJECT_ROOT / ".daylight" / "kafka-data"
    kafka_version: str = DEFAULT_KAFKA_VERSION
    host: str = "127.0.0.1"
    heap: str = "512m"
    # Lines appended to server.properties (a later key wins): extra listeners, TLS, SASL.
    extra_properties: tuple[str, ...] = ()
    # SCRAM credentials created when storage is formatted, e.g. "SCRAM-SHA-512=[name=a,password=b]"
    scram_users: tuple[str, ...] = ()

    @property
    def controller_port(self) -> int:
        return self.port + 1

    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def libs_dir(self) -> Path:
        return PROJECT_ROOT / ".daylight" / f"kafka-{self.kafka_version}" / "libs"

    @property
    def pid_file(self) -> Path:
        return self.data_dir / "broker.pid"

    @property
    def log_file(self) -> Path:
        return self.data_dir / "logs" / "server.log"

    @property
    def _stdout_file(self) -> Path:
        return self.data_dir / "logs" / "stdout.log"

    def _binding(self) -> tuple[str, str, str, str, str, str]:
        major = self.kafka_version.split(".", 1)[0]
        if major not in _LOG_BINDINGS:
            raise BrokerError(
                f"DAYLIGHT_KAFKA_VERSION={self.kafka_version}: only 3.x and 4.x run here"
            )
        return _LOG_BINDINGS[major]

    def fetch(self) -> Path:
        """Resolve the broker jars from Maven Central once; later calls reuse them."""
        marker = self.libs_dir / ".complete"
        if marker.exists():
            return self.libs_dir
        group, artifact, version, slf4j_api, _, _ = self._binding()
        command = [
            "mvn", "-q", "-B", "-f", str(DEPLOY_KAFKA / "pom.xml"),
            "dependency:copy-dependencies",
            f"-Dkafka.version={self.kafka_version}",
            f"-Dlog.binding.group={group}",
            f"-Dlog.binding.artifact={artifact}",
            f"-Dlog.binding.version={version}",
            f"-Dslf4j.api.version={slf4j_api}",
            f"-DoutputDirectory={self.libs_dir}",
        ]  # fmt: skip
        try:
            result = subprocess.run(command, capture_output=True, text=True, timeout=900)
        except FileNotFoundError:
            raise BrokerError("mvn is not installed: Maven fetches the Kafka jars") from None
        if result.returncode != 0:
            tail = "\n".join((result.stdout + result.stderr).splitlines()[-15:])
            raise BrokerError(f"fetching Kafka {self.kafka_version} jars failed:\n{tail}")
        marker.write_text(self.kafka_version + "\n")
        return self.libs_dir

    def pid(self) -> int | None:
        """The pid of our broker process if it is alive."""
        try:
            pid = int(self.pid_file.read_text().strip())
            os.kill(pid, 0)
        except (FileNotFoundError, ValueError, ProcessLookupError, PermissionError):
            return None
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except FileNotFoundError:
            return None
        return pid if b"kafka.Kafka" in cmdline else None

    def running(self) -> bool:
        return self.pid() is not None and broker_answers(self.bootstrap)

    def _java(self, main_class: str, *args: str) -> list[str]:
        *_, log_config, log_property = self._binding()
        return [
            "java",
            f"-Xmx{self.heap}",
            f"-Xms{self.heap}",
            "-XX:+UseG1GC",
            "-Djava.awt.headless=true",
            f"-D{log_property}={'file:' if log_property == 'log4j.configuration' else ''}"
            f"{DEPLOY_KAFKA / log_config}",
            f"-Dkafka.logs.dir={self.log_file.parent}",
            "-cp",
            f"{self.libs_dir}/*",
            main_class,
            *args,
        ]

    def _render_config(self) -> Path:
        template = Template((DEPLOY_KAFKA / "server.properties.template").read_text())
        config = self.data_dir / "server.properties"
        rendered = template.substitute(
            host=self.host,
            port=self.port,
            controller_port=self.controller_port,
            log_dirs=self.data_dir / "kraft",
        )
        config.write_text(rendered + "".join(f"{line}\n" for line in self.extra_properties))
        config.chmod(0o600)  # it may hold keystore passwords
        return config

    def start(self, timeout: float = 90.0) -> str:
        """Start the broker unless it runs; return once it answers metadata requests."""
        if self.pid() is not None:
            self._wait_ready(timeout)
            return f"Kafka already running on {self.bootstrap} (pid {self.pid()})"
        if broker_answers(self.bootstrap, timeout=1.0):
            raise BrokerError(
                f"another Kafka already answers on {self.bootstrap}; stop it or pass --port"
            )
        self.fetch()
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        config = self._render_config()
        if not (self.data_dir / "kraft" / "meta.properties").exists():
            cluster_id = _cluster_id()
            scram = [arg for user in self.scram_users for arg in ("--add-scram", user)]
            formatting = subprocess.run(
                self._java(
                    "kafka.tools.StorageTool", "format", "-t", cluster_id, "-c", str(config), *scram
                ),
                capture_output=True,
                text=True,
                timeout=120,
            )
            if formatting.returncode != 0:
                raise BrokerError(f"formatting storage failed:\n{formatting.stderr[-2000:]}")
        with self._stdout_file.open("ab") as out:
            process = subprocess.Popen(
                self._java("kafka.Kafka", str(config)),
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        self.pid_file.write_text(f"{process.pid}\n")
        self._wait_ready(timeout, process)
        return f"Kafka {self.kafka_version} started on {self.bootstrap} (pid {process.pid})"

    def _wait_ready(self, timeout: float, process: subprocess.Popen[bytes] | None = None) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if broker_answers(self.bootstrap, timeout=1.0):
                return
            if process is not None and process.poll() is not None:
                raise BrokerError(
                    f"Kafka exited with code {process.returncode} while starting:\n{self.log_tail()}"
                )
            time.sleep(0.3)
        raise BrokerError(
            f"Kafka did not answer on {self.bootstrap} within {timeout:.0f}s:\n{self.log_tail()}"
        )

    def log_tail(self, lines: int = 20) -> str:
        text = []
        for path in (self._stdout_file, self.log_file):
            if path.exists():
                text.extend(path.read_text(errors="replace").splitlines()[-lines:])
        return "\n".join(text[-lines:]) or "(no broker log yet)"

    def stop(self, timeout: float = 60.0) -> str:
        """Stop the broker cleanly (SIGTERM, controlled shutdown); SIGKILL only past `timeout`."""
        pid = self.pid()
        if pid is None:
            self.pid_file.unlink(missing_ok=True)
            return "Kafka is not running"
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.pid() is not None:
            time.sleep(0.2)
        if self.pid() is not None:
            os.kill(pid, signal.SIGKILL)
            self.pid_file.unlink(missing_ok=True)
            return f"Kafka (pid {pid}) did not stop within {timeout:.0f}s and was killed"
        self.pid_file.unlink(missing_ok=True)
        return f"Kafka stopped (pid {pid})"

    def status(self) -> tuple[bool, str]:
        pid = self.pid()
        if pid is None:
            return False, f"Kafka is not running ({self.data_dir})"
        if not broker_answers(self.bootstrap):
            return False, f"Kafka process {pid} is up but does not answer on {self.bootstrap}"
        return True, f"Kafka {self.kafka_version} running on {self.bootstrap} (pid {pid})"
