"""The simulated platform and the evaluation: deterministic worlds, honest scores."""

from __future__ import annotations

from collections import Counter
from typing import Any

import orjson
import pytest

from detectors import all_detectors
from detectors.core.casework import replay_cases
from detectors.core.replay import replay
from schemas.codec import decode_event
from simulator.evaluate import evaluate, evaluate_cases
from simulator.simulate import FLAGS, WEAK_SIGNALS, lines, simulate


def test_the_same_seed_writes_the_same_world() -> None:
    first, second = simulate(seed=3, accounts=60, days=3), simulate(seed=3, accounts=60, days=3)
    assert list(lines(first)) == list(lines(second))
    assert first.truth() == second.truth()
    assert list(lines(simulate(seed=4, accounts=60, days=3))) != list(lines(first))


def test_every_simulated_event_is_a_valid_contract_event() -> None:
    world = simulate(seed=5, accounts=60, days=3)
    kinds = Counter(decode_event(line).type for line in lines(world))  # type: ignore[attr-defined]
    assert {"login", "session_heartbeat", "payout_sent", "identity_verified"} <= set(kinds)


def test_truth_names_teams_identities_and_the_traps_of_benign_users() -> None:
    truth = simulate(seed=7).truth()
    members = [account for team in truth["teams"].values() for account in team]
    assert len(truth["teams"]) == 2 and len(members) == 40
    assert set(truth["identities"]) == set(members)
    assert not set(members) & set(truth["benign"])
    assert len(members) + len(truth["benign"]) == 300
    for flag in FLAGS:  # every red flag is shown by some identity
        assert any(flag in flags for flags in truth["identities"].values())
    traps = Counter(trap for account in truth["traps"].values() for trap in account)
    for trap in ("real_flight", "carrier_ip_nearby", "shared_home_connection", "video_call_tools",
                 "long_human_day", "china_based_paid_in_china", "one_processor",
                 "bank_name_spelling", "agency_two_ratings", "steady_client_ratings",
                 "corporate_vpn", "busy_newcomer", "own_payment_account",
                 "short_common_greeting", "new_bank_own_name", "crypto_payout",
                 "move_within_country", "verified_before_first_bid", "night_owl"):  # fmt: skip
        assert traps[trap] > 0, trap
    assert set(traps) <= set(truth["trap_flags"])  # every trap says which flag it tests


def findings_for(seed: int) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    world = simulate(seed=seed)
    found = [f.model_dump(mode="json") for f in replay(lines(world), all_detectors())]
    return found, world.truth()


@pytest.mark.parametrize("seed", [7, 11])
def test_detectors_catch_the_teams_and_spare_the_traps(seed: int) -> None:
    found, truth = findings_for(seed)
    evaluation = evaluate(found, truth)
    assert evaluation.recall_below(0.95) == []
    unexplained = {s.detector: s.benign_flagged_without_trap for s in evaluation.detectors}
    assert set(unexplained.values()) == {0}, unexplained  # no benign account without its trap
    assert evaluation.team_identities_with_a_finding == 1.0
    # Benign users who show one weak red flag get that finding, and only they: every other
    # trap (flights, carrier IPs, bank spellings, China-based pay...) is spared.
    weak = {name for name, _, _ in WEAK_SIGNALS}
    showing = {a for a, traps in truth["traps"].items() if weak & set(traps)}
    flagged = {r["uid"] for f in found for r in f["resources"]} & set(truth["benign"])
    assert flagged <= showing, sorted(flagged - showing)
    watched = {a for a, traps in truth["traps"].items() if (weak - {"crypto_payout"}) & set(traps)}
    assert watched <= flagged, sorted(watched - flagged)  # each weak signal is a real one
    # ... and none of them is in an open case: one weak signal does not make a case.
    cases = evaluate_cases([c.model_dump(mode="json") for c in replay_cases(found)], found, truth)
    assert cases.benign_in_open_case == 0.0
    assert cases.identity_recall == 1.0
    assert min(cases.team_coherence.values()) >= 0.8
    assert cases.max_open_cases_per_identity == 1


def test_evaluation_counts_what_it_is_given() -> None:
    truth = {
        "identities": {"t1": ["geo_velocity"], "t2": ["geo_velocity", "shared_ip"]},
        "benign": ["b1", "b2"],
        "teams": {"team-1": ["t1", "t2"]},
        "flags": ["geo_velocity", "shared_ip"],
        "traps": {"b1": ["vpn_travel"], "b2": ["vpn_travel"]},
        "trap_flags": {"vpn_travel": ["geo_velocity"]},
    }

    def finding(detector: str, uid: str, *accounts: str) -> dict[str, Any]:
        return {"finding_info": {"uid": uid, "analytic": {"uid": detector}},
                "resources": [{"uid": a} for a in accounts]}  # fmt: skip

    evaluation = evaluate(
        [finding("geo_velocity", "g1", "t1"), finding("geo_velocity", "g2", "b1"),
         finding("geo_velocity", "g2", "b1"), finding("shared_ip", "s1", "t2", "b2")],
        truth,
    )  # fmt: skip
    geo, shared = evaluation.detectors
    assert (geo.recall, geo.precision, geo.findings) == (0.5, 0.5, 2)
    assert (shared.recall, shared.precision, shared.made_to_show) == (1.0, 0.5, 1)
    assert evaluation.benign_accounts_with_a_finding == 1.0
    # b1's trap is for geo_velocity: explained; b2's is not for shared_ip: a false positive
    assert (geo.benign_flagged, geo.benign_flagged_without_trap) == (1, 0)
    assert (shared.benign_flagged, shared.benign_flagged_without_trap) == (1, 1)
    assert evaluation.recall_below(0.9) == ["geo_velocity"]
    assert orjson.loads(orjson.dumps(evaluation.as_dict()))["team_identities"] == 2


def test_the_marketplace_traps_are_spared_or_kept_low() -> None:
    """A client rating two freelancers in a week, or many over months, gets no rating_burst
    finding; a company VPN used every day gets anonymizer findings at Low only, while the
    teams' commercial VPN exits are Medium."""
    found, truth = findings_for(7)
    by_trap: dict[str, set[str]] = {}
    for account, traps in truth["traps"].items():
        for trap in traps:
            by_trap.setdefault(trap, set()).add(account)
    rated = {r["uid"] for f in found if f["finding_info"]["analytic"]["uid"] == "rating_burst"
             for r in f["resources"]}  # fmt: skip
    assert by_trap["agency_two_ratings"] and by_trap["steady_client_ratings"]
    assert not rated & (by_trap["agency_two_ratings"] | by_trap["steady_client_ratings"])
    anonymizer = [f for f in found if f["finding_info"]["analytic"]["uid"] == "anonymizer"]
    corporate = {f["resources"][0]["uid"]: f["severity"] for f in anonymizer
                 if f["resources"][0]["uid"] in by_trap["corporate_vpn"]}  # fmt: skip
    assert set(corporate) == by_trap["corporate_vpn"] and set(corporate.values()) == {"Low"}
    team = {a for members in truth["teams"].values() for a in members}
    assert {f["severity"] for f in anonymizer if f["resources"][0]["uid"] in team} == {"Medium"}
