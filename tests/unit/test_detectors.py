"""Behaviour every detector owes the SOC: duplicates, disorder, missing geo, expiry, dedup."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest

from detectors import geo_velocity, payout_routing, remote_access, shared_ip
from detectors.core.engine import DetectorRunner, StageEngine
from detectors.core.geo import Place
from detectors.payout_routing import names_match
from schemas.codec import decode_event
from schemas.events import EventBase

T0 = datetime.fromisoformat("2026-03-02T08:00:00+00:00")
DALLAS = {"country": "US", "lat": 32.78, "lon": -96.80, "city": "Dallas"}
SHENYANG = {"country": "CN", "lat": 41.80, "lon": 123.43, "city": "Shenyang"}
LONDON = {"country": "GB", "lat": 51.51, "lon": -0.13, "city": "London"}


def login(
    event_id: str,
    minutes: float,
    account: str = "acct",
    ip: str = "198.51.100.1",
    geo: dict[str, Any] | None = None,
    kind: str = "login",
) -> EventBase:
    document: dict[str, Any] = {
        "event_id": event_id,
        "type": kind,
        "occurred_at": (T0 + timedelta(minutes=minutes)).isoformat(),
        "account_id": account,
        "ip": ip,
    }
    if geo is not None:
        document["geo"] = geo
    return decode_event(orjson.dumps(document))


def feed(runner: DetectorRunner, *events: EventBase) -> list[Any]:
    """The findings of `events`, then of the decisions deferred to the end of the input."""
    drafts = [draft for event in events for draft in runner.feed(event)] + runner.finish()
    return [draft.to_finding() for draft in drafts]


class NoLocation:
    def locate(self, ip: str) -> Place | None:
        return None


def geo_runner(**settings: Any) -> DetectorRunner:
    return DetectorRunner(
        geo_velocity.build(geo_velocity.GeoVelocitySettings(**settings), locator=NoLocation())
    )


def test_geo_velocity_states_the_numbers() -> None:
    findings = feed(geo_runner(), login("a", 0, geo=DALLAS), login("b", 47, geo=SHENYANG))
    assert len(findings) == 1
    finding = findings[0]
    assert finding.unmapped["speed_kmh"] > 900
    assert 10_000 < finding.unmapped["distance_km"] < 11_500
    assert finding.message.startswith("Logins 10,")
    assert "within 47 min" in finding.message and "Dallas, US -> Shenyang, CN" in finding.message
    assert [e.src_endpoint.ip for e in finding.evidences] == ["198.51.100.1", "198.51.100.1"]


def test_same_event_twice_gives_one_finding() -> None:
    runner = geo_runner()
    first, second = login("a", 0, geo=DALLAS), login("b", 47, geo=SHENYANG)
    assert len(feed(runner, first, second, second, first, second)) == 1


def test_redelivery_after_a_restart_names_the_same_finding() -> None:
    events = [login("a", 0, geo=DALLAS), login("b", 47, geo=SHENYANG)]
    uids = {f.finding_info.uid for _ in range(2) for f in feed(geo_runner(), *events)}
    assert len(uids) == 1


def test_a_few_minutes_of_disorder_creates_no_false_finding() -> None:
    # London at 0 and 60 min, a late London login at 30 min: neighbours in time, no travel.
    runner = geo_runner()
    events = [login("a", 0, geo=LONDON), login("c", 60, geo=LONDON), login("b", 30, geo=LONDON)]
    assert feed(runner, *events) == []
    # A flight New York -> London arriving in reverse order is still a flight.
    ny = {"country": "US", "lat": 40.71, "lon": -74.01, "city": "New York"}
    runner = geo_runner()
    assert feed(runner, login("d", 500, geo=LONDON), login("e", 0, geo=ny)) == []


def test_missing_geo_is_skipped_and_counted() -> None:
    runner = geo_runner()
    assert feed(runner, login("a", 0), login("b", 5)) == []
    stage = runner.detector.stages[0]
    assert isinstance(stage, geo_velocity.GeoVelocity)
    assert stage.skipped == {"no_location": 2}
    assert runner.state_entries() == 0


def test_dedup_window_gives_one_finding_per_account_per_day() -> None:
    runner = geo_runner()
    hops = [DALLAS, SHENYANG, DALLAS, SHENYANG]
    events = [login(str(i), 60 * i, geo=geo) for i, geo in enumerate(hops)]
    assert len(feed(runner, *events)) == 1
    next_day = [login("x", 60 * 24 * 2, geo=DALLAS), login("y", 60 * 24 * 2 + 30, geo=SHENYANG)]
    assert len(feed(runner, *next_day)) == 1


def test_state_expires_by_event_time() -> None:
    runner = geo_runner(history_hours=1, dedup_window_hours=1)
    feed(runner, *(login(f"a{i}", i, account=f"acct{i}", geo=DALLAS) for i in range(50)))
    assert runner.state_entries() == 50
    # Two days later, one event on another account sweeps every expired one away.
    feed(runner, login("late", 60 * 48, account="other", geo=DALLAS))
    assert runner.state_entries() == 1


def test_one_accounts_state_has_a_fixed_maximum_size() -> None:
    runner = geo_runner(max_logins=8)
    feed(runner, *(login(f"a{i}", i * 10, geo=LONDON) for i in range(100)))
    assert len(runner.stores[0]["acct"]["logins"]) == 8


def test_shared_ip_allowlist_and_growing_case() -> None:
    allow = shared_ip.SharedIpSettings(allowlist_cidrs=("198.51.100.0/24",))
    runner = DetectorRunner(shared_ip.build(allow))
    office = [login(str(i), i, account=f"emp{i}", ip="198.51.100.7") for i in range(10)]
    assert feed(runner, *office) == []
    runner = DetectorRunner(shared_ip.build())
    farm = [login(str(i), i, account=f"id{i}", ip="203.0.113.5") for i in range(12)]
    findings = feed(runner, *farm)
    # Every account that joins reaches the SOC: the 4th, the 6th to 9th, the 11th too.
    assert [f.count for f in findings] == list(range(3, 13))
    assert [f.activity_name for f in findings] == ["Create"] + ["Update"] * 9
    assert len({f.finding_info.uid for f in findings}) == 1
    named = {r.uid for f in findings for r in f.resources}
    assert named == {f"id{i}" for i in range(12)}
    # A login of an account already named says nothing new.
    assert feed(runner, login("again", 20, account="id4", ip="203.0.113.5")) == []


def test_shared_ip_uid_does_not_depend_on_the_order_logins_are_read_in() -> None:
    """Two accounts' partitions read a day apart: a replay in time order and a backlog read
    in any order leave the same open case (uid and accounts)."""
    import random

    # Two episodes of use two days apart (a farm IP worked every other day), and accounts
    # that join one by one.
    minutes = [*range(0, 600, 41), *range(3600, 4400, 53)]
    base = [
        login(f"e{i}", minute, account=f"acct{i % 9}", ip="203.0.113.9")
        for i, minute in enumerate(minutes)
    ]
    ordered = sorted(base, key=lambda event: event.occurred_at)

    def open_cases(events: list[Any]) -> dict[str, set[str]]:
        cases: dict[str, set[str]] = {}
        for finding in feed(DetectorRunner(shared_ip.build()), *events):
            uid = finding.finding_info.uid
            if finding.activity_name == "Close":
                cases.pop(uid, None)
            else:
                cases.setdefault(uid, set()).update(r.uid for r in finding.resources)
        return cases

    reference = open_cases(ordered)
    assert len(reference) == 2
    rng = random.Random(7)
    for _ in range(40):
        by_account: dict[str, list[Any]] = {}
        for event in ordered:
            by_account.setdefault(event.account_id, []).append(event)
        shuffled = []  # each account's logins in order (one partition), accounts interleaved
        queues = list(by_account.values())
        while queues:
            queue = rng.choice(queues)
            shuffled.append(queue.pop(0))
            queues = [q for q in queues if q]
        assert open_cases(shuffled) == reference


def test_shared_ip_bad_cidr_fails_naming_the_setting() -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError) as bad:
        shared_ip.SharedIpSettings(allowlist_cidrs=("10.0.0.0/33",))
    assert "allowlist_cidrs" in str(bad.value)


@pytest.mark.parametrize(
    ("holder", "legal", "same"),
    [
        ("ALVAREZ NUNEZ JOSE", "José Álvarez Núñez", True),
        ("john smith", "John Michael Smith", True),
        ("Smith, John", "John Smith", True),
        ("Jon Smith", "John Smith", True),
        ("Christina Walker", "Carol Jones", False),
        ("Zhang Wei", "John Doe", False),
        ("张伟", "John Doe", False),
    ],
)
def test_holder_name_tolerance(holder: str, legal: str, same: bool) -> None:
    assert names_match(holder, legal) is same


def test_remote_access_ignores_video_calls_and_honours_the_tool_setting() -> None:
    custom = remote_access.RemoteAccessSettings(remote_tools=("Zoom",))
    stage = remote_access.RemoteAccess(custom)
    event = decode_event(
        orjson.dumps(
            {
                "event_id": "s",
                "type": "session_heartbeat",
                "occurred_at": "2026-03-02T08:00:00Z",
                "account_id": "a",
                "session_id": "x",
                "ip": "198.51.100.2",
                "connection": {"remote_tools": ["zoom"]},
            }
        )
    )
    assert stage.signals(event) == ["remote-control software running: zoom"]  # type: ignore[arg-type]
    assert remote_access.RemoteAccess(remote_access.RemoteAccessSettings()).signals(event) == []  # type: ignore[arg-type]


def test_payout_judged_once_for_requested_then_sent() -> None:
    runner = DetectorRunner(payout_routing.build())
    payout = {
        "type": "payout_requested",
        "occurred_at": "2026-03-02T08:00:00Z",
        "account_id": "a",
        "payout_id": "p",
        "amount": "10.00",
        "currency": "USD",
        "method": "bank",
        "destination": {"fingerprint": "f", "country": "CN", "holder_name": None},
        "route": [{"name": "A", "country": "HK"}, {"name": "B", "country": "CN"}],
    }
    events = [
        decode_event(orjson.dumps({**payout, "event_id": "1"})),
        decode_event(orjson.dumps({**payout, "event_id": "2", "type": "payout_sent"})),
    ]
    findings = feed(runner, *events)
    assert len(findings) == 1
    assert findings[0].unmapped["reasons"] == ["high_risk_country", "intermediaries"]


def test_expiry_index_forgets_keys_in_time_order() -> None:
    from detectors.core.engine import ExpiryIndex

    index = ExpiryIndex(bucket_ms=1000)
    index.set("a", 5_000)
    index.set("b", 2_000)
    index.set("a", 9_000)  # moved
    assert list(index.pop_due(4_000)) == ["b"]
    assert list(index.pop_due(4_000)) == []
    assert list(index.pop_due(20_000)) == ["a"]
    assert len(index) == 0


def test_expiry_index_keys_go_at_their_expiry_however_it_moved() -> None:
    """A key is filed once and looked at again when that bucket comes: one whose expiry
    moved later stays until the later time, one moved earlier goes at the earlier one, one
    discarded never comes back, and one discarded then set again goes at its new expiry."""
    from detectors.core.engine import ExpiryIndex

    index = ExpiryIndex(bucket_ms=1000)
    for key in ("later", "earlier", "gone", "back"):
        index.set(key, 5_000)
    for step in range(6, 12):
        index.set("later", step * 1000)  # an active entity: its expiry moves on
    index.set("earlier", 2_000)
    index.discard("gone")
    index.discard("back")
    index.set("back", 8_000)
    assert len(index) == 3
    assert list(index.pop_due(3_000)) == ["earlier"]
    assert list(index.pop_due(6_000)) == []  # "later" and "back" filed at 5 s, due later
    assert list(index.pop_due(9_000)) == ["back"]
    assert list(index.pop_due(11_000)) == []
    assert list(index.pop_due(12_000)) == ["later"]
    assert len(index) == 0
    assert list(index.pop_due(10**9)) == []


def test_engine_adopts_restored_state_for_expiry() -> None:
    stage = geo_velocity.GeoVelocity(geo_velocity.GeoVelocitySettings(), NoLocation())
    engine: StageEngine[Any, Any] = StageEngine(stage)
    restored = {
        "old": {"logins": [[0, 0.0, 0.0, "US", None, "1.1.1.1", "e", "city"]], "alerted": []}
    }
    assert engine.adopt(restored.items(), lambda key: 0) == 1
    engine.process(restored, login("now", 0, account="fresh", geo=LONDON))
    assert "old" not in restored and "fresh" in restored


class _CountingStore(dict[str, Any]):
    """A store that counts the states read (the worker's decodes each one)."""

    reads = 0

    def get(self, key: str, default: Any = None) -> Any:
        self.reads += 1
        return super().get(key, default)


def test_a_burst_of_expiries_goes_without_reading_the_expired_states() -> None:
    """A thousand accounts last seen in the same minute expire together: the sweep drops them
    from what the index says (each write files the key under its state's expiry) instead of
    decoding each state again, and keeps the ones still live."""
    stage = geo_velocity.GeoVelocity(geo_velocity.GeoVelocitySettings(), NoLocation())
    engine: StageEngine[Any, Any] = StageEngine(stage)
    store = _CountingStore()
    for number in range(1000):
        engine.process(store, login(f"e{number}", 0, account=f"gone-{number}", geo=LONDON))
    engine.process(store, login("kept", 1, account="kept", geo=LONDON))
    ttl_minutes = (stage.expires_at_ms(store["kept"]) - T0.timestamp() * 1000) / 60_000 - 1
    store.reads = 0
    # Past the thousand's expiry bucket and the allowed lateness (5 min), not past "kept"'s.
    engine.process(store, login("now", ttl_minutes + 6.5, account="now", geo=LONDON))
    assert sorted(store) == ["kept", "now"]
    assert store.reads == 1  # the event's own account, not the thousand expired ones


def test_findings_across_accounts_do_not_depend_on_which_partition_is_read_first() -> None:
    """Events of different accounts come through different partitions in any order."""
    from detectors import all_detectors
    from detectors.core.cases import load_cases

    detectors = {d.metadata.id: d for d in all_detectors()}
    for case in load_cases():
        if case.detector not in ("shared_ip", "payout_routing") or not case.findings:
            continue
        accounts = sorted({e["account_id"] for e in case.events})
        if len(accounts) < 2:
            continue
        # Every event of the last account first, then the others: one partition drained early.
        late = [e for e in case.events if e["account_id"] != accounts[-1]]
        early = [e for e in case.events if e["account_id"] == accounts[-1]]
        identities = []
        for order in (list(case.events), early + late):
            runner = DetectorRunner(detectors[case.detector])
            findings = feed(runner, *(decode_event(orjson.dumps(e)) for e in order))
            closed = {f.finding_info.uid for f in findings if f.activity_name == "Close"}
            identities.append(
                {
                    (f.finding_info.uid, frozenset(r.uid for r in f.resources))
                    for f in findings
                    if f.finding_info.uid not in closed
                    and f is [g for g in findings if g.finding_info.uid == f.finding_info.uid][-1]
                }
            )
        assert identities[0] == identities[1], case.id


def test_continuous_session_survives_logins_read_days_ahead_of_heartbeats() -> None:
    """Two topics read days apart in a backlog: the span still forms, with the same identity."""
    from detectors import continuous_session

    def heartbeat(i: int) -> EventBase:
        return decode_event(
            orjson.dumps(
                {
                    "event_id": f"h{i}",
                    "type": "session_heartbeat",
                    "occurred_at": (T0 + timedelta(minutes=10 * i)).isoformat(),
                    "account_id": "acct",
                    "session_id": "s",
                    "ip": "198.51.100.1",
                }
            )
        )

    # A week of logins read before the first heartbeat: more than the 3 days a span is kept.
    logins = [login(f"l{day}", 60 * 24 * day + 5, geo=LONDON) for day in range(8)]
    beats = [heartbeat(i) for i in range(26 * 6)]
    in_order = sorted([*logins, *beats], key=lambda e: e.occurred_at)
    uids = []
    for events in (in_order, logins + beats):
        runner = DetectorRunner(continuous_session.build())
        findings = feed(runner, *events)
        assert [f.activity_name for f in findings] == ["Create"]
        uids.append(findings[0].finding_info.uid)
    assert uids[0] == uids[1]


def _platform_event(**document: Any) -> EventBase:
    return decode_event(orjson.dumps(document))


def _china_freelancer(account: str, day: int) -> tuple[list[EventBase], list[EventBase]]:
    """A benign freelancer in China paid to a Chinese bank: (profile events, payouts)."""
    profile = [
        _platform_event(event_id=f"{account}-c", type="account_created", account_id=account,
                        occurred_at="2026-01-05T08:00:00Z", role="freelancer",
                        declared_country="CN", declared_timezone="Asia/Shanghai"),
        _platform_event(event_id=f"{account}-v", type="identity_verified", account_id=account,
                        occurred_at="2026-01-06T08:00:00Z", legal_name="Li Wei",
                        document_country="CN", address_fingerprint="addr-" + account),
    ]  # fmt: skip
    payouts = [
        _platform_event(event_id=f"{account}-p{n}", type="payout_requested", account_id=account,
                        occurred_at=f"2026-03-{day + n:02d}T10:00:00Z", payout_id=f"{account}-{n}",
                        amount="900.00", currency="USD", method="bank", route=[],
                        destination={"fingerprint": "dst-" + account, "holder_name": "Li Wei",
                                     "country": "CN", "institution": "Bank of China"})
        for n in range(3)
    ]  # fmt: skip
    return profile, payouts


def test_payouts_read_before_profiles_are_judged_against_the_profile() -> None:
    """A worker draining a backlog reads platform.payouts ahead of platform.accounts: the
    payouts wait until the accounts topic is complete up to them, and nothing is invented."""
    stage = payout_routing.ProfileStage(payout_routing.PayoutRoutingSettings())
    sources = ("platform.accounts", "platform.payouts")
    engine: StageEngine[Any, Any] = StageEngine(stage, sources=sources)
    store: dict[str, Any] = {}
    profile, payouts = _china_freelancer("cn1", 2)
    judged = []
    for payout in payouts:  # the payouts partition first, the accounts partition still unread
        judged += engine.process(store, payout, 0, "platform.payouts")
    judged += engine.release(store, 0, caught_up=["platform.payouts"])
    assert judged == [], "judged before the profile could be read"
    for event in profile:
        judged += engine.process(store, event, 0, "platform.accounts")
    assert judged == []  # the accounts topic is behind the payouts: still waiting
    judged += engine.release(store, 0, caught_up=sources)  # both consumed to their end
    assert [p.payout.payout_id for p in judged] == ["cn1-0", "cn1-1", "cn1-2"]
    assert all(p.codes == [] for p in judged), [p.reasons for p in judged]


def test_a_payout_with_no_profile_at_all_is_judged_once_the_input_is_complete() -> None:
    stage = payout_routing.ProfileStage(payout_routing.PayoutRoutingSettings())
    engine: StageEngine[Any, Any] = StageEngine(
        stage, sources=("platform.accounts", "platform.payouts")
    )
    store: dict[str, Any] = {}
    _, payouts = _china_freelancer("ghost", 2)
    assert engine.process(store, payouts[0], 0, "platform.payouts") == []
    released = engine.release(store, 0, caught_up=("platform.accounts", "platform.payouts"))
    assert [p.codes for p in released] == [["high_risk_country"]]
    assert "none declared or verified" in released[0].reasons[0]


def test_replay_waits_the_allowed_lateness_before_judging_a_payout() -> None:
    """Offline, the file is the order: a payout waits until the newest event read is past it
    by the allowed lateness (5 min), so a profile written a few minutes out of order still
    counts; the end of the file makes every pending decision."""
    profile, payouts = _china_freelancer("quick", 2)
    just_before = [
        event.model_copy(update={"occurred_at": payouts[0].occurred_at - timedelta(minutes=n)})
        for n, event in ((3, profile[0]), (2, profile[1]))
    ]
    assert feed(DetectorRunner(payout_routing.build()), payouts[0], *just_before) == []
    # The profile as it stood at the payout's time: a verification that came after the
    # payout does not vouch for it.
    verified_later = profile[1].model_copy(
        update={"occurred_at": datetime(2026, 3, 20, tzinfo=UTC)}
    )
    findings = feed(DetectorRunner(payout_routing.build()), verified_later, *payouts)
    assert len(findings) == 3
    assert all("high_risk_country" in f.unmapped["reasons"] for f in findings)


class CountryOnly:
    """What the offline country database knows of an IP: its country, placed at the capital."""

    def __init__(self, countries: dict[str, str]) -> None:
        self.countries = countries

    def locate(self, ip: str) -> Place | None:
        from detectors.core.geo import capital_of

        country = self.countries.get(ip)
        position = capital_of(country) if country else None
        if country is None or position is None:
            return None
        return Place(country, position[0], position[1], None, "country")


SEATTLE = {"country": "US", "lat": 47.61, "lon": -122.33, "city": "Seattle"}


def test_a_login_known_only_to_its_country_is_not_travel_within_that_country() -> None:
    """Seattle, then 5 minutes later a login without `geo` whose IP the database places in
    the US: not 3,700 km to Washington DC, no travel at all."""
    locator = CountryOnly({"198.51.100.80": "US", "198.51.100.81": "CN", "198.51.100.82": "CA"})
    runner = DetectorRunner(geo_velocity.build(locator=locator))
    located = login("s1", 0, geo=SEATTLE, ip="198.51.100.1")
    assert feed(runner, located, login("s2", 5, ip="198.51.100.80")) == []
    # Vancouver is 200 km from Seattle: a country-only CA login could be next door.
    runner = DetectorRunner(geo_velocity.build(locator=locator))
    assert feed(runner, located, login("s3", 5, ip="198.51.100.82")) == []
    # China is far from Seattle wherever in China the IP is: the finding gives a lower bound.
    runner = DetectorRunner(geo_velocity.build(locator=locator))
    (finding,) = feed(runner, located, login("s4", 5, ip="198.51.100.81"))
    assert finding.message.startswith("Logins at least ")
    assert 5_000 < finding.unmapped["distance_km"] < 8_800  # Seattle-Beijing is ~8,700 km
    assert finding.unmapped["location_precision"] == "country"
    assert finding.evidences[1].src_endpoint.location.lat is None  # no invented point


def test_country_lower_bounds() -> None:
    from detectors.core.geo import min_distance_km

    # Two country-only positions in one country: 0; neighbours: 0; far apart: a bound below
    # the true distance between their nearest cities.
    assert min_distance_km(0, 0, "US", True, 0, 0, "US", True) == 0
    assert min_distance_km(0, 0, "DE", True, 0, 0, "NL", True) == 0
    germany_china = min_distance_km(0, 0, "DE", True, 0, 0, "CN", True)
    assert 2_500 < germany_china < 4_500  # the boxes' gap; Berlin-Urumqi is ~4,900 km
    # A located point inside the country's box is 0 from it.
    assert min_distance_km(40.71, -74.01, "US", False, 0, 0, "US", True) == 0
    assert min_distance_km(40.71, -74.01, "US", False, 0, 0, "XX", True) == 0  # unknown: no claim
    # Asked again (remembered per pair of countries, per point and country), the same
    # answers, either way round for a point and a country.
    assert min_distance_km(0, 0, "DE", True, 0, 0, "CN", True) == germany_china
    paris_china = min_distance_km(48.86, 2.35, "FR", False, 0, 0, "CN", True)
    assert paris_china == min_distance_km(0, 0, "CN", True, 48.86, 2.35, "FR", False) > 2_500


def test_a_batch_abandoned_before_its_findings_left_leaves_the_state_as_it_was() -> None:
    """Live, a batch's state changes reach the table only once its findings and changelog
    records are acknowledged. A batch abandoned before (a rebalance, a crash) is read again;
    the stage must then find what it found the first time, even though remote_access changes
    its state in place (a table handing out its own object lost these findings)."""
    from detectors.core.engine import StageEngine
    from streams.app import PendingWrites

    table = _MemoryTable()
    engine = StageEngine(remote_access.RemoteAccess(remote_access.RemoteAccessSettings()))
    rdp = {"event_id": "e1", "type": "session_heartbeat", "occurred_at": "2026-03-02T08:00:00Z",
           "account_id": "a", "session_id": "x", "ip": "198.51.100.2",
           "connection": {"rdp_session": True}}  # fmt: skip
    earlier = {**rdp, "event_id": "e0", "occurred_at": "2026-03-01T08:00:00Z"}
    state = engine.stage.step(None, decode_event(orjson.dumps(earlier)))[0]
    table["a"] = before = orjson.dumps(state)  # a table holds the changelog record's bytes
    for _ in range(2):  # the first batch is abandoned, the second is the re-read
        writes = PendingWrites(table)
        writes.partition = 0
        outputs = engine.process(writes, decode_event(orjson.dumps(rdp)))
        assert [draft.accounts for draft in outputs] == [["a"]]
        assert table["a"] == before


class _MemoryTable(dict[str, Any]):
    """A table with a memory store, as `PendingWrites` reads it (`table.data`)."""

    @property
    def data(self) -> _MemoryTable:
        return self


def test_a_partition_taken_over_keeps_restored_state_until_every_input_partition_is_read() -> None:
    """After a rebalance a stage reads its repartition topic on from the committed offset,
    with its state restored. Events routed from one input partition can come first, days
    ahead of another's: they must not expire an episode the other's older logins still join
    (the rebalance test lost a shared IP's case this way)."""
    stage = shared_ip.SharedIp(shared_ip.SharedIpSettings())
    feeds = tuple(f"by-ip#{origin}" for origin in range(3))
    engine: StageEngine[Any, Any] = StageEngine(stage, sources=("by-ip",), feeds=feeds)
    store: dict[str, Any] = {}
    engine.process(store, login("a", 0, account="user-0013"), 0, "by-ip#0")
    engine.adopt(store.items(), lambda key: 0)  # the new owner, state restored
    found = engine.process(store, login("b", 3 * 1440, "user-0099", "192.0.2.9"), 0, "by-ip#2")
    found += engine.process(store, login("c", 770, account="user-0011"), 0, "by-ip#1")
    found += engine.process(store, login("d", 864, account="user-0012"), 0, "by-ip#1")
    assert [sorted(f.accounts) for f in found] == [["user-0011", "user-0012", "user-0013"]]


def test_changelog_records_are_written_as_faust_writes_them() -> None:
    """Table recovery reads the changelog with the table's own serialisers: the records
    Daylight writes itself must be the bytes the table would write (a mismatch stopped
    recovery after a rebalance)."""
    from detectors import all_detectors
    from streams.app import Daylight, PendingWrites
    from streams.settings import load_settings

    daylight = Daylight(load_settings(), all_detectors())
    state = {"ip": "198.51.100.2", "spans": [[1, 2.5], [3, 4]], "n": None, "ok": True,
             "accounts": {"a": 1}, 7: "int key"}  # fmt: skip
    for _, table in daylight._tables:
        topic = table.changelog_topic
        writes = PendingWrites(table)
        writes.partition = 3
        writes["user-0001"] = state
        raw = orjson.dumps(state, option=orjson.OPT_NON_STR_KEYS | orjson.OPT_UTC_Z)
        key = topic.prepare_key("user-0001", table.key_serializer)[0]
        assert list(writes.records()) == [(key, raw, 3)]
        # Recovery reads a record back as the bytes the table keeps; a batch decodes them.
        assert topic.prepare_value(raw, table.value_serializer)[0] == raw
        writes.apply({})
        assert table.data["user-0001"] == raw
        assert PendingWrites(table)["user-0001"] == orjson.loads(raw)


class _Recorder:
    """A stage that would take any event, and records what it is given."""

    entity = "account"
    input_model = None

    def __init__(self) -> None:
        self.seen: list[str] = []

    def key(self, event: Any) -> str | None:
        return str(event.account_id)

    def step(self, state: Any, event: Any) -> tuple[Any, list[Any]]:
        self.seen.append(event.type)
        return state, []

    def expires_at_ms(self, state: Any) -> int:
        return 0


def test_offline_a_detector_reads_only_its_topics_as_live() -> None:
    """Live, a detector is fed by the agents of the topics it declares; offline it is handed
    the same events and no others, whatever its stage's `key` would accept."""
    from detectors.core.base import Detector, DetectorMetadata
    from detectors.core.replay import ReplayReport, replay

    recorder = _Recorder()
    meta = DetectorMetadata(
        id="recorder", name="Recorder", title="t", advisory_flag="f", runbook="r",
        topics=("platform.payouts",), dedup_window_hours=1.0,
    )  # fmt: skip
    payout = {
        "event_id": "p1", "type": "payout_requested", "occurred_at": T0.isoformat(),
        "account_id": "acct", "payout_id": "po1", "amount": "10.00", "currency": "USD",
        "method": "bank", "route": [],
        "destination": {"fingerprint": "f", "country": "US", "holder_name": "A B"},
    }  # fmt: skip
    lines = [
        orjson.dumps(login("l1", 0).model_dump(mode="json", exclude_none=True)),
        orjson.dumps(payout),
        orjson.dumps(login("l2", 1).model_dump(mode="json", exclude_none=True)),
    ]
    report = ReplayReport()
    assert list(replay(lines, [Detector(meta, (recorder,))], report)) == []
    assert (report.events, report.malformed) == (3, [])
    assert recorder.seen == ["payout_requested"]
