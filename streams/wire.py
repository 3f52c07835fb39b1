"""The Faust codec of the `platform.*` topics: decodes each message once, never raises.

Faust hands one decoded value to every agent subscribed to a topic. A message that is not a
valid event decodes to a `Rejected` value instead of raising, so the intake agent can send it to
the dead-letter topic once, and detector agents simply skip it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import faust
from faust.exceptions import ValueDecodeError
from faust.serializers import codecs
from faust.types import AppT

from schemas.codec import InvalidEvent, decode_event, encode_event
from schemas.events import EventBase

__all__ = [
    "CODEC_NAME",
    "EventCodec",
    "Mark",
    "ModelCodec",
    "RawKeySchema",
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


class RawKeySchema(faust.Schema[bytes, Any]):
    """A topic's schema: the key as its bytes, the value through one of the codecs above,
    decoded straight from the message instead of through Faust's serializer registry (which,
    per message, looked the key's and the value's codecs up by name and passed each through
    its model reconstruction: about as much time again as decoding the event itself). What it
    gives is what the registry gave for these serializers: the key's bytes or None, the
    codec's value (our codecs never raise; a value that is not an event is `Rejected`), None
    for a message without a value; an exception from a codec is a `ValueDecodeError`, handled
    as Faust handles one."""

    def __init__(self, value_serializer: str) -> None:
        super().__init__(key_serializer="raw", value_serializer=value_serializer)

    def compile(
        self,
        app: AppT,
        *,
        on_key_decode_error: Any = None,
        on_value_decode_error: Any = None,
        default_propagate: bool = False,
    ) -> Any:
        loads = codecs.get_codec(self.value_serializer).loads
        create_event = _event_maker(app)

        async def decode(message: Any, *, propagate: bool = default_propagate) -> Any:
            value = message.value
            try:
                decoded = None if value is None else loads(value)
            except MemoryError:
                raise
            except Exception as exc:
                error = ValueDecodeError(str(exc))
                if propagate or on_value_decode_error is None:
                    raise error from exc
                await on_value_decode_error(error, message)
                return None
            return create_event(message.key, decoded, message.headers, message)

        return decode


def _event_maker(app: Any) -> Any:
    """`app.create_event`, with the app's Event class read once: Faust's reads it through its
    settings machinery for every message (1.7% of the worker's main thread behind a backlog,
    nineteenth session)."""
    if not isinstance(app, faust.App):
        return app.create_event
    event_type: Any = app.conf.Event

    def create_event(key: Any, value: Any, headers: Any, message: Any) -> Any:
        return event_type(app, key, value, headers, message)

    return create_event
