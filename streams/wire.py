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

__all__ = [
    "CODEC_NAME",
    "EventCodec",
    "Mark",
    "ModelCodec",
    "Rejected",
    "encode_mark",
    "register",
    "register_model",
]

CODEC_NAME = "daylight-event"


@dataclass(frozen=True, slots=True)
class Rejected:
    """A message value that is not a valid contract event, with the reason it was refused."""

    reason: str
    message: str


@dataclass(frozen=True, slots=True)
class Mark:
    """A watermark mark on a repartition topic: the input partition named in the record's
    origin header sends nothing older than `ms` (event time) from now on, so a stage waiting
    for its input to be complete need not wait for that partition to send a record."""

    ms: int


_MARK_PREFIX = b'{"daylight_mark":'


def encode_mark(ms: int) -> bytes:
    return _MARK_PREFIX + str(int(ms)).encode() + b"}"


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
        if s.startswith(_MARK_PREFIX):
            try:
                return Mark(int(s[len(_MARK_PREFIX) : -1]))
            except ValueError:
                return Rejected("invalid_internal", "a malformed watermark mark")
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
