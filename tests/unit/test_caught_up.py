"""When a deferring stage counts an input partition as consumed to its end: behind a backlog on
its other topics too, an input topic with nothing new (no account events in a day of logins)
must not hold its decisions, and so its states, for ever."""

from __future__ import annotations

import asyncio

import pytest
from faust.types import TP

from detectors import all_detectors
from streams.app import Daylight
from streams.settings import load_settings

ACCOUNTS, LOGINS, SESSIONS = "platform.accounts", "platform.logins", "platform.sessions"


def _working_hours(monkeypatch: pytest.MonkeyPatch, ends: dict[str, int]) -> Daylight:
    monkeypatch.setenv("DAYLIGHT_DETECTORS", "working_hours")
    monkeypatch.setenv("DAYLIGHT_COMPLETE_GRACE_SECONDS", "0")
    daylight = Daylight(
        load_settings(), [d for d in all_detectors() if d.metadata.id == "working_hours"]
    )
    # The broker's end offsets of partition 0, and the consumer sitting on them.
    monkeypatch.setattr(daylight, "_end_offsets", lambda tps: {tp: ends[tp.topic] for tp in tps})
    monkeypatch.setattr(daylight, "_position_now", lambda tp: ends[tp.topic])
    return daylight


@pytest.mark.parametrize("backlog", [False, True])
def test_an_input_partition_nothing_was_fetched_of_counts_as_consumed_behind_a_backlog(
    monkeypatch: pytest.MonkeyPatch, backlog: bool
) -> None:
    daylight = _working_hours(monkeypatch, {ACCOUNTS: 0, LOGINS: 50, SESSIONS: 80})
    (unit,) = daylight._input_units[LOGINS]
    queue: asyncio.Queue[object] = asyncio.Queue()
    if backlog:  # events wait in the input agent's buffer
        queue.put_nowait(object())
    unit.queues.append(queue)
    unit.processed[TP(LOGINS, 0)] = 50  # every login up to the end went through the stage
    # Heartbeats were fetched up to the end, and are in the buffer or on their way.
    daylight.app.consumer._fetched.add(TP(SESSIONS, 0))  # as `getmany` notes a fetch

    done = asyncio.run(unit._caught_up(0))

    # The account events (none) and the logins: consumed. The heartbeats: only once nothing
    # waits in the buffers, as they may be there.
    expected = [ACCOUNTS, LOGINS] if backlog else [ACCOUNTS, LOGINS, SESSIONS]
    assert sorted(done) == expected


def test_records_the_consumer_thread_returned_keep_a_partition_open_until_handed_on(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """aiokafka moves a partition's position as the consumer thread takes its records; the
    event loop notes them only once it resumes the fetch loop, which can wait for a whole
    batch. Until the records are through the stage, the partition is not consumed: counted
    as consumed, a deferred decision would be made without them (a template taken from a
    later text, a finding lost after a rebalance)."""
    daylight = _working_hours(monkeypatch, {ACCOUNTS: 0, LOGINS: 50, SESSIONS: 80})
    (unit,) = daylight._input_units[LOGINS]
    queue: asyncio.Queue[object] = asyncio.Queue()
    queue.put_nowait(object())  # a backlog: events wait in the input agent's buffer
    unit.queues.append(queue)
    unit.processed[TP(LOGINS, 0)] = 50
    consumer = daylight.app.consumer
    # The heartbeats' records were taken on the consumer thread (their position is at the
    # end), and the event loop has not noted them yet.
    consumer._thread.fetched.add(TP(SESSIONS, 0))
    assert consumer.fetched_since_seek(TP(SESSIONS, 0))

    assert sorted(asyncio.run(unit._caught_up(0))) == [ACCOUNTS, LOGINS]

    consumer._forget_frontiers()  # a seek: read on from the committed offsets
    assert not consumer.fetched_since_seek(TP(SESSIONS, 0))
