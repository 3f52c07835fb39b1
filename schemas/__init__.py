"""Contract v1 of Daylight as code: event and finding models, the codec, the JSON Schemas."""

from schemas.codec import InvalidEvent, decode_event, decode_finding, encode_event, encode_finding
from schemas.events import EVENT_MODELS, TOPIC_BY_TYPE, Event, EventBase
from schemas.finding import Finding, Severity

__all__ = [
    "EVENT_MODELS",
    "TOPIC_BY_TYPE",
    "Event",
    "EventBase",
    "Finding",
    "InvalidEvent",
    "Severity",
    "decode_event",
    "decode_finding",
    "encode_event",
    "encode_finding",
]
