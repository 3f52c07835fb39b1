"""Every detector against its own positive and negative cases (detectors/cases/*.yaml)."""

from __future__ import annotations

import orjson
import pytest

from detectors import DETECTOR_IDS, all_detectors
from detectors.core.cases import Case, load_cases
from detectors.core.engine import DetectorRunner
from schemas.codec import decode_event

CASES = load_cases()
DETECTORS = {detector.metadata.id: detector for detector in all_detectors()}


def run_case(case: Case) -> list[dict[str, object]]:
    runner = DetectorRunner(DETECTORS[case.detector])
    findings = []
    for event in case.events:
        for draft in runner.feed(decode_event(orjson.dumps(event))):
            findings.append(draft.to_finding().model_dump(mode="json"))
    for draft in runner.finish():
        findings.append(draft.to_finding().model_dump(mode="json"))
    return findings


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_case(case: Case) -> None:
    findings = run_case(case)
    assert len(findings) == len(case.findings), [f["message"] for f in findings]
    for finding, expected in zip(findings, case.findings, strict=True):
        assert finding["resources"][0]["uid"] == expected.account
        assert finding["severity"] == expected.severity
        assert finding["finding_info"]["analytic"]["uid"] == case.detector
        activity = "Close" if expected.closed else "Update" if expected.update else "Create"
        assert finding["activity_name"] == activity
        if expected.contains:
            assert expected.contains in finding["message"]
        if expected.accounts:
            assert [r["uid"] for r in finding["resources"]] == list(expected.accounts)


def test_updates_keep_the_uid_of_the_case_they_grow() -> None:
    for case in CASES:
        findings = run_case(case)
        uids: list[str] = []
        for finding in findings:
            uid = finding["finding_info"]["uid"]
            if finding["activity_name"] in ("Update", "Close"):
                assert uids and uid == uids[-1], f"{case.id}: an update of another finding"
            uids.append(uid)


def test_a_superseded_finding_names_the_one_that_replaces_it() -> None:
    (case,) = [case for case in CASES if case.id == "shared_ip/team-read-out-of-order"]
    findings = run_case(case)
    closed, canonical = findings[-2], findings[-1]
    assert closed["activity_name"] == "Close" and closed["status"] == "Superseded"
    assert closed["finding_info"]["uid"] == findings[0]["finding_info"]["uid"]
    assert closed["status_detail"] == f"superseded by {canonical['finding_info']['uid']}"
    assert canonical["finding_info"]["uid"] != closed["finding_info"]["uid"]


@pytest.mark.parametrize("detector_id", DETECTOR_IDS)
def test_each_detector_has_three_positive_and_three_negative_cases(detector_id: str) -> None:
    mine = [case for case in CASES if case.detector == detector_id]
    assert sum(1 for case in mine if case.findings) >= 3
    assert sum(1 for case in mine if not case.findings) >= 3
