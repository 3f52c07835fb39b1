"""Waits until a worker's /metrics shows it consumed N messages of a topic and has no lag.

Used by deploy/demo.sh: `python deploy/wait_for_worker.py PORT TOPIC|all COUNT [TIMEOUT]`.
"""

from __future__ import annotations

import sys
import time
import urllib.request

from prometheus_client.parser import text_string_to_metric_families


def sample_sums(port: str, topic: str) -> tuple[float, float, int]:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2).read().decode()
    consumed = lag = 0.0
    lag_series = 0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            wanted = topic == "all" or sample.labels.get("topic") == topic
            if sample.name == "daylight_events_consumed_total" and wanted:
                consumed += sample.value
            elif sample.name == "daylight_consumer_lag_messages":
                lag += sample.value
                lag_series += 1
    return consumed, lag, lag_series


def main() -> int:
    port, topic, count = sys.argv[1], sys.argv[2], float(sys.argv[3])
    deadline = time.monotonic() + (float(sys.argv[4]) if len(sys.argv) > 4 else 180)
    quiet_since: float | None = None
    while time.monotonic() < deadline:
        try:
            consumed, lag, lag_series = sample_sums(port, topic)
        except OSError:
            consumed, lag, lag_series = 0.0, 0.0, 0
        caught_up = consumed >= count and lag_series > 0 and lag == 0
        if caught_up and quiet_since is None:
            quiet_since = time.monotonic()
        elif not caught_up:
            quiet_since = None
        # The lag gauges refresh every 5 s: trust "no lag" once it held over a refresh.
        if quiet_since is not None and time.monotonic() - quiet_since > 6:
            return 0
        time.sleep(0.5)
    sys.stderr.write(f"the worker did not catch up with {count:g} messages of {topic} in time\n")
    return 1


if __name__ == "__main__":
    sys.exit(main())
