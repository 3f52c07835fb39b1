"""A long, steady stream for soak runs: a rolling population, so state must expire to stay flat.

Every event is one second of event time after the previous one. Cohorts of 500 accounts take
turns for 10 hours each; a fixed pool of 100 payers is paid now and then. At any moment the
active entities are the last day's cohorts, whatever the length of the run.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta

import orjson

__all__ = ["COHORT", "COHORT_EVENTS", "soak_events"]

START = datetime.fromisoformat("2026-04-01T00:00:00+00:00")
COHORT = 500
COHORT_EVENTS = 36_000  # 10 h of event time
PLACES = [("US", 40.71, -74.01, "New York"), ("GB", 51.51, -0.13, "London"),
          ("DE", 52.52, 13.40, "Berlin"), ("IN", 12.97, 77.59, "Bengaluru")]  # fmt: skip


def soak_events(count: int) -> Iterator[bytes]:
    for i in range(count):
        at = (START + timedelta(seconds=i)).strftime("%Y-%m-%dT%H:%M:%SZ")
        cohort, member = divmod(i // 7 % COHORT + (i // COHORT_EVENTS) * COHORT, COHORT)
        number = cohort * COHORT + member
        account = f"soak-{number}"
        ip = f"198.18.{(number >> 8) & 255}.{number & 255}"
        if i % 50 == 0:
            country, lat, lon, city = PLACES[number % len(PLACES)]
            event = {"type": "login", "ip": ip,
                     "geo": {"country": country, "lat": lat, "lon": lon, "city": city}}  # fmt: skip
        elif i % 997 == 0:
            payer = f"payer-{i % 100}"
            account = payer
            event = {"type": "payout_sent", "payout_id": f"po-{i}", "amount": "100.00",
                     "currency": "USD", "method": "bank",
                     "destination": {"fingerprint": f"dest-{i % 100}", "holder_name": None,
                                     "country": "US", "institution": None}, "route": []}  # fmt: skip
        else:
            event = {"type": "session_heartbeat", "session_id": f"s-{number}", "ip": ip,
                     "connection": {"src_port": 50000, "open_ports": [], "rdp_session": False,
                                    "remote_tools": []}}  # fmt: skip
        yield orjson.dumps(
            {"event_id": f"soak-{i}", "occurred_at": at, "account_id": account, **event}
        )
