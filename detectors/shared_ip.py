"""shared_ip: several accounts logging in from one IP address within a day.

Advisory red flag: several accounts logging in from one IP (a team of about ten running
hundreds of borrowed identities through a few VPN exits or one laptop farm).

One incident per IP: the finding is created when the third account appears and updated, with
the same uid, each time another account joins, so every account reaches the SOC. The SOC gets
one case that grows instead of one alert per login, and re-processing re-creates the same case.
"""

from __future__ import annotations

import ipaddress
from functools import cached_property
from typing import Any, TypedDict

from pydantic import Field, field_validator
from pydantic_settings import SettingsConfigDict

from detectors.base import (
    Detector,
    DetectorMetadata,
    EntityKind,
    FindingDraft,
    dedup_bucket,
    to_ms,
)
from detectors.settings import DetectorSettings
from schemas.events import EventBase, Login
from schemas.finding import Confidence, Evidence, Severity, SrcEndpoint, User

__all__ = ["METADATA", "SharedIp", "SharedIpSettings", "build"]

METADATA = DetectorMetadata(
    id="shared_ip",
    name="Many accounts from one IP address",
    title="Several accounts logged in from one IP address within a day",
    advisory_flag="several accounts logging in from one IP address",
    runbook=(
        "Check whether the IP is a known office, school or carrier NAT (then add its network to "
        "DAYLIGHT_SHARED_IP_ALLOWLIST_CIDRS); otherwise review every listed account together: "
        "same devices, same payout destinations, same document templates."
    ),
    topics=("platform.logins",),
    dedup_window_hours=24.0,
    types=("Shared Infrastructure",),
)


class SharedIpSettings(DetectorSettings):
    model_config = SettingsConfigDict(env_prefix="DAYLIGHT_SHARED_IP_", frozen=True)

    min_accounts: int = Field(default=3, ge=2, description="distinct accounts that open a case")
    window_hours: float = Field(default=24.0, gt=0, description="how long a login counts")
    max_accounts: int = Field(default=200, ge=3, le=10_000, description="accounts kept per IP")
    allowlist_cidrs: tuple[str, ...] = Field(
        default=(), description="egress networks (offices, carrier NAT) never reported"
    )

    @field_validator("allowlist_cidrs")
    @classmethod
    def _networks(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for cidr in value:
            ipaddress.ip_network(cidr, strict=False)  # raises a ValueError naming the CIDR
        return value


class AccountSeen(TypedDict):
    first_ms: int
    last_ms: int
    event_id: str


class SharedIpState(TypedDict):
    accounts: dict[str, AccountSeen]
    # The dedup window the case opened in; None until a case opens. A function of the
    # evidence, not of the order it was read in (`opening_ms`): logins of different accounts
    # come through different partitions, so a worker draining a backlog may meet them in
    # any order, and the case it opened first may turn out to have opened earlier.
    incident: int | None
    reported: int  # how many accounts the case has named so far


class SharedIp:
    """One case per IP episode: created when the min_accounts-th account appears, updated
    each time another account joins (every account reaches the SOC), kept while the IP is in
    use. Its uid is (IP, the window of the case's opening time), where the opening time is
    computed from every account's first and last login, so live, replay and a re-read after a
    crash name the same case; a case opened under a later window than the evidence finally
    shows is closed, naming the canonical one."""

    entity: EntityKind = "ip"
    input_model: type[EventBase] | None = None

    def __init__(self, settings: SharedIpSettings) -> None:
        self.settings = settings
        self._window_ms = int(settings.window_hours * 3_600_000)

    @cached_property
    def _allowlist(self) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
        return tuple(ipaddress.ip_network(c, strict=False) for c in self.settings.allowlist_cidrs)

    def key(self, event: Any) -> str | None:
        if not isinstance(event, Login) or event.type != "login":
            return None
        if self._allowlist:
            address = ipaddress.ip_address(event.ip)
            if any(address in network for network in self._allowlist):
                return None
        return str(event.ip)

    def expires_at_ms(self, state: SharedIpState) -> int:
        return max(seen["last_ms"] for seen in state["accounts"].values()) + self._window_ms

    def opening_ms(self, accounts: dict[str, AccountSeen]) -> int | None:
        """The earliest first login at which min_accounts accounts were in use within the
        window (an account counts from its first login until a window after its last)."""
        ordered = sorted(accounts.values(), key=lambda seen: seen["first_ms"])
        needed = self.settings.min_accounts
        for position in range(needed - 1, len(ordered)):
            moment = ordered[position]["first_ms"]
            in_use = sum(
                1 for seen in ordered[: position + 1] if seen["last_ms"] > moment - self._window_ms
            )
            if in_use >= needed:
                return moment
        return None

    def step(
        self, state: SharedIpState | None, event: Login
    ) -> tuple[SharedIpState | None, list[FindingDraft]]:
        if state is None:
            state = {"accounts": {}, "incident": None, "reported": 0}
        event_ms = to_ms(event.occurred_at)
        accounts = state["accounts"]
        seen = accounts.get(event.account_id)
        if seen is None:
            accounts[event.account_id] = {
                "first_ms": event_ms,
                "last_ms": event_ms,
                "event_id": event.event_id,
            }
        elif event_ms < seen["first_ms"]:
            seen["first_ms"], seen["event_id"] = event_ms, event.event_id
        elif event_ms > seen["last_ms"]:
            seen["last_ms"] = event_ms
        else:
            return state, []  # nothing new: a re-delivery or a login inside what is known
        if len(accounts) > self.settings.max_accounts:  # keep the most recent ones
            recent = sorted(accounts.items(), key=lambda item: (item[1]["last_ms"], item[0]))
            state["accounts"] = accounts = dict(recent[-self.settings.max_accounts :])
        opened = self.opening_ms(accounts)
        if opened is None:
            return state, []
        incident = dedup_bucket(opened, self.settings.dedup_window_hours)
        previous = state["incident"]
        findings = []
        if previous is not None and incident < previous:
            # Earlier evidence arrived: the case opened in an earlier window than first
            # thought. The provisional case is closed in favour of the canonical one.
            superseded = self._finding(str(event.ip), accounts, previous, update=True)
            canonical = self._finding(str(event.ip), accounts, incident, update=False)
            superseded.closed_by = canonical.uid
            findings = [superseded, canonical]
        elif previous is not None and len(accounts) > state["reported"]:
            findings = [self._finding(str(event.ip), accounts, previous, update=True)]
        elif previous is None:
            findings = [self._finding(str(event.ip), accounts, incident, update=False)]
        if previous is None or incident < previous:
            state["incident"] = incident
        if findings:
            state["reported"] = len(accounts)
        return state, findings

    def _finding(
        self, ip: str, accounts: dict[str, AccountSeen], incident: int, update: bool
    ) -> FindingDraft:
        ordered = sorted(accounts.items(), key=lambda item: (item[1]["first_ms"], item[0]))
        names = [account for account, _ in ordered]
        count = len(names)
        shown = ", ".join(names[:10]) + (f" and {count - 10} more" if count > 10 else "")
        end_ms = max(seen["last_ms"] for _, seen in ordered)
        hours = (end_ms - ordered[0][1]["first_ms"]) / 3_600_000
        return FindingDraft(
            detector=METADATA,
            uid_parts=(ip, str(incident)),
            accounts=names,
            severity=Severity.HIGH if count >= 5 else Severity.MEDIUM,
            confidence=Confidence.MEDIUM,
            message=f"{count} accounts logged in from {ip} over {hours:.1f} h: {shown}",
            start_ms=ordered[0][1]["first_ms"],
            end_ms=end_ms,
            evidences=[
                Evidence(
                    src_endpoint=SrcEndpoint(ip=ip),
                    user=User(uid=account),
                    data={
                        "event_id": seen["event_id"],
                        "first_time": seen["first_ms"],
                        "last_time": seen["last_ms"],
                    },
                )
                for account, seen in ordered
            ],
            unmapped={"account_count": count, "window_hours": self.settings.window_hours, "ip": ip},
            ips=[ip],
            update=update,
        )


def build(settings: SharedIpSettings | None = None) -> Detector:
    return Detector(METADATA, (SharedIp(settings or SharedIpSettings()),))
