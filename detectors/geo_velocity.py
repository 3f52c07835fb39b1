"""geo_velocity: logins to one account from places too far apart for the time between them.

Advisory red flag: logins to one account from IP addresses in different countries within a
short time (borrowed identities used by a team abroad, or a VPN that slips).
"""

from __future__ import annotations

import bisect
import operator
from collections import Counter
from typing import Any, Final, TypedDict

from detectors.core.base import (
    AttackMapping,
    Detector,
    DetectorMetadata,
    EntityKind,
    FindingDraft,
    check_readable,
    dedup_bucket,
)
from detectors.core.geo import Locator, locator_for, min_distance_km
from detectors.models.geo_velocity import GeoVelocitySettings
from schemas.events import EventBase, Login
from schemas.finding import Confidence, Evidence, Location, Severity, SrcEndpoint, User

__all__ = ["METADATA", "GeoVelocity", "GeoVelocitySettings", "build"]

METADATA = DetectorMetadata(
    id="geo_velocity",
    name="Impossible travel between logins",
    title="Logins from places too far apart for the time between them",
    advisory_flag="logins to one account from IPs in different countries within a short time",
    runbook=(
        "Compare both IPs with the account's usual places and devices; check whether either IP "
        "is a VPN or hosting exit and whether other accounts share it (shared_ip findings)."
    ),
    topics=("platform.logins",),
    dedup_window_hours=24.0,
    types=("Account Takeover", "Impossible Travel"),
    description=(
        "Two consecutive logins of one account came from places further apart than any "
        "journey in the time between them."
    ),
    attacks=(AttackMapping("T1078", "Valid Accounts", "TA0001", "Initial Access"),),
    attack_rationale=(
        "T1078 Valid Accounts: the identity's own credentials are used from where its owner "
        "cannot be, the signature of a borrowed identity worked by someone else."
    ),
)


# One remembered login: [ms, lat, lon, country, city, ip, event_id, precision]
_MS: Final = 0
_LAT: Final = 1
_LON: Final = 2
_COUNTRY: Final = 3
_CITY: Final = 4
_IP: Final = 5
_EVENT_ID: Final = 6
_PRECISION: Final = 7
_login_ms: Final = operator.itemgetter(_MS)
StoredLogin = list[Any]


class GeoVelocityState(TypedDict):
    logins: list[StoredLogin]
    alerted: list[int]


class GeoVelocity:
    entity: EntityKind = "account"
    input_model: type[EventBase] | None = None

    def __init__(self, settings: GeoVelocitySettings, locator: Locator | None = None) -> None:
        self.settings = settings
        self._locator = locator
        self._history_ms = int(settings.history_hours * 3_600_000)
        self._ttl_ms = int(max(settings.history_hours, settings.dedup_window_hours) * 3_600_000)
        # Valid logins this stage could not use, by reason (exported as a metric).
        self.skipped: Counter[str] = Counter()

    @property
    def locator(self) -> Locator:
        if self._locator is None:
            self._locator = locator_for(self.settings.geoip_mmdb)
        return self._locator

    def prepare(self) -> None:
        """The GeoIP database read now (`detectors.prepare`), not at the first login the
        platform did not locate: loading it takes about 0.3 s, a stall mid-stream, and a file
        that is not a database stopped the worker there with a traceback."""
        check_readable(
            "DAYLIGHT_GEOIP_MMDB",
            self.settings.geoip_mmdb or "the packaged country data",
            "GeoIP database",
            lambda: self.locator.locate("8.8.8.8"),
        )

    def key(self, event: Any) -> str | None:
        if isinstance(event, Login) and event.type == "login":
            return event.account_id
        return None

    def expires_at_ms(self, state: GeoVelocityState) -> int:
        return int(state["logins"][-1][_MS]) + self._ttl_ms

    def _remembered(self, login: Login) -> StoredLogin | None:
        """The login as kept, located where the platform says, or else by its IP (None when
        neither knows). The platform's position is read as it is, without a `Place` in
        between: that object cost a tenth of the step on every login."""
        geo = login.geo
        if geo is not None:
            lat, lon, country, city, precision = geo.lat, geo.lon, geo.country, geo.city, "platform"
        else:
            place = self.locator.locate(login.ip)
            if place is None:
                return None
            lat, lon, country, city = place.lat, place.lon, place.country, place.city
            precision = place.precision
        return [login.occurred_ms, lat, lon, country, city, login.ip, login.event_id, precision]

    def step(
        self, state: GeoVelocityState | None, event: Login
    ) -> tuple[GeoVelocityState | None, list[FindingDraft]]:
        current = self._remembered(event)
        if current is None:
            self.skipped["no_location"] += 1
            return state, []
        if state is None:
            state = {"logins": [], "alerted": []}
        logins = state["logins"]
        event_id = event.event_id
        for stored in logins:
            if stored[_EVENT_ID] == event_id:
                return state, []  # a re-delivered event
        event_ms: int = current[_MS]
        # Logins are kept in event-time order, so a late login is judged against its true
        # neighbours, not against whichever login happened to arrive before it.
        if not logins or event_ms >= logins[-1][_MS]:
            position = len(logins)  # the usual case: the newest login
            logins.append(current)
        else:
            position = bisect.bisect_right(logins, event_ms, key=_login_ms)
            logins.insert(position, current)
        # What is kept: the logins of the last `history_hours` before the newest, at most
        # `max_logins` of them (a suffix, the list being in time order).
        first = max(
            bisect.bisect_left(logins, logins[-1][_MS] - self._history_ms, key=_login_ms),
            len(logins) - self.settings.max_logins,
        )
        if first > 0:
            logins = state["logins"] = logins[first:]
            position -= first
            if position < 0:
                return state, []  # older than everything kept
        # The login against its neighbours in time: the faster travel of the two is the worst.
        worst = self._measure(logins[position - 1], current) if position > 0 else None
        if position + 1 < len(logins):
            after = self._measure(current, logins[position + 1])
            if after is not None and (worst is None or after[0] > worst[0]):
                worst = after
        if worst is None:
            return state, []
        bucket = dedup_bucket(worst[3][_MS], self.settings.dedup_window_hours)
        if bucket in state["alerted"]:
            return state, []
        state["alerted"] = [*state["alerted"][-1:], bucket]
        return state, [self._finding(event.account_id, bucket, *worst)]

    def _measure(
        self, earlier: StoredLogin, later: StoredLogin
    ) -> tuple[float, float, StoredLogin, StoredLogin] | None:
        coarse = "country" in (earlier[_PRECISION], later[_PRECISION])
        # A position known only to its country is the whole country: the distance is then
        # the least the two logins can be apart, never the distance to a capital.
        distance = min_distance_km(
            earlier[_LAT], earlier[_LON], earlier[_COUNTRY], earlier[_PRECISION] == "country",
            later[_LAT], later[_LON], later[_COUNTRY], later[_PRECISION] == "country",
        )  # fmt: skip
        floor = self.settings.coarse_min_distance_km if coarse else self.settings.min_distance_km
        if distance <= floor:
            return None
        # Logins in the same minute count as one minute apart: no division by zero, and the
        # speed stays a number a person can read.
        hours = max(later[_MS] - earlier[_MS], 60_000) / 3_600_000
        speed = distance / hours
        if speed <= self.settings.max_speed_kmh:
            return None
        return speed, distance, earlier, later

    def _finding(
        self,
        account_id: str,
        bucket: int,
        speed: float,
        distance: float,
        earlier: StoredLogin,
        later: StoredLogin,
    ) -> FindingDraft:
        minutes = (later[_MS] - earlier[_MS]) / 60_000
        coarse = "country" in (earlier[_PRECISION], later[_PRECISION])
        severity = Severity.HIGH if distance >= 3000 and not coarse else Severity.MEDIUM
        if earlier[_COUNTRY] == later[_COUNTRY]:
            severity = Severity.LOW
        confidence = Confidence.MEDIUM if coarse else Confidence.HIGH
        apart = f"at least {distance:,.0f} km" if coarse else f"{distance:,.0f} km"
        message = (
            f"Logins {apart} apart within {_duration(minutes)} ({speed:,.0f} km/h): "
            f"{_label(earlier)} -> {_label(later)}"
        )
        return FindingDraft(
            detector=METADATA,
            uid_parts=(account_id, str(bucket)),
            accounts=[account_id],
            severity=severity,
            confidence=confidence,
            message=message,
            start_ms=int(earlier[_MS]),
            end_ms=int(later[_MS]),
            evidences=[_evidence(account_id, login) for login in (earlier, later)],
            unmapped={
                "speed_kmh": round(speed, 1),
                "distance_km": round(distance, 1),
                "from_country": earlier[_COUNTRY],
                "to_country": later[_COUNTRY],
                "location_precision": "country" if coarse else "city",
            },
            ips=[earlier[_IP], later[_IP]],
        )


def _label(login: StoredLogin) -> str:
    return f"{login[_CITY]}, {login[_COUNTRY]}" if login[_CITY] else str(login[_COUNTRY])


def _duration(minutes: float) -> str:
    if minutes < 120:
        return f"{minutes:.0f} min"
    return f"{minutes / 60:.1f} h"


def _evidence(account_id: str, login: StoredLogin) -> Evidence:
    coarse = login[_PRECISION] == "country"  # no invented coordinates for a country
    return Evidence(
        src_endpoint=SrcEndpoint(
            ip=login[_IP],
            location=Location(
                country=login[_COUNTRY],
                city=login[_CITY],
                lat=None if coarse else login[_LAT],
                long=None if coarse else login[_LON],
            ),
        ),
        user=User(uid=account_id),
        data={"event_id": login[_EVENT_ID], "time": login[_MS], "precision": login[_PRECISION]},
    )


def build(settings: GeoVelocitySettings | None = None, locator: Locator | None = None) -> Detector:
    return Detector(METADATA, (GeoVelocity(settings or GeoVelocitySettings(), locator),))
