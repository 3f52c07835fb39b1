"""The case agent: daylight.alerts and daylight.feedback in, daylight.cases out.

Findings are a thousand times fewer than events, so the link graph lives on one partition:
a router re-keys every finding and every feedback message to one key of a repartition
topic, and one stage agent (wherever that partition is assigned) runs the case book over a
Faust table. Delivery is the detector stages': a batch's case messages are acknowledged by
the broker, then its state changes, and only then are its messages acknowledged. The
single partition holds while one worker keeps up with the finding rate (docs/PERFORMANCE.md).
"""

from __future__ import annotations

import logging
import time
import weakref
from typing import TYPE_CHECKING, Any

import faust
from faust.streams import _current_event
from faust.types import EventT

from detectors.core.casework import CaseBook, CaseSettings, facts_of
from schemas.case import RISK_LEVELS, Case
from schemas.codec import InvalidEvent, decode_feedback, encode_case
from streams import topics
from streams.stages import PendingWrites, _flagger, batches, decoded_items, lock_of, state_table

if TYPE_CHECKING:
    from streams.app import Daylight

__all__ = ["CASE_KEY", "add_case_agent"]

log = logging.getLogger("daylight")
CASE_KEY = b"cases"
_ACTIVITY = {1: "created", 2: "updated", 3: "closed"}


def add_case_agent(daylight: Daylight, settings: CaseSettings) -> None:

    app = daylight.app
    partitions = daylight.settings.topic_partitions
    metrics = daylight.metrics
    sources = app.topic(topics.ALERTS, topics.FEEDBACK, key_serializer="raw",
                        value_serializer="raw")  # fmt: skip
    internal_name = f"{daylight.settings.app_id}-cases-in"
    daylight.internal_topics.append(internal_name)
    internal = app.topic(internal_name, key_serializer="raw", value_serializer="raw",
                         partitions=partitions, internal=True)  # fmt: skip
    table = state_table(app, "cases-state", partitions)
    daylight._tables.append(("cases", table))
    book = CaseBook(settings)
    open_levels: dict[str, int] = {}
    for activity in _ACTIVITY.values():  # every series exists from the start, at 0
        metrics.case_messages.labels(activity)
    for kind in ("case_verdict", "suppression"):
        metrics.feedback_applied.labels(kind)
    for level in RISK_LEVELS:
        metrics.cases_open.labels(level).set(0)
    rebalanced = [True]
    app.on_partitions_assigned.connect(_flagger(rebalanced))
    lock: list[Any] = []

    async def route(stream: faust.StreamT[Any]) -> None:
        """Every finding and every feedback message to the one partition of the case book;
        a feedback message that is not one goes to the dead-letter topic."""
        async for batch in batches(stream, daylight.settings.batch_max_events):
            out = daylight.outputs()
            for event in batch:
                message = event.message
                raw = message.value
                if message.topic == topics.FEEDBACK:
                    metrics.events_consumed.labels(topics.FEEDBACK).inc()
                    if raw is None:
                        await daylight._dead_letter(event, "empty_value", "message value is empty")
                        continue
                    try:
                        decode_feedback(raw)
                    except InvalidEvent as exc:
                        await daylight._dead_letter(event, exc.reason, exc.message)
                        continue
                elif raw is None:
                    continue
                await out.send(internal_name, CASE_KEY, raw)
            await out  # acknowledged by the broker before the batch is

    app.agent(sources, name="cases-route", concurrency=1)(route)

    def count(cases: list[Case]) -> None:
        for case in cases:
            metrics.case_messages.labels(_ACTIVITY[case.activity_id]).inc()
            if case.activity_id == 3:
                open_levels.pop(case.uid, None)
            else:
                open_levels[case.uid] = case.risk_level_id
        levels = [0] * len(RISK_LEVELS)
        for level in open_levels.values():
            levels[level] += 1
        for level, name in enumerate(RISK_LEVELS):
            metrics.cases_open.labels(name).set(levels[level])

    def adopt() -> None:
        items = list(decoded_items(table))
        book.adopt(items)
        open_levels.clear()
        for key, value in items:
            if str(key).startswith("comp:") and value and value.get("case"):
                reported = value["case"].get("reported") or [0, [], 0, False]
                open_levels[value["case"]["uid"]] = int(reported[2])

    def apply(store: Any, raw: bytes) -> list[Case]:
        import orjson

        if b'"class_uid"' in raw:
            return book.apply_finding(store, facts_of(orjson.loads(raw)))
        feedback = decode_feedback(raw)
        metrics.feedback_applied.labels(feedback.type).inc()
        return book.apply_feedback(store, feedback)

    async def process(batch: list[EventT[Any]]) -> None:
        writes = PendingWrites(table)
        out = daylight.outputs()
        published: list[Case] = []
        for event in batch:
            message = event.message
            if rebalanced[0]:
                rebalanced[0] = False
                adopt()
            _current_event.set(weakref.ref(event))
            writes.partition = message.partition
            if message.value is None:
                continue
            try:
                cases = apply(writes, message.value)
            except Exception as exc:  # one bad message never stops the case book
                metrics.detector_errors.labels("cases").inc()
                log.exception("the case book failed on %s@%d", message.topic, message.offset)
                await daylight._dead_letter(event, "case_error", repr(exc))
                continue
            for case in cases:
                await out.send(topics.CASES, case.account_id.encode(), encode_case(case))
            published += cases
        await out
        await writes.persist(daylight)
        count(published)

    async def run(stream: faust.StreamT[Any]) -> None:
        """The case book over the repartitioned findings and feedback, in batches."""
        async for batch in batches(stream, daylight.settings.batch_max_events):
            started = time.perf_counter()
            async with lock_of(lock):
                await process(batch)
            metrics.processing_seconds.labels("cases").observe(time.perf_counter() - started)

    app.agent(internal, name="cases", concurrency=1)(run)
