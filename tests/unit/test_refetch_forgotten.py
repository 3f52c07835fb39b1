"""A stream partition Faust stopped fetching and never took back is fetched again once every
agent's buffer is empty (docs/RELIABILITY.md, "stall"): the worker reads on instead of
holding its backlog for good."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import pytest

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
