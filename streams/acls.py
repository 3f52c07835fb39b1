"""Kafka ACLs that decide who may speak on daylight.feedback (`daylight topics acls`).

A suppression silences detection, so only the SOC's principal may write daylight.feedback.
The worker's principal reads the platform's topics and feedback, writes findings and cases,
and owns its consumer group and its own (app-id prefixed) internal topics; it may not write
feedback. Readers of daylight.cases (a SIEM, `daylight cases list`) get read access only.
Applied with the broker's StandardAuthorizer (KRaft), idempotently.
"""

from __future__ import annotations

from typing import Any

from confluent_kafka.admin import (  # type: ignore[attr-defined]
    AclBinding,
    AclOperation,
    AclPermissionType,
    AdminClient,
    ResourcePatternType,
    ResourceType,
)

from streams import topics

__all__ = ["apply_acls", "bindings"]

_ALLOW = AclPermissionType.ALLOW
_LITERAL = ResourcePatternType.LITERAL
_PREFIXED = ResourcePatternType.PREFIXED


def _allow(principal: str, kind: ResourceType, name: str, pattern: ResourcePatternType,
           *operations: AclOperation) -> list[AclBinding]:  # fmt: skip
    return [AclBinding(kind, name, pattern, principal, "*", op, _ALLOW) for op in operations]


def bindings(worker: str, soc: str, readers: tuple[str, ...], app_id: str) -> list[AclBinding]:
    """The ACLs for a worker principal, the SOC's principal and read-only case readers."""
    read = (AclOperation.READ, AclOperation.DESCRIBE)
    write = (AclOperation.WRITE, AclOperation.DESCRIBE)
    acls = []
    for name in (*topics.INPUT_TOPICS, topics.FEEDBACK):
        acls += _allow(worker, ResourceType.TOPIC, name, _LITERAL, *read)
    for name in (topics.ALERTS, topics.CASES, topics.DLQ):
        acls += _allow(worker, ResourceType.TOPIC, name, _LITERAL, *read, AclOperation.WRITE)
    # Its repartition topics and table changelogs (`<app id>-...`; the dash keeps the default
    # app id "daylight" from matching daylight.feedback), and its consumer group.
    acls += _allow(worker, ResourceType.TOPIC, f"{app_id}-", _PREFIXED, AclOperation.ALL)
    acls += _allow(worker, ResourceType.GROUP, app_id, _LITERAL, AclOperation.ALL)
    acls += _allow(worker, ResourceType.GROUP, "daylight-tail-", _PREFIXED, AclOperation.READ)
    acls += _allow(worker, ResourceType.BROKER, "kafka-cluster", _LITERAL,
                   AclOperation.IDEMPOTENT_WRITE, AclOperation.DESCRIBE)  # fmt: skip
    acls += _allow(soc, ResourceType.TOPIC, topics.FEEDBACK, _LITERAL, *write)
    acls += _allow(soc, ResourceType.BROKER, "kafka-cluster", _LITERAL,
                   AclOperation.IDEMPOTENT_WRITE)  # fmt: skip
    for reader in (soc, *readers):
        acls += _allow(reader, ResourceType.TOPIC, topics.CASES, _LITERAL, *read)
        acls += _allow(reader, ResourceType.TOPIC, topics.ALERTS, _LITERAL, *read)
        acls += _allow(reader, ResourceType.GROUP, "daylight-tail-", _PREFIXED, AclOperation.READ)
    return acls


def apply_acls(client_config: dict[str, Any], acls: list[AclBinding], timeout: float = 30) -> int:
    """Create the bindings (existing ones are left as they are); return how many."""
    admin = AdminClient(client_config)
    for future in admin.create_acls(acls, request_timeout=timeout).values():
        future.result()
    return len(acls)
