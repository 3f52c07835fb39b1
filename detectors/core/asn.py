"""Which network an IP address belongs to: its autonomous system, offline.

Default: the GeoLite2 ASN data shipped inside the geoip2fast package (organisation names, no AS
numbers; IPv4 and IPv6). It is read here into arrays of our own rather than through a
`GeoIP2Fast` object, whose tables are module globals: loading its ASN file would replace the
country tables geo_velocity's locator reads. `DAYLIGHT_ANONYMIZER_ASN_MMDB` selects a MaxMind
GeoLite2/GeoIP2 ASN database (`.mmdb`) instead, which gives the AS number too.
"""

from __future__ import annotations

import bisect
import gzip
import ipaddress
import pickle
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Protocol

__all__ = ["AsnLookup", "MmdbAsnDatabase", "Network", "PackagedAsnDatabase", "asn_lookup_for"]


@dataclass(frozen=True, slots=True)
class Network:
    """The autonomous system an address belongs to: its number when known, its organisation."""

    asn: int | None
    org: str


class AsnLookup(Protocol):
    def network(self, ip: str) -> Network | None:
        """The address's autonomous system, or None (private, unallocated, unknown)."""


class PackagedAsnDatabase:
    """geoip2fast's GeoLite2 ASN tables (`geoip2fast-asn-ipv6.dat.gz`), read once."""

    FILE = "geoip2fast-asn-ipv6.dat.gz"

    def __init__(self, path: Path | None = None) -> None:
        if path is None:
            import geoip2fast

            path = Path(geoip2fast.__file__).parent / self.FILE
        with gzip.open(path, "rb") as handle:
            version, info, _, tables = pickle.load(handle)  # the package's own data file
        if version not in (120, 121) or not (info.get("asn") and info.get("country")):
            raise ValueError(f"{path}: not a geoip2fast country+ASN data file")
        # (index, index ASN, country names, ASN names, first IPs, first IPs ASN, country ids,
        # ASN ids, net lengths, net lengths ASN): only the ASN half is kept.
        _, self._index, _, self._names, _, self._first, _, self._ids, _, self._netlen = tables
        self._v6 = self._index[-1] >= 2**32
        self.source: str = str(info.get("info", ""))

    @lru_cache(maxsize=65_536)  # noqa: B019 - one database per process, kept for its life
    def network(self, ip: str) -> Network | None:
        try:
            address = ipaddress.ip_address(ip)
        except ValueError:
            return None
        if not address.is_global:
            return None
        value = int(address)
        root = bisect.bisect_right(self._index, value) - 1
        if root < 0:
            return None
        firsts = self._first[root]
        chunk = bisect.bisect_right(firsts, value) - 1
        if chunk < 0:
            return None
        first, netlen = firsts[chunk], self._netlen[root][chunk]
        bits = 128 if self._v6 else 32
        if value > first + 2 ** (bits - netlen) - 1:
            return None
        name = self._names[self._ids[root][chunk]]
        return Network(None, str(name)) if name else None


class MmdbAsnDatabase:
    """A MaxMind GeoLite2/GeoIP2 ASN database (`.mmdb`)."""

    def __init__(self, path: Path) -> None:
        import maxminddb

        self._reader: Any = maxminddb.open_database(str(path))

    def network(self, ip: str) -> Network | None:
        try:
            record = self._reader.get(ip)
        except ValueError:
            return None
        if not isinstance(record, dict):
            return None
        number = record.get("autonomous_system_number")
        org = record.get("autonomous_system_organization") or ""
        if number is None and not org:
            return None
        return Network(int(number) if number is not None else None, str(org))


@lru_cache(maxsize=4)
def asn_lookup_for(mmdb: Path | None) -> AsnLookup:
    """The configured ASN database, loaded once per process."""
    return MmdbAsnDatabase(mmdb) if mmdb else PackagedAsnDatabase()
