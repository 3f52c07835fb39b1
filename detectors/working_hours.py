"""working_hours: the account's hours fit a working day in UTC+8/+9, not its declared zone.

Advisory red flag (employers): unable to work the required hours; later guidance adds the
pattern behind it: activity that fits a working day in China or North Korea (UTC+8/UTC+9),
whatever time zone the profile declares. By account: the UTC hours in which it was active
(logins and session events), over the last `window_days`. Once a day the account was active is
complete (the input's event-time watermark past its end plus the allowed lateness), and the
account has been active on `min_active_days` days or more in the window, the share of its
active hours inside local working hours is computed for the declared time zone and for UTC+8
and UTC+9. A finding when the best of UTC+8/+9 reaches `min_share`, beats the declared zone by
`margin` and is (within `best_fit_tolerance`) the best fit of every UTC offset: a night owl in
Europe, whose nights fit a working day further east than UTC+9 better, is spared. The message
gives the shares.

An hour read after its day was judged (later than the allowed lateness) has that day and the
later ones judged again; a window already reported is not reported twice. An account with no
declared time zone is not judged. The declared zone's offset is taken at
the day judged (daylight saving included), to the hour.
"""

from __future__ import annotations

from datetime import UTC, datetime
from functools import lru_cache
from typing import Any, Final, TypedDict
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from detectors.core.base import (
    UNCHANGED,
    Detector,
    DetectorMetadata,
    EntityKind,
    FindingDraft,
    Unchanged,
    dedup_bucket,
)
from detectors.core.profile import as_of, record
from detectors.models.working_hours import WorkingHoursSettings
from schemas.events import AccountCreated, EventBase, Login, ProfileUpdated, SessionEvent
from schemas.finding import Confidence, Evidence, Severity, User

__all__ = ["METADATA", "WorkingHoursSettings", "WorkingHoursStage", "build", "zone_offset_hours"]

METADATA = DetectorMetadata(
    id="working_hours",
    name="Working hours of another time zone",
    title="Account active in UTC+8/+9 working hours, not its declared time zone's",
    advisory_flag="unable to work the required hours; activity that fits UTC+8/+9 working days",
    runbook=(
        "Compare the account's hours with the time zone and country it declares and with its "
        "logins' locations; ask for a video call at an hour that is working time in the "
        "declared zone and night in UTC+8/+9; weigh its other red flags."
    ),
    topics=("platform.accounts", "platform.logins", "platform.sessions"),
    dedup_window_hours=168.0,
    types=("Account Risk",),
    description=(
        "The account's activity fits a working day in UTC+8 or UTC+9 far better than one in "
        "the time zone it declares."
    ),
    attack_rationale=(
        "None: when someone works is not an intrusion technique; it betrays where the person "
        "behind the identity lives."
    ),
)

_HOUR_MS: Final = 3_600_000
_DAY_MS: Final = 86_400_000


class WorkingHoursState(TypedDict):
    account: str
    zones: list[list[Any]]  # [ms, declared IANA time zone]
    # per active day (days since the epoch, as text): its active UTC hours as a 24-bit mask,
    # and "ms event-id type" of its earliest event read (what a finding cites). Ints and
    # strings: the live worker copies a state each batch it reads it in, and these cost
    # nothing to copy.
    days: dict[str, int]
    firsts: dict[str, str]
    judged_day: int  # the last day (days since the epoch) judged
    reported: list[int]  # windows reported
    last_ms: int


@lru_cache(maxsize=1024)
def _zone(name: str) -> ZoneInfo | None:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return None


def zone_offset_hours(name: str, moment_ms: int) -> int | None:
    """The UTC offset of an IANA time zone at a moment, to the hour; None for an unknown zone."""
    zone = _zone(name)
    if zone is None:
        return None
    offset = datetime.fromtimestamp(moment_ms / 1000, UTC).astimezone(zone).utcoffset()
    return None if offset is None else round(offset.total_seconds() / 3600)


class WorkingHoursStage:
    """Collects an account's active hours; judges each active day once it is complete
    (a `DeferringStage`)."""

    entity: EntityKind = "account"
    input_model: type[EventBase] | None = None

    def __init__(self, settings: WorkingHoursSettings) -> None:
        self.settings = settings
        self._ttl_ms = int(settings.profile_ttl_days * _DAY_MS)
        # Without a declared zone no day is ever judged, and a zone declared later judges only
        # days after it: such a state is of no use once its last active day is out of the
        # window (a day after it, for the day to end and be released).
        self._zoneless_ms = min(self._ttl_ms, (settings.window_days + 1) * _DAY_MS)
        self._working = set(range(settings.work_start_hour, settings.work_end_hour))

    def key(self, event: Any) -> str | None:
        if isinstance(event, SessionEvent | AccountCreated | ProfileUpdated):
            return event.account_id
        if isinstance(event, Login) and event.type == "login":
            return event.account_id
        return None

    def expires_at_ms(self, state: WorkingHoursState) -> int:
        # An account's declared zone is kept `profile_ttl_days` (it may come back after a
        # long pause); an account that never declared one, only as long as its window.
        return state["last_ms"] + (self._ttl_ms if state["zones"] else self._zoneless_ms)

    def due_at_ms(self, state: WorkingHoursState) -> int | None:
        judged = state["judged_day"]
        later = [int(day) for day in state["days"] if int(day) > judged]
        return (min(later) + 1) * _DAY_MS if later else None  # the end of that day

    def step(
        self, state: WorkingHoursState | None, event: EventBase
    ) -> tuple[WorkingHoursState | Unchanged | None, list[FindingDraft]]:
        event_ms = event.occurred_ms
        if state is None:
            state = {"account": event.account_id, "zones": [], "days": {}, "firsts": {},
                     "judged_day": -(2**40), "reported": [], "last_ms": event_ms}  # fmt: skip
        if isinstance(event, AccountCreated | ProfileUpdated):
            if event.declared_timezone:
                state["zones"] = record(state["zones"], [event_ms, event.declared_timezone])
                state["last_ms"] = max(state["last_ms"], event_ms)
                return state, []
            return UNCHANGED, []
        hour = event_ms // _HOUR_MS
        number, bit = hour // 24, 1 << (hour % 24)
        day = str(number)
        mask = state["days"].get(day, 0)
        if mask & bit:
            return UNCHANGED, []  # an hour already known to be active (most heartbeats)
        state["days"][day] = mask | bit
        if number <= state["judged_day"]:  # read after its day was judged: judge again
            state["judged_day"] = number - 1
        first = state["firsts"].get(day)
        if first is None or event_ms < int(first.split(" ", 1)[0]):
            state["firsts"][day] = f"{event_ms} {event.event_id} {getattr(event, 'type', '')}"
        if len(state["days"]) > self.settings.window_days + 7:  # bounded: the oldest days go
            oldest = min(state["days"], key=int)
            del state["days"][oldest]
            state["firsts"].pop(oldest, None)
        state["last_ms"] = max(state["last_ms"], event_ms)
        return state, []

    def release(
        self, state: WorkingHoursState, complete_ms: int
    ) -> tuple[WorkingHoursState | None, list[FindingDraft]]:
        findings = []
        last_complete = complete_ms // _DAY_MS - 1  # the last day whose end is complete
        days = sorted(int(d) for d in state["days"] if int(d) > state["judged_day"])
        for day in days:
            if day > last_complete:
                break
            finding = self._judge(state, day)
            state["judged_day"] = day
            if finding is not None:
                findings.append(finding)
        horizon = state["judged_day"] - self.settings.window_days + 1
        if any(int(d) < horizon for d in state["days"]):  # no later day needs them
            state["days"] = {d: m for d, m in state["days"].items() if int(d) >= horizon}
            state["firsts"] = {d: f for d, f in state["firsts"].items() if int(d) >= horizon}
        return state, findings

    def shares(self, hours: list[int], offsets: range | tuple[int, ...]) -> dict[int, float]:
        """Per UTC offset, the share of the active hours inside the local working day."""
        by_hour = _histogram(hours)
        total = len(hours)
        return {
            offset: sum(by_hour[(local - offset) % 24] for local in self._working) / total
            for offset in offsets
        }

    def _judge(self, state: WorkingHoursState, day: int) -> FindingDraft | None:
        settings = self.settings
        first = day - settings.window_days + 1
        active = sorted(
            (number, mask)
            for number, mask in ((int(d), m) for d, m in state["days"].items())
            if first <= number <= day and mask
        )
        active_days = len(active)  # known before the hours are counted
        if active_days < settings.min_active_days:
            return None
        day_end_ms = (day + 1) * _DAY_MS
        zone = as_of(state["zones"], day_end_ms)
        if zone is None:
            return None
        declared = zone_offset_hours(zone[1], day * _DAY_MS + 12 * _HOUR_MS)
        if declared is None:
            return None
        hours = [number * 24 + hour for number, mask in active for hour in range(24)
                 if mask >> hour & 1]  # fmt: skip
        every = self.shares(hours, range(-12, 15))
        suspect = {offset: every[offset] for offset in settings.suspect_offsets_hours}
        best_suspect = max(suspect, key=lambda o: (suspect[o], -o))
        fit, mine, best = suspect[best_suspect], every[declared], max(every.values())
        if fit < settings.min_share or fit - mine < settings.margin:
            return None
        if fit < best - settings.best_fit_tolerance:
            return None  # another zone fits far better: a night owl, a shift worker
        bucket = dedup_bucket(day * _DAY_MS, settings.dedup_window_hours)
        if bucket in state["reported"]:
            return None
        state["reported"] = [*state["reported"], bucket][-4:]
        strong = fit >= 0.85 and mine <= 0.15
        window = f"{settings.work_start_hour:02d}:00-{settings.work_end_hour:02d}:00"
        shown = " and ".join(f"{share:.0%} in UTC{offset:+d}" for offset, share in suspect.items())
        account = state["account"]
        message = (
            f"Over {active_days} active days ({_date(hours[0] * _HOUR_MS)} to {_date(day * _DAY_MS)}, "
            f"{len(hours)} active hours), {mine:.0%} of active hours fall in {window} in the "
            f"declared time zone {zone[1]} (UTC{declared:+d}), {shown}"
        )
        return FindingDraft(
            detector=METADATA,
            uid_parts=(account, str(bucket)),
            accounts=[account],
            severity=Severity.HIGH if strong else Severity.MEDIUM,
            confidence=Confidence.MEDIUM,
            message=message,
            start_ms=hours[0] * _HOUR_MS,
            end_ms=day_end_ms,
            evidences=[
                Evidence(
                    user=User(uid=account),
                    data={
                        "time": day_end_ms,
                        "declared_timezone": zone[1],
                        "active_hours_utc": _histogram(hours),
                    },
                )
            ],
            unmapped={
                "declared_timezone": zone[1],
                "declared_share": round(mine, 3),
                "suspect_shares": {f"UTC{o:+d}": round(s, 3) for o, s in suspect.items()},
                "best_offset": max(every, key=lambda o: (every[o], -o)),
                "active_days": active_days,
            },
            count=active_days,
            related=[
                (event_id, int(ms), kind or None)
                for d, text in sorted(state["firsts"].items(), key=lambda item: int(item[0]))
                if first <= int(d) <= day
                for ms, event_id, kind in (text.split(" ", 2),)
            ],
        )


def _histogram(hours: list[int]) -> list[int]:
    """Active hours by hour of the day, UTC."""
    by_hour = [0] * 24
    for hour in hours:
        by_hour[hour % 24] += 1
    return by_hour


def _date(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d")


def build(settings: WorkingHoursSettings | None = None) -> Detector:
    return Detector(METADATA, (WorkingHoursStage(settings or WorkingHoursSettings()),))
