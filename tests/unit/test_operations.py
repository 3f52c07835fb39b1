"""Operations as code: the Grafana dashboard and the Prometheus rules (promtool)."""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).parents[2]
PROMETHEUS = ROOT / "deploy" / "prometheus"


def dashboard_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("dashboard", ROOT / "deploy/grafana/dashboard.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_committed_dashboard_is_the_generated_one() -> None:
    """Fails when deploy/grafana/dashboards/daylight.json drifts: run `make dashboard`."""
    module = dashboard_module()
    assert module.OUTPUT.read_text() == module.render()


def test_dashboard_has_the_panels_an_sre_needs() -> None:
    titles = {panel[0] for panel in dashboard_module().PANELS}
    assert {
        "Events consumed per topic",
        "Consumer lag",
        "Dead-lettered per reason",
        "Findings per detector and severity",
        "Produce-to-finding latency",
        "State entries",
    } <= titles


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    binary = shutil.which("promtool")
    if binary is None:
        pytest.fail("promtool is missing: `make prometheus` installs Debian's prometheus package")
    return subprocess.run([binary, *args], capture_output=True, text=True, cwd=PROMETHEUS)


def test_alerting_rules_pass_their_unit_tests() -> None:
    assert promtool("check", "rules", "rules.yml").returncode == 0
    assert promtool("check", "config", "prometheus.yml").returncode == 0
    result = promtool("test", "rules", "rules_test.yml")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_rules_cover_the_failures_an_sre_pages_on() -> None:
    import yaml

    rules = yaml.safe_load((PROMETHEUS / "rules.yml").read_text())["groups"][0]["rules"]
    assert {rule["alert"] for rule in rules} >= {
        "DaylightWorkerDown",
        "DaylightNoEvents",
        "DaylightDeadLetterRateHigh",
        "DaylightConsumerLagGrowing",
        "DaylightFindingsSurge",
    }


@pytest.mark.parametrize("target", ["dashboard", "schemas"])
def test_make_target_regenerates_what_is_committed(target: str) -> None:
    """`make dashboard` and `make schemas` (README) run and leave the committed files as they are."""
    result = subprocess.run(["make", "-s", target], capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    diff = subprocess.run(
        ["git", "status", "--porcelain", "deploy/grafana", "schemas/json"],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert diff.stdout == ""
