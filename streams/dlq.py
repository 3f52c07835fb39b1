"""The dead-letter path: a refused message keeps its key, value, headers and timestamp."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from faust.types import Message

__all__ = ["ERROR_HEADER_PREFIX", "dead_letter_headers"]

# In the style of Kafka Connect's `__connect.errors.*` headers.
ERROR_HEADER_PREFIX = "daylight.errors."
_MAX_ERROR_MESSAGE = 1000


def dead_letter_headers(message: Message, reason: str, error: str) -> list[tuple[str, bytes]]:
    """The original headers followed by headers naming where the message came from and why."""
    original: Sequence[tuple[str, bytes]]
    raw = message.headers
    if raw is None:
        original = []
    elif isinstance(raw, Mapping):
        original = list(raw.items())
    else:
        original = list(raw)
    return [
        *original,
        (ERROR_HEADER_PREFIX + "topic", message.topic.encode()),
        (ERROR_HEADER_PREFIX + "partition", str(message.partition).encode()),
        (ERROR_HEADER_PREFIX + "offset", str(message.offset).encode()),
        (ERROR_HEADER_PREFIX + "exception.class.name", reason.encode()),
        (ERROR_HEADER_PREFIX + "exception.message", error[:_MAX_ERROR_MESSAGE].encode()),
    ]
