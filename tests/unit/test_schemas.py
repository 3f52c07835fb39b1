"""The contract as code: every example validates; every bad input is refused, naming the field."""

from __future__ import annotations

import json
from pathlib import Path

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from schemas.codec import InvalidEvent, decode_event, decode_finding, encode_event
from schemas.events import EVENT_MODELS, TOPIC_BY_TYPE
from schemas.jsonschema import JSON_DIR, generate, render
from schemas.types import canonical_ip

EXAMPLES = Path(__file__).parents[1] / "data" / "events"


def example(event_type: str) -> dict[str, object]:
    return json.loads((EXAMPLES / f"{event_type}.json").read_text())


@pytest.mark.parametrize("event_type", sorted(EVENT_MODELS))
def test_every_event_type_has_a_valid_example(event_type: str) -> None:
    event = decode_event(orjson.dumps(example(event_type)))
    assert type(event) is EVENT_MODELS[event_type]
    assert event.type == event_type  # type: ignore[attr-defined]
    assert event_type in TOPIC_BY_TYPE


@pytest.mark.parametrize("event_type", sorted(EVENT_MODELS))
def test_encode_then_decode_gives_the_same_event(event_type: str) -> None:
    event = decode_event(orjson.dumps(example(event_type)))
    assert decode_event(encode_event(event)) == event


def login(**changes: object) -> bytes:
    document = {**example("login"), **changes}
    return orjson.dumps({k: v for k, v in document.items() if v is not ...})


@pytest.mark.parametrize(
    ("raw", "reason", "names"),
    [
        (b"\xff\xfe garbage", "invalid_json", "JSON"),
        (b"", "empty_value", "empty"),
        (b"[1, 2]", "not_an_object", "object"),
        (login(type="login_succeeded"), "unknown_type", "login_succeeded"),
        (login(type=...), "invalid_event", "type"),
        (login(account_id=...), "invalid_event", "account_id"),
        (login(event_id=""), "invalid_event", "event_id"),
        (login(ip="300.1.2.3"), "invalid_event", "ip"),
        (login(ip="localhost"), "invalid_event", "ip"),
        (login(occurred_at="2026-03-01T08:15:00"), "invalid_event", "occurred_at"),
        (login(occurred_at="2026-03-01"), "invalid_event", "occurred_at"),
        (login(occurred_at=1772352900), "invalid_event", "occurred_at"),
        (login(geo={"country": "XX", "lat": 1, "lon": 2}), "invalid_event", "geo.country"),
        (login(geo={"country": "us", "lat": 1, "lon": 2}), "invalid_event", "geo.country"),
        (login(geo={"country": "US", "lat": 91, "lon": 2}), "invalid_event", "geo.lat"),
        (login(schema_version=2), "invalid_event", "schema_version"),
        (login(event_id=12), "invalid_event", "event_id"),
    ],
)
def test_bad_input_is_refused_with_the_field_named(raw: bytes, reason: str, names: str) -> None:
    with pytest.raises(InvalidEvent) as refused:
        decode_event(raw)
    assert refused.value.reason == reason
    assert names in refused.value.message


def test_bad_payout_amount_and_currency_are_refused() -> None:
    payout = example("payout_sent")
    for field, value in [
        ("amount", "-5"),
        ("amount", "0"),
        ("amount", "lots"),
        ("currency", "usd"),
    ]:
        with pytest.raises(InvalidEvent) as refused:
            decode_event(orjson.dumps({**payout, field: value}))
        assert field in refused.value.message


def test_an_offset_other_than_utc_is_kept() -> None:
    event = decode_event(orjson.dumps(example("logout")))
    assert event.occurred_at.utcoffset() is not None
    assert event.occurred_at.utcoffset().total_seconds() == 9 * 3600  # type: ignore[union-attr]


def test_unknown_extra_fields_are_ignored_for_forward_compatibility() -> None:
    event = decode_event(login(new_optional_field={"a": 1}))
    assert event.account_id == "acct-1001"


@given(st.binary(max_size=300))
def test_no_bytes_make_the_decoder_raise_anything_but_invalid_event(raw: bytes) -> None:
    try:
        decode_event(raw)
    except InvalidEvent as refused:
        assert refused.reason in {
            "invalid_json",
            "empty_value",
            "not_an_object",
            "invalid_event",
            "unknown_type",
        }


def test_committed_json_schemas_match_the_models() -> None:
    """Fails when schemas/json drifts from the models: run `daylight schemas export`."""
    generated = generate()
    committed = {path.name for path in JSON_DIR.glob("*.json")}
    assert committed == set(generated)
    for name, document in generated.items():
        assert (JSON_DIR / name).read_bytes() == render(document), name


def test_json_schema_refuses_what_the_model_refuses() -> None:
    schema = json.loads((JSON_DIR / "login.json").read_text())
    assert set(schema["required"]) >= {"event_id", "occurred_at", "account_id", "type", "ip"}
    assert schema["properties"]["type"]["const"] == "login"


def test_finding_example_round_trips() -> None:
    from detectors import geo_velocity
    from detectors.core.engine import DetectorRunner

    runner = DetectorRunner(geo_velocity.build())
    first = {**example("login"), "event_id": "a"}
    second = {
        **example("login"),
        "event_id": "b",
        "occurred_at": "2026-03-01T08:45:00Z",
        "geo": {"country": "KP", "lat": 39.0, "lon": 125.7, "city": "Pyongyang"},
    }
    drafts = [d for e in (first, second) for d in runner.feed(decode_event(orjson.dumps(e)))]
    finding = drafts[0].to_finding()
    raw = orjson.dumps(finding.model_dump(mode="json", exclude_none=True))
    assert decode_finding(raw) == finding
    assert finding.class_uid == 2004 and finding.type_uid == 200401
    assert finding.metadata.version == "1.8.0" and finding.metadata.product.name == "Daylight"


@pytest.mark.parametrize(
    ("given", "canonical"),
    [
        ("198.51.100.7", "198.51.100.7"),
        ("2001:DB8:0:0::1", "2001:db8::1"),
        ("2001:db8::1", "2001:db8::1"),
        ("fe80::1%eth0", "fe80::1%eth0"),
    ],
)
def test_one_address_is_one_key_whatever_its_spelling(given: str, canonical: str) -> None:
    login = {"event_id": "e", "type": "login", "occurred_at": "2026-03-01T00:00:00Z",
             "account_id": "a", "ip": given}  # fmt: skip
    assert decode_event(orjson.dumps(login)).ip == canonical  # type: ignore[union-attr]


@pytest.mark.parametrize("bad", ["1.2.3.999", "01.2.3.4", "1.2.3", "::g", "", 3232235777, None])
def test_an_invalid_address_is_refused(bad: object) -> None:
    login = {"event_id": "e", "type": "login", "occurred_at": "2026-03-01T00:00:00Z",
             "account_id": "a", "ip": bad}  # fmt: skip
    with pytest.raises(InvalidEvent) as refused:
        decode_event(orjson.dumps(login))
    assert refused.value.reason == "invalid_event" and "ip" in refused.value.message


def test_addresses_read_again_stay_canonical_and_the_memory_of_them_is_bounded() -> None:
    from schemas import types

    def login(ip: str) -> dict[str, str]:
        return {"event_id": "e", "type": "login", "occurred_at": "2026-03-01T00:00:00Z",
                "account_id": "a", "ip": ip}  # fmt: skip

    for _ in range(2):  # the second time from what was remembered
        assert decode_event(orjson.dumps(login("2001:DB8:0:0::1"))).ip == "2001:db8::1"  # type: ignore[union-attr]
        with pytest.raises(InvalidEvent):
            decode_event(orjson.dumps(login("1.2.3.999")))
    remembered = types._parse_ip.cache_info()
    assert remembered.maxsize is not None
    spellings = [f"2001:DB8::{n + 1:x}" for n in range(remembered.maxsize + 100)]
    for spelling in spellings:
        assert canonical_ip(spelling) == spelling.lower()
    assert types._parse_ip.cache_info().currsize <= remembered.maxsize
    assert canonical_ip(spellings[0]) == spellings[0].lower()


def test_an_events_time_in_milliseconds_is_computed_once_and_is_not_a_field() -> None:
    raw = orjson.dumps({"event_id": "e", "type": "login", "occurred_at": "2026-03-01T00:00:01.5+01:00",
                        "account_id": "a", "ip": "192.0.2.1"})  # fmt: skip
    event = decode_event(raw)
    assert event.occurred_ms == 1_772_319_601_500  # 2026-02-28T23:00:01.5Z
    assert event.occurred_ms == event.occurred_ms
    assert "occurred_ms" not in event.model_dump() and event == decode_event(raw)
