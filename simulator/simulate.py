"""A synthetic platform with known answers: benign users with the traps that fool naive
detectors, and DPRK IT-worker teams as the advisory and the defector describe them.

Deterministic for a seed. Writes contract events and the ground truth: which accounts belong to
which team and which red flags each was made to show.
"""

from __future__ import annotations

import ipaddress
import random
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from detectors.core.base import haversine_km

__all__ = ["FLAGS", "TRAP_FLAGS", "World", "lines", "simulate"]

START = datetime.fromisoformat("2026-03-02T00:00:00+00:00")
FLAGS = (
    "geo_velocity",
    "shared_ip",
    "remote_access",
    "continuous_session",
    "payout_routing",
    "self_dealing",
    "rating_burst",
    "template_reuse",
    "bid_pattern",
    "anonymizer",
    "payout_holder_change",
    "crypto_payout",
    "shipping_mismatch",
    "unverified_activity",
    "working_hours",
)
# Each benign trap and the red flag it tests: a benign account named by a detector is explained
# only by a trap for that detector's flag (`daylight evaluate`'s "benign, no trap").
TRAP_FLAGS: dict[str, tuple[str, ...]] = {
    "login_without_geo": ("geo_velocity",),
    "real_flight": ("geo_velocity",),
    "carrier_ip_nearby": ("geo_velocity",),
    "vpn_travel": ("geo_velocity",),
    "shared_home_connection": ("shared_ip",),
    "coworking_ip": ("shared_ip",),
    "video_call_tools": ("remote_access",),
    "it_support_anydesk": ("remote_access",),
    "long_human_day": ("continuous_session",),
    "bank_name_spelling": ("payout_routing",),
    "one_processor": ("payout_routing",),
    "processor_route": ("payout_routing",),
    "china_based_paid_in_china": ("payout_routing",),
    "crypto_payout": ("crypto_payout",),
    "new_bank_own_name": ("payout_holder_change",),
    "move_within_country": ("shipping_mismatch",),
    "flatmates_address": ("shipping_mismatch",),
    "verified_before_first_bid": ("unverified_activity",),
    "night_owl": ("working_hours",),
    "own_payment_account": ("self_dealing",),
    "agency_two_ratings": ("rating_burst",),
    "steady_client_ratings": ("rating_burst",),
    "short_common_greeting": ("template_reuse",),
    "busy_newcomer": ("bid_pattern",),
    "corporate_vpn": ("anonymizer",),
}
# Platforms whose edge enriches only some traffic send this share of logins without `geo`.
UNENRICHED_SHARE = 0.15


@dataclass(frozen=True)
class City:
    name: str
    country: str
    lat: float
    lon: float
    utc_offset: int  # hours, for working rhythms


CITIES = [
    City("New York", "US", 40.71, -74.01, -5), City("Dallas", "US", 32.78, -96.80, -6),
    City("Seattle", "US", 47.61, -122.33, -8), City("Chicago", "US", 41.88, -87.63, -6),
    City("Toronto", "CA", 43.65, -79.38, -5), City("London", "GB", 51.51, -0.13, 0),
    City("Berlin", "DE", 52.52, 13.40, 1), City("Paris", "FR", 48.86, 2.35, 1),
    City("Madrid", "ES", 40.42, -3.70, 1), City("Warsaw", "PL", 52.23, 21.01, 1),
    City("Kyiv", "UA", 50.45, 30.52, 2), City("Lagos", "NG", 6.52, 3.38, 1),
    City("Nairobi", "KE", -1.29, 36.82, 3), City("Bengaluru", "IN", 12.97, 77.59, 5),
    City("Manila", "PH", 14.60, 120.98, 8), City("Sao Paulo", "BR", -23.55, -46.63, -3),
    City("Buenos Aires", "AR", -34.60, -58.38, -3), City("Mexico City", "MX", 19.43, -99.13, -6),
    City("Sydney", "AU", -33.87, 151.21, 10), City("Tokyo", "JP", 35.68, 139.69, 9),
    City("Shanghai", "CN", 31.23, 121.47, 8), City("Shenzhen", "CN", 22.54, 114.06, 8),
]  # fmt: skip
ZONES = {  # what each city's people declare as their time zone
    "New York": "America/New_York", "Dallas": "America/Chicago", "Seattle": "America/Los_Angeles",
    "Chicago": "America/Chicago", "Toronto": "America/Toronto", "London": "Europe/London",
    "Berlin": "Europe/Berlin", "Paris": "Europe/Paris", "Madrid": "Europe/Madrid",
    "Warsaw": "Europe/Warsaw", "Kyiv": "Europe/Kyiv", "Lagos": "Africa/Lagos",
    "Nairobi": "Africa/Nairobi", "Bengaluru": "Asia/Kolkata", "Manila": "Asia/Manila",
    "Sao Paulo": "America/Sao_Paulo", "Buenos Aires": "America/Argentina/Buenos_Aires",
    "Mexico City": "America/Mexico_City", "Sydney": "Australia/Sydney", "Tokyo": "Asia/Tokyo",
    "Shanghai": "Asia/Shanghai", "Shenzhen": "Asia/Shanghai",
}  # fmt: skip
LEAK_PLACES = [  # where a team's second device gives it away
    City("Shenyang", "CN", 41.80, 123.43, 8), City("Dandong", "CN", 40.00, 124.35, 8),
    City("Pyongyang", "KP", 39.02, 125.75, 9), City("Vladivostok", "RU", 43.12, 131.89, 10),
]  # fmt: skip
TEAM_ZONE = "America/New_York"  # what the borrowed US identities declare
FARM_PLACES = [City("Dallas", "US", 32.78, -96.80, -6), City("Phoenix", "US", 33.45, -112.07, -7),
               City("Atlanta", "US", 33.75, -84.39, -5)]  # fmt: skip
VPN_EXITS = [City("Amsterdam", "NL", 52.37, 4.90, 1), City("Frankfurt", "DE", 50.11, 8.68, 1),
             City("Ashburn", "US", 39.04, -77.49, -5), City("Singapore", "SG", 1.35, 103.82, 8)]  # fmt: skip

# The networks the teams' VPN exits sit in (commercial VPN providers' hosting), and the cloud
# network a company's own VPN concentrator runs in: what the platform's enrichment names.
VPN_NETWORKS = [{"asn": 9009, "as_org": "M247 Europe SRL"}, {"asn": 60068, "as_org": "Datacamp Limited"},
                {"asn": 136787, "as_org": "TEFINCOM S.A."}]  # fmt: skip
CORPORATE_VPN = {"asn": 16509, "as_org": "AMAZON-02"}

FIRST = ["James", "Maria", "Wei", "Olga", "Ahmed", "Sofia", "Daniel", "Aisha", "Lucas", "Emma",
         "Chen", "Priya", "Mateo", "Anna", "Kwame", "Yuki", "Ivan", "Laura", "Omar", "Julia",
         "José", "Zoë", "Renée", "Ángel", "François", "Łukasz", "Søren", "Jürgen"]  # fmt: skip
LAST = ["Smith", "Garcia", "Li", "Ivanova", "Hassan", "Rossi", "Miller", "Okafor", "Silva",
        "Johnson", "Wang", "Sharma", "Lopez", "Novak", "Mensah", "Sato", "Petrov", "Martin",
        "Núñez", "Müller", "Kowalski", "Brown", "Davis", "Wilson"]  # fmt: skip
FACILITATORS = ["Christina Walker", "Robert Hayes", "Linda Brooks", "Kevin Price"]


@dataclass
class World:
    events: list[dict[str, Any]] = field(default_factory=list)
    teams: dict[str, list[str]] = field(default_factory=dict)
    flags: dict[str, list[str]] = field(default_factory=dict)  # team identity -> red flags shown
    benign: list[str] = field(default_factory=list)
    traps: dict[str, list[str]] = field(default_factory=dict)  # benign account -> traps it sets

    def truth(self) -> dict[str, Any]:
        return {
            "teams": self.teams,
            "identities": {a: sorted(f) for a, f in sorted(self.flags.items())},
            "benign": sorted(self.benign),
            "traps": {a: sorted(t) for a, t in sorted(self.traps.items())},
            "flags": list(FLAGS),
            "trap_flags": {trap: list(flags) for trap, flags in sorted(TRAP_FLAGS.items())},
        }


class _Builder:
    def __init__(self, seed: int, days: int) -> None:
        self.rng = random.Random(seed)
        self.days = days
        self.world = World()
        self._ids = 0
        self._ips = 0
        self.home_ips: list[str] = []
        self._ip_rng = random.Random(seed * 7919 + 1)
        self._public: dict[tuple[str, str], str] = {}
        self._geoip: Any = None
        self.coworking: dict[int, tuple[str, int]] = {}
        self.roles: dict[str, str] = {}
        self.personas: dict[str, str] = {}  # how a benign freelancer introduces themself
        self.collector_payers: dict[str, list[str]] = {}  # team -> accounts paid into it
        # The marketplace draws from its own generator, so that adding it left the rest of a
        # seed's world as it was.
        self.market = random.Random(seed * 104_729 + 3)
        self._asn: Any = None
        # Money, shipping, verification and hours (issue 16) draw from their own generator too.
        self.extra = random.Random(seed * 15_485_863 + 5)
        self.homes: dict[str, str] = {}  # benign account -> its home country

    def public_ip(self, holder: str, country: str) -> str:
        """A public address the offline country database places in `country`, one per holder
        and country: what a platform that enriches only some of its traffic sends without
        `geo`, leaving Daylight to locate it by country alone."""
        key = (holder, country)
        if key not in self._public:
            if self._geoip is None:
                from geoip2fast import GeoIP2Fast

                self._geoip = GeoIP2Fast(verbose=False)
            taken = set(self._public.values())
            while True:  # seeded, so a world is the same for a seed
                address = str(ipaddress.IPv4Address(self._ip_rng.getrandbits(32)))
                if address in taken or not ipaddress.ip_address(address).is_global:
                    continue
                if self._geoip.lookup(address).country_code != country:
                    continue
                if self._anonymizing(address):  # a home address, not a server's
                    continue
                self._public[key] = address
                break
        return self._public[key]

    def _anonymizing(self, address: str) -> bool:
        if self._asn is None:
            from detectors.anonymizer import NetworkList
            from detectors.core.asn import PackagedAsnDatabase
            from detectors.models.anonymizer import NETWORKS_FILE

            self._asn = (PackagedAsnDatabase(), NetworkList.load(NETWORKS_FILE))
        database, listed = self._asn
        network = database.network(address)
        return network is not None and listed.kind(network, listed.keywords) is not None

    def ip(self) -> str:
        """A fresh address from 198.18.0.0/15 (benchmarking range): never a real host."""
        self._ips += 1
        return f"198.{18 + (self._ips >> 16) % 2}.{(self._ips >> 8) & 255}.{self._ips & 255}"

    def emit(self, kind: str, at: datetime, account: str, **fields: Any) -> None:
        self._ids += 1
        self.world.events.append(
            {
                "schema_version": 1,
                "event_id": f"sim-{self._ids}",
                "type": kind,
                "occurred_at": at.strftime("%Y-%m-%dT%H:%M:%SZ"),
                "account_id": account,
                **fields,
            }
        )

    def geo(self, city: City, jitter_km: float = 0.0) -> dict[str, Any]:
        dlat = self.rng.uniform(-1, 1) * jitter_km / 111.0
        dlon = self.rng.uniform(-1, 1) * jitter_km / 111.0
        return {"country": city.country, "lat": round(city.lat + dlat, 4),
                "lon": round(city.lon + dlon, 4), "city": city.name}  # fmt: skip

    def name(self) -> str:
        return f"{self.rng.choice(FIRST)} {self.rng.choice(LAST)}"

    # ------------------------------------------------------------------ shared behaviours
    def profile(self, account: str, role: str, country: str, legal: str | None, doc: str,
                zone: str | None = None, created: datetime | None = None,
                verified_after: timedelta = timedelta(hours=2)) -> datetime:  # fmt: skip
        """The account's creation and verification; returns when it was verified."""
        at = START - timedelta(days=self.rng.randint(30, 400))
        at = created or at
        self.roles[account] = role
        self.emit("account_created", at, account, role=role, declared_country=country,
                  declared_timezone=zone)  # fmt: skip
        if legal:
            self.emit("identity_verified", at + verified_after, account, legal_name=legal,
                      document_country=doc, address_fingerprint=f"addr-{account}")  # fmt: skip
        return at + verified_after

    def workday(self, account: str, day: int, city: City, ip: str, hours: float,
                connection: dict[str, Any] | None = None, start_local: float | None = None,
                geo: dict[str, Any] | None = None, every: int = 15,
                unenriched: float = 0.0, network: dict[str, Any] | None = None) -> bool:  # fmt: skip
        """A working session; True when its login came without `geo` (`unenriched` share).
        `network`: the AS the platform's enrichment names for the login's address."""
        local_start = start_local if start_local is not None else self.rng.uniform(8, 10.5)
        begin = START + timedelta(days=day, hours=local_start - city.utc_offset)
        session = f"s-{account}-{day}-{int(local_start)}"
        bare = self.rng.random() < unenriched
        if bare:
            ip = self.public_ip(account, city.country)
        self.emit("login", begin, account, ip=ip, session_id=session, device_id=f"d-{account}",
                  geo=None if bare else {**(geo or self.geo(city, 5)), **(network or {})})  # fmt: skip
        self.emit("session_start", begin + timedelta(seconds=20), account, session_id=session,
                  ip=ip, connection=connection)  # fmt: skip
        beats = int(hours * 60 / every)
        for beat in range(1, beats + 1):
            self.emit("session_heartbeat", begin + timedelta(minutes=every * beat), account,
                      session_id=session, ip=ip, connection=connection)  # fmt: skip
        end = begin + timedelta(minutes=every * beats + 1)
        self.emit("session_end", end, account, session_id=session, ip=ip)
        self.emit("logout", end + timedelta(seconds=5), account, ip=ip, session_id=session)
        return bare

    def payout(self, account: str, at: datetime, destination: dict[str, Any],
               route: list[dict[str, str]], method: str = "bank", currency: str = "USD",
               rng: random.Random | None = None) -> None:  # fmt: skip
        payout_id = f"po-{account}-{self._ids}"
        amount = f"{(rng or self.rng).randint(300, 4000)}.00"
        for kind, delay in (("payout_requested", 0), ("payout_sent", 3)):
            self.emit(kind, at + timedelta(hours=delay), account, payout_id=payout_id,
                      amount=amount, currency=currency, method=method,
                      destination=destination, route=route)  # fmt: skip


def _benign(b: _Builder, index: int) -> None:
    rng = b.rng
    account = f"user-{index:04d}"
    world = b.world
    world.benign.append(account)
    traps: list[str] = []
    city = rng.choice(CITIES)
    role = "client" if index % 5 == 0 else "freelancer"
    legal = b.name()
    extra = b.extra
    # A newcomer verified the morning it first bids, minutes before the bid.
    fresh = role == "freelancer" and index % 47 == 13
    verified_at = b.profile(account, role, city.country, legal, city.country,
                            zone=ZONES.get(city.name),
                            created=START + timedelta(minutes=5) if fresh else None,
                            verified_after=timedelta(minutes=15) if fresh else timedelta(hours=2))  # fmt: skip
    if fresh:
        traps.append("verified_before_first_bid")
        b.emit("bid_submitted", START + timedelta(minutes=25), account,
               job_id=f"job-first-{account}", text=None)  # fmt: skip
    b.homes[account] = city.country
    b.personas[account] = f"{legal.split(' ')[0]}, a developer based in {city.name}"
    home_ip = b.ip()
    if index % 17 == 1 and index > 1:  # shares a home connection with the previous user
        home_ip = b.home_ips[-1]
        traps.append("shared_home_connection")
        flatmate = f"user-{index - 1:04d}"
        if b.homes.get(flatmate) == city.country:  # and the flat: laptops are shipped there
            moved = START + timedelta(days=extra.uniform(0, b.days - 1))
            for person in (flatmate, account):
                b.emit("shipping_address_changed", moved, person,
                       address_fingerprint=f"flat-{index}", country=city.country)  # fmt: skip
            world.traps[flatmate] = sorted({*world.traps.get(flatmate, []), "flatmates_address"})
            traps.append("flatmates_address")
    b.home_ips.append(home_ip)
    traveller = index % 13 == 2
    # Works through the night, every night, in Europe: 21:00-04:00 local.
    night_owl = (role == "freelancer" and index % 23 == 11 and city.utc_offset in (0, 1, 2)
                 and not traveller)  # fmt: skip
    if night_owl:
        traps.append("night_owl")
    if index % 10 == 7:  # moves within the country the identity document is from
        b.emit("shipping_address_changed", START + timedelta(days=extra.uniform(0, b.days)),
               account, address_fingerprint=f"ship-{account}", country=city.country)  # fmt: skip
        traps.append("move_within_country")
    abroad_ip = b.ip()
    long_day = rng.randrange(b.days) if index % 11 == 3 else -1
    video = index % 4 == 0
    phone = index % 7 == 4
    if video:
        traps.append("video_call_tools")
    if long_day >= 0:
        traps.append("long_human_day")
    # A company VPN used for months: every login from home goes out through its concentrator
    # in a cloud network (the anonymizer flag itself, at low severity, for the case to weigh).
    corporate = _weak_name(index) == "corporate_vpn"
    connection = {"src_port": rng.randint(40000, 60000), "open_ports": [],
                  "rdp_session": False, "remote_tools": ["zoom", "teams"] if video else []}  # fmt: skip
    # A traveller flies from home to another city one morning and works from there after.
    flight_day = rng.randrange(1, b.days) if traveller else b.days
    abroad = rng.choice([c for c in CITIES if c.country != city.country])
    for day in range(b.days):
        here, ip = (abroad, abroad_ip) if day > flight_day else (city, home_ip)
        if day == flight_day + 1:
            continue  # jet lag: the day after a flight is a day off
        if day == flight_day:
            departure = START + timedelta(days=day, hours=6 - city.utc_offset)
            b.emit("login", departure, account, ip=b.ip(), geo=b.geo(city, 10))
            hours_in_air = haversine_km(city.lat, city.lon, abroad.lat, abroad.lon) / 750 + 1
            arrival = departure + timedelta(hours=hours_in_air + rng.uniform(0.5, 2))
            b.emit("login", arrival, account, ip=abroad_ip, geo=b.geo(abroad, 10))
            traps.append("real_flight")
            continue
        if rng.random() < 0.2 and day != long_day and not night_owl:
            continue  # a day off
        hours = rng.uniform(14, 16) if day == long_day else rng.uniform(5, 9)
        if role == "client":
            hours = rng.uniform(0.5, 2)
        start = rng.uniform(8, 10.5)
        if night_owl:
            hours, start = 7.0, 21.0
        network = CORPORATE_VPN if corporate and day <= flight_day else None
        if b.workday(account, day, here, ip, hours, connection, start_local=start,
                     unenriched=UNENRICHED_SHARE,
                     network=network):  # fmt: skip
            traps.append("login_without_geo")
        if rng.random() < 0.3:  # a second device minutes later, through an edge that may not
            # enrich it: located by its IP's country alone, in the same country
            at = START + timedelta(days=day, hours=10.5 - here.utc_offset,
                                   minutes=rng.randint(1, 10))  # fmt: skip
            bare = rng.random() < 0.5
            b.emit("login", at, account, ip=b.public_ip(account, here.country) if bare else ip,
                   device_id=f"tablet-{account}", geo=None if bare else b.geo(here, 5))  # fmt: skip
            if bare:
                traps.append("login_without_geo")
        if phone and day % 2 == 0:  # the phone's carrier IP is placed tens of km away
            at = START + timedelta(days=day, hours=19 - here.utc_offset)
            b.emit("login", at, account, ip=b.ip(), device_id=f"phone-{account}",
                   geo=b.geo(here, 60))  # fmt: skip
            traps.append("carrier_ip_nearby")
    if role == "freelancer":
        at = START + timedelta(days=rng.randrange(b.days), hours=rng.uniform(0, 23))
        holder = legal
        if index % 3 == 0:  # the bank's spelling: upper case, accents dropped, surname first
            first, last = legal.split(" ", 1)
            holder = f"{last} {first}".upper()
            traps.append("bank_name_spelling")
        route: list[dict[str, str]] = []
        if index % 6 == 1:
            route = [{"name": "Payoneer Inc", "country": "US"}]
            traps.append("one_processor")
        if city.country == "CN":
            traps.append("china_based_paid_in_china")
        own = {"fingerprint": f"acct-{account}", "holder_name": holder, "country": city.country,
               "institution": "Local Bank"}  # fmt: skip
        b.emit("payout_method_changed", verified_at + timedelta(days=1), account, destination=own)
        b.payout(account, at, own, route)
        if index % 9 == 6:  # a new bank, in one's own name as that bank spells it
            first, last = legal.split(" ", 1)
            plain = unicodedata.normalize("NFKD", f"{last} {first}").encode("ascii", "ignore")
            moved = START + timedelta(days=extra.uniform(0, b.days))
            b.emit("payout_method_changed", moved, account,
                   destination={**own, "fingerprint": f"acct2-{account}",
                                "holder_name": plain.decode().upper(), "institution": "New Bank"})  # fmt: skip
            traps.append("new_bank_own_name")
    weak = _weak_signal(b, index, account, city, role)
    if weak:
        traps.append(weak)
    if traps:
        world.traps[account] = sorted(set(traps))


# One weak red flag, the way real people show one (by account index, at most one each):
# the case threshold must not open a case on any of them.
WEAK_SIGNALS = (
    ("coworking_ip", 37, (11, 12, 13)),  # three freelancers at one coworking space: shared_ip
    ("vpn_travel", 23, 5),  # a VPN exit abroad minutes after a login at home: geo_velocity
    ("it_support_anydesk", 29, 7),  # IT support over AnyDesk once: remote_access
    ("processor_route", 41, 13),  # paid through two processors: payout_routing
    ("crypto_payout", 43, 17),  # paid in crypto, in their own name
    ("corporate_vpn", 19, 6),  # logs in through the employer's VPN, in a cloud network
)


def _weak_name(index: int) -> str | None:
    chosen = [
        name
        for name, modulus, residues in WEAK_SIGNALS
        if index % modulus in (residues if isinstance(residues, tuple) else (residues,))
    ]
    return chosen[0] if chosen else None


def _weak_signal(b: _Builder, index: int, account: str, city: City, role: str) -> str | None:
    rng = b.rng
    name = _weak_name(index)
    if name is None:
        return None
    if name == "corporate_vpn":
        return name  # its logins are the account's own (`_benign`)
    day = rng.randrange(b.days)
    at = START + timedelta(days=day, hours=12 - city.utc_offset, minutes=rng.randint(0, 50))
    if name == "vpn_travel":
        exit_city = rng.choice([c for c in VPN_EXITS if c.country != city.country])
        b.emit("login", at, account, ip=b.ip(), device_id=f"d-{account}", geo=b.geo(city, 5))
        b.emit("login", at + timedelta(minutes=rng.randint(5, 30)), account, ip=b.ip(),
               device_id=f"d-{account}", geo=b.geo(exit_city, 2))  # fmt: skip
    elif name == "it_support_anydesk":
        b.emit("session_start", at, account, session_id=f"support-{account}", ip=b.ip(),
               connection={"src_port": rng.randint(40000, 60000), "open_ports": [],
                           "rdp_session": False, "remote_tools": ["anydesk"]})  # fmt: skip
    elif name == "coworking_ip":
        group = index // 37
        if group not in b.coworking:
            b.coworking[group] = (b.ip(), rng.randrange(b.days))
        ip, shared_day = b.coworking[group]
        when = START + timedelta(days=shared_day, hours=10 - city.utc_offset,
                                 minutes=rng.randint(0, 240))  # fmt: skip
        b.emit("login", when, account, ip=ip, device_id=f"d-{account}", geo=b.geo(city, 5))
    elif role == "freelancer":
        holder = {"fingerprint": f"extra-{account}", "holder_name": None, "country": None,
                  "institution": None}  # fmt: skip
        if name == "processor_route":
            b.payout(account, at, {**holder, "country": city.country}, [
                {"name": "Payoneer Inc", "country": "US"},
                {"name": "Wise Europe SA", "country": "BE"},
            ], "payoneer")  # fmt: skip
        else:
            b.payout(account, at, holder, [], "crypto", "USD")  # a stablecoin
    else:
        return None
    return name


def _team(b: _Builder, team_index: int, identities: int) -> None:
    """A team of about ten workers, each running borrowed Western identities."""
    rng = b.rng
    team = f"team-{team_index + 1}"
    exits = [(c, b.ip()) for c in rng.sample(VPN_EXITS, 2)]
    networks = [VPN_NETWORKS[(team_index + k) % len(VPN_NETWORKS)] for k in range(len(exits))]
    farm = rng.choice(FARM_PLACES)
    farm_ip = b.ip()
    leak_place = rng.choice(LEAK_PLACES)
    collector = f"collector-{team}"
    accounts = []
    farm_users: list[str] = []
    extra = b.extra
    for n in range(identities):
        account = f"user-{9000 + team_index * 100 + n:04d}"  # indistinguishable naming
        accounts.append(account)
        flags = {"shared_ip", "anonymizer"}
        borrowed = b.name()
        # The team's own client account, which hires and rates its freelancers (`_market`).
        is_client = identities >= 3 and n == identities - 1
        # Some identities are new: worked (bidding) from the day they are opened, verified days
        # later.
        fresh = not is_client and n % 5 == 4
        verified_at = b.profile(
            account, "client" if is_client else "freelancer", "US", borrowed, "US",
            zone=TEAM_ZONE, created=START + timedelta(minutes=10 + n) if fresh else None,
            verified_after=timedelta(days=2, hours=extra.uniform(0, 6)) if fresh
            else timedelta(hours=2),
        )  # fmt: skip
        if fresh:
            flags.add("unverified_activity")
        # Some work their own day in UTC+8, whatever the profile says (the others keep to US
        # hours through the VPN); it shows once a week of days has been seen.
        asia_hours = n % 3 == 1
        if asia_hours and b.days >= 7:
            flags.add("working_hours")
        exit_city, exit_ip = exits[n % len(exits)]
        exit_network = networks[n % len(exits)]
        uses_farm = n % 3 != 2
        shifts = n % 2 == 0
        leaks = n % 3 != 1
        if uses_farm:
            flags.add("remote_access")
        if shifts:
            flags.add("continuous_session")
        if leaks:
            flags.add("geo_velocity")
        rdp = {"src_port": rng.randint(40000, 60000), "open_ports": [3389] if n % 2 else [],
               "rdp_session": n % 2 == 0, "remote_tools": ["anydesk"] if n % 2 else []}  # fmt: skip
        plain = {"src_port": rng.randint(40000, 60000), "open_ports": [], "rdp_session": False,
                 "remote_tools": []}  # fmt: skip
        for day in range(b.days):
            # Logins through the team's VPN exit, working US hours from Asia.
            hours, start = rng.uniform(7, 9), rng.uniform(8, 9)
            if asia_hours:  # 09:00-10:00 in UTC+8, as the exit city's clock reads it
                start += exit_city.utc_offset - 7
            b.workday(account, day, exit_city, exit_ip, hours, plain, geo=b.geo(exit_city, 2),
                      start_local=start, network=exit_network)  # fmt: skip
            if uses_farm and day % 2 == 0:
                b.workday(account, day, farm, farm_ip, rng.uniform(2, 3), rdp,
                          geo=b.geo(farm, 3), start_local=rng.uniform(18.5, 21))  # fmt: skip
            if leaks and day % 3 == 1:
                at = START + timedelta(days=day, hours=8.6 - exit_city.utc_offset)
                leak_ip = b.ip()
                leak_geo: dict[str, Any] | None = b.geo(leak_place, 20)
                if leak_place.country != "KP" and rng.random() < UNENRICHED_SHARE:
                    leak_ip, leak_geo = b.public_ip(f"{team}-{n}", leak_place.country), None
                b.emit("login", at + timedelta(minutes=rng.randint(20, 50)), account,
                       ip=leak_ip, device_id=f"phone-{team}-{n}", geo=leak_geo)  # fmt: skip
        if shifts:  # the identity is worked in shifts: 26 hours without a break
            day = rng.randrange(max(1, b.days - 2))
            begin = START + timedelta(days=day, hours=12)
            session = f"shift-{account}"
            b.emit("session_start", begin, account, session_id=session, ip=exit_ip,
                   connection=plain)  # fmt: skip
            for beat in range(1, 26 * 6 + 1):
                b.emit("session_heartbeat", begin + timedelta(minutes=10 * beat), account,
                       session_id=session, ip=exit_ip, connection=plain)  # fmt: skip
        if n % 4 != 3 and not is_client:
            flags.add("payout_routing")
            at = START + timedelta(days=rng.randrange(b.days), hours=rng.uniform(0, 23))
            # A new identity is paid once verified: the payout is judged against that name.
            at = max(at, verified_at + timedelta(hours=12))
            style = n % 4
            if style == 0:  # to China through intermediaries
                b.payout(account, at, {"fingerprint": f"cn-{team}-{n}", "holder_name": borrowed,
                                       "country": "CN", "institution": "Bank of Dandong"},
                         [{"name": "Star Trading Ltd", "country": "HK"},
                          {"name": "Golden Bridge Co", "country": "CN"}])  # fmt: skip
            elif style == 1:  # into the team's collector account
                b.payout(account, at, {"fingerprint": collector, "holder_name": None,
                                       "country": None, "institution": None}, [], "payoneer")  # fmt: skip
            else:  # to a facilitator's account under another name, switched to just before
                facilitator = {"fingerprint": f"fac-{team}-{n}",
                               "holder_name": rng.choice(FACILITATORS), "country": "US",
                               "institution": "Chase"}  # fmt: skip
                b.payout(account, at, facilitator, [])
                _own_bank(b, account, borrowed, verified_at, team, n)
                switched = at - timedelta(hours=2)
                if switched > verified_at + timedelta(hours=6):
                    b.emit("payout_method_changed", switched, account, destination=facilitator)
                    flags.add("payout_holder_change")
        if n % 4 == 3 and not is_client:  # paid in crypto from the week on: a wallet replaces
            own_at = _own_bank(b, account, borrowed, verified_at, team, n)  # the own-name bank
            switched = START + timedelta(days=extra.uniform(0, max(0.5, b.days - 2)))
            if switched > own_at:
                wallet = {"fingerprint": f"wallet-{team}-{n}", "holder_name": None,
                          "country": None, "institution": "Binance"}  # fmt: skip
                b.emit("payout_method_changed", switched, account, destination=wallet)
                for delay in (12, 36):
                    b.payout(account, switched + timedelta(hours=delay), wallet, [], "crypto",
                             "USD", rng=extra)  # fmt: skip
                flags.add("crypto_payout")
        # Laptops go to the team's farm, or for some to an address in China.
        shipped = START + timedelta(days=extra.uniform(0, max(0.5, b.days - 1)))
        if uses_farm:
            b.emit("shipping_address_changed", max(shipped, verified_at), account,
                   address_fingerprint=f"farm-{team}", country=farm.country)  # fmt: skip
            farm_users.append(account)
        elif n % 6 == 5 and shipped > verified_at:
            b.emit("shipping_address_changed", shipped, account,
                   address_fingerprint=f"abroad-{team}-{n}", country="CN")  # fmt: skip
            flags.add("shipping_mismatch")
        b.world.flags[account] = sorted(flags)
    if len(farm_users) >= 3:  # shipping_mismatch's farm_min_accounts
        for account in farm_users:
            b.world.flags[account] = sorted({*b.world.flags[account], "shipping_mismatch"})
    # A collector needs two payers: make sure the team has them.
    payers = [a for i, a in enumerate(accounts) if i % 4 == 1 and b.roles[a] == "freelancer"]
    if len(payers) == 1 and len(accounts) > 1:
        second = accounts[0]
        b.payout(second, START + timedelta(days=1, hours=3),
                 {"fingerprint": collector, "holder_name": None, "country": None,
                  "institution": None}, [], "payoneer")  # fmt: skip
        payers.append(second)
    b.collector_payers[team] = payers
    b.world.teams[team] = accounts


def _own_bank(b: _Builder, account: str, holder: str, verified_at: datetime, team: str,
              n: int) -> datetime:  # fmt: skip
    """The identity's first payout destination, in the borrowed name; when it was set."""
    at = verified_at + timedelta(hours=6)
    b.emit("payout_method_changed", at, account,
           destination={"fingerprint": f"own-{team}-{n}", "holder_name": holder,
                        "country": "US", "institution": "Chase"})  # fmt: skip
    return at


# Cover letters: each benign freelancer writes their own from these parts and adapts it a
# little per job; a team shares one template and edits a word or two. Everyone may open with
# the same short greeting.
GREETINGS = ["Hello,", "Hi there,", "Dear client,", "Good day,"]
OPENERS = [
    "I have {years} years of experience building {stack} applications for {sector} companies.",
    "As a {stack} developer with {years} years behind me, I focus on clean, tested code.",
    "I am a freelance {stack} engineer; my last {years} years were spent on {sector} products.",
    "Over {years} years I have shipped {stack} projects for startups and {sector} firms.",
]
MIDDLES = [
    "I read your brief carefully and can start with a short call to agree on milestones.",
    "My recent work includes a booking platform, an analytics dashboard and two mobile apps.",
    "I usually split the work into weekly deliveries so you can review progress early.",
    "I can share references from past clients and a portfolio of similar projects.",
    "I write documentation as I go and hand over everything with a recorded walkthrough.",
]
CLOSERS = ["Looking forward to hearing from you.", "Best regards.", "Thanks for your time.",
           "Happy to answer any questions."]  # fmt: skip
STACKS = ["React", "Python", "Node.js", "Flutter", "Java", "Go", "PHP", "Rust", "Vue"]
SECTORS = ["fintech", "health", "retail", "logistics", "media", "education", "travel"]
TEAM_TEMPLATES = (  # each team writes its own
    "Hello, I am a senior full stack developer with {years} years of experience in React, "
    "Node.js, Python and blockchain development. I have successfully completed more than "
    "{projects} projects for clients in the USA and Europe and I always deliver high quality "
    "work on time. I am available to start immediately and can work in your time zone. I "
    "would love to discuss your project in detail. Best regards.",
    "Dear hiring manager, as a senior software engineer with {years} years in web and mobile "
    "development I have delivered over {projects} successful projects using Java, Kotlin, "
    "Swift and AWS. I focus on clean architecture and I am available to start immediately, "
    "full time, in US hours. I would love to hear more about your needs. Kind regards.",
    "Hi, senior blockchain and backend developer here, {years} years of professional "
    "experience with Solidity, Rust, Go and Node.js, more than {projects} completed contracts "
    "with five star feedback. I can start immediately and I am flexible with your working "
    "hours. I would love to schedule a quick call to discuss the details. Thanks.",
)


PROJECTS = ["a booking system for dental clinics", "an inventory tool for a bakery chain",
            "a ticketing app for a football club", "a survey platform for a university",
            "a route planner for couriers", "a crowdfunding page for an NGO",
            "a price tracker for second-hand cars", "a rota app for nurses"]  # fmt: skip


def _letter(rng: random.Random, persona: str) -> str:
    """A freelancer's own cover letter: who they are in their own words, then the parts."""
    return " ".join(
        (rng.choice(GREETINGS), f"I am {persona}.",
         rng.choice(OPENERS).format(years=rng.randint(2, 15), stack=rng.choice(STACKS),
                                    sector=rng.choice(SECTORS)),
         f"Most recently I built {rng.choice(PROJECTS)}.",
         *rng.sample(MIDDLES, 2), rng.choice(CLOSERS))
    )  # fmt: skip


SHORT_GREETING = "Hello, I am interested in this job. Please check my profile."


def _team_letter(rng: random.Random, team: int) -> str:
    template = TEAM_TEMPLATES[team % len(TEAM_TEMPLATES)]
    text = template.format(years=rng.choice([7, 8, 9, 10]), projects=rng.choice([50, 60, 80]))
    swaps = [("senior", "experienced"), ("would love", "would like"), ("immediately", "right away")]
    for before, after in rng.sample(swaps, rng.randint(0, 1)):
        text = text.replace(before, after)
    return text


def _market(b: _Builder) -> None:
    """Jobs, bids, acceptances, contracts, ratings and clients' payment instruments, for
    everyone; the teams' mass bidding, and their own client hiring and rating them."""
    rng, world = b.market, b.world
    end = START + timedelta(days=b.days)
    benign_clients = [a for a in world.benign if b.roles.get(a) == "client"]
    benign_freelancers = [a for a in world.benign if b.roles.get(a) == "freelancer"]
    team_freelancers = [a for team in world.teams.values() for a in team
                        if b.roles[a] == "freelancer"]  # fmt: skip
    team_of = {a: number for number, team in enumerate(world.teams.values()) for a in team}
    letters = {account: _letter(rng, b.personas.get(account, account))
               for account in benign_freelancers}  # fmt: skip
    contracts = 0
    open_jobs: list[tuple[datetime, str]] = []  # benign clients' jobs, as they are posted

    def hire(client: str, job: str, freelancer: str, at: datetime, score: int | None,
             rated_after: timedelta) -> None:  # fmt: skip
        nonlocal contracts
        contracts += 1
        contract = f"ct-{contracts}"
        b.emit("bid_accepted", at, client, job_id=job, freelancer_id=freelancer)
        b.emit("contract_started", at + timedelta(minutes=5), client, contract_id=contract,
               client_id=client, freelancer_id=freelancer)  # fmt: skip
        if score is not None:
            b.emit("rating_given", at + rated_after, client, contract_id=contract,
                   to_account_id=freelancer, score=score)  # fmt: skip

    for client in benign_clients:
        index = int(client.split("-")[1])
        b.emit("payment_method_added", START - timedelta(days=rng.randint(20, 300)), client,
               instrument={"fingerprint": f"inst-{client}", "holder_name": None,
                           "method": rng.choice(["card", "paypal", "bank"]), "country": None})  # fmt: skip
        traps = world.traps.setdefault(client, [])
        if index % 23 == 10:  # an agency: two freelancers hired and rated within the week
            rate = 2
            traps.append("agency_two_ratings")
        else:  # most clients rate a freelancer or two a week
            rate = rng.choice([0, 1, 1, 2])
        if index % 29 == 15:  # a steady client: many freelancers over months, weeks apart
            traps.append("steady_client_ratings")
            for step in range(1, 7):
                at = START - timedelta(days=17 * step, hours=rng.uniform(0, 8))
                hire(client, f"job-{client}-h{step}", rng.choice(benign_freelancers), at,
                     5, timedelta(days=3))  # fmt: skip
        if not traps:
            del world.traps[client]
        for number in range(rng.randint(1, 3) if rate < 2 else 2):
            job = f"job-{client}-{number}"
            posted = START + timedelta(days=rng.uniform(0, max(0.5, b.days - 3)))
            bidders = rng.sample(
                benign_freelancers, min(len(benign_freelancers), rng.randint(3, 8))
            )
            for freelancer in bidders:
                at = posted + timedelta(hours=rng.uniform(0.5, 30))
                text = letters[freelancer]
                if int(freelancer.split("-")[1]) % 41 == 9:  # strangers sharing one short line
                    text = SHORT_GREETING
                    world.traps[freelancer] = sorted({*world.traps.get(freelancer, []),
                                                      "short_common_greeting"})  # fmt: skip
                b.emit("bid_submitted", at, freelancer, job_id=job, text=text)
            open_jobs.append((posted, job))
            accepted = posted + timedelta(hours=rng.uniform(31, 40))
            if accepted < end:
                rated = number < rate and accepted + timedelta(days=2) < end
                hire(client, job, rng.choice(bidders), accepted,
                     rng.choice([4, 5, 5]) if rated else None, timedelta(days=rng.uniform(0.5, 2)))  # fmt: skip

    def job_open_at(at: datetime) -> str:
        """A job open for bids at `at`: a client's here, or one of many posted elsewhere."""
        posted = [job for when, job in open_jobs if when <= at <= when + timedelta(hours=30)]
        if posted and rng.random() < 0.3:
            return rng.choice(posted)
        return f"job-{at:%m%d}-{rng.randrange(200):03d}"

    # The teams bid on everything, every day, from every identity, with the team's template;
    # almost none of it is accepted.
    for freelancer in team_freelancers:
        per_day = []
        for day in range(b.days):
            per_day.append(rng.randint(6, 9))
            for _ in range(per_day[-1]):
                at = START + timedelta(days=day, hours=rng.uniform(13, 23))  # US hours
                b.emit("bid_submitted", at, freelancer, job_id=job_open_at(at),
                       text=_team_letter(rng, team_of[freelancer]))  # fmt: skip
        world.flags[freelancer] = sorted({*world.flags[freelancer], "template_reuse"})
        busiest = max(sum(per_day[max(0, d - 6) : d + 1]) for d in range(len(per_day)))
        if busiest >= 35:  # clearly over bid_pattern's 30 a week
            world.flags[freelancer] = sorted({*world.flags[freelancer], "bid_pattern"})
    # Freelancers who also fund small jobs with the account they are paid into: one person
    # on both sides, not two.
    for freelancer in benign_freelancers:
        if int(freelancer.split("-")[1]) % 37 == 20:
            b.emit("payment_method_added", START - timedelta(days=rng.randint(5, 200)), freelancer,
                   instrument={"fingerprint": f"acct-{freelancer}", "holder_name": None,
                               "method": "bank", "country": None})  # fmt: skip
            world.traps[freelancer] = sorted({*world.traps.get(freelancer, []),
                                              "own_payment_account"})  # fmt: skip
    # A newcomer bidding a lot, with some success: several bids accepted within hours.
    for freelancer in benign_freelancers:
        if int(freelancer.split("-")[1]) % 31 != 7 or not benign_clients:
            continue
        world.traps[freelancer] = sorted({*world.traps.get(freelancer, []), "busy_newcomer"})
        for day in range(b.days):
            # bidding sessions of the day, each opened by a login
            b.emit("login", START + timedelta(days=day, hours=6.5), freelancer, ip=b.ip())
            b.emit("login", START + timedelta(days=day, hours=13.5), freelancer, ip=b.ip())
            for number in range(rng.randint(5, 7)):
                at = START + timedelta(days=day, hours=rng.uniform(7, 20))
                job = job_open_at(at)
                b.emit("bid_submitted", at, freelancer, job_id=job, text=letters[freelancer])
                if number == 0 and day % 2 == 0:  # one in a dozen or so accepted
                    hire(rng.choice(benign_clients), job, freelancer,
                         at + timedelta(hours=rng.uniform(2, 12)), None, timedelta(0))  # fmt: skip

    for team, accounts in world.teams.items():
        team_client = next((a for a in accounts if b.roles[a] == "client"), None)
        members = [a for a in accounts if b.roles[a] == "freelancer"]
        if team_client is None:
            continue
        # Funds its jobs with the instrument the team's pay is collected into.
        b.emit("payment_method_added", START - timedelta(days=rng.randint(3, 20)), team_client,
               instrument={"fingerprint": f"collector-{team}", "holder_name": None,
                           "method": "payoneer", "country": None})  # fmt: skip
        favoured = rng.sample(members, min(len(members), 6))
        for number, freelancer in enumerate(favoured):
            job = f"job-{team_client}-{number}"
            posted = START + timedelta(days=rng.uniform(0, max(0.5, b.days - 4)), hours=number)
            b.emit("bid_submitted", posted + timedelta(hours=1), freelancer, job_id=job,
                   text=_team_letter(rng, team_of[freelancer]))  # fmt: skip
            hire(team_client, job, freelancer, posted + timedelta(hours=3), 5,
                 timedelta(hours=rng.uniform(20, 40)))  # fmt: skip
        if len(favoured) >= 3:  # rating_burst's min_freelancers
            for account in (team_client, *favoured):
                world.flags[account] = sorted({*world.flags[account], "rating_burst"})
        payees = b.collector_payers.get(team, [])
        if payees:  # the client funds through the account the team's pay is collected into
            for account in (team_client, *payees):
                world.flags[account] = sorted({*world.flags[account], "self_dealing"})


def simulate(seed: int = 7, accounts: int = 300, days: int = 7, teams: int = 2) -> World:
    """A platform of `accounts` accounts over `days` days, `teams` of them DPRK teams."""
    if accounts < 10 or days < 2 or teams < 0:
        raise ValueError("simulate needs at least 10 accounts, 2 days and 0 teams")
    builder = _Builder(seed, days)
    per_team = 20 if accounts >= 100 else max(3, accounts // 10)
    team_total = min(per_team * teams, accounts // 3)
    per_team = team_total // teams if teams else 0
    for index in range(accounts - per_team * teams):
        _benign(builder, index)
    for team_index in range(teams):
        _team(builder, team_index, per_team)
    _market(builder)
    builder.world.events.sort(key=lambda event: (event["occurred_at"], event["event_id"]))
    return builder.world


def lines(world: World) -> Iterator[bytes]:
    import orjson

    for event in world.events:
        yield orjson.dumps(event)
