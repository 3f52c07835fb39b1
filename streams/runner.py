"""Runs one Faust worker process with every agent and the metrics endpoint."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import faust

from detectors import Detector
from detectors.core.casework import CaseSettings
from streams.admin import ensure_topics
from streams.app import Daylight
from streams.metrics import serve
from streams.settings import Settings, tune_collector

__all__ = ["run_worker"]


def run_worker(
    settings: Settings,
    detectors: Sequence[Detector],
    announce: Callable[[str], Any] = print,
    cases: CaseSettings | None = None,
) -> None:
    if settings.event_loop == "uvloop":
        # Before the app exists: Faust and aiokafka take the loop the policy gives.
        import asyncio

        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    daylight = Daylight(settings, detectors, cases=cases)
    ensure_topics(
        settings.confluent_config(),
        daylight.internal_topics,
        settings.topic_partitions,
        retention_ms=7 * 86_400_000,  # repartitioned events are read within seconds
    )
    ensure_topics(  # the tables' changelogs, compacted: ready before the first state write
        settings.confluent_config(), daylight.changelog_topics, settings.topic_partitions
    )
    if settings.metrics_port:
        serve(daylight.registry, settings.metrics_port)
        announce(f"metrics on http://127.0.0.1:{settings.metrics_port}/metrics")
    agents = ", ".join(daylight.app.agents)
    announce(f"worker {settings.app_id} on {settings.bootstrap_servers}: {agents}")
    worker = faust.Worker(
        daylight.app,
        loglevel=settings.log_level,
        quiet=True,
        redirect_stdouts=False,
        console_port=0,
    )
    # Faust's terminal spinner sets the root logger to DEBUG to spin on every record: every
    # debug line of aiokafka and Faust would then be built on the hot path (about a tenth of
    # a worker's time). The worker logs at the configured level instead.
    worker.spinner = None
    announce(f"event loop: {type(worker.loop).__module__}.{type(worker.loop).__name__}")
    tune_collector(settings.gc_young_allocations)
    worker.execute_from_commandline()
