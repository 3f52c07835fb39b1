"""Drives a detector over a keyed store, with event-time expiry of whole entities.

The store is any MutableMapping: a dict offline (`daylight replay`), a Faust table live. Both
paths run this same code, so a replay gives the findings the live run gives.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Collection, Iterable, Iterator, MutableMapping
from typing import Any, Final, Generic, TypeVar, cast

from detectors.core.base import (
    DeferringStage,
    Detector,
    FindingDraft,
    Stage,
    StateT,
    Unchanged,
)
from schemas.events import EventBase

__all__ = ["COMPLETE_MS", "DetectorRunner", "ExpiryIndex", "StageEngine", "Watermark"]

OutT = TypeVar("OutT")
#: The watermark of a partition whose every input topic is fully consumed: nothing older can
#: still come, so every pending decision may be made.
COMPLETE_MS: Final = 2**62


class ExpiryIndex:
    """Keys of one partition by the time bucket their state expires in.

    A key is filed in a bucket no later than its expiry's, and is looked at again only when
    that bucket comes due: it then goes if its expiry has come, or is filed again under its
    expiry. A state whose expiry moves later (every event of an active entity) costs one
    look-up and one store, not a move between buckets; a key is moved only when its expiry
    comes earlier. A key discarded leaves its filing behind, skipped when its bucket comes.
    O(1) per update and memory proportional to live keys (with at most the filings of keys
    discarded or moved earlier, gone when their bucket comes); buckets are swept in time
    order as the partition's event-time watermark passes them.
    """

    def __init__(self, bucket_ms: int = 60_000) -> None:
        self._bucket_ms = bucket_ms
        self._buckets: dict[int, set[str]] = {}
        # Each live key's expiry bucket; it is filed in that bucket or an earlier one.
        self._due: dict[str, int] = {}
        # The buckets in time order (a heap with lazy deletion), so that a sweep looks only
        # at the buckets that are due.
        self._order: list[int] = []

    def __len__(self) -> int:
        return len(self._due)

    def set(self, key: str, expires_at_ms: int) -> None:
        bucket = expires_at_ms // self._bucket_ms
        previous = self._due.get(key)
        if previous is not None and previous <= bucket:
            if previous != bucket:
                self._due[key] = bucket  # still filed no later than its expiry
            return
        self._due[key] = bucket
        self._file(key, bucket)

    def _file(self, key: str, bucket: int) -> None:
        members = self._buckets.get(bucket)
        if members is None:
            members = self._buckets[bucket] = set()
            heapq.heappush(self._order, bucket)
            if len(self._order) > 2 * len(self._buckets) + 64:  # drop duplicate entries
                self._order = sorted(self._buckets)
        members.add(key)

    def discard(self, key: str) -> None:
        self._due.pop(key, None)

    def pop_due(self, watermark_ms: int) -> Iterator[str]:
        """Keys whose expiry bucket ends at or before `watermark_ms`, removed from the index."""
        last_due = watermark_ms // self._bucket_ms - 1
        due = self._due
        # `self._order`, not a local: filing a key again may rebuild the heap.
        while self._order and self._order[0] <= last_due:
            members = self._buckets.pop(heapq.heappop(self._order), None)
            if members is None:
                continue  # a duplicate entry of a bucket already swept
            for key in members:
                bucket = due.get(key)
                if bucket is None:
                    continue  # discarded
                if bucket <= last_due:
                    del due[key]
                    yield key
                else:  # its expiry moved on since it was filed here
                    self._file(key, bucket)


class Watermark:
    """Event-time watermark of one partition fed by several topics.

    Kafka keeps order within a partition, not across topics: a worker draining a backlog may
    read a day of logins before the matching hour of heartbeats. The watermark is therefore the
    slowest active topic's newest event time, so one topic running ahead never expires state
    another topic is still adding to. A topic silent for `idle_after` events of the others
    stops holding it back (a topic that stops flowing must not stop expiry).
    """

    def __init__(self, idle_after: int = 10_000, expected: Iterable[str] = ()) -> None:
        self._idle_after = idle_after
        self._seen = 0
        self._sources: dict[str, list[int]] = {}  # source -> [newest event ms, seen counter]
        # Sources known to feed the partition hold it back before their first event, until
        # they count as idle: a worker that takes a partition over reads on from the
        # committed offsets with the state restored, and one input partition's events
        # arriving first must not expire state another's older events still belong to.
        for source in expected:
            self._sources[source] = [-COMPLETE_MS, 0]

    def observe(self, source: str, event_ms: int) -> int:
        seen = self._seen = self._seen + 1
        sources = self._sources
        entry = sources.get(source)
        if entry is None:
            entry = sources[source] = [event_ms, seen]
        else:
            if event_ms > entry[0]:
                entry[0] = event_ms
            entry[1] = seen
        if len(sources) == 1:
            return entry[0]
        oldest_active = seen - self._idle_after
        return min(newest for newest, last in sources.values() if last > oldest_active)

    def complete(self) -> int:
        """`complete_up_to` over every source seen: the slowest one's newest event time."""
        complete = COMPLETE_MS
        for newest, _ in self._sources.values():
            if newest < complete:
                complete = newest
        return complete

    def complete_up_to(self, sources: Iterable[str], caught_up: Collection[str]) -> int:
        """The event time every one of `sources` is known complete up to, for decisions
        that rest on the absence of an event: the slowest source's newest event time, a
        fully consumed source holding nothing back and a source never read holding all.
        No idle rule here: a quiet topic that is not fully consumed may still hold the
        event the decision is waiting for."""
        complete = COMPLETE_MS
        for source in sources:
            if source in caught_up:
                continue
            entry = self._sources.get(source)
            if entry is None:
                return -COMPLETE_MS
            complete = min(complete, entry[0])
        return complete


class TimerIndex:
    """Keys of one partition by the event time of their earliest pending decision (a heap
    with lazy deletion: O(log n) per change, memory proportional to pending keys)."""

    def __init__(self) -> None:
        self._heap: list[tuple[int, str]] = []
        self._due_of: dict[str, int] = {}

    def __len__(self) -> int:
        return len(self._due_of)

    def set(self, key: str, due_ms: int | None) -> None:
        if due_ms is None:
            self._due_of.pop(key, None)
            return
        if self._due_of.get(key) == due_ms:
            return
        self._due_of[key] = due_ms
        heapq.heappush(self._heap, (due_ms, key))
        if len(self._heap) > 4 * len(self._due_of) + 64:  # drop stale entries now and then
            self._heap = [(due, k) for k, due in self._due_of.items()]
            heapq.heapify(self._heap)

    def due_by(self, horizon_ms: int) -> bool:
        """Whether a decision may be due at or before `horizon_ms` (an entry that moved
        since may say so: `pop_due` then finds nothing)."""
        return bool(self._heap) and self._heap[0][0] <= horizon_ms

    def earliest(self) -> int | None:
        """Event time of the earliest pending decision, or None."""
        while self._heap and self._due_of.get(self._heap[0][1]) != self._heap[0][0]:
            heapq.heappop(self._heap)  # stale: the key's decision moved or was made
        return self._heap[0][0] if self._heap else None

    def pop_due(self, horizon_ms: int) -> Iterator[str]:
        """Keys whose pending decision is at or before `horizon_ms`, removed from the index."""
        while self._heap and self._heap[0][0] <= horizon_ms:
            due, key = heapq.heappop(self._heap)
            if self._due_of.get(key) == due:
                del self._due_of[key]
                yield key


class StageEngine(Generic[StateT, OutT]):
    """Feeds events to one stage of a detector and keeps its store bounded by event time.

    A stage whose decisions rest on the absence of an event (a payout judged against a
    profile that may not have been read yet) defers them (`DeferringStage`); the engine makes
    them once the input is complete up to the decision's time plus the allowed lateness. Live,
    `sources` names the topics the stage reads: a partition is complete up to the slowest
    topic's newest event time, or fully when the caller says every topic is consumed to its
    end (`release` with `caught_up`). Offline (no sources) the one input file is the order: complete up to the newest
    event read, and fully at its end (`flush`).
    """

    def __init__(
        self,
        stage: Stage[StateT, OutT],
        sweep_every_ms: int = 60_000,
        allowed_lateness_ms: int = 300_000,
        sources: tuple[str, ...] = (),
        feeds: tuple[str, ...] = (),
    ) -> None:
        self.stage = stage
        # Live, every source a partition's watermark waits for (`_source`: a topic, or a
        # repartition topic's input partition), whether or not it has been read yet.
        self._feeds = feeds
        # A state is dropped only once the watermark is this far past its expiry, so that an
        # event up to this late meets the same state live (per-partition watermarks) and in a
        # replay (one watermark): both paths give the same findings.
        self._lateness_ms = allowed_lateness_ms
        self._indexes: dict[int, ExpiryIndex] = {}
        self._watermarks: dict[int, Watermark] = {}
        self._next_sweep: dict[int, int] = {}
        self._sweep_every_ms = sweep_every_ms
        self.sources = sources
        self.deferring: DeferringStage[StateT, OutT] | None = (
            cast("DeferringStage[StateT, OutT]", stage) if hasattr(stage, "release") else None
        )
        self._timers: dict[int, TimerIndex] = {}

    def process(
        self,
        store: MutableMapping[str, StateT],
        event: EventBase,
        partition: int = 0,
        source: str = "",
    ) -> list[OutT]:
        """Apply one event read from `source` (its topic) on `partition`; return the outputs,
        with those of any deferred decision the event's progress released."""
        key = self.stage.key(event)
        if key is None:
            return []
        new_state, outputs = self.stage.step(store.get(key), event)
        if not isinstance(new_state, Unchanged):
            self._write(store, partition, key, new_state)
        self._advance(store, partition, source, event.occurred_ms)
        if self.deferring is not None and self._timers.get(partition):
            outputs = outputs + self.release(store, partition)
        return outputs

    def _write(
        self, store: MutableMapping[str, StateT], partition: int, key: str, state: StateT | None
    ) -> None:
        index = self._index(partition)
        if state is None:
            if key in store:
                del store[key]
            index.discard(key)
            if self.deferring is not None:
                self._timer(partition).set(key, None)
        else:
            store[key] = state
            index.set(key, self.stage.expires_at_ms(state))
            if self.deferring is not None:
                self._timer(partition).set(key, self.deferring.due_at_ms(state))

    def _timer(self, partition: int) -> TimerIndex:
        timers = self._timers.get(partition)
        if timers is None:
            timers = self._timers[partition] = TimerIndex()
        return timers

    def pending(self) -> list[int]:
        """Partitions holding deferred decisions."""
        return [partition for partition, timers in self._timers.items() if timers]

    def deferred(self) -> int:
        """Entities holding a deferred decision, over every partition."""
        return sum(len(timers) for timers in self._timers.values())

    def complete_up_to(self, partition: int, caught_up: Collection[str] = ()) -> int:
        """Event time up to which the input of `partition` is complete; live, `caught_up`
        names the input topics consumed to their end on that partition just now."""
        if self.sources and set(caught_up) >= set(self.sources):
            return COMPLETE_MS
        tracker = self._watermarks.get(partition)
        if tracker is None:
            return -COMPLETE_MS
        if not self.sources:
            return tracker.complete()
        # Live, what feeds the partition: its input topics, or for a repartition topic each
        # input partition its events come from (`feeds`), each complete up to its newest.
        return tracker.complete_up_to(self._feeds or self.sources, caught_up)

    def release(
        self, store: MutableMapping[str, StateT], partition: int, caught_up: Collection[str] = ()
    ) -> list[OutT]:
        """Make the deferred decisions of `partition` its input is now complete enough for."""
        if self.deferring is None:
            return []
        complete = self.complete_up_to(partition, caught_up)
        horizon = complete if complete == COMPLETE_MS else complete - self._lateness_ms
        return self._release(store, partition, horizon)

    def mark_ms(self, partition: int) -> int | None:
        """What this stage can promise the next one about `partition`: nothing it outputs
        from now on is older than this (event time, up to the allowed lateness), or None
        when it cannot say yet. Its input is complete up to the watermark, and a deferred
        decision still to be made is as old as its time."""
        tracker = self._watermarks.get(partition)
        if tracker is None:
            return None
        complete = self.complete_up_to(partition)
        if complete <= -COMPLETE_MS or complete >= COMPLETE_MS:
            return None
        mark = complete - self._lateness_ms
        timers = self._timers.get(partition)
        earliest = timers.earliest() if timers else None
        return mark if earliest is None else min(mark, earliest)

    def observe(
        self, store: MutableMapping[str, StateT], partition: int, source: str, mark_ms: int
    ) -> list[OutT]:
        """A watermark mark read from `source`: it advances the partition's watermark as an
        event of that time would; return what deferred decisions that releases."""
        self._advance(store, partition, source, mark_ms)
        if self.deferring is not None and self._timers.get(partition):
            return self.release(store, partition)
        return []

    def flush(self, store: MutableMapping[str, StateT]) -> list[OutT]:
        """End of the input (offline): every deferred decision is made."""
        return [
            output
            for partition in list(self._timers)
            for output in self._release(store, partition, COMPLETE_MS)
        ]

    def _release(
        self, store: MutableMapping[str, StateT], partition: int, horizon_ms: int
    ) -> list[OutT]:
        assert self.deferring is not None
        timers = self._timer(partition)
        if not timers.due_by(horizon_ms):  # most events: nothing due yet
            return []
        outputs: list[OutT] = []
        for key in list(timers.pop_due(horizon_ms)):
            state = store.get(key)
            if state is None:
                continue
            new_state, released = self.deferring.release(state, horizon_ms)
            self._write(store, partition, key, new_state)
            outputs.extend(released)
        return outputs

    def _index(self, partition: int) -> ExpiryIndex:
        index = self._indexes.get(partition)
        if index is None:
            index = self._indexes[partition] = ExpiryIndex()
        return index

    def _advance(
        self, store: MutableMapping[str, StateT], partition: int, source: str, event_ms: int
    ) -> None:
        tracker = self._watermarks.get(partition)
        if tracker is None:
            tracker = self._watermarks[partition] = Watermark(expected=self._feeds)
        watermark = tracker.observe(source, event_ms)
        if watermark >= self._next_sweep.get(partition, 0):
            self._sweep(store, partition, watermark)

    def _sweep(self, store: MutableMapping[str, StateT], partition: int, watermark: int) -> None:
        """The states whose expiry the watermark has passed by the allowed lateness go."""
        self._next_sweep[partition] = watermark + self._sweep_every_ms
        index = self._index(partition)
        horizon = watermark - self._lateness_ms
        due = list(index.pop_due(horizon))
        deferring = self.deferring
        if deferring is None:
            # Every write and every adoption files the key under its state's expiry
            # (`_write`, `adopt`; `expires_at_ms` depends on the state alone), so a key in a
            # bucket the horizon has passed holds an expired state: it goes without its
            # state being read (decoding every expired state made a burst of expiries, such
            # as a thousand accounts last seen in the same minute, stall the partition).
            for key in due:
                if key in store:
                    del store[key]
            return
        for key in due:
            state = store.get(key)
            if state is None:
                continue
            expires = self.stage.expires_at_ms(state)
            if expires <= horizon and deferring.due_at_ms(state) is None:
                del store[key]
            else:  # a decision still pending
                index.set(key, max(expires, horizon + 1))

    def adopt(self, items: Iterable[tuple[str, StateT]], partition_of: Callable[[str], int]) -> int:
        """Re-index every state held (after a restart or a rebalance); return how many.

        The watermarks start again too: after a rebalance the stage reads on from the
        committed offsets, older than what it had read, and a watermark kept from before
        would expire restored state those events still belong to (a shared IP's episode
        split in two, its finding under another uid)."""
        self._indexes.clear()
        self._timers.clear()
        self._watermarks.clear()
        self._next_sweep.clear()
        count = 0
        for key, state in items:
            if state is not None:
                partition = partition_of(key)
                self._index(partition).set(key, self.stage.expires_at_ms(state))
                if self.deferring is not None:
                    self._timer(partition).set(key, self.deferring.due_at_ms(state))
                count += 1
        return count


class DetectorRunner:
    """All stages of one detector over in-memory stores: the offline (replay) path."""

    def __init__(self, detector: Detector, allowed_lateness_ms: int = 300_000) -> None:
        self.detector = detector
        self.engines = [
            StageEngine(stage, allowed_lateness_ms=allowed_lateness_ms) for stage in detector.stages
        ]
        self.stores: list[dict[str, Any]] = [{} for _ in detector.stages]

    def feed(self, event: EventBase) -> list[FindingDraft]:
        if len(self.engines) == 1:  # most detectors: one stage, its outputs the findings
            found = self.engines[0].process(self.stores[0], event)
            return [item for item in found if isinstance(item, FindingDraft)] if found else []
        pending: list[Any] = [event]
        for engine, store in zip(self.engines, self.stores, strict=True):
            outputs: list[Any] = []
            for item in pending:
                outputs.extend(engine.process(store, item))
            pending = outputs
        return [item for item in pending if isinstance(item, FindingDraft)]

    def finish(self) -> list[FindingDraft]:
        """End of the input: the decisions still deferred are made, stage by stage."""
        carried: list[Any] = []
        for engine, store in zip(self.engines, self.stores, strict=True):
            outputs: list[Any] = []
            for item in carried:
                outputs.extend(engine.process(store, item))
            outputs.extend(engine.flush(store))
            carried = outputs
        return [item for item in carried if isinstance(item, FindingDraft)]

    def state_entries(self) -> int:
        return sum(len(store) for store in self.stores)
