"""`make demo`, the README's first command, end to end on a broker of its own."""

from __future__ import annotations

import subprocess

import orjson
import pytest

from detectors import DETECTOR_IDS
from tests.conftest import DAYLIGHT, ROOT, free_port, run

pytestmark = pytest.mark.integration


def test_make_demo_simulates_publishes_shows_and_evaluates() -> None:
    port = free_port()
    data_dir = ROOT / ".daylight" / "demo-under-test"
    env = {
        "DEMO_PORT": str(port),
        "DEMO_DATA_DIR": str(data_dir),
        "DAYLIGHT_METRICS_PORT": str(free_port()),
        "DAYLIGHT_DATA_DIR": str(ROOT / ".daylight" / "demo-under-test-worker"),
    }
    try:
        result = run(["make", "demo"], env=env, timeout=400)
    finally:
        subprocess.run(
            [DAYLIGHT, "broker", "stop", "--port", str(port), "--data-dir", str(data_dir)],
            capture_output=True,
            timeout=120,
        )
    # make demo exits non-zero when a detector's recall on the demo world is under 0.9.
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "Detection quality against the ground truth" in result.stdout
    assert "team identities with a finding: 100% of 40" in result.stdout
    assert "metrics on http://127.0.0.1:" in result.stdout
    # A log is not a terminal: identifiers and the summary stay whole, never cut to 80 columns.
    assert "…" not in result.stdout
    for detector in DETECTOR_IDS:
        assert f"│ {detector} " in result.stdout, detector
    # The case table, then the case scores: the teams in cases, no benign account in one.
    assert "Cases on daylight.cases (highest risk first)" in result.stdout
    lines = result.stdout.splitlines()
    recall = next(line for line in lines if "team identities with 2+ red flags in an open" in line)
    assert "100% of 40" in recall
    benign = next(line for line in lines if "benign accounts in an open case" in line)
    assert "0.0%" in benign
    most = next(line for line in lines if "most open cases holding one identity" in line)
    assert most.rstrip(" │").endswith("1"), most
    alerts = ROOT / ".daylight" / "demo-world" / "alerts.jsonl"
    detectors = {orjson.loads(line)["finding_info"]["analytic"]["uid"]
                 for line in alerts.read_bytes().splitlines()}  # fmt: skip
    assert detectors == set(DETECTOR_IDS)  # make demo shows findings of every detector
