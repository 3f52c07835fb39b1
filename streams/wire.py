"""The Faust codec of the `platform.*` topics: decodes each message once, never raises.

Faust hands one decoded value to every agent subscribed to a topic. A message that is not a
valid event decodes to a `Rejected` value instead of raising, so the intake agent can send it to
the dead-letter topic once, and detector agents simply skip it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from faust.serializers import codecs

from schemas.codec import InvalidEvent, decode_event, encode_event
from schemas.events import EventBase

__all__ = ["CODEC_NAME", "EventCodec", "Rejected", "register"]

CODEC_NAME = "daylight-event"


@dataclass(frozen=True, slots=True)
class Rejected:
    """A message value that is not a valid contract event, with the reason it was refused."""

    reason: str
    message: str


class EventCodec(codecs.Codec):  # type: ignore[misc]
    def _loads(self, s: bytes) -> Any:
        try:
            return decode_event(s)
        except InvalidEvent as exc:
            return Rejected(exc.reason, exc.message)

    def _dumps(self, obj: Any) -> bytes:
        # Used when an agent repartitions events (group_by) onto an internal topic.
        if isinstance(obj, EventBase):
            return encode_event(obj)
        if isinstance(obj, bytes):
            return obj
        raise TypeError(f"cannot encode {type(obj).__name__} as a contract event")


def register() -> None:
    codecs.register(CODEC_NAME, EventCodec())
