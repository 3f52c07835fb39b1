"""Runtime settings: explicit argument > environment (`DAYLIGHT_*`) > default.

A bad value fails at start with pydantic's message, which names the variable.
"""

from __future__ import annotations

import gc
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["Settings", "SettingsError", "load_settings", "tune_collector"]

SecurityProtocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
SaslMechanism = Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]


def tune_collector(young_allocations: int) -> None:
    """Python's cyclic garbage collector for a process that allocates per event: what it
    holds now (modules, the app, its agents) is frozen out of every collection, and the
    youngest generation is collected every `young_allocations` allocations instead of 700
    (a replay of the bench backlog spent 6% of its time collecting; docs/PERFORMANCE.md)."""
    gc.freeze()
    if young_allocations:
        _, middle, oldest = gc.get_threshold()
        gc.set_threshold(young_allocations, middle, oldest)


class SettingsError(ValueError):
    """A setting has a bad value; the message names the environment variable."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="DAYLIGHT_", frozen=True, extra="ignore")

    bootstrap_servers: str = Field(
        default="127.0.0.1:9092", description="Kafka bootstrap servers, host:port[,host:port]"
    )
    security_protocol: SecurityProtocol = "PLAINTEXT"
    sasl_mechanism: SaslMechanism | None = None
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None
    ssl_cafile: Path | None = None
    ssl_certfile: Path | None = None
    ssl_keyfile: Path | None = None
    ssl_key_password: SecretStr | None = None

    app_id: str = Field(default="daylight", min_length=1, description="consumer group / app id")
    topic_partitions: int = Field(default=6, ge=1, le=1000)
    store: Literal["memory", "rocksdb"] = "memory"
    data_dir: Path = Path(".daylight/worker")
    log_level: Literal["debug", "info", "warn", "error"] = "warn"
    metrics_port: int = Field(default=9108, ge=0, le=65535, description="0 disables the endpoint")
    broker_check_timeout_seconds: float = Field(default=10.0, gt=0)
    session_timeout_seconds: float = Field(
        default=30.0,
        ge=6,
        le=300,
        description="a worker silent this long leaves the group; its partitions move on",
    )

    batch_max_events: int = Field(
        default=4000,
        ge=1,
        le=100_000,
        description="most events a stage handles before waiting for the broker's acknowledgements",
    )

    gc_young_allocations: int = Field(
        default=200_000,
        ge=0,
        le=10_000_000,
        description=(
            "allocations between two collections of Python's youngest generation (0: Python's "
            "own 700); what the process holds at start is frozen out of every collection"
        ),
    )

    commit_interval_seconds: float = Field(
        default=1.0,
        gt=0,
        le=60,
        description="how often the worker commits the offsets its stages have acknowledged (s)",
    )
    stream_buffer_events: int = Field(
        default=4096,
        ge=1,
        le=1_000_000,
        description="events read ahead of an agent (its stream buffer) before its partitions pause",
    )

    fetch_max_records: int = Field(
        default=2000,
        ge=1,
        le=1_000_000,
        description="records the consumer hands on per fetch; the rest of what it prefetched "
        "stays compressed in the fetch responses",
    )
    fetch_partition_bytes: int = Field(
        default=1024 * 1024,
        ge=64 * 1024,
        le=64 * 1024 * 1024,
        description="most bytes the consumer fetches of one partition at a time (aiokafka's "
        "max_partition_fetch_bytes); a larger message still comes whole",
    )
    read_ahead_ms: int = Field(
        default=1000,
        ge=0,
        le=86_400_000,
        description="how far, in Kafka record time (ms), an input partition is read ahead of the "
        "slowest input partition still behind its end (0: no limit)",
    )

    complete_grace_seconds: float = Field(
        default=2.0,
        ge=0,
        le=600,
        description=(
            "a topic partition counts as fully consumed, for decisions that wait for it, once its "
            "end offset (asked of the broker) has not moved for this long and all of it is read"
        ),
    )
    producer_linger_ms: float = Field(
        default=1.0,
        ge=0,
        le=1000,
        description="how long the worker's producer waits to fill a batch (ms)",
    )
    event_loop: Literal["uvloop", "asyncio"] = Field(
        default="uvloop",
        description="the worker's event loop: uvloop (libuv) or the standard library's",
    )
    fetch_loop: Literal["daylight", "faust"] = Field(
        default="daylight",
        description="the consumer's fetch loop: Faust's with its per-message wait only when a "
        "record has to wait (daylight), or Faust's own (faust)",
    )
    detectors: str = Field(
        default="all",
        description="the detectors this worker runs: `all` or a comma-separated list of ids",
    )
    cases: bool = Field(
        default=True,
        description="this worker runs the case agent (daylight.alerts and daylight.feedback "
        "in, daylight.cases out); with detectors spread over several groups, one group only",
    )

    @field_validator("detectors")
    @classmethod
    def _known_detectors(cls, value: str) -> str:
        from detectors import DETECTOR_IDS

        names = [name.strip() for name in value.split(",") if name.strip()]
        unknown = [name for name in names if name not in (*DETECTOR_IDS, "all")]
        if not names or unknown:
            raise ValueError(f"expected `all` or ids among {', '.join(DETECTOR_IDS)}")
        return ",".join(names)

    @property
    def detector_ids(self) -> tuple[str, ...]:
        from detectors import DETECTOR_IDS

        names = self.detectors.split(",")
        return DETECTOR_IDS if "all" in names else tuple(i for i in DETECTOR_IDS if i in names)

    @field_validator("bootstrap_servers")
    @classmethod
    def _host_ports(cls, value: str) -> str:
        for server in value.split(","):
            host, _, port = server.strip().rpartition(":")
            if not host or not port.isdigit():
                raise ValueError(f"expected host:port[,host:port], got {value!r}")
        return value

    @property
    def servers(self) -> list[str]:
        return [server.strip() for server in self.bootstrap_servers.split(",")]

    def confluent_config(self) -> dict[str, Any]:
        """librdkafka settings for confluent-kafka clients (CLI, admin, producer, tail)."""
        config: dict[str, Any] = {
            "bootstrap.servers": self.bootstrap_servers,
            "security.protocol": self.security_protocol.lower(),
        }
        if self.sasl_mechanism:
            config["sasl.mechanism"] = self.sasl_mechanism
            config["sasl.username"] = self.sasl_username or ""
            config["sasl.password"] = _reveal(self.sasl_password)
        if self.ssl_cafile:
            config["ssl.ca.location"] = str(self.ssl_cafile)
        if self.ssl_certfile:
            config["ssl.certificate.location"] = str(self.ssl_certfile)
        if self.ssl_keyfile:
            config["ssl.key.location"] = str(self.ssl_keyfile)
        if self.ssl_key_password:
            config["ssl.key.password"] = _reveal(self.ssl_key_password)
        return config


def _reveal(secret: SecretStr | None) -> str:
    return secret.get_secret_value() if secret else ""


def load_settings(**overrides: Any) -> Settings:
    """Build settings, turning validation errors into one message naming each variable."""
    try:
        return Settings(**{k: v for k, v in overrides.items() if v is not None})
    except ValidationError as exc:
        problems = []
        for error in exc.errors(include_url=False):
            name = "DAYLIGHT_" + "_".join(str(p) for p in error["loc"]).upper()
            problems.append(f"{name}: {error['msg']} (got {error.get('input')!r})")
        raise SettingsError("invalid setting: " + "; ".join(problems)) from None
