"""Offline IP geolocation for events that arrive without `geo`, and distances that stay
honest about what is known.

Default: the country database shipped inside the geoip2fast package, which knows only the
country. A position known only to its country is never a point: the distance between two
logins is then a lower bound, from the country's extent (the Natural Earth bounding boxes of
its parts, from the country-bounding-boxes package), so a login in Seattle and one known only
to be "in the US" are 0 km apart, not the 3,700 km to the capital. When `DAYLIGHT_GEOIP_MMDB`
names a MaxMind City database, its city coordinates are used instead.
"""

from __future__ import annotations

import ipaddress
import json
import math
from dataclasses import dataclass
from functools import cache, lru_cache
from importlib import resources
from pathlib import Path
from typing import Any, Final, Protocol

from detectors.core.base import haversine_km

__all__ = [
    "CountryLocator",
    "Locator",
    "MmdbLocator",
    "Place",
    "capital_of",
    "country_boxes",
    "locator_for",
    "min_distance_km",
]

# By package, not `__file__`: compiled, this module's `__file__` is relative to the build.
_CAPITALS: Final = resources.files("detectors.core") / "data" / "capitals.json"


@dataclass(frozen=True, slots=True)
class Place:
    country: str
    lat: float
    lon: float
    city: str | None
    precision: str  # "platform", "city" or "country"

    def label(self) -> str:
        return f"{self.city}, {self.country}" if self.city else self.country


class Locator(Protocol):
    def locate(self, ip: str) -> Place | None:
        """Where `ip` is, or None when the database does not know (private, unallocated)."""


@cache
def _capitals() -> dict[str, tuple[float, float]]:
    return {code: (lat, lon) for code, (lat, lon) in json.loads(_CAPITALS.read_text()).items()}


def capital_of(country: str) -> tuple[float, float] | None:
    return _capitals().get(country)


@lru_cache(maxsize=65_536)
def _public(ip: str) -> bool:
    try:
        return ipaddress.ip_address(ip).is_global
    except ValueError:
        return False


class CountryLocator:
    """geoip2fast's bundled country database; positions are the country's capital."""

    def __init__(self) -> None:
        from geoip2fast import GeoIP2Fast

        self._db: Any = GeoIP2Fast(verbose=False, geoip2fast_data_file="geoip2fast-ipv6.dat.gz")

    def locate(self, ip: str) -> Place | None:
        if not _public(ip):
            return None
        country = self._db.lookup(ip).country_code
        position = capital_of(country) if country else None
        if position is None:
            return None
        return Place(country, position[0], position[1], None, "country")


class MmdbLocator:
    """A MaxMind GeoIP2/GeoLite2 City database (`.mmdb`)."""

    def __init__(self, path: Path) -> None:
        import maxminddb

        self._reader: Any = maxminddb.open_database(str(path))

    def locate(self, ip: str) -> Place | None:
        if not _public(ip):
            return None
        record = self._reader.get(ip)
        if not isinstance(record, dict):
            return None
        country = (record.get("country") or record.get("registered_country") or {}).get("iso_code")
        location = record.get("location") or {}
        lat, lon = location.get("latitude"), location.get("longitude")
        if not country:
            return None
        city = ((record.get("city") or {}).get("names") or {}).get("en")
        if lat is None or lon is None:
            position = capital_of(country)
            if position is None:
                return None
            return Place(country, position[0], position[1], None, "country")
        return Place(country, float(lat), float(lon), city, "city")


@cache
def locator_for(mmdb: Path | None) -> Locator:
    """One shared locator per database (loading one takes a moment)."""
    return MmdbLocator(mmdb) if mmdb else CountryLocator()


# ------------------------------------------------------------------ distances
# A box: (min_lon, min_lat, max_lon, max_lat) in degrees, as Natural Earth gives it.
Box = tuple[float, float, float, float]
_KM_PER_DEGREE: Final = 6371.0088 * math.pi / 180
_BOX_SAMPLES: Final = 24


@cache
def country_boxes(country: str) -> tuple[Box, ...]:
    """Bounding boxes of the parts of `country` (ISO alpha-2); empty when unknown."""
    import country_bounding_boxes  # type: ignore[import-untyped]

    try:
        parts = country_bounding_boxes.country_subunits_by_iso_code(country)
    except (KeyError, ValueError):  # pragma: no cover - the package raises none today
        return ()
    return tuple(tuple(float(v) for v in part.bbox) for part in parts)  # type: ignore[misc]


def _point_to_box_km(lat: float, lon: float, box: Box) -> float:
    """Great-circle distance from a point to the nearest point of a lat/lon box."""
    min_lon, min_lat, max_lon, max_lat = box
    if min_lon <= lon <= max_lon:
        return max(0.0, min_lat - lat, lat - max_lat) * _KM_PER_DEGREE
    best = math.inf
    for meridian in (min_lon, max_lon):
        # The nearest point of a meridian to the point: tan(lat*) = tan(lat) / cos(dlon),
        # clamped to the edge (the distance is unimodal along the meridian).
        dlon = math.radians(lon - meridian)
        candidates = [min_lat, max_lat]
        if math.cos(dlon) > 0:
            nearest = math.degrees(math.atan(math.tan(math.radians(lat)) / math.cos(dlon)))
            candidates.append(min(max_lat, max(min_lat, nearest)))
        for edge_lat in candidates:
            best = min(best, haversine_km(lat, lon, edge_lat, meridian))
    return best


def _box_to_box_km(a: Box, b: Box) -> float:
    """A lower bound of the distance between two boxes: 0 when they overlap, otherwise the
    distance from points along a's edges to b, less half the spacing between those points."""
    if a[0] <= b[2] and b[0] <= a[2] and a[1] <= b[3] and b[1] <= a[3]:
        return 0.0
    min_lon, min_lat, max_lon, max_lat = a
    step_lon = (max_lon - min_lon) / _BOX_SAMPLES
    step_lat = (max_lat - min_lat) / _BOX_SAMPLES
    spacing = max(step_lon, step_lat) * _KM_PER_DEGREE
    best = math.inf
    for i in range(_BOX_SAMPLES + 1):
        lon = min_lon + i * step_lon
        lat = min_lat + i * step_lat
        for point_lat, point_lon in (
            (min_lat, lon),
            (max_lat, lon),
            (lat, min_lon),
            (lat, max_lon),
        ):
            best = min(best, _point_to_box_km(point_lat, point_lon, b))
    return max(0.0, best - spacing / 2)


@lru_cache(maxsize=65_536)  # every pair of countries fits
def _country_to_country_km(a_country: str, b_country: str) -> float:
    """The least distance between two countries' shapes: a pure function of the two codes,
    worked out once per pair (it samples the boxes' edges: 0.3 to 3 ms a pair, which a
    platform whose logins carry no position paid at every login from another country)."""
    boxes_a, boxes_b = country_boxes(a_country), country_boxes(b_country)
    if not boxes_a or not boxes_b:
        return 0.0
    return min(_box_to_box_km(box_a, box_b) for box_a in boxes_a for box_b in boxes_b)


def min_distance_km(
    a_lat: float, a_lon: float, a_country: str, a_coarse: bool,
    b_lat: float, b_lon: float, b_country: str, b_coarse: bool,
) -> float:  # fmt: skip
    """The least distance two positions can be apart. A coarse position (known only to its
    country) stands for the whole country; one country is never travel at that precision;
    a country Daylight has no shape for gives 0 (no claim rather than a false one)."""
    if not a_coarse and not b_coarse:
        return haversine_km(a_lat, a_lon, b_lat, b_lon)
    if a_country == b_country:
        return 0.0
    if a_coarse and b_coarse:
        return _country_to_country_km(a_country, b_country)
    if a_coarse:
        return _point_to_country_km(b_lat, b_lon, a_country)
    return _point_to_country_km(a_lat, a_lon, b_country)


@lru_cache(maxsize=65_536)  # positions recur: the platform locates logins to cities
def _point_to_country_km(lat: float, lon: float, country: str) -> float:
    boxes = country_boxes(country)
    if not boxes:
        return 0.0
    return min(_point_to_box_km(lat, lon, box) for box in boxes)
