"""shared_ip: several accounts logging in from one IP address within a day.

Advisory red flag: several accounts logging in from one IP (a team of about ten running
hundreds of borrowed identities through a few VPN exits or one laptop farm).

One incident per IP: the finding is created when the third account appears and updated, with
the same uid, as the count crosses 5, 10, 20, 50 and 100 accounts. The SOC gets one case that
grows instead of one alert per login, and re-processing re-creates the same case.
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
    update_thresholds: tuple[int, ...] = Field(
        default=(5, 10, 20, 50, 100), description="account counts that update the case"
    )
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
    # The dedup window the case opened in; None until a case opens. Taken from when the
    # threshold-th account first logged in (event time), not from the order logins arrive
    # in: logins of different accounts come through different partitions.
    incident: int | None
    reported: int  # the account count last reported for the open case


class SharedIp:
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
        else:
            seen["first_ms"] = min(seen["first_ms"], event_ms)
            seen["last_ms"] = max(seen["last_ms"], event_ms)
        newest = max(seen["last_ms"] for seen in accounts.values())
        active = {
            account: seen
            for account, seen in accounts.items()
            if seen["last_ms"] > newest - self._window_ms
        }
        if len(active) > self.settings.max_accounts:  # keep the most recent ones
            recent = sorted(active.items(), key=lambda item: item[1]["last_ms"])
            active = dict(recent[-self.settings.max_accounts :])
        state["accounts"] = active
        count = len(active)
        if count < self.settings.min_accounts:
            # An open case stays open (and keeps its uid) while the IP is in use: in a backlog,
            # one partition's logins can run hours ahead of another's and thin the window for
            # a while. The case ends with the state, a full window without any login.
            return state, []
        crossed = [self.settings.min_accounts, *self.settings.update_thresholds]
        due = max((t for t in crossed if t <= count), default=0)
        if due <= state["reported"]:
            return state, []
        update = state["incident"] is not None
        if state["incident"] is None:
            firsts = sorted(seen["first_ms"] for seen in active.values())
            opened_ms = firsts[self.settings.min_accounts - 1]
            state["incident"] = dedup_bucket(opened_ms, self.settings.dedup_window_hours)
        state["reported"] = due
        return state, [self._finding(str(event.ip), state, update)]

    def _finding(self, ip: str, state: SharedIpState, update: bool) -> FindingDraft:
        ordered = sorted(state["accounts"].items(), key=lambda item: (item[1]["first_ms"], item[0]))
        names = [account for account, _ in ordered]
        count = len(names)
        shown = ", ".join(names[:10]) + (f" and {count - 10} more" if count > 10 else "")
        end_ms = max(seen["last_ms"] for _, seen in ordered)
        hours = (end_ms - ordered[0][1]["first_ms"]) / 3_600_000
        return FindingDraft(
            detector=METADATA,
            uid_parts=(ip, str(state["incident"])),
            accounts=names,
            severity=Severity.HIGH if count >= 5 else Severity.MEDIUM,
            confidence=Confidence.MEDIUM,
            message=f"{count} accounts logged in from {ip} within {hours:.1f} h: {shown}",
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
