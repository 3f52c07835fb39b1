"""The floor: a stock Faust agent that does nothing but iterate its stream over every input
topic (Faust's defaults: asyncio loop, aiokafka, raw values, acks on), draining the backlog.
Prints one JSON line: events, seconds from its first event to its last, events per second.

    python tests/bench/faust_noop.py SERVERS GROUP EXPECTED_EVENTS
"""

from __future__ import annotations

import json
import os
import sys
import time

import faust

from streams.topics import INPUT_TOPICS


def main() -> None:
    servers, group, expected = sys.argv[1], sys.argv[2], int(sys.argv[3])
    app = faust.App(
        group,
        broker=f"kafka://{servers}",
        value_serializer="raw",
        key_serializer="raw",
        consumer_auto_offset_reset="earliest",
        web_enabled=False,
        autodiscover=False,
        store="memory://",
        datadir=f"/tmp/{group}",
    )
    topic = app.topic(*INPUT_TOPICS, value_serializer="raw", key_serializer="raw")
    seen = {"count": 0, "first": 0.0}

    @app.agent(topic)
    async def noop(stream: faust.StreamT[bytes]) -> None:
        async for _ in stream:
            seen["count"] += 1
            if seen["count"] == 1:
                seen["first"] = time.perf_counter()
            if seen["count"] >= expected:
                seconds = time.perf_counter() - seen["first"]
                print(json.dumps({"events": seen["count"], "seconds": round(seconds, 3),
                                  "events_per_s": round(seen["count"] / seconds)}), flush=True)  # fmt: skip
                os._exit(0)

    worker = faust.Worker(app, loglevel="warning", quiet=True, redirect_stdouts=False)
    worker.spinner = None
    worker.execute_from_commandline()


if __name__ == "__main__":
    main()
