"""`make demo`, the README's first command, end to end on a broker of its own."""

from __future__ import annotations

import subprocess

import pytest

from tests.conftest import DAYLIGHT, ROOT, free_port, run

pytestmark = pytest.mark.integration


def test_make_demo_shows_findings_from_all_five_detectors() -> None:
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
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    for detector in ("geo_velocity", "shared_ip", "remote_access", "continuous_session",
                     "payout_routing"):  # fmt: skip
        assert f" {detector} " in result.stdout
    assert "Dallas, US -> Shenyang, CN" in result.stdout
    assert "metrics on http://127.0.0.1:" in result.stdout
