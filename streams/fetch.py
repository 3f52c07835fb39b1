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

Both consumers rewind what Faust's `getmany` would drop. Faust hands on the records of a
partition only if it is still active when their turn comes; a partition paused meanwhile (table
recovery pauses every stream partition after an assignment), a suspended flow or a new
generation makes it skip the rest, while aiokafka's position has already moved past them.
Faust counts on its seek to the committed offsets to read them again, but a partition nobody
has committed on is not sought: those records were never read (the rebalance loss of
docs/RELIABILITY.md). Here, a partition whose records are skipped is sought back to the first
of them, as long as aiokafka's assignment is still the one they were fetched under (a new
assignment starts from the committed offsets anyway, and its positions are not ours to move).
A fetch that comes back while the flow is stopped (a rebalance under way) Faust drops whole,
counting on the same seek; that seek leaves a changelog partition where the fetch left it, and
table recovery, which had placed it there before resuming the flow, then waited for ever for
records already fetched and dropped (the recovery stall of docs/RELIABILITY.md). Every
partition of such a fetch is given back the same way first.

The same hole has a second door: at a revoke Faust clears the agents' buffers, counting on the
seek to the committed offsets to read those events again; a partition the worker keeps but
never committed on is not sought. Both consumers commit what was acknowledged before a revoke,
and their seek to the committed offsets sends a stream partition without one to its beginning
(nothing of it was acknowledged by anyone; it is where the group starts it anyway). A third:
Faust fetches a partition again once its buffer drains even if table recovery paused it
meanwhile, so its events reached the agents before the tables were restored; a paused
partition stays paused.

And a fourth, in the loop itself: Faust notes a record as read once its hand-on returns, even
when the hand-on was abandoned (the flow suspended while it waited for room in a full buffer),
and even when the recovery's seek to the committed offsets ran meanwhile. The seek sets the
partition's "read" mark back to its committed offset; Faust's note then moved it forward to
the record just handed on, so the records between the commit and that one, read again after
the seek, were taken as read already and skipped: never processed, never acknowledged, the
commit stuck below them for ever (the stall of docs/RELIABILITY.md, its second path). Kept
partitions without a commit kept the abandoned record's mark across the rebalance, so they
were not sought to their beginning and the events handed on before it were never read again.
Here a record is noted as read only if its hand-on finished and no seek ran meanwhile, and
`getmany` hands on nothing it fetched before a seek (it rewinds the partition instead).

Read-ahead is bounded, in records and in time. aiokafka prefetches up to
`consumer_max_fetch_size` of every partition, and without `max_poll_records` Faust's `getmany`
turns all of it into records at once: a worker behind a 5M-event backlog held a million of them
(docs/PERFORMANCE.md, "soak"). A fetch here hands on at most `DAYLIGHT_FETCH_MAX_RECORDS`; the
rest stays in aiokafka's prefetched responses, compressed, one per partition. And input
partitions are handed on in step, by Kafka record time, as Kafka Streams does within a task:
one whose newest record handed on is more than `DAYLIGHT_READ_AHEAD_MS` ahead of the slowest
input partition still behind its end waits (it is left out of the fetch, its prefetched
response kept) until that one catches up. Without it, a topic with small records ran days of
event time ahead of a topic with many (a 4 MiB fetch is 60k logins, three million events of
heartbeats): every state the fast topic opens waits for the slow topic's watermark to expire.
A partition that has handed nothing on for `_IDLE_SECONDS` stops holding the others (a stuck
partition must not stop the worker), and a partition paused by Faust (recovery) never holds.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Coroutine, Generator
from typing import Any, cast

from faust.transport.conductor import Conductor
from faust.transport.consumer import CONSUMER_FETCHING, ensure_TP
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import TP
from mode import Service

__all__ = ["DaylightConsumer", "RewindingConsumer", "install"]

#: A partition that has handed nothing on for this long no longer holds the others back.
_IDLE_SECONDS = 5.0
#: How long a fetch waits when every partition it could read is ahead (the slowest one's stream
#: buffer is full: it takes on records as its agent drains them, in milliseconds).
_HELD_WAIT_SECONDS = 0.005


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


class _FetchingThread(faust_aiokafka.AIOKafkaConsumerThread):
    """Faust's consumer thread, noting the aiokafka assignment each fetch's records were
    drained under (read on the consumer thread right after the drain: no rebalance between),
    and the partitions they came from."""

    fetched_under: Any = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        #: The partitions a fetch returned records of since the last seek or revoke, noted
        #: here as aiokafka moves their positions past the records: the event loop's own
        #: note (`RewindingConsumer._fetched`) comes only once it resumes the fetch loop,
        #: after whatever batch it is running (`RewindingConsumer.fetched_since_seek`).
        self.fetched: set[Any] = set()

    async def _fetch_records(
        self,
        consumer: Any,
        active_partitions: Any,
        timeout: float | None = None,
        max_records: int | None = None,
    ) -> Any:
        records = await super()._fetch_records(
            consumer, active_partitions, timeout=timeout, max_records=max_records
        )
        self.fetched.update(records)
        subscription = consumer._subscription.subscription
        self.fetched_under = None if subscription is None else subscription.assignment
        return records


class RewindingConsumer(faust_aiokafka.Consumer):
    """Faust's aiokafka consumer whose `getmany` rewinds a partition instead of dropping its
    records (module docstring)."""

    rewound: int = 0  # records handed back to aiokafka: read again from their partition
    sought_to_start: int = 0  # partitions without a committed offset sought to their beginning
    seeks: int = 0  # moves at the start and the end of every seek to the committed offsets
    #: Set by `install`: the input topics handed on in step, and how far one partition may be
    #: handed on ahead of the slowest behind its end (Kafka record time, ms; 0: no limit).
    aligned_topics: frozenset[str] = frozenset()
    read_ahead_ms: int = 0
    #: The partitions the last fetch left out for being ahead (they are waiting, not stuck).
    ahead: frozenset[TP] = frozenset()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        #: Record time (ms) of the newest record handed on, by partition, since the last seek.
        self._frontier: dict[Any, int] = {}
        #: For a partition behind its end: its frontier when last seen, and since when it holds.
        self._moved: dict[Any, tuple[int | None, float]] = {}
        #: The partitions aiokafka returned records of since the last seek or revoke.
        self._fetched: set[Any] = set()

    def _forget_frontiers(self) -> None:
        """After a seek or a revoke the partitions read on from elsewhere: nobody is ahead."""
        self._frontier.clear()
        self._moved.clear()
        self._fetched.clear()
        thread = getattr(self, "_thread", None)
        if isinstance(thread, _FetchingThread):
            thread.fetched.clear()

    def fetched_since_seek(self, tp: TP) -> bool:
        """Whether aiokafka returned records of `tp` since the last seek or revoke. When it
        did not, nothing of `tp` is on its way to the streams (fetched, handed on, not yet
        through them): its position is where the seek left it, on an offset committed, so
        processed by every stage, or on the partition's beginning.

        Both notes count: the consumer thread's, made as aiokafka moves the position, and
        the event loop's. A stage reads the position before it asks this (`_caught_up`),
        so a position moved by records on their way is never read as consumed."""
        thread = getattr(self, "_thread", None)
        return tp in self._fetched or (isinstance(thread, _FetchingThread) and tp in thread.fetched)

    def _ahead(self, active: set[TP]) -> set[TP]:
        """The aligned partitions of `active` handed on more than `read_ahead_ms` past the
        slowest aligned partition still behind its end (module docstring)."""
        assignment = self._aiokafka_assignment()
        if assignment is None:
            return set()
        aligned = self.aligned_topics
        frontier = self._frontier
        moved = self._moved
        paused = self._paused_partitions
        now = time.monotonic()
        floor: int | None = None
        for tp in assignment.tps:
            if tp.topic not in aligned or tp in paused:
                continue
            state = assignment.state_value(tp)
            if (
                state is None
                or state.highwater is None
                or not state.has_valid_position
                or state.position >= state.highwater
            ):
                moved.pop(tp, None)  # not known to be behind: holds nobody
                continue
            newest = frontier.get(tp)  # None: nothing handed on since the last seek
            last = moved.get(tp)
            if last is None or last[0] != newest:
                moved[tp] = (newest, now)
            elif now - last[1] > _IDLE_SECONDS:
                continue  # behind, and nothing handed on for a while: holds nobody
            mark = -1 if newest is None else newest
            if floor is None or mark < floor:
                floor = mark
        if floor is None:
            return set()
        limit = floor + self.read_ahead_ms
        return {tp for tp in active if tp.topic in aligned and frontier.get(tp, -1) > limit}

    async def _getmany(self, active_partitions: set[TP] | None, timeout: float) -> Any:
        """Faust's fetch, leaving out the partitions ahead of the others."""
        if self.read_ahead_ms and active_partitions:
            ahead = self._ahead(active_partitions)
            self.ahead = frozenset(ahead)
            if ahead:
                active_partitions = active_partitions - ahead
                if not active_partitions:  # the slowest is not fetched now (its buffer is full)
                    await asyncio.sleep(_HELD_WAIT_SECONDS)
                    return {}
        return await self._thread.getmany(active_partitions, timeout)

    def _new_consumer_thread(self) -> faust_aiokafka.AIOKafkaConsumerThread:
        return _FetchingThread(self, loop=self.loop, beacon=self.beacon)

    def _aiokafka_assignment(self) -> Any:
        """aiokafka's current assignment object: a new one at every rebalance."""
        consumer = self._thread._consumer
        subscription = None if consumer is None else consumer._subscription.subscription
        return None if subscription is None else subscription.assignment

    def _rewind(self, tp: TP, offset: int, assignment: Any) -> bool:
        """Seek `tp` back to `offset`, the first record of it not handed on, if it is still
        assigned under `assignment` and its position is past it (a seek to the committed
        offsets while the batch was handed on may have put it before). True if sought."""
        if assignment is None or assignment is not self._aiokafka_assignment():
            return False
        if tp not in assignment.tps:
            return False
        state = assignment.state_value(tp)
        if state is None or not state.has_valid_position or state.position <= offset:
            return False  # sought since the fetch (to a committed offset, a reset): never forward
        self._thread._ensure_consumer().seek(tp, offset)
        return True

    def _give_back(self, tp: TP, offset: int, fetched: Any, assignment: Any, why: str) -> None:
        """Seek `tp` back to `offset`, its first record of `fetched` not handed on (`_rewind`:
        same assignment only, never forward), counting and logging what is read again."""
        if self._rewind(tp, offset, assignment):
            left = sum(1 for record in fetched if record.offset >= offset)
            self.rewound += left
            self.log.info("%s sought back to %d: %d records fetched %s", tp, offset, left, why)

    async def on_partitions_revoked(self, revoked: set[TP]) -> None:
        """Commit what the stages have acknowledged, then Faust's revoke (which forgets it).

        At a revoke Faust clears the agents' buffers and forgets which offsets were
        acknowledged since the last commit, and after the assignment it seeks every partition
        to its committed offset to read the cleared events again: a partition with no commit
        yet is not sought, and what was cleared from its buffer is never read. Committing here
        (as Kafka's own consumers do before a revoke) gives every partition read a commit."""
        try:
            await self.commit()
        except Exception as exc:  # the events are read again from the last commit: log, go on
            self.log.warning("commit before the revoke failed: %r", exc)
        await super().on_partitions_revoked(revoked)
        self._buffered_partitions.difference_update(revoked)  # Faust keeps them
        self._forget_frontiers()

    def on_buffer_drop(self, tp: TP) -> None:
        """Faust fetches a partition again once its stream buffer has drained, even if it was
        paused meanwhile (table recovery pauses the stream partitions): its events would reach
        the agents before the tables are restored and before the seek to the committed offsets.
        A paused partition is left to whoever paused it."""
        if tp in self._paused_partitions:
            self._buffered_partitions.discard(tp)
            return
        super().on_buffer_drop(tp)

    async def perform_seek(self) -> None:
        """Faust's seek of every partition to its committed offset, and of a stream partition
        without one to its beginning.

        aiokafka's `seek_to_committed` leaves a partition without a committed offset (or with
        0) where its position is, and Faust counts on that seek to read again what it dropped
        (events fetched just before a revoke or a new generation, skipped by the streams as
        stale). Such a partition has nothing acknowledged by anyone (the revoke commits what was),
        so its beginning is where the group starts it anyway (`auto_offset_reset=earliest`);
        a seek to 0 past the log start is reset to it by aiokafka. Only a partition nothing was
        handed on from since the assignment: Faust seeks again later (while the flow is
        suspended), when the worker may have read one it has not committed yet. Changelog
        partitions are table recovery's."""
        self.seeks += 1  # records fetched or handed on from here on may predate the seek
        self._forget_frontiers()
        try:
            await self._seek_to_committed_offsets()
        finally:
            self.seeks += 1

    async def _seek_to_committed_offsets(self) -> None:
        committed = await self.seek_to_committed()
        read = self._read_offset
        back = {
            f"{tp.topic}-{tp.partition}": (handed, offset)
            for tp, offset in committed.items()
            if (handed := read.get(tp)) is not None
            and handed != offset
            and not self._is_changelog_tp(tp)
        }
        if back:  # (handed on, committed): what the streams read again from here
            self.log.info("sought to the committed offsets: %s", dict(sorted(back.items())))
        fresh = [
            tp
            for tp, offset in committed.items()
            if (offset is None or offset <= 0)
            and read.get(tp) is None  # nothing handed on since the assignment
            and not self._is_changelog_tp(tp)
        ]
        for tp in fresh:
            self._thread.seek(tp, 0)
        self.sought_to_start += len(fresh)
        for tp, offset in committed.items():
            if offset is not None and offset >= 0:
                read[tp] = offset
            elif tp in fresh:
                read[tp] = None  # Faust's "nothing read"; one read on is left as it is
        self._committed_offset.update(
            {
                ensure_TP(tp): offset or None
                for tp, offset in committed.items()
                if offset is not None
            }
        )

    async def getmany(self, timeout: float) -> AsyncIterator[tuple[TP, Any]]:
        """Faust's `getmany` (round robin over partitions, the same checks) with the records
        it would skip given back to aiokafka."""
        thread = cast(_FetchingThread, self._thread)
        thread.fetched_under = None
        seeks = self.seeks
        records, active_partitions = await self._wait_next_records(timeout)
        assignment = thread.fetched_under  # the assignment the records were drained under
        generation_id = self.app.consumer_generation_id
        if records is None or self.should_stop:
            return
        self._fetched.update(records)  # once per fetch, before any of them is handed on
        if not self.flow_active:
            # Faust drops the whole fetch and seeks to the committed offsets, which moves
            # neither a changelog partition (table recovery places it, before it resumes the
            # flow) nor a stream partition handed on from but not committed yet: what was
            # fetched of those is given back first.
            for tp, fetched in records.items():
                if fetched:
                    self._give_back(tp, fetched[0].offset, fetched, assignment,
                                    "while the flow was stopped")  # fmt: skip
            try:
                await self.perform_seek()
            except Exception as exc:  # Faust logs and goes on the same way
                self.log.warning("exception performing seek when flow not active %r", exc)
            return
        skipped: set[TP] = set()
        to_message = self._to_message
        buffered = self._buffered_partitions
        paused = self._paused_partitions
        frontier = self._frontier
        track_end = self.app.monitor.track_tp_end_offset
        # Faust noted a partition's end offset for the monitor at every record: once per
        # fetch, the monitor's figure is at most a fetch old (it is only reported).
        tracked: set[TP] = set()
        for tp, record in self.scheduler.iterate(records):
            if tp in skipped:
                continue  # after a record given back: read again, in order
            if (
                self.flow_active
                and self.app.consumer_generation_id == generation_id
                and self.seeks == seeks  # a seek since the fetch: its records are stale
                and (
                    active_partitions is None
                    or tp in active_partitions
                    or (tp in buffered and tp not in paused)
                )
            ):
                if tp not in tracked:
                    tracked.add(tp)
                    track_end(tp, self.highwater(tp))
                frontier[tp] = record.timestamp
                yield tp, to_message(tp, record)
                continue
            skipped.add(tp)
            self._give_back(tp, record.offset, records[tp], assignment,
                            "before a pause, a seek or a rebalance")  # fmt: skip


class DaylightConsumer(RewindingConsumer):
    """Faust's aiokafka consumer with the fetch loop above."""

    async def _drain_messages(self, fetcher: Any) -> None:  # pragma: no cover - live only
        callback = self.callback
        conductor = self.app.topics
        if isinstance(conductor, Conductor) and callback == conductor.on_message:
            callback = hand_on(conductor)
            if quicker_ebb(self.app.producer.buffer):
                conductor._update_callback_map()  # handlers built before take it too
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
                            # Offsets a partition's log does not have (compaction,
                            # transaction markers), or handed on while a seek ran (not marked
                            # read then), count as acknowledged: logged, since an offset
                            # skipped any other way is an event never processed.
                            self.log.info("%s: offsets %d-%d skipped, taken as read",
                                          tp, r_offset + 1, offset - 1)  # fmt: skip
                            await self._add_gap(tp, r_offset + 1, offset)
                        if commit_every is not None and self._n_acked >= commit_every:
                            self._n_acked = 0
                            await self.commit()
                        coro = callback(message)
                        waiting: Any = None
                        if suspended() or not isinstance(coro, Coroutine):
                            waiting = coro
                        else:
                            try:
                                yielded = coro.send(None)
                            except StopIteration:
                                pass  # delivered without waiting: the common case
                            else:
                                waiting = _rest(coro, yielded)
                        if waiting is not None:
                            seeks = self.seeks
                            waited = await self.wait_first(waiting, self.suspend_flow.wait())
                            if waiting not in waited.done or self.seeks != seeks:
                                continue  # abandoned, or the partition sought meanwhile
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


def hand_on(conductor: Any) -> Callable[[Any], Any]:
    """Faust's `Conductor.on_message` without its per-message lock when nobody holds it.

    Faust takes the conductor's lock around every look-up of a partition's handler, for the
    moment its subscription is rebuilt (the map is cleared, then refilled across an await).
    Here the handler's own coroutine is returned at once when the lock is free (the look-up
    is then synchronous: nothing can rebuild the map under it), and Faust's path, which
    waits for the lock, is taken when it is held: one coroutine and a lock's acquire and
    release fewer per record."""
    lock = conductor._tp_to_callback_lock
    handlers = conductor._tp_to_callback
    locked = conductor.on_message

    def on_message(message: Any) -> Any:
        if lock.locked():
            return locked(message)
        return handlers[message.tp](message)

    return on_message


def quicker_ebb(buffer: Any) -> bool:
    """Faust's check, before each record is handed on, that its producer's buffer is not
    over `max_messages`, without reading the `producer_threaded` setting through Faust's
    settings machinery on every record (it cannot change while the worker runs). The same
    comparison; over the limit, Faust's own wait. True if it was not in place yet."""
    if getattr(buffer, "_daylight_quick", False):
        return False
    slow = buffer.wait_until_ebb
    threaded = bool(buffer.app.conf.producer_threaded)

    async def wait_until_ebb() -> None:
        queue = buffer.queue if threaded else buffer.pending
        if queue is not None and len(queue._queue) > buffer.max_messages:
            await slow()

    buffer.wait_until_ebb = wait_until_ebb
    buffer._daylight_quick = True
    return True


def install(
    app: Any,
    *,
    inline: bool = True,
    aligned_topics: frozenset[str] = frozenset(),
    read_ahead_ms: int = 0,
) -> None:
    """The app's consumer, made when the worker starts: a `DaylightConsumer`, or with
    `inline=False` Faust's fetch loop with the rewinding `getmany`; `aligned_topics` are handed
    on in step, no partition more than `read_ahead_ms` ahead (0: no limit)."""
    base = DaylightConsumer if inline else RewindingConsumer
    app.transport.Consumer = type(
        base.__name__,
        (base,),
        {"aligned_topics": frozenset(aligned_topics), "read_ahead_ms": read_ahead_ms},
    )
