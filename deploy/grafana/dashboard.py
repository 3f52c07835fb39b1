"""The Daylight dashboard as code (grafanalib); `make dashboard` writes dashboards/daylight.json.

grafanalib rather than grafana-foundation-sdk: a small, stable pure-Python library with one
dependency, whose output is plain dashboard JSON any Grafana since 8 imports; the foundation
SDK's Python builders track Grafana's schema version by version and are still moving.
The test suite fails when the committed JSON differs from what this file generates, and
runs every query below against a real Prometheus scraping a real worker.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from grafanalib._gen import DashboardEncoder
from grafanalib.core import Dashboard, GridPos, RowPanel, Stat, Target, TimeSeries

DATASOURCE = {"type": "prometheus", "uid": "daylight-prometheus"}
OUTPUT = Path(__file__).parent / "dashboards" / "daylight.json"

# (title, unit, [(legend, PromQL)], description)
PANELS: list[tuple[str, str, list[tuple[str, str]], str]] = [
    ("Events consumed per topic", "ops",
     [("{{topic}}", "sum by (topic) (rate(daylight_events_consumed_total[$__rate_interval]))")],
     "Messages per second read from each platform.* topic, all workers."),
    ("Consumer lag", "short",
     [("{{topic}}", "sum by (topic) (daylight_consumer_lag_messages)")],
     "Messages behind the end of each input topic. Growing lag: add partitions and workers."),
    ("Dead-lettered per reason", "ops",
     [("{{reason}} ({{topic}})",
       "sum by (reason, topic) (rate(daylight_events_rejected_total[$__rate_interval]))")],
     "Messages sent to daylight.dlq, by reason class: invalid_json, invalid_event, unknown_type, key_mismatch..."),
    ("Findings per detector and severity", "short",
     [("{{detector}} {{severity}}",
       "sum by (detector, severity) (increase(daylight_findings_total[$__rate_interval]))")],
     "Findings published to daylight.alerts."),
    ("Produce-to-finding latency", "s",
     [("p50", "histogram_quantile(0.5, sum by (le) (rate(daylight_end_to_end_latency_seconds_bucket[$__rate_interval])))"),
      ("p99", "histogram_quantile(0.99, sum by (le) (rate(daylight_end_to_end_latency_seconds_bucket[$__rate_interval])))")],
     "From the Kafka timestamp of the triggering event to its finding being sent."),
    ("Detector time per event (p99)", "s",
     [("{{detector}}", "histogram_quantile(0.99, sum by (le, detector) (rate(daylight_detector_processing_seconds_bucket[$__rate_interval])))")],
     "Time one detector stage spends on one event."),
    ("Event-time lag (p50)", "s",
     [("{{topic}}", "histogram_quantile(0.5, sum by (le, topic) (rate(daylight_event_time_lag_seconds_bucket[$__rate_interval])))")],
     "Wall clock minus occurred_at at consumption: how late events reach Daylight (large in a replay)."),
    ("State entries", "short",
     [("{{stage}}", "sum by (stage) (daylight_state_entries)"),
      ("waiting {{stage}}", "sum by (stage) (daylight_deferred_decisions)")],
     "Entities held per detector stage; follows active entities, not history. Waiting: "
     "entities with a decision deferred until their input is complete; it drains to zero "
     "once the input is read."),
    ("Skipped events and detector errors", "ops",
     [("skipped {{detector}} {{reason}}", "sum by (detector, reason) (rate(daylight_events_skipped_total[$__rate_interval]))"),
      ("errors {{detector}}", "sum by (detector) (rate(daylight_detector_errors_total[$__rate_interval]))")],
     "Valid events a detector could not use (no location) and events a detector raised on."),
]  # fmt: skip

# The "Cases" row: what the SOC works, and what it decides.
CASE_PANELS: list[tuple[str, str, list[tuple[str, str]], str]] = [
    ("Open cases by risk level", "short",
     [("{{level}}", "sum by (level) (daylight_cases_open)")],
     "Cases open on daylight.cases (held by the worker that owns the case partition)."),
    ("Cases created, updated, closed; feedback applied", "short",
     [("{{activity}}", "sum by (activity) (increase(daylight_case_messages_total[$__rate_interval]))"),
      ("feedback {{kind}}", "sum by (kind) (increase(daylight_feedback_applied_total[$__rate_interval]))")],
     "Case messages published, and analysts' verdicts and suppressions applied."),
]  # fmt: skip


def dashboard() -> Dashboard:
    panels = [
        Stat(
            title="Workers up",
            dataSource=DATASOURCE,
            targets=[Target(expr='sum(up{job="daylight"})', refId="A", datasource=DATASOURCE)],
            gridPos=GridPos(h=4, w=24, x=0, y=0),
            description="Workers Prometheus scrapes successfully.",
        )
    ]
    for index, panel in enumerate(PANELS):
        panels.append(
            _series(*panel, GridPos(h=8, w=12, x=12 * (index % 2), y=4 + 8 * (index // 2)))
        )
    row_y = 4 + 8 * ((len(PANELS) + 1) // 2)
    panels.append(RowPanel(title="Cases", gridPos=GridPos(h=1, w=24, x=0, y=row_y)))
    for index, panel in enumerate(CASE_PANELS):
        panels.append(_series(*panel, GridPos(h=8, w=12, x=12 * index, y=row_y + 1)))
    return Dashboard(
        title="Daylight",
        uid="daylight",
        description="Daylight workers: flow, lag, rejections, findings, latency, state.",
        tags=["daylight", "kafka", "detection"],
        timezone="utc",
        refresh="30s",
        panels=panels,
    ).auto_panel_ids()


def _series(
    title: str, unit: str, queries: list[tuple[str, str]], description: str, grid: GridPos
) -> TimeSeries:
    return TimeSeries(
        title=title,
        dataSource=DATASOURCE,
        unit=unit,
        description=description,
        targets=[
            Target(expr=expr, legendFormat=legend, refId=chr(65 + n), datasource=DATASOURCE)
            for n, (legend, expr) in enumerate(queries)
        ],
        gridPos=grid,
    )


def render() -> str:
    return (
        json.dumps(dashboard().to_json_data(), cls=DashboardEncoder, indent=2, sort_keys=True)
        + "\n"
    )


def queries() -> list[str]:
    """Every PromQL expression of the dashboard, as Grafana would send it."""
    return ['sum(up{job="daylight"})'] + [
        expr for _, _, targets, _ in PANELS + CASE_PANELS for _, expr in targets
    ]


if __name__ == "__main__":
    OUTPUT.parent.mkdir(parents=True, exist_ok=True)
    OUTPUT.write_text(render())
    sys.stdout.write(f"{OUTPUT}\n")
