"""SIGUSR1's task dump: where each task of a worker waits, for a worker that holds lag
without using a core."""

from __future__ import annotations

import asyncio
import logging

import pytest

from streams.runner import _log_tasks


async def _held(event: asyncio.Event) -> None:
    await _inner(event)


async def _inner(event: asyncio.Event) -> None:
    await event.wait()


def test_the_dump_names_each_task_and_the_await_it_is_suspended_in(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def scenario() -> None:
        event = asyncio.Event()
        task = asyncio.create_task(_held(event), name="stuck-stage")
        await asyncio.sleep(0)
        _log_tasks()
        event.set()
        await task

    with caplog.at_level(logging.WARNING, logger="streams.runner"):
        asyncio.run(scenario())
    dump = "\n".join(r.getMessage() for r in caplog.records if "stuck-stage" in r.getMessage())
    assert "_held" in dump and "_inner" in dump and "wait" in dump
