"""Drives a detector over a keyed store, with event-time expiry of whole entities.

The store is any MutableMapping: a dict offline (`daylight replay`), a Faust table live. Both
paths run this same code, so a replay gives the findings the live run gives.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, MutableMapping
from typing import Generic

from detectors.base import Detector, FindingDraft, StateT, to_ms
from schemas.events import Event

__all__ = ["DetectorEngine", "ExpiryIndex"]


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


class DetectorEngine(Generic[StateT]):
    """Feeds events to one detector, keeps its store bounded by event time."""

    def __init__(self, detector: Detector[StateT], sweep_every_ms: int = 60_000) -> None:
        self.detector = detector
        self._indexes: dict[int, ExpiryIndex] = {}
        self._watermarks: dict[int, int] = {}
        self._next_sweep: dict[int, int] = {}
        self._sweep_every_ms = sweep_every_ms

    def process(
        self, store: MutableMapping[str, StateT], event: Event, partition: int = 0
    ) -> list[FindingDraft]:
        key = self.detector.key(event)
        if key is None:
            return []
        new_state, findings = self.detector.step(store.get(key), event)
        index = self._index(partition)
        if new_state is None:
            if key in store:
                del store[key]
            index.discard(key)
        else:
            store[key] = new_state
            index.set(key, self.detector.expires_at_ms(new_state))
        self._advance(store, partition, to_ms(event.occurred_at))
        return findings

    def _index(self, partition: int) -> ExpiryIndex:
        index = self._indexes.get(partition)
        if index is None:
            index = self._indexes[partition] = ExpiryIndex()
        return index

    def _advance(self, store: MutableMapping[str, StateT], partition: int, event_ms: int) -> None:
        watermark = max(self._watermarks.get(partition, event_ms), event_ms)
        self._watermarks[partition] = watermark
        if watermark < self._next_sweep.get(partition, 0):
            return
        self._next_sweep[partition] = watermark + self._sweep_every_ms
        for key in self._index(partition).pop_due(watermark):
            state = store.get(key)
            if state is None:
                continue
            expires = self.detector.expires_at_ms(state)
            if expires <= watermark:
                del store[key]
            else:  # touched since it was indexed (e.g. restored from a changelog)
                self._index(partition).set(key, expires)

    def adopt(self, items: Iterable[tuple[str, StateT]], partition_of: dict[str, int] | None = None) -> int:
        """Index states restored from elsewhere (a changelog after a restart); return how many."""
        count = 0
        for key, state in items:
            partition = partition_of.get(key, 0) if partition_of else 0
            self._index(partition).set(key, self.detector.expires_at_ms(state))
            count += 1
        return count

    def indexed(self) -> int:
        return sum(len(index) for index in self._indexes.values())
