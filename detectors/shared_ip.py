"""shared_ip: several accounts logging in from one IP address within a day.

Advisory red flag: several accounts logging in from one IP (a team of about ten running
hundreds of borrowed identities through a few VPN exits or one laptop farm).

One incident per IP: the finding is created when the third account appears and updated, with
the same uid, each time another account joins, so every account reaches the SOC. The SOC gets
one case that grows instead of one alert per login, and re-processing re-creates the same case.
"""

from __future__ import annotations

import ipaddress
from typing import Any, TypedDict

from detectors.core.base import (
    AttackMapping,
    Detector,
    DetectorMetadata,
    EntityKind,
    FindingDraft,
    dedup_bucket,
)
from detectors.models.shared_ip import SharedIpSettings
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
    description=(
        "Several accounts logged in from one IP address, each within a window of the others."
    ),
    attacks=(AttackMapping("T1078", "Valid Accounts", "TA0001", "Initial Access"),),
    attack_rationale=(
        "T1078 Valid Accounts: several identities' valid credentials operated from one network "
        "exit, as a team runs borrowed identities through a shared VPN exit or laptop farm."
    ),
)


class AccountSeen(TypedDict):
    first_ms: int
    last_ms: int
    event_id: str


class Episode(TypedDict):
    """One stretch of use of the IP: logins no more than a window apart."""

    accounts: dict[str, AccountSeen]
    # The dedup window the case opened in; None until a case opens. A function of the
    # evidence, not of the order it was read in (`opening_ms`): logins of different accounts
    # come through different partitions, so a worker draining a backlog may meet them in
    # any order, and the case it opened first may turn out to have opened earlier.
    incident: int | None
    reported: int  # how many accounts the case has named so far


class SharedIpState(TypedDict):
    episodes: list[Episode]  # in time order


def _start(episode: Episode) -> int:
    return min(seen["first_ms"] for seen in episode["accounts"].values())


def _first(item: tuple[int, Episode]) -> int:
    return item[0]


def _end(episode: Episode) -> int:
    return max(seen["last_ms"] for seen in episode["accounts"].values())


class SharedIp:
    """One case per episode of an IP's use (logins no more than a window apart: the
    connected stretches of its logins in event time, whatever order they are read in).
    The case is created when the min_accounts-th account appears, updated each time another
    account joins (every account reaches the SOC), and its uid is (IP, the window of the
    case's opening time), computed from every account's first and last login: live, replay
    and a re-read after a crash name the same case. A case a backlog opened provisionally
    (under a later window, or as an episode that later evidence joins to an earlier one) is
    closed, naming the canonical one."""

    entity: EntityKind = "ip"
    input_model: type[EventBase] | None = None

    _MAX_EPISODES = 8

    def __init__(self, settings: SharedIpSettings) -> None:
        self.settings = settings
        self._window_ms = int(settings.window_hours * 3_600_000)
        # Parsed once (not `functools.cached_property`, which a class compiled by mypyc does
        # not cache: the networks were parsed again for every login).
        self._allowlist: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = tuple(
            ipaddress.ip_network(c, strict=False) for c in settings.allowlist_cidrs
        )

    def key(self, event: Any) -> str | None:
        if not isinstance(event, Login) or event.type != "login":
            return None
        if self._allowlist:
            address = ipaddress.ip_address(event.ip)
            if any(address in network for network in self._allowlist):
                return None
        return str(event.ip)

    def expires_at_ms(self, state: SharedIpState) -> int:
        # Kept a second window after the last episode could still grow, so that a login read
        # late (a partition drained behind the others) still meets the episode it belongs to.
        return max(_end(episode) for episode in state["episodes"]) + 2 * self._window_ms

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
        if state is None or "episodes" not in state:  # new, or written by an older version
            state = {"episodes": []}
        event_ms = event.occurred_ms
        window = self._window_ms
        # The episodes this login touches, and the others with their start (each episode's
        # start is a pass over its accounts: worked out once per login, not once per use).
        touching: list[Episode] = []
        others: list[tuple[int, Episode]] = []
        for known in state["episodes"]:
            start = _start(known)
            if start - window <= event_ms <= _end(known) + window:
                touching.append(known)
            else:
                others.append((start, known))
        findings: list[FindingDraft] = []
        if not touching:
            episode: Episode = {"accounts": {}, "incident": None, "reported": 0}
        elif len(touching) == 1:
            episode = touching[0]
        else:  # the login bridges episodes: they were one all along
            episode = {"accounts": {}, "incident": None, "reported": 0}
            for part in touching:
                for account, seen in part["accounts"].items():
                    mine = episode["accounts"].setdefault(account, dict(seen))  # type: ignore[arg-type]
                    if seen["first_ms"] < mine["first_ms"]:
                        mine["first_ms"], mine["event_id"] = seen["first_ms"], seen["event_id"]
                    mine["last_ms"] = max(mine["last_ms"], seen["last_ms"])
            opened = [part for part in touching if part["incident"] is not None]
            if opened:
                keep = min(opened, key=lambda part: part["incident"] or 0)
                episode["incident"], episode["reported"] = keep["incident"], keep["reported"]
                for part in opened:
                    if part is not keep:
                        findings.append(self._closed(str(event.ip), part, keep))
        changed = self._add(episode["accounts"], event, event_ms)
        if others:
            others.append((_start(episode), episode))
            others.sort(key=_first)  # stable: as sorting the episodes by their start
            state["episodes"] = [known for _, known in others[-self._MAX_EPISODES :]]
        else:
            state["episodes"] = [episode]
        if not changed and len(touching) < 2:
            return state, []  # nothing new: a re-delivery or a login inside what is known
        return state, findings + self._report(str(event.ip), episode)

    def _add(self, accounts: dict[str, AccountSeen], event: Login, event_ms: int) -> bool:
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
            return False
        if len(accounts) > self.settings.max_accounts:  # keep the most recent ones
            recent = sorted(accounts.items(), key=lambda item: (item[1]["last_ms"], item[0]))
            for account, _ in recent[: len(accounts) - self.settings.max_accounts]:
                del accounts[account]
        return True

    def _report(self, ip: str, episode: Episode) -> list[FindingDraft]:
        accounts = episode["accounts"]
        opened = self.opening_ms(accounts)
        if opened is None:
            return []
        incident = dedup_bucket(opened, self.settings.dedup_window_hours)
        previous = episode["incident"]
        findings = []
        if previous is not None and incident < previous:
            # Earlier evidence arrived: the case opened in an earlier window than first
            # thought. The provisional case is closed in favour of the canonical one.
            canonical = self._finding(ip, accounts, incident, update=False)
            superseded = self._finding(ip, accounts, previous, update=True)
            superseded.closed_by = canonical.uid
            findings = [superseded, canonical]
        elif previous is not None and len(accounts) > episode["reported"]:
            findings = [self._finding(ip, accounts, previous, update=True)]
        elif previous is None:
            findings = [self._finding(ip, accounts, incident, update=False)]
        if previous is None or incident < previous:
            episode["incident"] = incident
        if findings:
            episode["reported"] = len(accounts)
        return findings

    def _closed(self, ip: str, part: Episode, kept: Episode) -> FindingDraft:
        """The provisional case of an episode that turned out to be part of another."""
        assert part["incident"] is not None and kept["incident"] is not None
        closed = self._finding(ip, part["accounts"], part["incident"], update=True)
        closed.closed_by = self._finding(ip, kept["accounts"], kept["incident"], False).uid
        return closed

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
            unmapped={"window_hours": self.settings.window_hours},
            count=count,
            ips=[ip],
            update=update,
        )


def build(settings: SharedIpSettings | None = None) -> Detector:
    return Detector(METADATA, (SharedIp(settings or SharedIpSettings()),))
