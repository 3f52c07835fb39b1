"""Offline IP geolocation for events that arrive without `geo`.

Default: the country database shipped inside the geoip2fast package, placed at the country's
capital (a coarse position: logins within one country are never "far apart"). When
`DAYLIGHT_GEOIP_MMDB` names a MaxMind City database, its city coordinates are used instead.
"""

from __future__ import annotations

import ipaddress
import json
from dataclasses import dataclass
from functools import cache, lru_cache
from pathlib import Path
from typing import Any, Protocol

from schemas.events import Geo

__all__ = ["CountryLocator", "Locator", "MmdbLocator", "Place", "capital_of", "locator_for"]

_CAPITALS = Path(__file__).parent / "data" / "capitals.json"


@dataclass(frozen=True, slots=True)
class Place:
    country: str
    lat: float
    lon: float
    city: str | None
    precision: str  # "platform", "city" or "country"

    @classmethod
    def from_geo(cls, geo: Geo) -> Place:
        return cls(geo.country, geo.lat, geo.lon, geo.city, "platform")

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
