"""Per-event metrics gathered in plain Python and added once per batch: a scrape after the
flush reads what Prometheus would have read had every event been observed one by one (the
sum of a histogram to rounding)."""

from __future__ import annotations

import math
import time

from faust.types import TP
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

from streams.metrics import CountTally, HistogramTally, QuietMonitor

BUCKETS = (1e-5, 2.5e-5, 1e-4, 1e-3, 0.1)
# On a bound, between bounds, below the first, above the last, and zero.
AMOUNTS = [1e-5, 2.5e-5, 3e-5, 5e-6, 0.0, 0.05, 0.1, 0.2, 7.0, 1e-4, 1e-4, 9e-4]


def _histogram(registry: CollectorRegistry) -> Histogram:
    return Histogram("t_seconds", "t", ["stage"], buckets=BUCKETS, registry=registry)


def test_a_flushed_histogram_tally_scrapes_as_every_observation_would() -> None:
    one_by_one, tallied = CollectorRegistry(), CollectorRegistry()
    direct = _histogram(one_by_one).labels("geo")
    tally = HistogramTally(_histogram(tallied).labels("geo"))
    for amount in AMOUNTS:
        direct.observe(amount)
        tally.observe(amount)
    assert generate_latest(tallied) != generate_latest(one_by_one)  # nothing before a flush
    tally.flush()
    assert generate_latest(tallied) == generate_latest(one_by_one)
    # A second batch adds to the first; an empty flush changes nothing.
    for amount in AMOUNTS[:5]:
        direct.observe(amount)
        tally.observe(amount)
    tally.flush()
    tally.flush()
    # Every bucket and the count exact; the sum to rounding (a batch is summed, then added).
    assert _samples(tallied, exact=True) == _samples(one_by_one, exact=True)
    assert math.isclose(_sum(tallied), _sum(one_by_one), rel_tol=1e-12)


def _samples(registry: CollectorRegistry, exact: bool) -> list[tuple[str, dict[str, str], float]]:
    return [
        (sample.name, sample.labels, sample.value)
        for family in registry.collect()
        for sample in family.samples
        if not (exact and sample.name.endswith("_sum"))
    ]


def _sum(registry: CollectorRegistry) -> float:
    value = registry.get_sample_value("t_seconds_sum", {"stage": "geo"})
    assert value is not None
    return value


def test_a_flushed_count_tally_adds_its_count_once() -> None:
    registry = CollectorRegistry()
    counter = Counter("t_events", "t", ["topic"], registry=registry).labels("platform.logins")
    tally = CountTally(counter)
    for _ in range(7):
        tally.inc()
    assert registry.get_sample_value("t_events_total", {"topic": "platform.logins"}) == 0
    tally.flush()
    tally.flush()
    assert registry.get_sample_value("t_events_total", {"topic": "platform.logins"}) == 7


def test_the_quiet_monitor_tells_faust_when_each_partition_last_fed_its_stream() -> None:
    # Faust's consumer logs "Stream has not started processing" for a partition behind its
    # end that has no entry here five minutes after start (`verify_event_path`), and "stopped
    # processing" when the entry is that old: the monitor must keep it without Faust's
    # per-message bookkeeping, or a healthy worker logs errors every few seconds.
    monitor = QuietMonitor()
    taken, idle = TP("platform.logins", 0), TP("platform.logins", 1)
    before = time.monotonic()
    monitor.on_stream_event_in(taken, 7, None, None)
    assert before <= monitor.stream_inbound_time[taken] <= time.monotonic()
    assert idle not in monitor.stream_inbound_time
    assert monitor.events_total == 0  # and none of Faust's per-message counting
