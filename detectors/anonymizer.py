"""anonymizer: the account logs in from hosting, VPS or commercial VPN networks.

Advisory mitigation: check for VPN, VPS and third-country IPs used to hide the location;
later guidance names Astrill VPN and hosting ranges. The network comes from the platform's
`geo.asn` / `geo.as_org` when it sends them, otherwise from an offline ASN database (the
GeoLite2 data shipped with geoip2fast, or a MaxMind ASN `.mmdb`), and is matched against a
shipped list of hosting and VPN networks (`detectors/data/anonymizer_networks.json`, with its
source) plus organisation-name keywords.

On its own this is a weak flag: many people use a corporate or privacy VPN. A hosting network
is reported at Low severity, a commercial VPN network or several anonymizing networks within
the window at Medium, one finding per account per window that grows with each new network,
and the case agent weighs it with the account's other red flags.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Final, TypedDict

from detectors.core.asn import AsnLookup, Network, asn_lookup_for
from detectors.core.base import (
    AttackMapping,
    Detector,
    DetectorMetadata,
    EntityKind,
    FindingDraft,
    check_readable,
    dedup_bucket,
    remember_event_id,
)
from detectors.models.anonymizer import AnonymizerSettings
from schemas.events import EventBase, Login
from schemas.finding import Confidence, Evidence, Severity, SrcEndpoint, User

__all__ = ["METADATA", "Anonymizer", "AnonymizerSettings", "NetworkList", "build"]

METADATA = DetectorMetadata(
    id="anonymizer",
    name="Login through a hosting, VPS or VPN network",
    title="Account logs in through hosting, VPS or VPN networks",
    advisory_flag="VPN, VPS or third-country IPs used to hide the location",
    runbook=(
        "Check whether the network is the account's employer's VPN or a privacy VPN it has "
        "always used (then suppress the network for this account); otherwise look for the "
        "account's logins outside the VPN (geo_velocity) and for other accounts behind the "
        "same exits (shared_ip)."
    ),
    topics=("platform.logins",),
    dedup_window_hours=168.0,
    types=("Anonymizing Network",),
    description=(
        "The account logged in from a hosting, VPS or commercial VPN network, which hides "
        "where the person really is."
    ),
    attacks=(AttackMapping("T1090", "Proxy", "TA0011", "Command and Control"),),
    attack_rationale=(
        "T1090 Proxy: the platform is reached through a VPN or a rented server that relays "
        "the traffic, hiding the operator's own address and country."
    ),
)

_KINDS: Final = ("hosting", "vpn")


class NetworkList:
    """The hosting and VPN networks: by AS number, by organisation name, by keyword."""

    def __init__(
        self, kinds_by_asn: dict[int, str], kinds_by_org: dict[str, str], keywords: tuple[str, ...]
    ) -> None:
        self.kinds_by_asn = kinds_by_asn
        self.kinds_by_org = kinds_by_org
        self.keywords = keywords

    @classmethod
    def load(cls, path: Path) -> NetworkList:
        try:
            document = json.loads(path.read_text())
            by_asn: dict[int, str] = {}
            by_org: dict[str, str] = {}
            for entry in document["networks"]:
                kind = entry["kind"]
                if kind not in _KINDS:
                    raise ValueError(f"kind {kind!r} is not one of {', '.join(_KINDS)}")
                if entry.get("asn") is not None:
                    by_asn[int(entry["asn"])] = kind
                for org in entry.get("orgs", ()):
                    by_org[str(org).casefold()] = kind
            keywords = tuple(str(word).casefold() for word in document.get("org_keywords", ()))
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ValueError(f"{path}: not a network list ({exc})") from None
        return cls(by_asn, by_org, keywords)

    def kind(self, network: Network, keywords: tuple[str, ...]) -> str | None:
        """'vpn' or 'hosting' for an anonymizing network, None otherwise."""
        if network.asn is not None and network.asn in self.kinds_by_asn:
            return self.kinds_by_asn[network.asn]
        org = network.org.casefold()
        if org in self.kinds_by_org:
            return self.kinds_by_org[org]
        if any(word in org for word in keywords):
            return "vpn" if "vpn" in org else "hosting"
        return None


class Seen(TypedDict):
    first_ms: int
    last_ms: int
    event_id: str
    ip: str
    asn: int | None
    kind: str
    logins: int


class Window(TypedDict):
    networks: dict[str, Seen]  # network label -> what was seen of it
    reported: list[Any]  # [networks named, severity] of the last finding; [] before one


class AnonymizerState(TypedDict):
    windows: dict[str, Window]  # dedup window index -> window
    last_ms: int
    recent: list[str]


class Anonymizer:
    entity: EntityKind = "account"
    input_model: type[EventBase] | None = None

    _WINDOWS = 3

    def __init__(self, settings: AnonymizerSettings, lookup: AsnLookup | None = None) -> None:
        self.settings = settings
        self._lookup = lookup
        self._window_ms = int(settings.dedup_window_hours * 3_600_000)
        # Read on first use and kept. Not `functools.cached_property`: compiled by mypyc, a
        # class has no instance dictionary and that decorator read and parsed the list again
        # on every event that looked a network up.
        self._networks: NetworkList | None = None
        self._keywords: tuple[str, ...] | None = None

    @property
    def networks(self) -> NetworkList:
        if self._networks is None:
            listed = NetworkList.load(self.settings.networks_file)
            for asn in self.settings.extra_asns:
                listed.kinds_by_asn.setdefault(asn, "hosting")
            for asn in self.settings.ignore_asns:
                listed.kinds_by_asn.pop(asn, None)
            self._networks = listed
        return self._networks

    @property
    def keywords(self) -> tuple[str, ...]:
        if self._keywords is None:
            given = self.settings.org_keywords
            self._keywords = (
                self.networks.keywords if given is None else tuple(w.casefold() for w in given)
            )
        return self._keywords

    @property
    def lookup(self) -> AsnLookup:
        if self._lookup is None:
            self._lookup = asn_lookup_for(self.settings.asn_mmdb)
        return self._lookup

    def prepare(self) -> None:
        """The ASN database read now (`detectors.prepare`), not at the first login."""
        check_readable(
            "DAYLIGHT_ANONYMIZER_ASN_MMDB",
            self.settings.asn_mmdb or "the packaged ASN data",
            "ASN database",
            lambda: self.lookup.network("8.8.8.8"),
        )

    def key(self, event: Any) -> str | None:
        if not isinstance(event, Login) or event.type != "login":
            return None
        return event.account_id

    def expires_at_ms(self, state: AnonymizerState) -> int:
        return state["last_ms"] + self._window_ms

    def network_of(self, login: Login) -> Network | None:
        """The login's network: the platform's enrichment, else the offline database."""
        geo = login.geo
        if geo is not None and (geo.asn is not None or geo.as_org):
            return Network(geo.asn, geo.as_org or "")
        return self.lookup.network(str(login.ip))

    def step(
        self, state: AnonymizerState | None, event: Login
    ) -> tuple[AnonymizerState | None, list[FindingDraft]]:
        event_ms = event.occurred_ms
        if state is None:
            state = {"windows": {}, "last_ms": event_ms, "recent": []}
        network = self.network_of(event)
        if network is None or (
            network.asn is not None and network.asn in self.settings.ignore_asns
        ):
            return state, []
        kind = self.networks.kind(network, self.keywords)
        if kind is None:
            return state, []
        if not remember_event_id(state["recent"], event.event_id):
            return state, []
        state["last_ms"] = max(state["last_ms"], event_ms)
        bucket = dedup_bucket(event_ms, self.settings.dedup_window_hours)
        windows = state["windows"]
        window = windows.setdefault(str(bucket), {"networks": {}, "reported": []})
        for old in sorted(windows, key=int)[: -self._WINDOWS]:
            del windows[old]
        if str(bucket) not in windows:  # older than every window kept: too late to count
            return state, []
        label = f"AS{network.asn} {network.org}".strip() if network.asn else network.org
        seen = window["networks"].get(label)
        if seen is None:
            if len(window["networks"]) >= self.settings.max_networks:
                return state, []
            window["networks"][label] = {
                "first_ms": event_ms, "last_ms": event_ms, "event_id": event.event_id,
                "ip": str(event.ip), "asn": network.asn, "kind": kind, "logins": 1,
            }  # fmt: skip
        else:
            seen["logins"] += 1
            if event_ms < seen["first_ms"]:
                seen["first_ms"], seen["event_id"], seen["ip"] = (
                    event_ms,
                    event.event_id,
                    str(event.ip),
                )
            seen["last_ms"] = max(seen["last_ms"], event_ms)
        severity = self._severity(window)
        reported = window["reported"]
        if reported and reported[0] >= len(window["networks"]) and reported[1] >= severity:
            return state, []
        update = bool(reported)
        window["reported"] = [len(window["networks"]), int(severity)]
        return state, [self._finding(event.account_id, bucket, window, severity, update)]

    def _severity(self, window: Window) -> Severity:
        networks = window["networks"].values()
        if any(seen["kind"] == "vpn" for seen in networks):
            return Severity.MEDIUM
        if len(window["networks"]) >= self.settings.medium_networks:
            return Severity.MEDIUM
        return Severity.LOW

    def _finding(
        self, account: str, bucket: int, window: Window, severity: Severity, update: bool
    ) -> FindingDraft:
        ordered = sorted(
            window["networks"].items(), key=lambda item: (item[1]["first_ms"], item[0])
        )
        logins = sum(seen["logins"] for _, seen in ordered)
        named = "; ".join(
            f"{label} ({seen['kind']}, {seen['logins']} login{'s' if seen['logins'] > 1 else ''})"
            for label, seen in ordered
        )
        days = self.settings.dedup_window_hours / 24
        return FindingDraft(
            detector=METADATA,
            uid_parts=(account, str(bucket)),
            accounts=[account],
            severity=severity,
            confidence=Confidence.MEDIUM if severity >= Severity.MEDIUM else Confidence.LOW,
            message=(
                f"{logins} login{'s' if logins > 1 else ''} of {account} through "
                f"{len(ordered)} anonymizing network{'s' if len(ordered) > 1 else ''} "
                f"within {days:g} days: {named}"
            ),
            start_ms=ordered[0][1]["first_ms"],
            end_ms=max(seen["last_ms"] for _, seen in ordered),
            evidences=[
                Evidence(
                    src_endpoint=SrcEndpoint(ip=seen["ip"]),
                    user=User(uid=account),
                    data={
                        "event_id": seen["event_id"],
                        "time": seen["first_ms"],
                        "network": label,
                        "asn": seen["asn"],
                        "kind": seen["kind"],
                        "logins": seen["logins"],
                    },
                )
                for label, seen in ordered
            ],
            unmapped={
                "network_count": len(ordered),
                "login_count": logins,
                "kinds": sorted({seen["kind"] for _, seen in ordered}),
            },
            count=len(ordered),
            ips=[seen["ip"] for _, seen in ordered],
            update=update,
        )


def build(settings: AnonymizerSettings | None = None, lookup: AsnLookup | None = None) -> Detector:
    return Detector(METADATA, (Anonymizer(settings or AnonymizerSettings(), lookup),))
