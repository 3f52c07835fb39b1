"""Drives a detector over a keyed store, with event-time expiry of whole entities.

The store is any MutableMapping: a dict offline (`daylight replay`), a Faust table live. Both
paths run this same code, so a replay gives the findings the live run gives.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, MutableMapping
from typing import Any, Generic, TypeVar

from detectors.base import Detector, FindingDraft, Stage, StateT, to_ms
from schemas.events import EventBase

__all__ = ["DetectorRunner", "ExpiryIndex", "StageEngine", "Watermark"]

OutT = TypeVar("OutT")


class ExpiryIndex:
    """Keys of one partition grouped by the time bucket their state expires in.

    O(1) per update and memory proportional to live keys; buckets are swept in time order as
    the partition's event-time watermark passes them.
    """

    def __init__(self, bucket_ms: int = 60_000) -> None:
        self._bucket_ms = bucket_ms
        self._buckets: dict[int, set[str]] = {}
        self._bucket_of: dict[str, int] = {}

    def __len__(self) -> int:
        return len(self._bucket_of)

    def set(self, key: str, expires_at_ms: int) -> None:
        bucket = expires_at_ms // self._bucket_ms
        previous = self._bucket_of.get(key)
        if previous == bucket:
            return
        if previous is not None:
            self._discard_from(previous, key)
        self._bucket_of[key] = bucket
        self._buckets.setdefault(bucket, set()).add(key)

    def discard(self, key: str) -> None:
        previous = self._bucket_of.pop(key, None)
        if previous is not None:
            self._discard_from(previous, key)

    def _discard_from(self, bucket: int, key: str) -> None:
        members = self._buckets[bucket]
        members.discard(key)
        if not members:
            del self._buckets[bucket]

    def pop_due(self, watermark_ms: int) -> Iterator[str]:
        """Keys whose bucket ends at or before `watermark_ms`, removed from the index."""
        last_due = watermark_ms // self._bucket_ms - 1
        due = sorted(bucket for bucket in self._buckets if bucket <= last_due)
        for bucket in due:
            for key in self._buckets.pop(bucket):
                del self._bucket_of[key]
                yield key


class Watermark:
    """Event-time watermark of one partition fed by several topics.

    Kafka keeps order within a partition, not across topics: a worker draining a backlog may
    read a day of logins before the matching hour of heartbeats. The watermark is therefore the
    slowest active topic's newest event time, so one topic running ahead never expires state
    another topic is still adding to. A topic silent for `idle_after` events of the others
    stops holding it back (a topic that stops flowing must not stop expiry).
    """

    def __init__(self, idle_after: int = 10_000) -> None:
        self._idle_after = idle_after
        self._seen = 0
        self._sources: dict[str, list[int]] = {}  # source -> [newest event ms, seen counter]

    def observe(self, source: str, event_ms: int) -> int:
        self._seen += 1
        entry = self._sources.get(source)
        if entry is None:
            self._sources[source] = [event_ms, self._seen]
        else:
            entry[0] = max(entry[0], event_ms)
            entry[1] = self._seen
        if len(self._sources) == 1:
            return self._sources[source][0]
        oldest_active = self._seen - self._idle_after
        active = [newest for newest, seen in self._sources.values() if seen > oldest_active]
        return min(active)


class StageEngine(Generic[StateT, OutT]):
    """Feeds events to one stage of a detector and keeps its store bounded by event time."""

    def __init__(
        self,
        stage: Stage[StateT, OutT],
        sweep_every_ms: int = 60_000,
        allowed_lateness_ms: int = 300_000,
    ) -> None:
        self.stage = stage
        # A state is dropped only once the watermark is this far past its expiry, so that an
        # event up to this late meets the same state live (per-partition watermarks) and in a
        # replay (one watermark): both paths give the same findings.
        self._lateness_ms = allowed_lateness_ms
        self._indexes: dict[int, ExpiryIndex] = {}
        self._watermarks: dict[int, Watermark] = {}
        self._next_sweep: dict[int, int] = {}
        self._sweep_every_ms = sweep_every_ms

    def process(
        self,
        store: MutableMapping[str, StateT],
        event: EventBase,
        partition: int = 0,
        source: str = "",
    ) -> list[OutT]:
        """Apply one event read from `source` (its topic) on `partition`; return the outputs."""
        key = self.stage.key(event)
        if key is None:
            return []
        new_state, outputs = self.stage.step(store.get(key), event)
        index = self._index(partition)
        if new_state is None:
            if key in store:
                del store[key]
            index.discard(key)
        else:
            store[key] = new_state
            index.set(key, self.stage.expires_at_ms(new_state))
        self._advance(store, partition, source, to_ms(event.occurred_at))
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
            tracker = self._watermarks[partition] = Watermark()
        watermark = tracker.observe(source, event_ms)
        if watermark < self._next_sweep.get(partition, 0):
            return
        self._next_sweep[partition] = watermark + self._sweep_every_ms
        index = self._index(partition)
        horizon = watermark - self._lateness_ms
        for key in list(index.pop_due(horizon)):
            state = store.get(key)
            if state is None:
                continue
            expires = self.stage.expires_at_ms(state)
            if expires <= horizon:
                del store[key]
            else:  # touched since it was indexed
                index.set(key, expires)

    def adopt(self, items: Iterable[tuple[str, StateT]], partition_of: Callable[[str], int]) -> int:
        """Re-index every state held (after a restart or a rebalance); return how many."""
        self._indexes.clear()
        count = 0
        for key, state in items:
            if state is not None:
                self._index(partition_of(key)).set(key, self.stage.expires_at_ms(state))
                count += 1
        return count


class DetectorRunner:
    """All stages of one detector over in-memory stores: the offline (replay) path."""

    def __init__(self, detector: Detector) -> None:
        self.detector = detector
        self.engines = [StageEngine(stage) for stage in detector.stages]
        self.stores: list[dict[str, Any]] = [{} for _ in detector.stages]

    def feed(self, event: EventBase) -> list[FindingDraft]:
        pending: list[Any] = [event]
        for engine, store in zip(self.engines, self.stores, strict=True):
            outputs: list[Any] = []
            for item in pending:
                outputs.extend(engine.process(store, item))
            pending = outputs
        return [item for item in pending if isinstance(item, FindingDraft)]

    def state_entries(self) -> int:
        return sum(len(store) for store in self.stores)
