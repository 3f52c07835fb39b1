"""`make bench` end to end at a tiny size: every phase runs and reports its figures.

The figures themselves are measured by `make bench` (docs/PERFORMANCE.md), never asserted here.
"""

from __future__ import annotations

import json
import subprocess

import pytest

from detectors import DETECTOR_IDS
from tests.conftest import ROOT, free_port

pytestmark = pytest.mark.integration


def test_make_bench_runs_every_phase_and_prints_one_json_line() -> None:
    """`make bench` itself (its broker, the Quix peer's virtualenv, every phase), tiny."""
    small = ("--accounts 20 --days 2 --logins 3000 --latency-seconds 4 --long-run-events 20000"
             " --baseline 84fb69c,716a8fa --replay-repeats 2 --drain-repeats 2")  # fmt: skip
    result = subprocess.run(
        ["make", "bench", f"BENCH_PORT={free_port()}", f"BENCH_ARGS={small}"],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    lines = [line for line in result.stdout.splitlines() if line.startswith("{")]
    figures = json.loads(lines[-1])  # the harness's one JSON line, among make's own output
    total = figures["events"]["total"]
    assert total > 3000
    assert figures["ceiling"]["events"] == total
    assert set(figures["agents"]) == set(DETECTOR_IDS)
    assert figures["all_agents"]["events"] == total
    for run in [figures["ceiling"], figures["all_agents"], *figures["agents"].values()]:
        assert run["events_per_s"] > 0
    latency = figures["latency"]
    assert latency["findings"] == latency["probes"] > 0
    assert 0 < latency["p50_ms"] <= latency["p99_ms"] <= latency["max_ms"]
    logins = figures["events"]["per_topic"]["platform.logins"]
    assert figures["peer_quix_geo_velocity"]["events"] == logins
    assert figures["replay"]["events"] == total
    assert figures["replay_jobs"]["events"] == total and figures["replay_jobs"]["jobs"] >= 2
    # Like for like with the commit before issue 14: the first five detectors, and its replay.
    assert figures["replay_five"]["events"] == total
    assert figures["baseline_replay"]["commit"] == "84fb69c"
    assert figures["baseline_replay"]["events_per_s"] > 0
    # Each replay figure is the median of its runs, the runs interleaved and all reported.
    for name in ("replay", "replay_jobs", "replay_five", "baseline_replay"):
        runs = figures[name]["runs_s"]
        assert len(runs) == 2 and runs[0] <= figures[name]["seconds"] <= runs[1], figures[name]
    assert figures["floor_faust_noop"]["events"] == total
    # The floor, the baselines and the all-agents worker drained twice each, in turn: each
    # figure is the run of median rate (the lower of two), reported with both runs.
    for figure in (figures["floor_faust_noop"], figures["all_agents"]):
        runs = figure["runs_events_per_s"]
        assert len(runs) == 2 and figure["events_per_s"] == min(runs), figure
    split = figures["cost_per_event"]
    assert 0 < split["detection_us_per_event"] < split["total_us_per_event"]
    assert set(split["detection_us_per_event_by_detector"]) >= set(DETECTOR_IDS)
    baseline = figures["baseline_all_agents"]
    assert baseline.get("events") == total or "skipped" in baseline
    assert "skipped" in baseline or len(baseline["runs_events_per_s"]) == 2
    [earlier] = figures["earlier_all_agents"]  # a second commit, on the same backlog
    assert earlier["commit"] == "716a8fa"
    assert earlier.get("events") == total or "skipped" in earlier
    assert set(figures["state_bytes_per_account"]) == {"geo_velocity", "shared_ip"}
    assert len(figures["long_run"]["rss_mib"]) == 10
    assert {"all_agents_vs_ceiling", "geo_velocity_vs_quix", "all_agents_vs_faust_noop",
            "replay_jobs_vs_one", "replay_vs_baseline",
            "replay_five_vs_baseline"} <= set(figures["ratios"])  # fmt: skip
