"""The analyst's commands: `daylight cases list|show` and `daylight feedback verdict|suppress`."""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from typing import Annotated, Any

import orjson
import typer
from rich.console import Console
from rich.table import Table

from schemas.case import RISK_LEVELS

__all__ = ["case_table", "feedback_app", "latest_cases", "register_case_commands"]

feedback_app = typer.Typer(help="Analysts' verdicts and suppressions, to daylight.feedback.")


def _when(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M")


def latest_cases(values: Any) -> dict[str, dict[str, Any]]:
    """The newest message of every case (by uid), from daylight.cases values in order."""
    cases: dict[str, dict[str, Any]] = {}
    for value in values:
        case = orjson.loads(value)
        cases[case["finding_info"]["uid"]] = case
    return cases


def case_table(cases: list[dict[str, Any]]) -> Table:
    table = Table(title="Cases on daylight.cases (highest risk first)")
    table.add_column("case", overflow="fold", min_width=37)
    table.add_column("level", no_wrap=True)
    table.add_column("score", justify="right")
    table.add_column("accounts", justify="right")
    table.add_column("status", no_wrap=True)
    table.add_column("top reasons", ratio=1)
    table.add_column("last activity", no_wrap=True)
    for case in cases:
        points = case["unmapped"].get("points_by_detector", {})
        reasons = ", ".join(f"{d} {p:.0f}" for d, p in list(points.items())[:3])
        table.add_row(
            case["finding_info"]["uid"],
            case["risk_level"],
            str(case["risk_score"]),
            str(case["count"]),
            case["status"],
            reasons,
            _when(case["end_time"]),
        )
    return table


def ranked(
    cases: dict[str, dict[str, Any]], only_open: bool, min_level: int
) -> list[dict[str, Any]]:
    chosen = [
        case
        for case in cases.values()
        if (not only_open or case["activity_id"] != 3) and case["risk_level_id"] >= min_level
    ]
    return sorted(
        chosen, key=lambda c: (-c["risk_score"], -c["end_time"], c["finding_info"]["uid"])
    )


def register_case_commands(cases_app: typer.Typer, out: Console, read_topic: Any) -> None:
    """Adds `list` and `show` to `daylight cases`; `read_topic(topic)` yields its values."""

    @cases_app.command("list")
    def cases_list(
        only_open: Annotated[bool, typer.Option("--open", help="open cases only")] = False,
        min_level: Annotated[
            str, typer.Option("--min-level", help="Info, Low, Medium, High or Critical")
        ] = "Info",
        as_json: Annotated[bool, typer.Option("--json", help="JSON lines")] = False,
    ) -> None:
        """The cases on daylight.cases, ranked by risk: level, score, accounts, top reasons."""
        from streams.topics import CASES

        levels = [level.lower() for level in RISK_LEVELS]
        if min_level.lower() not in levels:
            raise typer.BadParameter(f"--min-level must be one of {', '.join(RISK_LEVELS)}")
        cases = ranked(latest_cases(read_topic(CASES)), only_open, levels.index(min_level.lower()))
        if as_json:
            for case in cases:
                sys.stdout.write(orjson.dumps(case).decode() + "\n")
            return
        out.print(case_table(cases))
        out.print(f"{len(cases)} case(s)", highlight=False)

    @cases_app.command("show")
    def cases_show(uid: Annotated[str, typer.Argument(help="a case uid")]) -> None:
        """Every finding of one case with its points after decay, every link and its cause."""
        from streams.topics import CASES

        case = latest_cases(read_topic(CASES)).get(uid)
        if case is None:
            out.print(f"no case {uid} on daylight.cases", highlight=False)
            raise typer.Exit(1)
        out.print(f"[bold]{uid}[/bold]  {case['status']}  risk {case['risk_score']} "
                  f"({case['risk_level']})  {case['count']} account(s)")  # fmt: skip
        out.print(case["message"], highlight=False)
        out.print("accounts: " + ", ".join(case["unmapped"]["accounts"]), highlight=False)
        for link in case["unmapped"].get("links", []):
            out.print(f"link: {link['kind']} {link['value']}", highlight=False)
        table = Table(title="Contributing findings (points after decay)")
        for column in ("finding", "detector", "severity", "time", "points", "message"):
            table.add_column(column, overflow="fold")
        for finding in case["finding_info"]["related_events"]:
            table.add_row(finding["uid"], finding["type"], finding["severity"],
                          _when(finding["created_time"]), str(finding.get("count", 0)),
                          finding.get("desc", ""))  # fmt: skip
        out.print(table)


def _publish(key: str, value: dict[str, Any]) -> None:
    from confluent_kafka import Producer

    from schemas.codec import InvalidEvent, decode_feedback
    from streams.settings import SettingsError, load_settings
    from streams.topics import FEEDBACK

    raw = orjson.dumps(value)
    try:
        decode_feedback(raw)  # what the case agent will accept
        settings = load_settings()
    except (InvalidEvent, SettingsError) as exc:
        sys.stderr.write(f"error: {exc}\n")
        raise typer.Exit(2) from None
    producer = Producer({**settings.confluent_config(), "enable.idempotence": True})
    failures: list[str] = []
    producer.produce(FEEDBACK, key=key.encode(), value=raw,
                     on_delivery=lambda e, _m: failures.append(str(e)) if e else None)  # fmt: skip
    remaining = producer.flush(30)
    if any("AUTHORIZATION" in failure.upper() for failure in failures):
        sys.stderr.write(
            f"error: the broker refused to let this principal write {FEEDBACK} "
            f"(only the SOC's principal may): {failures[0]}\n"
        )
        raise typer.Exit(3)
    if failures or remaining:
        sys.stderr.write(f"error: not written to {FEEDBACK}: {failures or 'timed out'}\n")
        raise typer.Exit(1)
    sys.stdout.write(f"{value['type']} written to {FEEDBACK}\n")


def _now() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


@feedback_app.command("verdict")
def verdict(
    case_uid: Annotated[str, typer.Argument(help="the case the verdict is about")],
    analyst: Annotated[str, typer.Option("--analyst", help="who decides")],
    false_positive: Annotated[bool, typer.Option("--false-positive")] = False,
    benign: Annotated[bool, typer.Option("--benign", help="a true positive, benign")] = False,
    confirmed: Annotated[bool, typer.Option("--confirmed", help="a DPRK IT worker")] = False,
    suppress_days: Annotated[
        int | None, typer.Option("--suppress-days", help="also silence its accounts this long")
    ] = None,
    comment: Annotated[str | None, typer.Option("--comment")] = None,
    at: Annotated[str | None, typer.Option("--at", help="RFC 3339 time (default now)")] = None,
) -> None:
    """Close a case with the analyst's verdict (re-published with it on daylight.cases)."""
    chosen = [name for name, flag in (("false_positive", false_positive),
              ("benign_true_positive", benign), ("confirmed", confirmed)) if flag]  # fmt: skip
    if len(chosen) != 1:
        raise typer.BadParameter("give exactly one of --false-positive, --benign, --confirmed")
    _publish(case_uid, {"type": "case_verdict", "case_uid": case_uid, "verdict": chosen[0],
                        "analyst": analyst, "occurred_at": at or _now(),
                        "suppress_days": suppress_days, "comment": comment})  # fmt: skip


@feedback_app.command("suppress")
def suppress(
    reason: Annotated[str, typer.Option("--reason", help="why, for the next analyst")],
    analyst: Annotated[str, typer.Option("--analyst", help="who decides")],
    account: Annotated[str | None, typer.Option("--account")] = None,
    ip: Annotated[str | None, typer.Option("--ip")] = None,
    cidr: Annotated[str | None, typer.Option("--cidr")] = None,
    destination: Annotated[str | None, typer.Option("--destination")] = None,
    instrument: Annotated[str | None, typer.Option("--instrument")] = None,
    address: Annotated[str | None, typer.Option("--address")] = None,
    template: Annotated[
        str | None,
        typer.Option("--template", help="a template_reuse finding's template_origin_event"),
    ] = None,
    detectors: Annotated[
        str | None, typer.Option("--detectors", help="comma-separated ids (default: all)")
    ] = None,
    until: Annotated[
        str | None, typer.Option("--until", help="RFC 3339 end (default: never)")
    ] = None,
    at: Annotated[str | None, typer.Option("--at", help="RFC 3339 start (default now)")] = None,
) -> None:
    """Silence an entity: its findings no longer count towards cases or link accounts."""
    given = [(kind, value) for kind, value in (("account", account), ("ip", ip), ("cidr", cidr),
             ("payout_destination", destination), ("instrument", instrument),
             ("address", address), ("template", template)) if value is not None]  # fmt: skip
    if len(given) != 1:
        raise typer.BadParameter(
            "give exactly one of --account, --ip, --cidr, --destination, --instrument, "
            "--address, --template"
        )
    kind, value = given[0]
    ids = [d.strip() for d in detectors.split(",") if d.strip()] if detectors else None
    _publish(value, {"type": "suppression", "entity_kind": kind, "value": value,
                     "detectors": ids, "until": until, "reason": reason, "analyst": analyst,
                     "occurred_at": at or _now()})  # fmt: skip
