"""The case book: findings in, scored and explained cases out, analysts' feedback applied.

A pure state machine over a key-value store (a dict offline, a Faust table live), like the
detectors: `apply_finding` and `apply_feedback` return the case messages to publish. Every
account belongs to one component; a finding that names several accounts through shared
evidence (an IP, a payout destination) joins their components, so a team is one case. The
score is computed from the findings alone, in event time, so that live and replay open the
same cases under the same uids whatever order the findings arrive in:

- points of a finding = weight(detector) x severity factor x confidence factor, halved every
  `half_life_days` of event time before the moment the score is taken at;
- per detector, findings count in decreasing order of points, each `repeat_factor` less than
  the one before, and never more than `max_points_per_detector` together (under `open_score`:
  one noisy detector cannot open a case alone);
- the case opens when its score, taken at the time of any of its findings over the findings
  up to then, reaches `open_score`; its risk is the score at its newest finding;
- its uid is a hash of its founder (the member whose own evidence is the earliest, so every
  version of a finding agrees on it) and of how many cases of that founder analysts have
  closed before.
"""

from __future__ import annotations

import hashlib
import ipaddress
from collections.abc import Iterable, MutableMapping
from dataclasses import dataclass
from datetime import datetime
from functools import cached_property
from typing import Any

import orjson

from detectors.core.base import PRODUCT_VERSION
from detectors.core.casework.settings import CaseSettings
from schemas.case import RISK_LEVELS, Case, CaseInfo, CaseVerdict, ContributingFinding, Suppression
from schemas.finding import (
    Analytic,
    Confidence,
    Metadata,
    Observable,
    Product,
    Remediation,
    Resource,
)

__all__ = ["CaseBook", "FindingFacts", "facts_of"]

_ANALYTIC = Analytic(uid="daylight_case", name="Daylight case scoring")
_DAY_MS = 86_400_000
_SEVERITIES = ("Unknown", "Informational", "Low", "Medium", "High", "Critical")
_VERDICTS = {
    "false_positive": (1, "False Positive"),
    "benign_true_positive": (5, "Benign"),
    "confirmed": (2, "True Positive"),
}
_RUNBOOK = (
    "Review the accounts together: the strongest reasons first, then what links them (shared "
    "IP, payout destination). Confirm or clear with `daylight feedback verdict CASE_UID`; "
    "silence a known-good entity with `daylight feedback suppress`."
)


@dataclass(frozen=True)
class FindingFacts:
    """What the case book reads of a finding on daylight.alerts."""

    uid: str
    detector: str
    title: str
    accounts: tuple[str, ...]
    time_ms: int
    severity_id: int
    confidence_id: int
    activity_id: int
    message: str
    ips: tuple[str, ...]
    destinations: tuple[str, ...]
    #: Other shared entities a finding names: ("instrument", payment fingerprint) for
    #: self_dealing, ("template", the template's earliest text) for template_reuse,
    #: ("address", the shipping address fingerprint) for shipping_mismatch.
    shared: tuple[tuple[str, str], ...] = ()
    #: Per account (same order as `accounts`): the earliest moment its own evidence shows,
    #: which every version of a finding agrees on (a finding's `time` grows as it is updated).
    account_times: tuple[int, ...] = ()

    def time_of(self, account: str) -> int:
        return self._times.get(account, self.time_ms)

    @cached_property
    def _times(self) -> dict[str, int]:
        """`account_times` by account: a finding can name hundreds of accounts (a shared
        address), and looking each one up in the tuple made a finding cost their square."""
        return dict(zip(self.accounts, self.account_times, strict=False))


def facts_of(finding: dict[str, Any]) -> FindingFacts:
    """The facts of a finding value (KeyError or TypeError when it is not one)."""
    evidences = finding.get("evidences") or []
    destinations = []
    for evidence in evidences:
        destination = (evidence.get("data") or {}).get("destination")
        if isinstance(destination, dict) and destination.get("fingerprint"):
            destinations.append(str(destination["fingerprint"]))
    ips = [
        str(evidence["src_endpoint"]["ip"])
        for evidence in evidences
        if (evidence.get("src_endpoint") or {}).get("ip")
    ]
    info = finding["finding_info"]
    accounts = tuple(dict.fromkeys(str(r["uid"]) for r in finding["resources"]))
    unmapped = finding.get("unmapped") or {}
    shared = tuple(
        (kind, str(unmapped[key]))
        for key, kind in (
            ("fingerprint", "instrument"),
            ("template_origin_event", "template"),
            ("address_fingerprint", "address"),
        )
        if isinstance(unmapped.get(key), str)
    )
    return FindingFacts(
        uid=str(info["uid"]),
        detector=str(info["analytic"]["uid"]),
        title=str(info.get("title") or info["analytic"]["uid"]),
        accounts=accounts,
        time_ms=int(finding["time"]),
        severity_id=int(finding["severity_id"]),
        confidence_id=int(finding.get("confidence_id") or 2),
        activity_id=int(finding.get("activity_id") or 1),
        message=str(finding.get("message") or ""),
        ips=tuple(dict.fromkeys(ips)),
        destinations=tuple(dict.fromkeys(destinations)),
        shared=shared,
        account_times=_account_times(finding, accounts, evidences),
    )


def _account_times(
    finding: dict[str, Any], accounts: tuple[str, ...], evidences: list[dict[str, Any]]
) -> tuple[int, ...]:
    """Each account's earliest evidence time; the finding's start when it has none."""
    start = int(finding.get("start_time") or finding["time"])
    earliest: dict[str, int] = {}
    for evidence in evidences:
        account = (evidence.get("user") or {}).get("uid")
        data = evidence.get("data") or {}
        moment = data.get("first_time", data.get("time"))
        if isinstance(account, str) and isinstance(moment, int):
            earliest[account] = min(moment, earliest.get(account, moment))
    return tuple(earliest.get(account, start) for account in accounts)


def _ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


class CaseBook:
    """Cases over a store; keys: `acct:<id>` (its component), `comp:<root>` (members,
    findings, links, case), `case:<uid>` (the component a case uid is), `sup` (suppressions),
    `verdict:<uid>` (verdicts for cases not seen yet)."""

    def __init__(self, settings: CaseSettings | None = None) -> None:
        self.settings = settings or CaseSettings()
        self._half_life_ms = self.settings.half_life_days * _DAY_MS
        self._retention_ms = int(self.settings.retention_days * _DAY_MS)
        # Each component's newest finding time, for expiry (rebuilt by `adopt` live).
        self._last: dict[str, int] = {}

    def adopt(self, items: Iterable[tuple[str, Any]]) -> int:
        """Index the components of a restored store (after a restart or a rebalance)."""
        self._last = {
            str(key)[5:]: int(value["last_ms"])
            for key, value in items
            if str(key).startswith("comp:") and value is not None
        }
        return len(self._last)

    @cached_property
    def _allowlist(self) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
        return tuple(
            ipaddress.ip_network(c, strict=False) for c in self.settings.link_allowlist_cidrs
        )

    # ------------------------------------------------------------------ findings
    def apply_finding(self, store: MutableMapping[str, Any], facts: FindingFacts) -> list[Case]:
        if facts.activity_id == 3:  # a provisional finding superseded: it no longer counts
            return self._withdraw(store, facts)
        suppressions = store.get("sup") or []
        if self._suppressed_entity(suppressions, facts):
            return []
        accounts = [a for a in facts.accounts if not _matches(suppressions, "account", a, facts)]
        if not accounts:
            return []
        link = self._link_of(facts) if len(accounts) >= 2 else None
        entry = [
            facts.detector, facts.severity_id, facts.confidence_id, facts.time_ms,
            self._base_points(facts), facts.title, facts.message[:300], len(facts.accounts),
        ]  # fmt: skip
        roots = {self._root(store, account, facts.time_of(account)) for account in accounts}
        outputs: list[Case] = []
        if link is not None and len(roots) > 1:
            root, merged = self._merge(store, sorted(roots))
            outputs += merged
            touched = {root}
        else:
            touched = roots
        for root in sorted(touched):
            comp = store[f"comp:{root}"]
            if self._record(comp, facts, entry, link, accounts):
                store[f"comp:{root}"] = comp
                self._last[root] = comp["last_ms"]
                joined = link is not None and len(roots) > 1
                founder, moved = self._reroot(store, root, comp)
                outputs += moved
                since = None if joined or founder != root else facts.time_ms
                outputs += self._judge(store, founder, comp, since)
        self._sweep(store, facts.time_ms)
        return outputs

    def _base_points(self, facts: FindingFacts) -> float:
        settings = self.settings
        weight = settings.weights.get(facts.detector, settings.default_weight)
        severity = settings.severity_factors.get(str(facts.severity_id), 1.0)
        confidence = settings.confidence_factors.get(str(facts.confidence_id), 0.8)
        return round(weight * severity * confidence, 3)

    def _link_of(self, facts: FindingFacts) -> list[str] | None:
        """The shared entity a multi-account finding links through, unless allowlisted."""
        if facts.destinations:
            value = facts.destinations[0]
            if value in self.settings.link_allowlist_destinations:
                return None
            return ["payout_destination", value]
        if facts.shared:
            return list(facts.shared[0])
        if facts.ips:
            address = ipaddress.ip_address(facts.ips[0])
            if any(address in network for network in self._allowlist):
                return None
            return ["ip", facts.ips[0]]
        return ["finding", facts.uid]

    def _suppressed_entity(self, suppressions: list[dict[str, Any]], facts: FindingFacts) -> bool:
        return (
            any(_matches(suppressions, "ip", ip, facts) for ip in facts.ips)
            or any(
                _matches(suppressions, "payout_destination", d, facts) for d in facts.destinations
            )
            or any(_matches(suppressions, kind, value, facts) for kind, value in facts.shared)
        )

    def _root(self, store: MutableMapping[str, Any], account: str, time_ms: int) -> str:
        entry = store.get(f"acct:{account}")
        if entry is not None:
            return str(entry["root"])
        store[f"acct:{account}"] = {"root": account}
        store[f"comp:{account}"] = {
            "members": {account: time_ms},  # account -> its earliest evidence time
            "findings": {},
            "links": {},
            "gen": 0,
            "case": None,
            "reviewed_ms": None,
            "bounded": False,
            "last_ms": time_ms,
        }
        return account

    def _record(
        self,
        comp: dict[str, Any],
        facts: FindingFacts,
        entry: list[Any],
        link: list[str] | None,
        accounts: list[str],
    ) -> bool:
        """Add a finding (or a new version of it) to a component; False when nothing new."""
        time_ms, uid = entry[3], facts.uid
        members = comp["members"]
        for account in accounts:
            if account in members:
                members[account] = min(members[account], facts.time_of(account))
        if comp["reviewed_ms"] is not None and time_ms <= comp["reviewed_ms"]:
            return False  # an analyst already decided on what came before
        known = comp["findings"].get(uid)
        if known is not None and known[1] >= entry[1] and known[7] >= entry[7]:
            return False  # a re-delivery, or an older version of what is known
        comp["findings"][uid] = entry
        if len(comp["findings"]) > self.settings.max_findings_per_case:
            weakest = min(comp["findings"].items(), key=lambda item: (item[1][4], item[1][3]))
            del comp["findings"][weakest[0]]
        if link is not None:
            comp["links"][uid] = [*link, sorted(a for a in accounts if a in members)]
        comp["last_ms"] = max(comp["last_ms"], time_ms)
        return True

    def _merge(self, store: MutableMapping[str, Any], roots: list[str]) -> tuple[str, list[Case]]:
        """Join components; the founder's becomes the root. Open cases of the others are
        closed, naming the case they joined."""
        comps = {root: store[f"comp:{root}"] for root in roots}
        founder = min(
            roots, key=lambda r: (min(comps[r]["members"].values()), min(comps[r]["members"]))
        )
        keep = comps[founder]
        bound = self.settings.max_team_accounts
        joined = [founder]
        for root in sorted(roots, key=lambda r: -len(comps[r]["members"])):
            if root == founder:
                continue
            comp = comps[root]
            if len(keep["members"]) + len(comp["members"]) > bound:
                keep["bounded"] = True  # the team is as large as a case may be
                continue
            joined.append(root)
            for account, first in comp["members"].items():
                keep["members"][account] = min(first, keep["members"].get(account, first))
                store[f"acct:{account}"] = {"root": founder}
            for uid, entry in comp["findings"].items():
                known = keep["findings"].get(uid)
                if known is None or known[1] < entry[1] or known[7] < entry[7]:
                    keep["findings"][uid] = entry
            keep["links"].update(comp["links"])
            keep["last_ms"] = max(keep["last_ms"], comp["last_ms"])
            keep["gen"] = max(keep["gen"], comp["gen"])
            if comp["reviewed_ms"] is not None:
                keep["reviewed_ms"] = max(keep["reviewed_ms"] or 0, comp["reviewed_ms"])
            keep["bounded"] = keep["bounded"] or comp["bounded"]
        outputs = []
        new_uid = self.case_uid(founder, keep["gen"])
        for root in joined[1:]:
            comp = comps[root]
            case = comp["case"]
            if case is not None and case["uid"] != new_uid:
                outputs.append(self._closed(comp, root, 99, "Merged", f"merged into {new_uid}"))
                del store[f"case:{case['uid']}"]
            if case is not None and case["uid"] == new_uid:
                keep["case"] = case
            del store[f"comp:{root}"]
            self._last.pop(root, None)
        if keep["case"] is not None and keep["case"]["uid"] != new_uid:
            # The founder changed: the case continues under the founder's uid.
            outputs.append(self._closed(keep, founder, 99, "Merged", f"merged into {new_uid}"))
            del store[f"case:{keep['case']['uid']}"]
            keep["case"] = None
        store[f"comp:{founder}"] = keep
        self._last[founder] = keep["last_ms"]
        return founder, outputs

    def _reroot(
        self, store: MutableMapping[str, Any], root: str, comp: dict[str, Any]
    ) -> tuple[str, list[Case]]:
        """A finding read late can make another member the earliest: the component (and
        its case uid) moves to that founder, so the uid is the same whatever the order the
        findings came in. An open case under the old uid is closed, naming the new one."""
        members = comp["members"]
        founder = min(members, key=lambda account: (members[account], account))
        if founder == root:
            return root, []
        outputs = []
        case = comp["case"]
        new_uid = self.case_uid(founder, comp["gen"])
        if case is not None:
            outputs.append(self._closed(comp, root, 99, "Merged", f"merged into {new_uid}"))
            del store[f"case:{case['uid']}"]
            comp["case"] = None
        for account in members:
            store[f"acct:{account}"] = {"root": founder}
        del store[f"comp:{root}"]
        self._last.pop(root, None)
        store[f"comp:{founder}"] = comp
        self._last[founder] = comp["last_ms"]
        return founder, outputs

    def _withdraw(self, store: MutableMapping[str, Any], facts: FindingFacts) -> list[Case]:
        outputs = []
        roots = {store[f"acct:{a}"]["root"] for a in facts.accounts if f"acct:{a}" in store}
        for root in sorted(roots):
            comp = store[f"comp:{root}"]
            if facts.uid in comp["findings"]:
                del comp["findings"][facts.uid]
                comp["links"].pop(facts.uid, None)
                store[f"comp:{root}"] = comp
                outputs += self._judge(store, root, comp)
        return outputs

    # ------------------------------------------------------------------ scoring
    def case_uid(self, founder: str, generation: int) -> str:
        digest = hashlib.sha256(f"{founder}\x1f{generation}".encode()).hexdigest()
        return f"case-{digest[:32]}"

    def _active(self, comp: dict[str, Any]) -> list[tuple[str, list[Any]]]:
        reviewed = comp["reviewed_ms"]
        return [
            (uid, entry)
            for uid, entry in comp["findings"].items()
            if reviewed is None or entry[3] > reviewed
        ]

    def score_at(
        self, findings: Iterable[tuple[str, list[Any]]], at_ms: int
    ) -> tuple[float, dict[str, float], dict[str, float]]:
        """(score, points by detector, points by finding uid) over the findings up to
        `at_ms`, decayed to it."""
        by_detector: dict[str, list[tuple[float, str]]] = {}
        for uid, entry in findings:
            if entry[3] <= at_ms:
                decayed = entry[4] * 0.5 ** ((at_ms - entry[3]) / self._half_life_ms)
                by_detector.setdefault(entry[0], []).append((decayed, uid))
        totals: dict[str, float] = {}
        each: dict[str, float] = {}
        for detector, points in by_detector.items():
            room = self.settings.max_points_per_detector
            factor = 1.0
            for value, uid in sorted(points, key=lambda item: (-item[0], item[1])):
                counted = min(room, value * factor)
                each[uid] = counted
                room -= counted
                factor *= self.settings.repeat_factor
            totals[detector] = self.settings.max_points_per_detector - room
        return min(100.0, sum(totals.values())), totals, each

    def _level(self, score: float) -> int:
        return sum(1 for start in self.settings.level_scores if score >= start)

    def _judge(
        self,
        store: MutableMapping[str, Any],
        root: str,
        comp: dict[str, Any],
        since_ms: int | None = None,
    ) -> list[Case]:
        """Open, update or leave the component's case. `since_ms`: only findings from then
        on are new, so the score can have changed only at moments from then on."""
        active = self._active(comp)
        if not active:
            return []
        times = sorted({entry[3] for _, entry in active})
        now = times[-1]
        score, by_detector, _ = self.score_at(active, now)
        case = comp["case"]
        level = self._level(score)
        if case is None:
            # The peak over every moment of the evidence: the same whatever the order the
            # findings came in (a prefix read late never hides a crossing).
            moments = times[:-1] if since_ms is None else [t for t in times[:-1] if t >= since_ms]
            peak = max(
                [score, comp.get("peak", 0.0) if since_ms is not None else 0.0]
                + [self.score_at(active, moment)[0] for moment in moments]
            )
            comp["peak"] = peak
            if peak < self.settings.open_score:
                return []
            uid = self.case_uid(root, comp["gen"])
            case = comp["case"] = {"uid": uid, "opened_ms": now, "reported": None}
            store[f"case:{uid}"] = root
            pending = store.get(f"verdict:{uid}")
            if pending is not None:  # an analyst decided before the case reached us
                del store[f"verdict:{uid}"]
                return self.apply_verdict(
                    store, CaseVerdict.model_validate_json(orjson.dumps(pending))
                )
            activity = 1
        else:
            activity = 2
        # Published again when the case grows (an account, a red flag) or changes level; a
        # further finding of a red flag it already has is in the next message.
        reported = [len(comp["members"]), sorted(by_detector), level, bool(comp["bounded"])]
        if case["reported"] == reported:
            return []
        case["reported"] = reported
        store[f"comp:{root}"] = comp
        return [self._message(comp, root, activity, 1 if activity == 1 else 2, None)]

    # ------------------------------------------------------------------ feedback
    def apply_feedback(
        self, store: MutableMapping[str, Any], feedback: CaseVerdict | Suppression
    ) -> list[Case]:
        if isinstance(feedback, CaseVerdict):
            return self.apply_verdict(store, feedback)
        return self.apply_suppression(store, feedback)

    def apply_verdict(self, store: MutableMapping[str, Any], verdict: CaseVerdict) -> list[Case]:
        root = store.get(f"case:{verdict.case_uid}")
        if root is None or f"comp:{root}" not in store:
            store[f"verdict:{verdict.case_uid}"] = verdict.model_dump(mode="json")
            return []
        comp = store[f"comp:{root}"]
        at = _ms(verdict.occurred_at)
        verdict_id, verdict_name = _VERDICTS[verdict.verdict]
        comment = f"{verdict.verdict} by {verdict.analyst}" + (
            f": {verdict.comment}" if verdict.comment else ""
        )
        status = (3, "Suppressed") if verdict.suppress_days else (4, "Resolved")
        closed = self._reviewed(store, root, comp, at, *status, comment, (verdict_id, verdict_name))
        if verdict.suppress_days:
            until = at + verdict.suppress_days * _DAY_MS
            for account in sorted(comp["members"]):
                self._suppress(store, "account", account, None, at, until, comment, verdict.analyst)
        return [closed]

    def apply_suppression(
        self, store: MutableMapping[str, Any], suppression: Suppression
    ) -> list[Case]:
        at = _ms(suppression.occurred_at)
        until = _ms(suppression.until) if suppression.until else None
        self._suppress(store, suppression.entity_kind, suppression.value, suppression.detectors,
                       at, until, suppression.reason, suppression.analyst)  # fmt: skip
        if suppression.entity_kind != "account" or suppression.detectors:
            return []
        # An account an analyst silences closes the open case it is in.
        entry = store.get(f"acct:{suppression.value}")
        comp = store.get(f"comp:{entry['root']}") if entry else None
        if comp is None or comp["case"] is None:
            return []
        root = entry["root"]  # type: ignore[index]
        detail = (
            f"account {suppression.value} suppressed by {suppression.analyst}: {suppression.reason}"
        )
        return [self._reviewed(store, root, comp, at, 3, "Suppressed", detail)]

    def _reviewed(self, store: MutableMapping[str, Any], root: str, comp: dict[str, Any],
                  at: int, status_id: int, status: str, detail: str,
                  verdict: tuple[int, str] | None = None) -> Case:  # fmt: skip
        """An analyst closed the component's case at `at`: what came before no longer
        counts, and the next case of this founder gets a new uid."""
        closed = self._closed(comp, root, status_id, status, detail, verdict)
        del store[f"case:{comp['case']['uid']}"]
        comp["case"] = None
        comp["gen"] += 1
        comp["reviewed_ms"] = max(comp["reviewed_ms"] or 0, at)
        comp["peak"] = 0.0
        store[f"comp:{root}"] = comp
        return closed

    def _suppress(self, store: MutableMapping[str, Any], kind: str, value: str,
                  detectors: list[str] | None, from_ms: int, until_ms: int | None, reason: str,
                  analyst: str) -> None:  # fmt: skip
        suppressions = [
            s for s in (store.get("sup") or []) if not (s["kind"] == kind and s["value"] == value)
        ]
        suppressions.append({"kind": kind, "value": value, "detectors": detectors,
                             "from_ms": from_ms, "until_ms": until_ms, "reason": reason,
                             "analyst": analyst})  # fmt: skip
        store["sup"] = suppressions[-10_000:]

    # ------------------------------------------------------------------ bounded by event time
    def _sweep(self, store: MutableMapping[str, Any], now_ms: int) -> None:
        meta = store.get("meta") or {"newest_ms": now_ms, "next_sweep_ms": now_ms + _DAY_MS}
        meta["newest_ms"] = max(meta["newest_ms"], now_ms)
        if meta["newest_ms"] >= meta["next_sweep_ms"]:
            meta["next_sweep_ms"] = meta["newest_ms"] + _DAY_MS
            horizon = meta["newest_ms"] - self._retention_ms
            for root in [r for r, last in self._last.items() if last < horizon]:
                del self._last[root]
                key = f"comp:{root}"
                comp = store.get(key)
                if comp is not None and comp["last_ms"] < horizon:
                    for account in comp["members"]:
                        if f"acct:{account}" in store:
                            del store[f"acct:{account}"]
                    if comp["case"] is not None and f"case:{comp['case']['uid']}" in store:
                        del store[f"case:{comp['case']['uid']}"]
                    del store[key]
            live = [
                s
                for s in (store.get("sup") or [])
                if s["until_ms"] is None or s["until_ms"] > horizon
            ]
            if len(live) != len(store.get("sup") or []):
                store["sup"] = live
        store["meta"] = meta

    # ------------------------------------------------------------------ messages
    def _closed(self, comp: dict[str, Any], root: str, status_id: int, status: str,
                detail: str, verdict: tuple[int, str] | None = None) -> Case:  # fmt: skip
        return self._message(comp, root, 3, status_id, verdict, status=status, detail=detail)

    def _message(self, comp: dict[str, Any], root: str, activity: int, status_id: int,
                 verdict: tuple[int, str] | None, status: str | None = None,
                 detail: str | None = None) -> Case:  # fmt: skip
        case = comp["case"]
        uid = case["uid"] if case else self.case_uid(root, comp["gen"])
        active = self._active(comp) or list(comp["findings"].items())
        times = sorted(entry[3] for _, entry in active) or [comp["last_ms"]]
        now = times[-1]
        score, by_detector, each = self.score_at(active, now)
        level = self._level(score)
        # The founder the uid is made from comes first: it keys every message of the case on
        # daylight.cases, so they stay in one partition, in order, whoever joins later.
        members = sorted(comp["members"], key=lambda a: (a != root, comp["members"][a], a))
        ranked = sorted(active, key=lambda item: (-each.get(item[0], 0.0), item[1][3], item[0]))
        contributing = [
            ContributingFinding(
                uid=uid_, type=entry[0], title=entry[5], severity_id=entry[1],
                severity=_SEVERITIES[entry[1]] if 0 <= entry[1] < 6 else "Other",
                created_time=entry[3], count=round(each.get(uid_, 0.0)), desc=entry[6],
            )
            for uid_, entry in ranked
        ]  # fmt: skip
        activity_name = ("Create", "Update", "Close")[activity - 1]
        reasons = sorted(by_detector.items(), key=lambda item: (-item[1], item[0]))
        counts = {d: sum(1 for _, e in active if e[0] == d) for d in by_detector}
        days = max(1, round((times[-1] - times[0]) / _DAY_MS))
        why = ", ".join(
            f"{detector} {points:.0f} pts ({counts[detector]} finding"
            f"{'s' if counts[detector] != 1 else ''})"
            for detector, points in reasons
        )
        links = sorted(
            {(kind, value) for kind, value, _ in comp["links"].values() if kind != "finding"}
        )
        linked = ""
        if len(members) > 1:
            shown = "; ".join(f"{kind.replace('_', ' ')} {value}" for kind, value in links[:5])
            linked = f"; linked by {shown}" + (
                f" and {len(links) - 5} more" if len(links) > 5 else ""
            )
        bound = (
            f"; team size bound ({self.settings.max_team_accounts} accounts) reached"
            if comp["bounded"] else ""
        )  # fmt: skip
        who = f"{len(members)} linked accounts" if len(members) > 1 else f"account {members[0]}"
        message = (
            f"Risk {score:.0f}/100 ({RISK_LEVELS[level]}), {who}: {len(by_detector)} red flag"
            f"{'s' if len(by_detector) != 1 else ''} over {days} day{'s' if days != 1 else ''}: "
            f"{why}{linked}{bound}"
        )
        if detail:
            message = f"{message}. Closed: {detail}"
        title = (
            f"Suspected DPRK IT-worker team: {len(members)} linked accounts"
            if len(members) > 1
            else "Suspected borrowed identity: several red flags on one account"
        )
        severity_id = max(1, level + 1)
        distinct = len(by_detector)
        return Case(
            activity_id=activity,
            activity_name=activity_name,
            type_uid=200400 + activity,
            type_name=f"Detection Finding: {activity_name}",
            status_id=status_id,
            status=status or ("New" if status_id == 1 else "In Progress"),
            status_detail=detail,
            severity_id=severity_id,
            severity=_SEVERITIES[severity_id],
            confidence_id=Confidence.HIGH if distinct >= 3 else Confidence.MEDIUM,
            confidence="High" if distinct >= 3 else "Medium",
            risk_score=round(score),
            risk_level_id=level,
            risk_level=RISK_LEVELS[level],
            verdict_id=verdict[0] if verdict else None,
            verdict=verdict[1] if verdict else None,
            comment=detail if verdict else None,
            count=len(members),
            time=now,
            start_time=times[0],
            end_time=now,
            duration=now - times[0],
            message=message,
            finding_info=CaseInfo(
                uid=uid,
                title=title,
                analytic=_ANALYTIC,
                desc=(
                    f"{distinct} distinct red flags from {len(active)} findings on "
                    f"{len(members)} account{'s' if len(members) != 1 else ''}"
                ),
                types=["Case"],
                first_seen_time=times[0],
                last_seen_time=now,
                related_events=contributing,
                related_events_count=len(contributing),
            ),
            remediation=Remediation(desc=_RUNBOOK),
            resources=[Resource(uid=account) for account in members],
            observables=[
                Observable(name="resources[].uid", type_id=10, type="Resource UID", value=a)
                for a in members
            ],
            metadata=Metadata(product=Product(version=PRODUCT_VERSION)),
            unmapped={
                "accounts": members,
                "points_by_detector": {d: round(p, 1) for d, p in reasons},
                "links": [{"kind": k, "value": v} for k, v in links],
                "size_bound_reached": bool(comp["bounded"]),
            },
        )


def _in_network(ip: str, suppression: dict[str, Any]) -> bool:
    return ipaddress.ip_address(ip) in ipaddress.ip_network(suppression["value"], strict=False)


def _matches(
    suppressions: list[dict[str, Any]], kind: str, value: str, facts: FindingFacts
) -> bool:
    for suppression in suppressions:
        if suppression["detectors"] and facts.detector not in suppression["detectors"]:
            continue
        if not (suppression["from_ms"] <= facts.time_ms
                and (suppression["until_ms"] is None or facts.time_ms < suppression["until_ms"])):  # fmt: skip
            continue
        if suppression["kind"] == kind and suppression["value"] == value:
            return True
        if kind == "ip" and suppression["kind"] == "cidr" and _in_network(value, suppression):
            return True
    return False
