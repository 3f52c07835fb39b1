"""The geo_velocity rule written with Quix Streams: the peer `make bench` measures Daylight against.

Runs in its own virtualenv (quixstreams pins a confluent-kafka older than Daylight's):
    python quix_geo.py SERVERS GROUP EXPECTED OUT_TOPIC
Reads platform.logins from the beginning, keeps each account's last located login in Quix state
(RocksDB with a changelog topic, Quix's defaults), emits a finding when two logins imply a speed
above 900 km/h over more than 100 km, and prints one JSON line once EXPECTED messages were
processed: the wall-clock times of the first and the last.
"""

from __future__ import annotations

import json
import math
import sys
import time
from typing import Any

from quixstreams import Application, State

MAX_SPEED_KMH = 900.0
MIN_DISTANCE_KM = 100.0


def haversine_km(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    phi1, phi2 = math.radians(lat1), math.radians(lat2)
    a = (
        math.sin((phi2 - phi1) / 2) ** 2
        + math.cos(phi1) * math.cos(phi2) * math.sin(math.radians(lon2 - lon1) / 2) ** 2
    )
    return 2 * 6371.0088 * math.asin(min(1.0, math.sqrt(a)))


def epoch_ms(moment: str) -> int:
    from datetime import datetime

    return int(datetime.fromisoformat(moment.replace("Z", "+00:00")).timestamp() * 1000)


def main() -> None:
    servers, group, expected, out_topic = sys.argv[1:5]
    total = int(expected)
    app = Application(
        broker_address=servers,
        consumer_group=group,
        auto_offset_reset="earliest",
        state_dir=f".daylight/bench/quix-state-{group}",
        loglevel="WARNING",
    )
    logins = app.topic("platform.logins", key_deserializer="str", value_deserializer="json")
    alerts = app.topic(out_topic, value_serializer="json")
    seen = {"count": 0, "first": 0.0}

    def velocity(event: dict[str, Any], state: State) -> dict[str, Any] | None:
        seen["count"] += 1
        if seen["count"] == 1:
            seen["first"] = time.time()
        if seen["count"] == total:
            print(json.dumps({"first": seen["first"], "last": time.time()}), flush=True)
        geo = event.get("geo")
        if event.get("type") != "login" or not geo or geo.get("lat") is None:
            return None
        now = epoch_ms(event["occurred_at"])
        previous = state.get("last")
        state.set("last", {"lat": geo["lat"], "lon": geo["lon"], "ms": now})
        if previous is None or now <= previous["ms"]:
            return None
        km = haversine_km(previous["lat"], previous["lon"], geo["lat"], geo["lon"])
        hours = (now - previous["ms"]) / 3_600_000
        if km < MIN_DISTANCE_KM or km / hours <= MAX_SPEED_KMH:
            return None
        return {"account_id": event["account_id"], "km": km, "kmh": km / hours}

    frame = app.dataframe(logins)
    frame = frame.apply(velocity, stateful=True).filter(lambda finding: finding is not None)
    frame.to_topic(alerts)
    app.run()


if __name__ == "__main__":
    main()
