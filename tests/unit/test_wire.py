"""The input and repartition topics' schema (streams/wire.py, `RawKeySchema`) decodes each
message to the event Faust's own schema, with the same serializers, gave: a valid event, a
refused one, a mark, a message without key or value, and a codec that raises."""

from __future__ import annotations

import asyncio
from typing import Any

import faust
import pytest
from faust.exceptions import ValueDecodeError
from faust.serializers import codecs
from faust.types import TP, Message

from detectors.bid_pattern import BidActivity
from streams.wire import CODEC_NAME, RawKeySchema, encode_mark, register, register_model
from tests.unit.test_schemas import login


def _message(key: bytes | None, value: bytes | None) -> Message:
    return Message(
        "platform.logins",
        2,
        41,
        0.0,
        0,
        [("h", b"v")],
        key,
        value,
        None,
        tp=TP("platform.logins", 2),
    )


def _decode(schema: faust.Schema[Any, Any], message: Message, **kwargs: Any) -> Any:
    app = faust.App("test-wire", broker="memory://")
    return asyncio.run(schema.compile(app, **kwargs)(message))


MESSAGES = [
    (b"acct-1", login()),  # a valid event
    (b"acct-1", login(ip="300.1.2.3")),  # refused: Rejected with the reason
    (b"acct-1", b"\xff\xfe garbage"),
    (None, login()),  # no key
    (b"acct-1", None),  # no value (a tombstone)
]


@pytest.mark.parametrize(("key", "value"), MESSAGES)
def test_an_input_message_decodes_as_faust_decoded_it(
    key: bytes | None, value: bytes | None
) -> None:
    register()
    message = _message(key, value)
    ours = _decode(RawKeySchema(CODEC_NAME), message)
    faust_own = _decode(faust.Schema(key_serializer="raw", value_serializer=CODEC_NAME), message)
    assert (ours.key, ours.value, ours.headers, ours.message) == (
        faust_own.key,
        faust_own.value,
        faust_own.headers,
        faust_own.message,
    )
    assert ours.key == key


@pytest.mark.parametrize("value", [encode_mark(1_772_352_900_000), b'{"daylight_mark":x}', b"{}"])
def test_a_repartition_message_decodes_as_faust_decoded_it(value: bytes) -> None:
    name = register_model(BidActivity)
    message = _message(b"fl-1", value)
    ours = _decode(RawKeySchema(name), message)
    faust_own = _decode(faust.Schema(key_serializer="raw", value_serializer=name), message)
    assert ours.value == faust_own.value


class Exploding(codecs.Codec):
    def _loads(self, s: bytes) -> Any:
        raise RuntimeError("boom")

    def _dumps(self, obj: Any) -> bytes:
        raise NotImplementedError


def test_a_codec_that_raises_is_a_value_decode_error_handled_as_faust_handles_it() -> None:
    codecs.register("test-exploding", Exploding())
    message = _message(b"k", b"v")
    with pytest.raises(ValueDecodeError, match="boom"):
        _decode(RawKeySchema("test-exploding"), message, default_propagate=True)
    handled: list[tuple[str, Message]] = []

    async def on_error(exc: Exception, got: Message) -> None:
        handled.append((str(exc), got))

    assert _decode(RawKeySchema("test-exploding"), message, on_value_decode_error=on_error) is None
    assert handled == [("boom", message)]
