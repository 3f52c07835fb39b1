"""The case book: scoring, decay, linking, merging, feedback, and cases that do not depend
on the order findings arrive in."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest

from detectors import all_detectors
from detectors.core.casework import CaseBook, CaseSettings, FindingFacts, replay_cases
from detectors.core.replay import replay
from schemas.case import Case, CaseVerdict, Suppression
from schemas.codec import encode_case, encode_finding
from simulator.simulate import lines, simulate
from streams.app import partition_for
from tests.ocsf_check import problems

T0 = datetime(2026, 3, 2, tzinfo=UTC)


def facts(uid: str, detector: str, accounts: tuple[str, ...], hours: float, severity: int = 3,
          confidence: int = 3, ips: tuple[str, ...] = (), activity: int = 1) -> FindingFacts:  # fmt: skip
    return FindingFacts(
        uid=uid, detector=detector, title=detector, accounts=accounts,
        time_ms=int((T0 + timedelta(hours=hours)).timestamp() * 1000), severity_id=severity,
        confidence_id=confidence, activity_id=activity, message=f"{detector} on {accounts}",
        ips=ips, destinations=(),
    )  # fmt: skip


def open_cases(messages: list[Case]) -> dict[str, frozenset[str]]:
    last = {case.uid: case for case in messages}
    return {uid: frozenset(c.unmapped["accounts"]) for uid, c in last.items() if c.activity_id != 3}


def test_one_noisy_detector_never_opens_a_case_alone() -> None:
    book, store = CaseBook(), {}
    out: list[Case] = []
    for n in range(30):
        out += book.apply_finding(store, facts(f"r{n}", "remote_access", ("a",), n, severity=4))
    assert out == []
    _, by_detector, _ = book.score_at(store["comp:a"]["findings"].items(), 10**15)
    assert by_detector["remote_access"] <= CaseSettings().max_points_per_detector


def test_two_distinct_red_flags_open_a_case_with_the_reasons_and_numbers() -> None:
    book, store = CaseBook(), {}
    assert book.apply_finding(store, facts("g1", "geo_velocity", ("a",), 0)) == []
    (case,) = book.apply_finding(store, facts("p1", "payout_routing", ("a",), 24))
    assert case.activity_name == "Create" and case.status == "New"
    assert case.risk_score >= CaseSettings().open_score
    assert case.message.startswith(f"Risk {case.risk_score}/100")
    assert "2 red flags over 1 day: payout_routing 35 pts (1 finding)" in case.message
    assert [f.uid for f in case.finding_info.related_events] == ["p1", "g1"]  # strongest first
    assert problems(orjson.loads(encode_case(case))) == []


def test_points_decay_by_event_time_and_repeats_count_less() -> None:
    book = CaseBook(CaseSettings(half_life_days=7))
    entry = ["geo_velocity", 3, 3, 0, 20.0, "t", "m", 1]
    week = 7 * 86_400_000
    assert book.score_at([("x", entry)], week)[0] == pytest.approx(10.0)
    repeated = [(f"x{n}", [*entry[:3], 0, 20.0, "t", "m", 1]) for n in range(3)]
    assert book.score_at(repeated, 0)[0] == pytest.approx(20 + 10 + 5)


def test_a_shared_ip_links_a_team_into_one_case_and_the_merge_is_visible() -> None:
    book, store = CaseBook(), {}
    out: list[Case] = []
    # Two accounts each with two red flags: two cases.
    for account, hour in (("t1", 0), ("t2", 1)):
        out += book.apply_finding(store, facts(f"g-{account}", "geo_velocity", (account,), hour))
        out += book.apply_finding(
            store, facts(f"p-{account}", "payout_routing", (account,), hour + 1)
        )
    assert len(open_cases(out)) == 2
    # A shared IP names both and a third: one team case; the later case closes, merged.
    out += book.apply_finding(
        store, facts("ip", "shared_ip", ("t1", "t2", "t3"), 5, ips=("203.0.113.9",))
    )
    cases = open_cases(out)
    assert list(cases.values()) == [frozenset({"t1", "t2", "t3"})]
    merged = [c for c in out if c.activity_name == "Close"]
    assert len(merged) == 1 and merged[0].status_detail == f"merged into {next(iter(cases))}"
    team = [c for c in out if c.activity_name != "Close"][-1]
    assert "linked by ip 203.0.113.9" in team.message and team.count == 3


def test_links_through_an_allowlisted_network_do_not_count() -> None:
    book, store = CaseBook(CaseSettings(link_allowlist_cidrs=("203.0.113.0/24",))), {}
    out = book.apply_finding(
        store, facts("ip", "shared_ip", ("a", "b", "c"), 0, ips=("203.0.113.9",))
    )
    assert out == [] and store["acct:a"]["root"] == "a" and store["acct:b"]["root"] == "b"


def test_a_team_case_stops_growing_at_its_size_bound_and_says_so() -> None:
    book, store = CaseBook(CaseSettings(max_team_accounts=3)), {}
    out: list[Case] = []
    for account in ("a", "b", "c", "d"):
        out += book.apply_finding(store, facts(f"g{account}", "geo_velocity", (account,), 0))
        out += book.apply_finding(store, facts(f"p{account}", "payout_routing", (account,), 1))
    out += book.apply_finding(
        store, facts("ip1", "shared_ip", ("a", "b"), 2, ips=("198.51.100.1",))
    )
    out += book.apply_finding(
        store, facts("ip2", "shared_ip", ("c", "d"), 3, ips=("198.51.100.2",))
    )
    out += book.apply_finding(
        store, facts("ip3", "shared_ip", ("a", "c"), 4, ips=("198.51.100.3",))
    )
    sizes = sorted(len(accounts) for accounts in open_cases(out).values())
    assert max(sizes) <= 3
    assert any("size bound (3 accounts) reached" in c.message for c in out)


def test_a_verdict_closes_the_case_with_the_analyst_and_later_findings_start_anew() -> None:
    book, store = CaseBook(), {}
    book.apply_finding(store, facts("g", "geo_velocity", ("a",), 0))
    (case,) = book.apply_finding(store, facts("p", "payout_routing", ("a",), 1))
    verdict = CaseVerdict(type="case_verdict", case_uid=case.uid, verdict="false_positive",
                          analyst="ana", occurred_at=T0 + timedelta(hours=2),
                          comment="traveller")  # fmt: skip
    (closed,) = book.apply_feedback(store, verdict)
    assert closed.activity_name == "Close" and closed.status == "Resolved"
    assert (
        closed.verdict == "False Positive" and closed.comment == "false_positive by ana: traveller"
    )
    # The same findings again (a re-delivery) open nothing; new evidence opens a new case.
    assert book.apply_finding(store, facts("p", "payout_routing", ("a",), 1)) == []
    book.apply_finding(store, facts("g2", "geo_velocity", ("a",), 30))
    (again,) = book.apply_finding(store, facts("p2", "payout_routing", ("a",), 31))
    assert again.activity_name == "Create" and again.uid != case.uid


def test_a_suppressed_account_is_silenced_from_its_time_on() -> None:
    book, store = CaseBook(), {}
    suppression = Suppression(type="suppression", entity_kind="account", value="a",
                              detectors=["geo_velocity"], reason="frequent flyer",
                              analyst="ana", occurred_at=T0)  # fmt: skip
    book.apply_feedback(store, suppression)
    book.apply_finding(store, facts("g", "geo_velocity", ("a",), 1))
    assert book.apply_finding(store, facts("p", "payout_routing", ("a",), 2)) == []
    ip = Suppression(type="suppression", entity_kind="cidr", value="203.0.113.0/24",
                     detectors=None, reason="coworking", analyst="ana", occurred_at=T0)  # fmt: skip
    book.apply_feedback(store, ip)
    linked = facts("ip", "shared_ip", ("x", "y", "z"), 3, ips=("203.0.113.7",))
    assert book.apply_finding(store, linked) == [] and "acct:x" not in store


def test_a_verdict_read_before_its_case_is_applied_when_the_case_opens() -> None:
    book, store = CaseBook(), {}
    uid = book.case_uid("a", 0)
    verdict = CaseVerdict(type="case_verdict", case_uid=uid, verdict="benign_true_positive",
                          analyst="ana", occurred_at=T0 + timedelta(days=1))  # fmt: skip
    assert book.apply_feedback(store, verdict) == []
    book.apply_finding(store, facts("g", "geo_velocity", ("a",), 0))
    (closed,) = book.apply_finding(store, facts("p", "payout_routing", ("a",), 1))
    assert closed.uid == uid and closed.activity_name == "Close" and closed.verdict == "Benign"


def _findings(seed: int) -> list[dict[str, Any]]:
    world = simulate(seed=seed, accounts=120, days=4, teams=1)
    return [orjson.loads(encode_finding(f)) for f in replay(lines(world), all_detectors())]


@pytest.mark.parametrize("seed", [3, 8])
def test_open_cases_do_not_depend_on_the_order_findings_arrive_in(seed: int) -> None:
    """Live, findings come from six partitions of daylight.alerts in any interleaving (each
    in its own order): the open cases, uids and accounts, are those of the replay."""
    findings = _findings(seed)
    reference = open_cases(list(replay_cases(findings)))
    assert reference
    rng = random.Random(seed)
    for _ in range(8):
        queues: dict[int, list[dict[str, Any]]] = {}
        for finding in findings:
            queues.setdefault(partition_for(finding["resources"][0]["uid"], 6), []).append(finding)
        pending = [list(q) for q in queues.values()]
        shuffled = []
        while pending:
            queue = rng.choice(pending)
            shuffled.append(queue.pop(0))
            pending = [q for q in pending if q]
        assert open_cases(list(replay_cases(shuffled))) == reference


def test_open_cases_do_not_depend_on_the_order_events_are_read_in() -> None:
    """A worker draining a backlog reads the input partitions in stretches, each far ahead
    of or behind the others: the detectors then publish other versions of a finding (a
    shared IP case first published with later logins, updated as earlier ones arrive). The
    case uids must rest on the evidence, not on which versions were published: the same
    open cases as a replay of the file in order. (Offline the watermark is the newest event
    read; live each input partition keeps its own, so here nothing expires early.)"""
    events = list(lines(simulate(seed=7, accounts=150, days=4, teams=3)))
    reference = open_cases(list(replay_cases(_decoded(replay(events, all_detectors())))))
    assert len(reference) >= 2
    queues: dict[int, list[bytes]] = {}
    for line in events:
        account = orjson.loads(line).get("account_id") if line.startswith(b"{") else None
        queues.setdefault(partition_for(str(account or ""), 6), []).append(line)
    rng = random.Random(7)
    for _ in range(4):
        pending = [list(queue) for queue in queues.values()]
        backlog: list[bytes] = []
        while pending:
            queue = rng.choice(pending)
            size = rng.randint(1, 1500)
            backlog += queue[:size]
            del queue[:size]
            pending = [q for q in pending if q]
        read = replay(backlog, all_detectors(), allowed_lateness_ms=10**13)
        assert open_cases(list(replay_cases(_decoded(read)))) == reference


def _decoded(findings: Any) -> list[dict[str, Any]]:
    return [orjson.loads(encode_finding(f)) for f in findings]


def test_every_case_message_is_strict_valid_ocsf() -> None:
    cases = list(replay_cases(_findings(5)))
    assert cases
    key: dict[str, str] = {}
    for case in cases:
        assert problems(orjson.loads(encode_case(case))) == [], case.uid
        # Every message of a case has one key (its founder): one partition, in order, so a
        # reader's last message of a case is its newest.
        assert key.setdefault(case.uid, case.account_id) == case.account_id


def test_bad_case_settings_fail_naming_the_setting() -> None:
    with pytest.raises(ValueError, match="max_points_per_detector"):
        CaseSettings(max_points_per_detector=60, open_score=50)


def test_the_readme_worked_example() -> None:
    from tests.conftest import ROOT

    book, store = CaseBook(), {}
    seattle_then_shenyang = facts("g", "geo_velocity", ("user-0042",), 0, severity=4)
    assert book.apply_finding(store, seattle_then_shenyang) == []
    (case,) = book.apply_finding(
        store, facts("p", "payout_routing", ("user-0042",), 48, severity=4)
    )
    expected = (
        "Risk 74/100 (High), account user-0042: 2 red flags over 2 days: payout_routing 45 pts "
        "(1 finding), geo_velocity 29 pts (1 finding)"
    )
    assert case.message == expected
    assert " ".join(expected.split()) in " ".join((ROOT / "README.md").read_text().split())


def test_a_shared_instrument_or_template_links_and_can_be_suppressed() -> None:
    """self_dealing links its accounts through the payment fingerprint and template_reuse
    through the template, both named in the case; a suppression of either silences it."""
    from detectors.core.casework import facts_of

    findings = [f.model_dump(mode="json") for f in replay(
        lines(simulate(seed=7)), [d for d in all_detectors()
                                  if d.metadata.id in ("self_dealing", "template_reuse")])]  # fmt: skip
    shared = {facts_of(f).shared[0] for f in findings}
    assert {kind for kind, _ in shared} == {"instrument", "template"}
    kind, value = next(item for item in shared if item[0] == "instrument")
    on_it = [facts_of(f) for f in findings if facts_of(f).shared == ((kind, value),)]
    accounts = {f"acct:{a}" for item in on_it for a in item.accounts}
    plain: dict[str, Any] = {}
    for item in on_it:
        CaseBook().apply_finding(plain, item)
    assert accounts <= set(plain)  # without the suppression, the accounts are in the book
    book, store = CaseBook(), {}
    book.apply_feedback(store, Suppression(type="suppression", entity_kind=kind, value=value,
                                           detectors=None, reason="marketplace escrow",
                                           analyst="ana", occurred_at=T0 - timedelta(days=400)))  # fmt: skip
    for item in on_it:
        assert book.apply_finding(store, item) == []
    assert not accounts & set(store)  # with it, silenced: no points, no link
    linked = [facts_of(f) for f in findings if facts_of(f).shared[0][0] == "template"]
    book2, store2 = CaseBook(), {}
    for item in linked:
        book2.apply_finding(store2, item)
    links = {tuple(link[:2]) for key, comp in store2.items() if key.startswith("comp:")
             for link in comp["links"].values()}  # fmt: skip
    assert {kind for kind, _ in links} == {"template"}
