"""The one orjson codec: bytes on the wire to typed events and findings, and back."""

from __future__ import annotations

import orjson
from pydantic import TypeAdapter, ValidationError

from schemas.case import Case, CaseVerdict, Feedback, Suppression
from schemas.events import Event, EventBase
from schemas.finding import Finding

__all__ = [
    "InvalidEvent",
    "decode_event",
    "decode_feedback",
    "decode_finding",
    "encode_case",
    "encode_event",
    "encode_finding",
    "error_summary",
]

_EVENT_ADAPTER: TypeAdapter[Event] = TypeAdapter(Event)
# Its compiled validator, called directly: the adapter's Python wrapper cost a tenth of
# what validating an event does (docs/PERFORMANCE.md).
_EVENT_VALIDATOR = _EVENT_ADAPTER.validator
_FEEDBACK: TypeAdapter[CaseVerdict | Suppression] = TypeAdapter(Feedback)


class InvalidEvent(ValueError):
    """A message that is not a valid contract event; `reason` is a short, bounded class name."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


def error_summary(error: ValidationError, limit: int = 3) -> str:
    """`field.path: message` for the first errors, without pydantic's internal union labels."""
    parts = []
    for item in error.errors(include_url=False)[:limit]:
        loc = ".".join(str(p) for p in item["loc"] if not _is_internal_loc(p))
        parts.append(f"{loc or '<value>'}: {item['msg']}")
    more = error.error_count() - limit
    return "; ".join(parts) + (f"; and {more} more" if more > 0 else "")


def _is_internal_loc(part: int | str) -> bool:
    return isinstance(part, str) and ("[" in part or ("-" in part and "function" in part))


def decode_event(raw: bytes | None) -> Event:
    """Parse and validate one message value; raise InvalidEvent naming what is wrong."""
    if raw is None or raw == b"":
        raise InvalidEvent("empty_value", "message value is empty")
    try:
        event: Event = _EVENT_VALIDATOR.validate_json(raw)
        return event
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        kind = first["type"]
        if kind == "json_invalid":
            raise InvalidEvent("invalid_json", f"not a JSON document: {first['msg']}") from None
        if kind in ("model_attributes_type", "dict_type", "model_type") and not first["loc"]:
            raise InvalidEvent("not_an_object", "value is not a JSON object") from None
        if kind == "union_tag_invalid":
            tag = first.get("ctx", {}).get("tag")
            raise InvalidEvent("unknown_type", f"type: unknown event type {tag!r}") from None
        if kind == "union_tag_not_found":
            raise InvalidEvent("invalid_event", "type: field required") from None
        raise InvalidEvent("invalid_event", error_summary(exc)) from None


def encode_event(event: EventBase) -> bytes:
    return orjson.dumps(event.model_dump(mode="json", exclude_none=True))


def encode_finding(finding: Finding) -> bytes:
    return orjson.dumps(finding.model_dump(mode="json", exclude_none=True))


def encode_case(case: Case) -> bytes:
    return orjson.dumps(case.model_dump(mode="json", exclude_none=True))


def decode_feedback(raw: bytes) -> CaseVerdict | Suppression:
    """A message of daylight.feedback; InvalidEvent (with the reason) when it is not one."""
    try:
        return _FEEDBACK.validate_json(raw)
    except ValidationError as exc:
        raise InvalidEvent("invalid_feedback", error_summary(exc)) from None


def decode_finding(raw: bytes) -> Finding:
    return Finding.model_validate_json(raw)
