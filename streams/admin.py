"""Applies deploy/topics.yaml to the cluster idempotently, through confluent-kafka's AdminClient."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from confluent_kafka import KafkaException
from confluent_kafka.admin import (  # type: ignore[attr-defined]
    AdminClient,
    ConfigResource,
    NewTopic,
)

from streams.broker import PROJECT_ROOT

__all__ = [
    "TOPICS_FILE",
    "TopicSpec",
    "create_topics",
    "ensure_topics",
    "load_topic_specs",
    "missing_topics",
]

TOPICS_FILE = PROJECT_ROOT / "deploy" / "topics.yaml"


@dataclass(frozen=True)
class TopicSpec:
    name: str
    partitions: int
    replication_factor: int
    config: dict[str, str]


def load_topic_specs(path: Path = TOPICS_FILE, partitions: int | None = None) -> list[TopicSpec]:
    """Read the topic declarations; `partitions` overrides every topic's partition count."""
    document: dict[str, Any] = yaml.safe_load(path.read_text())
    defaults = document.get("defaults", {})
    specs = []
    for name, body in (document.get("topics") or {}).items():
        body = body or {}
        specs.append(
            TopicSpec(
                name=name,
                partitions=int(partitions or body.get("partitions", defaults.get("partitions", 6))),
                replication_factor=int(
                    body.get("replication_factor", defaults.get("replication_factor", 1))
                ),
                config={k: str(v) for k, v in (body.get("config") or {}).items()},
            )
        )
    return specs


def create_topics(
    client_config: dict[str, Any], specs: list[TopicSpec], timeout: float = 30.0
) -> list[str]:
    """Create missing topics and align the config of existing ones; return what was done."""
    admin = AdminClient(client_config)
    existing = admin.list_topics(timeout=timeout).topics
    report: list[str] = []
    to_create = [spec for spec in specs if spec.name not in existing]
    if to_create:
        futures = admin.create_topics(
            [
                NewTopic(spec.name, spec.partitions, spec.replication_factor, config=spec.config)
                for spec in to_create
            ],
            operation_timeout=timeout,
        )
        for name, future in futures.items():
            try:
                future.result()
                report.append(f"created {name}")
            except KafkaException as exc:
                if exc.args[0].name() != "TOPIC_ALREADY_EXISTS":
                    raise
                report.append(f"exists  {name}")
    for spec in specs:
        if spec.name not in existing:
            continue
        actual = len(existing[spec.name].partitions)
        note = ""
        if actual != spec.partitions:
            # Changing partition counts re-maps keys and breaks co-partitioned tables: refuse.
            note = f" (has {actual} partitions, declared {spec.partitions}: left as is)"
        if spec.config:
            resource = ConfigResource(ConfigResource.Type.TOPIC, spec.name, set_config=spec.config)
            for future in admin.alter_configs([resource]).values():
                future.result(timeout=timeout)
        report.append(f"exists  {spec.name}{note}")
    return report


def ensure_topics(
    client_config: dict[str, Any],
    names: list[str],
    partitions: int,
    retention_ms: int | None = None,
    timeout: float = 30.0,
) -> list[str]:
    """Create the named topics if missing (internal topics of the worker: deleted after
    `retention_ms`, or compacted when None, as table changelogs are), wait until every
    partition has a leader, and return those made. A producer handed a topic whose leaders
    are still being elected can hold its records long enough to stall an offset commit."""
    config = (
        {"cleanup.policy": "compact"}
        if retention_ms is None
        else {"cleanup.policy": "delete", "retention.ms": str(retention_ms)}
    )
    specs = [TopicSpec(name, partitions, 1, config) for name in names]
    made = [line for line in create_topics(client_config, specs) if line.startswith("created")]
    admin = AdminClient(client_config)
    deadline = time.monotonic() + timeout
    while names:
        topics = admin.list_topics(timeout=timeout).topics
        leaderless = [
            name
            for name in names
            if name not in topics
            or topics[name].error is not None
            or any(p.leader < 0 for p in topics[name].partitions.values())
        ]
        if not leaderless:
            break
        if time.monotonic() > deadline:
            raise RuntimeError(f"topics without a leader after {timeout:g}s: {leaderless}")
        time.sleep(0.2)
    return made


def missing_topics(
    client_config: dict[str, Any], names: list[str], timeout: float = 10.0
) -> list[str]:
    existing = AdminClient(client_config).list_topics(timeout=timeout).topics
    return [name for name in names if name not in existing]
