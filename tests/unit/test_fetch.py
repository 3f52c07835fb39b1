"""The fetch loop's inline delivery (streams/fetch.py): a record's callback that has to wait
finishes as Faust would have run it, and one cancelled while waiting cleans up."""

from __future__ import annotations

import asyncio

import pytest

from streams.fetch import _rest


async def deliver(queue: asyncio.Queue[int], value: int, log: list[str]) -> str:
    try:
        await queue.put(value)
    except asyncio.CancelledError:
        log.append(f"abandoned {value}")
        raise
    return f"delivered {value}"


def test_a_record_that_waits_for_room_is_delivered_once_there_is_room() -> None:
    async def scenario() -> tuple[list[int], str]:
        queue: asyncio.Queue[int] = asyncio.Queue(maxsize=1)
        coro = deliver(queue, 1, [])
        with pytest.raises(StopIteration):  # room: delivered at the first step, no task
            coro.send(None)
        coro = deliver(queue, 2, [])
        yielded = coro.send(None)  # the buffer is full: the coroutine waits
        task = asyncio.ensure_future(_rest(coro, yielded))
        await asyncio.sleep(0.01)
        assert not task.done()
        taken = [queue.get_nowait()]
        result = await asyncio.wait_for(task, 1)
        taken.append(queue.get_nowait())
        return taken, result

    taken, result = asyncio.run(scenario())
    assert taken == [1, 2]
    assert result == "delivered 2"


def test_a_record_abandoned_while_waiting_is_not_delivered() -> None:
    """A rebalance suspends the flow: Faust cancels the waiting callback; the record is not
    put in the buffer, and it is read again from the committed offset."""

    async def scenario() -> tuple[list[str], int]:
        queue: asyncio.Queue[int] = asyncio.Queue(maxsize=1)
        queue.put_nowait(1)
        log: list[str] = []
        coro = deliver(queue, 2, log)
        task = asyncio.ensure_future(_rest(coro, coro.send(None)))
        await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        queue.get_nowait()
        return log, queue.qsize()

    log, left = asyncio.run(scenario())
    assert log == ["abandoned 2"]
    assert left == 0
