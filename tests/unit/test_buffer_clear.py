"""A stream buffer's clear (each time Faust resumes its flow control) drops only what a seek
reads again: events fetched under an earlier generation (docs/RELIABILITY.md, "stall")."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

from faust.events import Event
from faust.types.tuples import Message
from mode.utils.queues import FlowControlEvent, ThrowableQueue

from streams.stages import keep_live_events, refill_at_low_water


def _event(offset: int, generation: int) -> Event:
    message = Message("platform.logins", 3, offset, 0.0, 0, {}, b"a", b"{}", None,
                      generation_id=generation)  # fmt: skip
    return Event(SimpleNamespace(), b"a", b"{}", {}, message)  # type: ignore[arg-type]


def _buffer(maxsize: int) -> tuple[FlowControlEvent, ThrowableQueue, Any]:
    """A stream buffer as `stages.batches` sets it up."""
    flow = FlowControlEvent(initially_suspended=False)
    queue = ThrowableQueue(maxsize=maxsize, flow_control=flow, clear_on_resume=True)
    app = SimpleNamespace(consumer_generation_id=2)
    keep_live_events(queue, app)
    refill_at_low_water(queue)
    return flow, queue, app


def _offsets(queue: ThrowableQueue) -> list[tuple[int, int]]:
    return [(e.message.offset, e.message.generation_id) for e in list(queue._queue)]  # type: ignore[attr-defined]


def test_a_resume_keeps_the_events_of_the_live_generation() -> None:
    """A table recovery resumes the flow after its seek, with the new assignment's first
    events already in the buffer: Faust dropped them unacknowledged and the partition's
    commit stopped there for good. Only the earlier generation's events go."""
    flow, queue, _ = _buffer(maxsize=10)
    for offset, generation in [(30, 1), (31, 1), (33, 2), (34, 2)]:
        queue.put_nowait(_event(offset, generation))
    flow.suspend()
    flow.resume()  # clears every managed buffer
    assert _offsets(queue) == [(33, 2), (34, 2)]


def test_a_put_waiting_for_room_is_delivered_not_cancelled() -> None:
    """Faust's clear cancelled the puts waiting on a full buffer: their events were counted
    as read and never delivered. The put is woken and delivers its event once there is room."""

    async def scenario() -> list[tuple[int, int]]:
        flow, queue, _ = _buffer(maxsize=2)
        queue.put_nowait(_event(30, 1))
        queue.put_nowait(_event(31, 1))
        waiting = asyncio.ensure_future(queue.put(_event(33, 2)))
        await asyncio.sleep(0.01)
        assert not waiting.done()
        flow.suspend()
        flow.resume()
        await asyncio.wait_for(waiting, timeout=1)
        return _offsets(queue)

    assert asyncio.run(scenario()) == [(33, 2)]


def test_a_full_buffer_takes_events_again_once_drained_to_half() -> None:
    """Behind a backlog the fetch loop waited for room once per event the agent took (a put
    and four tasks each time). A put on a full buffer now waits until half of it is taken,
    then the next half goes in without waiting; no event is lost or reordered."""

    async def scenario() -> None:
        _, queue, _ = _buffer(maxsize=8)
        for offset in range(8):
            queue.put_nowait(_event(offset, 2))
        waiting = asyncio.ensure_future(queue.put(_event(8, 2)))
        for _ in range(3):  # 5 left: more than half
            queue.get_nowait()
            await asyncio.sleep(0)
        await asyncio.sleep(0.01)
        assert not waiting.done()
        assert queue.full()
        queue.get_nowait()  # 4 left: half
        await asyncio.wait_for(waiting, timeout=1)
        assert not queue.full()
        for offset in range(9, 12):  # up to 8 again without waiting
            assert not queue.full()
            queue.put_nowait(_event(offset, 2))
        assert queue.full()
        assert [offset for offset, _ in _offsets(queue)] == list(range(4, 12))

    asyncio.run(scenario())


def test_a_buffer_never_filled_takes_every_put_at_once() -> None:
    """Below its size (an idle stream, the latency path) nothing waits."""

    async def scenario() -> int:
        _, queue, _ = _buffer(maxsize=8)
        for offset in range(7):
            await asyncio.wait_for(queue.put(_event(offset, 2)), timeout=1)
            queue.get_nowait() if offset % 2 else None
        return queue.qsize()

    assert asyncio.run(scenario()) == 4


def _taking(queue: ThrowableQueue, flow: FlowControlEvent) -> tuple[Any, Any, set[Any]]:
    """`stages._taker` over `queue`, for a stream of the live generation (2)."""
    from streams.stages import _taker

    unacked: set[Any] = set()
    app = SimpleNamespace(
        consumer_generation_id=2,
        consumer=SimpleNamespace(_unacked_messages=unacked),
        flow_control=flow,
        topics=SimpleNamespace(_acking_topics={"platform.logins"}),
    )
    stream = SimpleNamespace(
        app=app,
        events_total=0,
        _on_message_in=lambda *args: None,
        _on_stream_event_in=lambda *args: None,
        _on_stream_event_out=lambda *args: None,
    )
    return _taker(stream, queue), stream, unacked


def test_a_batch_takes_what_waits_as_faust_iterator_would_hand_it_on() -> None:
    """The events already in the buffer join the batch without a loop turn each: those of an
    earlier generation are dropped unacknowledged (the seek reads them again), the others
    are tracked as unacknowledged, in order, up to the batch's size."""
    flow, queue, _ = _buffer(maxsize=16)
    for offset, generation in [(30, 1), (31, 2), (32, 2), (33, 2), (34, 2)]:
        event = _event(offset, generation)
        event.message.tracked = False  # as handed on by a consumer that has not tracked it
        queue.put_nowait(event)
    take, stream, unacked = _taking(queue, flow)
    batch: list[Any] = []
    take(batch, 3)
    assert [event.message.offset for event in batch] == [31, 32, 33]
    assert {message.offset for message in unacked} == {31, 32, 33}
    assert stream.events_total == 3
    assert _offsets(queue) == [(34, 2)]


def test_a_batch_takes_nothing_while_the_flow_is_suspended_or_an_error_waits() -> None:
    """A rebalance suspends the flow: what waits is left for Faust's iterator, which drops
    it. An error put in the buffer is left for Faust's iterator to raise."""
    flow, queue, _ = _buffer(maxsize=16)
    queue.put_nowait(_event(31, 2))
    take, _, _ = _taking(queue, flow)
    batch: list[Any] = []
    flow.suspend()
    take(batch, 10)
    assert batch == [] and _offsets(queue) == [(31, 2)]
    flow.resume()  # a resume clears the buffer (keeping the live generation)
    queue._throw(RuntimeError("decode"))  # type: ignore[attr-defined]
    take(batch, 10)
    assert batch == [] and _offsets(queue) == [(31, 2)]
