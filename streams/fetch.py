"""Faust's fetch loop without its per-message `wait_first` when nothing can block.

Faust (0.15, `faust/transport/consumer.py`, `Consumer._drain_messages`) hands each fetched
record to its conductor with `await self.wait_first(callback(message), suspend_flow.wait())`:
four tasks and an `asyncio.wait` per message, so that a callback blocked on a full stream
buffer is abandoned when a rebalance suspends the flow. Most callbacks never block: the
record goes into a buffer with room and the coroutine finishes at its first step.

Here the callback's first step runs inline. When it finishes there, the record is delivered
with no task at all; when it has to wait (a full buffer, the conductor's lock), the rest of
it runs exactly as Faust runs it, raced against the flow's suspension, the consumer's stop
and its crash. When the flow is already suspended, Faust's own path is taken. The loop is
otherwise Faust's (offsets read, gaps, commit every N acknowledgements).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Coroutine, Generator
from typing import Any, cast

from faust.transport.consumer import CONSUMER_FETCHING
from faust.transport.drivers import aiokafka as faust_aiokafka
from mode import Service

__all__ = ["DaylightConsumer", "install"]


class _Step:
    """Awaitable that yields what a coroutine's first step yielded, once: the task awaiting
    it then suspends on that future exactly as the coroutine would have."""

    def __init__(self, yielded: Any) -> None:
        self._yielded = yielded

    def __await__(self) -> Generator[Any, None, None]:
        yield self._yielded


async def _rest(coro: Coroutine[Any, Any, Any], yielded: Any) -> Any:
    """The remainder of `coro`, whose first step yielded `yielded`, driven as a task."""
    while True:
        try:
            await _Step(yielded)  # the future (or bare yield) the coroutine waits on
        except BaseException as exc:  # cancelled while waiting: the coroutine cleans up
            yielded = coro.throw(exc)
            continue
        try:
            yielded = coro.send(None)
        except StopIteration as stop:
            return stop.value


class DaylightConsumer(faust_aiokafka.Consumer):
    """Faust's aiokafka consumer with the fetch loop above."""

    async def _drain_messages(self, fetcher: Any) -> None:  # pragma: no cover - live only
        callback = self.callback
        getmany = self.getmany
        consumer_should_stop = cast(Service, self)._stopped.is_set
        fetcher_should_stop = cast(Service, fetcher)._stopped.is_set
        get_read_offset = self._read_offset.__getitem__
        set_read_offset = self._read_offset.__setitem__
        set_flag = self.diag.set_flag
        unset_flag = self.diag.unset_flag
        commit_every = self._commit_every
        acks_enabled_for = self.app.topics.acks_enabled_for
        suspended = self.suspend_flow.is_set
        yield_every = 100
        since_yield = 0
        try:
            while not (consumer_should_stop() or fetcher_should_stop()):
                set_flag(CONSUMER_FETCHING)
                ait = cast(AsyncIterator[Any], getmany(timeout=1.0))
                await self.sleep(0)  # getmany can return at once, again and again
                if not self.should_stop:
                    async for tp, message in ait:
                        since_yield += 1
                        if since_yield > yield_every:
                            await asyncio.sleep(0)
                            since_yield = 0
                        offset = message.offset
                        r_offset = get_read_offset(tp)
                        if r_offset is not None and offset < r_offset:
                            continue  # read already
                        gap = offset - (r_offset or 0)
                        if gap > 1 and r_offset and acks_enabled_for(message.topic):
                            await self._add_gap(tp, r_offset + 1, offset)
                        if commit_every is not None and self._n_acked >= commit_every:
                            self._n_acked = 0
                            await self.commit()
                        coro = callback(message)
                        if suspended() or not isinstance(coro, Coroutine):
                            await self.wait_first(coro, self.suspend_flow.wait())
                        else:
                            try:
                                yielded = coro.send(None)
                            except StopIteration:
                                pass  # delivered without waiting: the common case
                            else:
                                await self.wait_first(
                                    _rest(coro, yielded), self.suspend_flow.wait()
                                )
                        set_read_offset(tp, offset)
                    unset_flag(CONSUMER_FETCHING)
        except self.consumer_stopped_errors:
            if self.transport.app.should_stop:
                self.log.info("Broker stopped consumer, shutting down...")
                return
            raise
        except asyncio.CancelledError:
            if self.transport.app.should_stop:
                self.log.info("Consumer shutting down for user cancel.")
                return
            raise
        except Exception as exc:
            self.log.exception("Drain messages raised: %r", exc)
            raise
        finally:
            unset_flag(CONSUMER_FETCHING)


def install(app: Any) -> None:
    """The app's consumer, made when the worker starts, is a `DaylightConsumer`."""
    app.transport.Consumer = DaylightConsumer
