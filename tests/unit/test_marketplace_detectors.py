"""rating_burst, bid_pattern and anonymizer beyond their cases: duplicates, bounds, order,
and the offline ASN database."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest

from detectors import all_detectors
from detectors.core.asn import PackagedAsnDatabase
from detectors.core.cases import load_cases
from detectors.core.engine import DetectorRunner
from detectors.core.geo import CountryLocator
from schemas.codec import decode_event

DETECTORS = {d.metadata.id: d for d in all_detectors()}
MARKETPLACE = ("rating_burst", "bid_pattern", "anonymizer", "self_dealing", "template_reuse")
POSITIVE = [c for c in load_cases() if c.detector in MARKETPLACE and c.findings]


def run(detector: str, events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    runner = DetectorRunner(DETECTORS[detector])
    drafts = [d for e in events for d in runner.feed(decode_event(orjson.dumps(e)))]
    return [d.to_finding().model_dump(mode="json") for d in drafts + runner.finish()]


def opened(findings: list[dict[str, Any]]) -> dict[str, tuple[str, list[str]]]:
    """uid -> (severity, accounts) of the last message of each finding not closed."""
    closed = {f["finding_info"]["uid"] for f in findings if f["activity_id"] == 3}
    return {
        f["finding_info"]["uid"]: (f["severity"], [r["uid"] for r in f["resources"]])
        for f in findings
        if f["finding_info"]["uid"] not in closed
    }


@pytest.mark.parametrize("case", POSITIVE, ids=[c.id for c in POSITIVE])
def test_every_event_twice_gives_the_same_findings(case: Any) -> None:
    once = run(case.detector, list(case.events))
    twice = run(case.detector, [e for event in case.events for e in (event, event)])
    assert [f["finding_info"]["uid"] for f in twice] == [f["finding_info"]["uid"] for f in once]
    assert opened(twice) == opened(once)


@pytest.mark.parametrize("case", POSITIVE, ids=[c.id for c in POSITIVE])
def test_a_replay_in_time_order_opens_the_same_findings(case: Any) -> None:
    """Whatever order a backlog is read in, the open findings are those of time order."""
    ordered = sorted(case.events, key=lambda e: (e["occurred_at"], e["event_id"]))
    reverse = list(reversed(case.events))
    assert opened(run(case.detector, reverse)).keys() == opened(run(case.detector, ordered)).keys()


def rating(n: int, client: str = "c", day: int = 2, score: int = 5) -> dict[str, Any]:
    return {"type": "rating_given", "event_id": f"r{n}", "account_id": client,
            "occurred_at": f"2026-03-{day:02d}T{n % 24:02d}:00:00Z",
            "contract_id": f"k{n}", "to_account_id": f"f{n}", "score": score}  # fmt: skip


def test_a_client_rating_hundreds_keeps_a_bounded_state() -> None:
    stage = DETECTORS["rating_burst"].stages[0]
    runner = DetectorRunner(DETECTORS["rating_burst"])
    for n in range(600):
        runner.feed(decode_event(orjson.dumps(rating(n, day=2 + n // 100))))
    (state,) = runner.stores[0].values()
    assert len(state["ratings"]) <= stage.settings.max_ratings  # type: ignore[attr-defined]
    assert len(state["reported"]) <= 16


def test_a_rating_burst_names_the_numbers_and_every_account() -> None:
    findings = run("rating_burst", [rating(n) for n in range(1, 6)])
    last = findings[-1]
    assert last["severity"] == "High"
    assert last["message"].startswith("5 freelancers rated 5 stars by client c within 0.2 days")
    assert [r["uid"] for r in last["resources"]] == ["c", "f1", "f2", "f3", "f4", "f5"]
    assert last["unmapped"]["freelancer_count"] == 5


def login(n: int, ip: str, geo: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"type": "login", "event_id": f"l{n}", "account_id": "a",
            "occurred_at": f"2026-03-02T{n % 24:02d}:00:00Z", "ip": ip, "geo": geo}  # fmt: skip


def test_the_platforms_as_number_wins_over_the_offline_database() -> None:
    geo = {"country": "US", "lat": 40.7, "lon": -74.0, "asn": 7922, "as_org": "Comcast"}
    assert run("anonymizer", [login(1, "104.131.0.1", geo)]) == []  # DigitalOcean offline
    assert len(run("anonymizer", [login(1, "104.131.0.1")])) == 1


def test_anonymizer_ignore_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    from detectors import anonymizer

    monkeypatch.setenv("DAYLIGHT_ANONYMIZER_IGNORE_ASNS", "[9009]")
    detector = anonymizer.build()
    geo = {"country": "NL", "lat": 52.4, "lon": 4.9, "asn": 9009, "as_org": "M247 Europe SRL"}
    runner = DetectorRunner(detector)
    assert runner.feed(decode_event(orjson.dumps(login(1, "198.51.100.1", geo)))) == []


def test_the_asn_tables_leave_the_country_database_alone() -> None:
    """geoip2fast keeps its tables in module globals: loading its ASN file through it would
    replace the country tables geo_velocity reads. Ours are read apart."""
    countries = CountryLocator()
    before = countries.locate("2a01:4f8::1")
    asn = PackagedAsnDatabase()
    assert asn.network("2a01:4f8::1") is not None
    assert asn.network("5.9.0.1").org == "Hetzner Online GmbH"  # type: ignore[union-attr]
    assert countries.locate("2a01:4f8::1") == before and before is not None
    assert asn.network("10.1.2.3") is None and asn.network("not an ip") is None


def test_a_watermark_mark_releases_what_a_silent_input_partition_held_back() -> None:
    """Live, a freelancer's repartition partition gets bids from the freelancer's own input
    partition and acceptances from any other: a decision waits for every one of them. An
    input partition that sends no acceptance holds it back until its mark says it is past."""
    from datetime import UTC, datetime, timedelta

    from detectors.bid_pattern import BidActivity
    from detectors.core.engine import StageEngine

    stage = DETECTORS["bid_pattern"].stages[1]
    feeds = ("by-freelancer#0", "by-freelancer#1")
    engine: StageEngine[Any, Any] = StageEngine(stage, sources=("by-freelancer",), feeds=feeds)
    store: dict[str, Any] = {}
    start = datetime(2026, 3, 2, tzinfo=UTC)
    found = []
    for n in range(40):
        bid = BidActivity(event_id=f"b{n}", occurred_at=start + timedelta(hours=n),
                          account_id="f", kind="bid", freelancer_id="f", job_id=f"j{n}",
                          logins=20)  # fmt: skip
        found += engine.process(store, bid, 0, feeds[0])
    assert found == [] and engine.deferred() == 1  # partition 1 has said nothing
    # A mark from partition 0 alone changes nothing; one from partition 1 past the bids plus
    # the acceptance grace releases the decision.
    late = int((start + timedelta(hours=39 + 25)).timestamp() * 1000)
    assert engine.observe(store, 0, feeds[0], late) == []
    found = engine.observe(store, 0, feeds[1], late)
    assert [f.message for f in found] == ["Freelancer f: 30 bids within 7 days, 0 accepted (0%)"]


def test_the_stage_before_promises_no_older_output_than_its_pending_bids() -> None:
    from detectors.core.engine import StageEngine

    stage = DETECTORS["bid_pattern"].stages[0]
    sources = ("platform.logins", "platform.marketplace")
    engine: StageEngine[Any, Any] = StageEngine(stage, sources=sources, feeds=sources)
    store: dict[str, Any] = {}
    assert engine.mark_ms(0) is None  # nothing read yet
    bid = {"type": "bid_submitted", "event_id": "b1", "account_id": "f", "job_id": "j1",
           "occurred_at": "2026-03-02T10:00:00Z"}  # fmt: skip
    engine.process(store, decode_event(orjson.dumps(bid)), 0, "platform.marketplace")
    assert engine.mark_ms(0) is None  # logins not read: the bid waits, nothing promised
    at_noon = {"occurred_at": "2026-03-02T12:00:00Z", "account_id": "g"}
    engine.process(store, decode_event(orjson.dumps({**login(1, "198.51.100.1"), **at_noon})),
                   0, "platform.logins")  # fmt: skip
    other = {**bid, **at_noon, "event_id": "b2"}
    outputs = engine.process(store, decode_event(orjson.dumps(other)), 0, "platform.marketplace")
    assert [(o.kind, o.event_id) for o in outputs] == [("bid", "b1")]  # both topics past it
    noon_ms = decode_event(orjson.dumps(other)).occurred_at.timestamp() * 1000
    assert engine.mark_ms(0) == noon_ms - 300_000  # the input, less the allowed lateness


def test_a_mark_travels_through_the_internal_codec() -> None:
    from detectors.bid_pattern import BidActivity
    from streams.wire import Mark, ModelCodec, Rejected, encode_mark

    codec = ModelCodec(BidActivity)
    assert codec.loads(encode_mark(1_772_000_000_000)) == Mark(1_772_000_000_000)
    assert isinstance(codec.loads(b'{"daylight_mark":"x"}'), Rejected)


def _open_named(findings: list[Any]) -> dict[str, frozenset[str]]:
    """uid -> every account any message of the finding named, for findings not closed (what
    the SOC ends up with, as the fault tests count it)."""
    closed = {f.uid for f in findings if f.closed_by is not None}
    named: dict[str, set[str]] = {}
    for finding in findings:
        named.setdefault(finding.uid, set()).update(finding.accounts)
    return {uid: frozenset(accounts) for uid, accounts in named.items() if uid not in closed}


def test_template_groups_do_not_depend_on_which_input_partition_is_drained_first() -> None:
    """Live, a band's texts come from every input partition; a backlog (or a re-read after a
    crash) drains one partition hours ahead of another. The band waits until its input is
    complete up to its earliest text, so the SOC gets the findings a replay in time order
    gives, each naming the same accounts: reported at once, a later text taken for the
    origin had its finding closed when the true origin turned up, and the groups of other
    bands under that text were lost with it (the crash and broker-restart tests saw it)."""
    from detectors.core.engine import StageEngine
    from detectors.core.parallel import partition_of
    from simulator.simulate import lines, simulate

    detector = DETECTORS["template_reuse"]
    events = [decode_event(line) for line in lines(simulate(seed=3, accounts=60, days=3, teams=1))]
    texts = [e for e in events if detector.stages[0].key(e) is not None]
    reference = DetectorRunner(detector)
    in_order = [d for e in texts for d in reference.feed(e)] + reference.finish()
    assert len(_open_named(in_order)) >= 2  # the team's template, under its variant origins

    partitions = 6
    for first in range(partitions):  # each input partition drained first, the others after
        drained = sorted(texts, key=lambda e: (partition_of(e.account_id, partitions) != first,
                                               partition_of(e.account_id, partitions)))  # fmt: skip
        stages = detector.stages
        text = StageEngine(stages[0])
        feeds = tuple(f"by-band#{p}" for p in range(partitions))
        band = StageEngine(stages[1], sources=("by-band",), feeds=feeds)
        template = StageEngine(stages[2])
        stores: list[dict[str, Any]] = [{}, {}, {}]
        found: list[Any] = []
        for event in drained:
            origin = partition_of(event.account_id, partitions)
            for item in text.process(stores[0], event):
                groups = band.process(stores[1], item, 0, f"by-band#{origin}")
                found += [d for g in groups for d in template.process(stores[2], g)]
        for group in band.flush(stores[1]):
            found += template.process(stores[2], group)
        assert _open_named(found) == _open_named(in_order), f"partition {first} drained first"


def test_the_anonymizer_reads_its_network_list_once(tmp_path: Path) -> None:
    """The list is read on first use and kept: a worker does not read and parse the file
    again for every login (as it did when the compiled class could not cache it), and a file
    replaced or removed while it runs changes nothing until it restarts."""
    from detectors import anonymizer
    from detectors.models.anonymizer import NETWORKS_FILE, AnonymizerSettings

    listed = tmp_path / "networks.json"
    listed.write_bytes(NETWORKS_FILE.read_bytes())
    runner = DetectorRunner(anonymizer.build(AnonymizerSettings(networks_file=listed)))
    first = runner.feed(decode_event(orjson.dumps(login(1, "104.131.0.1"))))
    listed.unlink()
    # A second account on another hosting network, after the file is gone.
    later = {**login(2, "5.9.0.1"), "account_id": "b"}
    second = runner.feed(decode_event(orjson.dumps(later)))
    assert len(first) == 1 and len(second) == 1
