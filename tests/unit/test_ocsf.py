"""Every finding Daylight publishes is strict-valid OCSF 1.8.0 (tests/ocsf_check.py): the
official schema from the pinned `ocsf-json-schema` package, plus the OCSF server validator's
rules that JSON Schema cannot express."""

from __future__ import annotations

import copy
from collections import Counter
from typing import Any

import orjson
import pytest

from detectors import DETECTOR_IDS, all_detectors
from detectors.core.cases import load_cases
from detectors.core.engine import DetectorRunner
from detectors.core.replay import replay
from schemas.codec import decode_event, encode_finding
from simulator.simulate import lines, simulate
from tests.ocsf_check import problems


def _published(finding: Any) -> dict[str, Any]:
    """The value as it goes on daylight.alerts (and into replay's output file)."""
    return dict(orjson.loads(encode_finding(finding)))


@pytest.fixture(scope="module")
def demo_findings() -> list[dict[str, Any]]:
    """The demo world of `make demo`: 300 accounts over 7 days, two teams (seed 7)."""
    world = simulate(seed=7, accounts=300, days=7, teams=2)
    return [_published(f) for f in replay(lines(world), all_detectors())]


def test_every_finding_of_the_demo_world_is_strict_valid(
    demo_findings: list[dict[str, Any]],
) -> None:
    by_detector = Counter(f["finding_info"]["analytic"]["uid"] for f in demo_findings)
    assert set(by_detector) == set(DETECTOR_IDS), by_detector
    errors = {f["finding_info"]["uid"]: problems(f) for f in demo_findings}
    errors = {uid: found for uid, found in errors.items() if found}
    assert not errors, f"{len(errors)} of {len(demo_findings)} rejected: {list(errors.items())[:3]}"
    print(f"OCSF 1.8.0: {len(demo_findings)} demo findings checked, errors 0; {dict(by_detector)}")


def test_every_finding_of_the_detectors_cases_is_strict_valid() -> None:
    detectors = {d.metadata.id: d for d in all_detectors()}
    checked = 0
    for case in load_cases():
        runner = DetectorRunner(detectors[case.detector])
        drafts = [d for e in case.events for d in runner.feed(decode_event(orjson.dumps(e)))]
        for draft in drafts + runner.finish():
            finding = _published(draft.to_finding())
            assert problems(finding) == [], case.id
            checked += 1
    assert checked >= 3 * len(DETECTOR_IDS)


def test_findings_carry_what_the_contract_promises(demo_findings: list[dict[str, Any]]) -> None:
    for finding in demo_findings:
        info = finding["finding_info"]
        assert finding["is_alert"] is True
        assert info["desc"] and finding["remediation"]["desc"]
        assert info["desc"] != finding["remediation"]["desc"]
        assert info["related_events_count"] == len(info["related_events"]) >= 1
        assert all(event["uid"] for event in info["related_events"])
        names = {o["name"] for o in finding["observables"]}
        assert names <= {"resources[].uid", "evidences[].src_endpoint.ip"}
    attacks = {
        f["finding_info"]["analytic"]["uid"]: [
            a["technique"]["uid"] for a in f["finding_info"].get("attacks", [])
        ]
        for f in demo_findings
    }
    assert attacks["remote_access"] == ["T1219"]
    assert attacks["geo_velocity"] == attacks["shared_ip"] == ["T1078"]
    assert attacks["payout_routing"] == attacks["continuous_session"] == []


def test_each_detector_says_why_it_maps_to_attack_or_not() -> None:
    for detector in all_detectors():
        meta = detector.metadata
        assert meta.description and meta.attack_rationale, meta.id
        for mapping in meta.attacks:
            assert mapping.technique_id in meta.attack_rationale


@pytest.mark.parametrize(
    ("spoil", "expected"),
    [
        (lambda f: f["observables"][0].update(name="account"), "observables[0].name"),
        (lambda f: f["observables"][0].update(name="src_endpoint.ip"), "observables[0].name"),
        (lambda f: f["observables"][0].update(type_id=2), "observables[0].type_id"),
        (lambda f: f["observables"][0].update(value="nobody"), "observables[0].value"),
        (lambda f: f.update(type_uid=200402), "type_uid"),
        (
            lambda f: f.update(severity="Critical" if f["severity"] != "Critical" else "Low"),
            "severity: caption of severity_id",
        ),
        (lambda f: f.update(shoe_size=44), "schema: Additional properties"),
        (lambda f: f.update(severity_id=7), "severity_id"),
        (lambda f: f["finding_info"].pop("uid"), "finding_info: schema"),
    ],
)
def test_the_checker_rejects_what_a_strict_validator_rejects(
    demo_findings: list[dict[str, Any]], spoil: Any, expected: str
) -> None:
    finding = copy.deepcopy(demo_findings[0])
    assert problems(finding) == []
    spoil(finding)
    found = problems(finding)
    assert any(expected in problem for problem in found), found


def test_the_readme_example_is_what_the_detector_publishes() -> None:
    from tests.conftest import ROOT

    readme = (ROOT / "README.md").read_text()
    section = readme.split("### What a finding looks like", 1)[1]
    example = orjson.loads(section.split("```json\n", 1)[1].split("```", 1)[0])
    (case,) = [c for c in load_cases() if c.id == "remote_access/rdp-into-laptop-farm"]
    runner = DetectorRunner({d.metadata.id: d for d in all_detectors()}["remote_access"])
    (draft,) = [d for e in case.events for d in runner.feed(decode_event(orjson.dumps(e)))]
    assert example == _published(draft.to_finding())
    assert problems(example) == []
