"""What an account said about itself, and when; decisions that wait for the input.

An account's profile (its verified legal name, its document country, its declared time zone,
its payout destinations) is kept as a short history in event-time order, so that an event is
judged against the profile as it stood at the event's time whatever the order the events were
read in. A decision that rests on the absence of an event (no verification before a bid, no
profile yet for a payout) waits in the state as a pending item until the engine says the input
is complete up to its time (`DeferringStage.release`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

__all__ = ["as_of", "defer", "due_at", "judge_due", "overflow_ms", "record", "take_due"]

OutT = TypeVar("OutT")


def as_of(history: list[list[Any]], moment_ms: int) -> list[Any] | None:
    """The newest entry of `history` ([ms, ...], sorted) at or before `moment_ms`."""
    found = None
    for entry in history:
        if entry[0] > moment_ms:
            break
        found = entry
    return found


def record(history: list[list[Any]], entry: list[Any], keep: int = 4) -> list[list[Any]]:
    """`history` with `entry`, in time order, the newest `keep` entries."""
    return sorted([*history, entry], key=lambda item: item[0])[-keep:]


def defer(pending: list[dict[str, Any]], item: dict[str, Any]) -> list[dict[str, Any]]:
    """`pending` with `item` (a dict with its event time `ms` and its `id`), in time order."""
    return sorted([*pending, item], key=lambda entry: (entry["ms"], entry["id"]))


def overflow_ms(pending: list[dict[str, Any]], limit: int) -> int | None:
    """The time up to which the oldest items must be decided, as things stand, so that at most
    `limit` stay pending (a bounded state); None when there are no more than that."""
    return pending[-limit - 1]["ms"] if len(pending) > limit else None


def judge_due(
    state: Any, complete_ms: int, judge: Callable[[Any, dict[str, Any]], OutT | None]
) -> list[OutT]:
    """Takes the items of `state["pending"]` due at `complete_ms` out of it and returns what
    `judge(state, item)` makes of each, in time order (None: nothing)."""
    due, state["pending"] = take_due(state["pending"], complete_ms)
    return [out for item in due if (out := judge(state, item)) is not None]


def due_at(pending: list[dict[str, Any]]) -> int | None:
    return pending[0]["ms"] if pending else None


def take_due(
    pending: list[dict[str, Any]], complete_ms: int
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(the items due at `complete_ms`, in time order; the items still pending)."""
    cut = 0
    while cut < len(pending) and pending[cut]["ms"] <= complete_ms:
        cut += 1
    return pending[:cut], pending[cut:]
