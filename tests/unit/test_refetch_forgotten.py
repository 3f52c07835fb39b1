"""A stream partition Faust stopped fetching and never took back is fetched again once every
agent's buffer is empty (docs/RELIABILITY.md, "stall"): the worker reads on instead of
holding its backlog for good."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import pytest
from faust.types import TP

from streams.app import Daylight


def _worker(queued: int = 0, in_recovery: bool = False) -> Any:
    queue: asyncio.Queue[int] = asyncio.Queue()
    for item in range(queued):
        queue.put_nowait(item)
    consumer = SimpleNamespace(
        flow_active=True,
        _active_partitions={"logins-0"},
        _paused_partitions={"logins-2"},
        _buffered_partitions={"band-3"},
        assignment=lambda: {"logins-0", "logins-1", "logins-2", "band-3", "state-changelog-0"},
        _is_changelog_tp=lambda tp: "changelog" in tp,
    )
    app = SimpleNamespace(consumer=consumer, in_recovery=in_recovery)
    return SimpleNamespace(app=app, _queues=[queue])


def test_partitions_left_out_of_fetching_are_fetched_again(
    caplog: pytest.LogCaptureFixture,
) -> None:
    worker = _worker()
    Daylight._refetch_forgotten(worker)
    consumer = worker.app.consumer
    # Left out (buffered or not) and not paused: fetched again; paused: left to its pauser.
    assert consumer._active_partitions == {"logins-0", "logins-1", "band-3"}
    assert consumer._buffered_partitions == set()
    assert "band-3 fetched again" in caplog.text and "logins-1 fetched again" in caplog.text


@pytest.mark.parametrize("queued, in_recovery", [(1, False), (0, True)])
def test_nothing_moves_while_a_buffer_holds_events_or_tables_recover(
    queued: int, in_recovery: bool
) -> None:
    worker = _worker(queued, in_recovery)
    Daylight._refetch_forgotten(worker)
    assert worker.app.consumer._active_partitions == {"logins-0"}
    assert worker.app.consumer._buffered_partitions == {"band-3"}


def _stopped(busy: bool = False) -> Any:
    """A worker whose commit on `band-3` stopped at 84 while it handed on up to 153."""
    sought: list[tuple[str, int]] = []
    client = SimpleNamespace(seek=lambda tp, offset: sought.append((tp, offset)))
    consumer = SimpleNamespace(
        flow_active=True,
        _committed_offset={"band-3": 84},
        _acked={"band-3": [120, 121]},
        _acked_index={"band-3": {120, 121}},
        _read_offset={"band-3": 153},
        _thread=SimpleNamespace(_ensure_consumer=lambda: client),
    )
    counted: list[str] = []
    counter = SimpleNamespace(inc=lambda: counted.append("read again"))
    metrics = SimpleNamespace(partitions_read_again=SimpleNamespace(labels=lambda topic: counter))
    resumed: list[bool] = []
    flow = SimpleNamespace(is_active=lambda: bool(resumed), resume=lambda: resumed.append(True))
    app = SimpleNamespace(consumer=consumer, in_recovery=False, flow_control=flow)
    worker = SimpleNamespace(app=app, _queues=[asyncio.Queue()], metrics=metrics,
                             _busy={"input": 1.0} if busy else {})  # fmt: skip
    return worker, sought, counted


def test_a_partition_whose_commit_stopped_is_read_again_from_it(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Events handed on and never acknowledged hold Faust's commit for ever and their
    findings are never made: the partition is read again from its committed offset."""
    worker, sought, counted = _stopped()
    tp = TP("band", 3)
    worker.app.consumer._committed_offset[tp] = 84
    worker.app.consumer._read_offset[tp] = 153
    Daylight._read_again(worker, tp)
    consumer = worker.app.consumer
    assert sought == [(tp, 84)]
    assert consumer._read_offset[tp] == 84 and consumer._acked[tp] == []
    assert counted == ["read again"] and "read again from its committed offset 84" in caplog.text
    assert worker.app.flow_control.is_active(), "a flow control held with no recovery resumes"


def test_a_partition_is_not_read_again_while_an_agent_is_inside_a_batch() -> None:
    worker, sought, counted = _stopped(busy=True)
    tp = TP("band", 3)
    worker.app.consumer._committed_offset[tp] = 84
    Daylight._read_again(worker, tp)
    assert sought == [] and counted == []


def test_the_stopped_report_names_the_offsets_that_hold_the_commit() -> None:
    """The report says which offsets hold the commit: the lowest acknowledged, and those a
    stream took and nobody acknowledged (an offset in neither never reached a stream)."""
    worker, _, _ = _stopped()
    tp = TP("band", 3)
    consumer = worker.app.consumer
    consumer._acked[tp] = [121, 120, 122]
    taken = [SimpleNamespace(tp=tp, offset=offset) for offset in (86, 85)]
    consumer._unacked_messages = [*taken, SimpleNamespace(tp=TP("band", 4), offset=7)]
    report = Daylight._fetch_state(worker, tp, 160)
    assert "lowest acknowledged [120, 121, 122] of 3" in report
    assert "taken, unacknowledged [85, 86] of 2" in report


@pytest.mark.parametrize("ahead", [False, True])
def test_a_partition_waiting_for_the_others_is_not_taken_for_stopped(
    ahead: bool, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A partition held back for being ahead of the others (streams/fetch.py) waits, by
    design, as long as they need: it is neither reported nor read again; one not held is."""
    now = [100.0]
    monkeypatch.setattr("streams.app.time.monotonic", lambda: now[0])
    tp = TP("platform.logins", 3)
    read_again: list[TP] = []
    consumer = SimpleNamespace(_committed_offset={tp: 3979}, ahead=frozenset({tp} if ahead else ()))
    worker = SimpleNamespace(
        app=SimpleNamespace(consumer=consumer),
        _progress={},
        _busy={},
        _fetch_state=lambda tp, end: "state",
        _read_again=read_again.append,
    )
    for _ in range(3):
        Daylight._report_stopped(worker, {tp: (3979, 16833)})
        now[0] += 15
    assert read_again == ([] if ahead else [tp])
    assert ("stopped short of its end" in caplog.text) is not ahead
