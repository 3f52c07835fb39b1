"""Every Prometheus metric of a worker, built in one place from a CollectorRegistry."""

from __future__ import annotations

from bisect import bisect_left
from collections import Counter as CounterOfReasons
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from time import monotonic
from typing import Any

from faust.sensors import Monitor
from faust.types import TP
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    start_http_server,
)
from prometheus_client.core import CounterMetricFamily
from prometheus_client.registry import Collector

__all__ = ["CountTally", "HistogramTally", "Metrics", "QuietMonitor", "SkippedEvents", "serve"]

# `*_created` series double the exposition and no dashboard of ours reads them.
disable_created_metrics()  # type: ignore[no-untyped-call]

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
_LAG_BUCKETS = (0.1, 0.5, 1, 5, 15, 60, 300, 900, 3600, 6 * 3600, 86400, 7 * 86400, 30 * 86400)
_PROCESSING_BUCKETS = (1e-5, 2.5e-5, 5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 1e-2, 0.1)


@dataclass(frozen=True)
class Metrics:
    """Labels are bounded sets only (topic, reason class, detector, severity): never an entity."""

    events_consumed: Counter
    events_rejected: Counter
    findings: Counter
    detector_errors: Counter
    processing_seconds: Histogram
    event_time_lag_seconds: Histogram
    end_to_end_latency_seconds: Histogram
    state_entries: Gauge
    deferred_decisions: Gauge
    consumer_lag: Gauge
    partitions_read_again: Counter
    rekeyed_events: Counter
    cases_open: Gauge
    case_messages: Counter
    feedback_applied: Counter

    @classmethod
    def create(cls, registry: CollectorRegistry) -> Metrics:
        return cls(
            events_consumed=Counter(
                "daylight_events_consumed_total",
                "Messages consumed from each input topic",
                ["topic"],
                registry=registry,
            ),
            events_rejected=Counter(
                "daylight_events_rejected_total",
                "Messages sent to the dead-letter topic, by reason class",
                ["topic", "reason"],
                registry=registry,
            ),
            findings=Counter(
                "daylight_findings_total",
                "Findings published to daylight.alerts",
                ["detector", "severity"],
                registry=registry,
            ),
            detector_errors=Counter(
                "daylight_detector_errors_total",
                "Exceptions raised by a detector on one event (the event is dead-lettered)",
                ["detector"],
                registry=registry,
            ),
            processing_seconds=Histogram(
                "daylight_detector_processing_seconds",
                "Time a detector spends on one event",
                ["detector"],
                buckets=_PROCESSING_BUCKETS,
                registry=registry,
            ),
            event_time_lag_seconds=Histogram(
                "daylight_event_time_lag_seconds",
                "Wall-clock now minus the event's occurred_at, at consumption",
                ["topic"],
                buckets=_LAG_BUCKETS,
                registry=registry,
            ),
            end_to_end_latency_seconds=Histogram(
                "daylight_end_to_end_latency_seconds",
                "From the Kafka timestamp of the triggering event to its finding being sent",
                ["detector"],
                buckets=_LATENCY_BUCKETS,
                registry=registry,
            ),
            state_entries=Gauge(
                "daylight_state_entries",
                "Entities held in a detector stage's state table on this worker",
                ["stage"],
                registry=registry,
            ),
            deferred_decisions=Gauge(
                "daylight_deferred_decisions",
                "Entities with a decision waiting for their input to be complete (a stage that "
                "rests on the absence of an event), on this worker",
                ["stage"],
                registry=registry,
            ),
            consumer_lag=Gauge(
                "daylight_consumer_lag_messages",
                "Messages behind the end of each input topic, summed over assigned partitions",
                ["topic"],
                registry=registry,
            ),
            partitions_read_again=Counter(
                "daylight_partitions_read_again_total",
                "Partitions read again from their committed offset after their reading stopped "
                "short of the end with every agent idle (docs/RELIABILITY.md, stall)",
                ["topic"],
                registry=registry,
            ),
            rekeyed_events=Counter(
                "daylight_rekeyed_events_total",
                "Input events re-keyed for a stage keyed by another entity (shared_ip by IP), by "
                "path: handed over in this process for a partition this worker owns, or sent "
                "to the repartition topic for another worker",
                ["topic", "path"],
                registry=registry,
            ),
            cases_open=Gauge(
                "daylight_cases_open",
                "Open cases held by this worker, by risk level",
                ["level"],
                registry=registry,
            ),
            case_messages=Counter(
                "daylight_case_messages_total",
                "Case messages published on daylight.cases, by activity (created, updated, closed)",
                ["activity"],
                registry=registry,
            ),
            feedback_applied=Counter(
                "daylight_feedback_applied_total",
                "Analysts' feedback applied by the case agent, by kind",
                ["kind"],
                registry=registry,
            ),
        )


class HistogramTally:
    """Observations of one histogram series gathered in plain Python and added to it at once
    (`flush`, once per batch): prometheus_client takes a lock and scans the buckets on every
    `observe`, which per event and stage was 3% of the worker's main thread. A scrape sees
    the series as of the last flush; the exposition is the one `observe` would give (tested).
    `flush` adds to the series' bucket and sum values, which prometheus_client (pinned)
    keeps as `_buckets` and `_sum`."""

    __slots__ = ("_bounds", "_child", "_counts", "_sum")

    def __init__(self, child: Histogram) -> None:
        self._child: Any = child
        self._bounds: list[float] = list(self._child._upper_bounds)
        self._counts = [0] * len(self._bounds)
        self._sum = 0.0

    def observe(self, amount: float) -> None:
        # The first bucket whose upper bound is >= amount, as `Histogram.observe` files it.
        self._counts[bisect_left(self._bounds, amount)] += 1
        self._sum += amount

    def flush(self) -> None:
        child, counts = self._child, self._counts
        if not any(counts):
            return
        for index, count in enumerate(counts):
            if count:
                child._buckets[index].inc(count)
                counts[index] = 0
        child._sum.inc(self._sum)
        self._sum = 0.0


class CountTally:
    """Increments of one counter series gathered in plain Python, added at once (`flush`)."""

    __slots__ = ("_child", "count")

    def __init__(self, child: Counter) -> None:
        self._child = child
        self.count = 0

    def inc(self) -> None:
        self.count += 1

    def flush(self) -> None:
        if self.count:
            self._child.inc(self.count)
            self.count = 0


class SkippedEvents(Collector):
    """`daylight_events_skipped_total`: valid events a detector could not use (a login with no
    location at all), read at scrape time from the counters the detectors keep."""

    def __init__(self, skipped_by_detector: Mapping[str, CounterOfReasons[str]]) -> None:
        self._skipped = skipped_by_detector

    def collect(self) -> Iterator[CounterMetricFamily]:
        family = CounterMetricFamily(
            "daylight_events_skipped",
            "Valid events a detector could not use, by reason",
            labels=["detector", "reason"],
        )
        for detector, reasons in self._skipped.items():
            for reason, count in reasons.items():
                family.add_metric([detector, reason], count)
        yield family


def serve(registry: CollectorRegistry, port: int, addr: str = "0.0.0.0") -> None:
    """Expose the registry over HTTP on `port` (a background thread)."""
    start_http_server(port, addr=addr, registry=registry)


class QuietMonitor(Monitor):
    """Faust's monitor without its per-message bookkeeping: Daylight's own metrics count
    events, rejections, findings and lag per topic. What Faust's consumer reads off the
    monitor directly (end offsets, commits) still works, and so does its check that each
    partition's stream is processing: it reads when a stream last took an event of the
    partition (without it, Faust logs "Stream has not started processing" for every
    partition behind its end, every few seconds, from five minutes after start)."""

    def on_message_in(self, tp: TP, offset: int, message: Any) -> None:
        return None

    def on_stream_event_in(self, tp: TP, offset: int, stream: Any, event: Any) -> None:
        self.stream_inbound_time[tp] = monotonic()

    def on_stream_event_out(
        self, tp: TP, offset: int, stream: Any, event: Any, state: Any = None
    ) -> None:
        return None

    def on_message_out(self, tp: TP, offset: int, message: Any) -> None:
        return None

    def on_table_get(self, table: Any, key: Any) -> None:
        return None

    def on_table_set(self, table: Any, key: Any, value: Any) -> None:
        return None

    def on_table_del(self, table: Any, key: Any) -> None:
        return None
