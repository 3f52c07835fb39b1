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

__all__ = ["CODEC_NAME", "EventCodec", "ModelCodec", "Rejected", "register", "register_model"]

CODEC_NAME = "daylight-event"


@dataclass(frozen=True, slots=True)
class Rejected:
    """A message value that is not a valid contract event, with the reason it was refused."""

    reason: str
    message: str


class EventCodec(codecs.Codec):
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


class ModelCodec(codecs.Codec):
    """Values passed between the stages of one detector (internal topics, our own writes)."""

    def __init__(self, model: type[EventBase]) -> None:
        super().__init__()
        self._model = model

    def _loads(self, s: bytes) -> Any:
        try:
            return self._model.model_validate_json(s)
        except ValueError as exc:
            return Rejected("invalid_internal", str(exc)[:500])

    def _dumps(self, obj: Any) -> bytes:
        return encode_event(obj)


def register() -> None:
    codecs.register(CODEC_NAME, EventCodec())


def register_model(model: type[EventBase]) -> str:
    """Register a codec for `model`; return its serializer name."""
    name = f"daylight-{model.__name__}"
    codecs.register(name, ModelCodec(model))
    return name
