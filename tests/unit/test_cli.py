"""The CLI without Kafka: help texts, replay, cases export, schema export."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest
from typer.testing import CliRunner

from detectors import DETECTOR_IDS
from streams.cli import app

COMMANDS = [
    [],
    ["broker"],
    ["broker", "start"],
    ["broker", "stop"],
    ["broker", "status"],
    ["broker", "fetch"],
    ["topics"],
    ["topics", "create"],
    ["produce"],
    ["worker"],
    ["alerts"],
    ["alerts", "tail"],
    ["replay"],
    ["cases"],
    ["cases", "export"],
    ["cases", "list"],
    ["cases", "show"],
    ["feedback"],
    ["feedback", "verdict"],
    ["feedback", "suppress"],
    ["topics", "acls"],
    ["simulate"],
    ["evaluate"],
    ["schemas"],
    ["schemas", "export"],
]
runner = CliRunner()


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c) or "daylight")
def test_every_command_says_what_it_does(command: list[str]) -> None:
    result = runner.invoke(app, [*command, "--help"])
    assert result.exit_code == 0
    assert "Usage" in result.output
    assert len(result.output.split("\n")) > 3


def test_help_never_shows_a_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DAYLIGHT_SASL_PASSWORD", "hunter2-secret")
    for command in COMMANDS:
        assert "hunter2-secret" not in runner.invoke(app, [*command, "--help"]).output


def test_replay_writes_findings_and_reports_malformed_lines(tmp_path: Path) -> None:
    events = tmp_path / "events.jsonl"
    assert runner.invoke(app, ["cases", "export", str(events)]).exit_code == 0
    with events.open("ab") as sink:
        sink.write(b"not json\n")
        sink.write(b'{"type": "login", "event_id": "x", "account_id": "a"}\n')
    out = tmp_path / "alerts.jsonl"
    result = runner.invoke(app, ["replay", str(events), "--out", str(out)])
    assert result.exit_code == 0
    assert "2 malformed line(s) skipped" in result.output
    findings = [orjson.loads(line) for line in out.read_bytes().splitlines()]
    detectors = {f["finding_info"]["analytic"]["uid"] for f in findings}
    assert detectors == set(DETECTOR_IDS)  # every detector's positive cases
    assert all(f["class_uid"] == 2004 for f in findings)


@pytest.mark.parametrize("jobs", ["1", "2"])
def test_replay_runs_the_detectors_daylight_detectors_selects(tmp_path: Path, jobs: str) -> None:
    """As a worker with the same setting would: only those detectors' findings."""
    events = tmp_path / "events.jsonl"
    assert runner.invoke(app, ["cases", "export", str(events)]).exit_code == 0
    out = tmp_path / "alerts.jsonl"
    chosen = {"geo_velocity", "shared_ip"}
    result = runner.invoke(
        app,
        ["replay", str(events), "--out", str(out), "--jobs", jobs],
        env={"DAYLIGHT_DETECTORS": ",".join(sorted(chosen))},
    )
    assert result.exit_code == 0, result.output
    findings = [orjson.loads(line) for line in out.read_bytes().splitlines()]
    assert {f["finding_info"]["analytic"]["uid"] for f in findings} == chosen
    bad = runner.invoke(app, ["replay", str(events), "--out", str(out)],
                        env={"DAYLIGHT_DETECTORS": "geo_velocity,nope"})  # fmt: skip
    assert bad.exit_code == 2 and "DAYLIGHT_DETECTORS" in bad.output


def test_replay_is_deterministic(tmp_path: Path) -> None:
    events = tmp_path / "events.jsonl"
    runner.invoke(app, ["cases", "export", str(events)])
    first, second = tmp_path / "1.jsonl", tmp_path / "2.jsonl"
    runner.invoke(app, ["replay", str(events), "--out", str(first)])
    runner.invoke(app, ["replay", str(events), "--out", str(second)])
    assert first.read_bytes() == second.read_bytes() != b""


def test_replay_on_several_jobs_finds_what_one_job_finds(tmp_path: Path) -> None:
    """Events split by account over the jobs; shared_ip (keyed by IP) and payout_routing's
    destination stage (keyed by the destination) read their entity's share, as the
    repartition topics give it live: the same findings, the same cases in the end."""
    from simulator.simulate import lines, simulate

    events = tmp_path / "events.jsonl"
    world = list(lines(simulate(seed=5, accounts=200, days=5, teams=2)))
    # Lines that are not events, among them one whose type is not even a string.
    bad = [b"{not json", b'{"type": "login"}', b'{"type": ["login"], "account_id": "a-1"}']
    events.write_bytes(b"\n".join([*world, *bad]) + b"\n")
    outputs = {}
    for jobs in ("1", "2", "3"):
        out, cases = tmp_path / f"alerts-{jobs}.jsonl", tmp_path / f"cases-{jobs}.jsonl"
        result = runner.invoke(app, ["replay", str(events), "--out", str(out), "--cases",
                                     str(cases), "--jobs", jobs])  # fmt: skip
        assert result.exit_code == 0, result.output
        assert "3 malformed line(s) skipped" in result.output
        last = {}
        for line in cases.read_bytes().splitlines():
            case = orjson.loads(line)
            last[case["finding_info"]["uid"]] = (case["activity_id"], case["unmapped"]["accounts"])
        outputs[jobs] = (sorted(out.read_bytes().splitlines()), last)
    findings, cases_of_one = outputs["1"]
    detectors = {orjson.loads(f)["finding_info"]["analytic"]["uid"] for f in findings}
    assert {"shared_ip", "payout_routing", "geo_velocity"} <= detectors
    assert any(activity != 3 for activity, _ in cases_of_one.values())
    assert outputs["2"] == outputs["1"]
    assert outputs["3"] == outputs["1"]
    # A given number of jobs writes the same file every time.
    again = tmp_path / "again.jsonl"
    runner.invoke(app, ["replay", str(events), "--out", str(again), "--jobs", "2"])
    assert again.read_bytes() == (tmp_path / "alerts-2.jsonl").read_bytes()


def test_bad_detector_setting_fails_at_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DAYLIGHT_SHARED_IP_MIN_ACCOUNTS", "one")
    events = tmp_path / "events.jsonl"
    events.write_text("")
    result = runner.invoke(app, ["replay", str(events), "--out", str(tmp_path / "o.jsonl")])
    assert result.exit_code == 2
    assert "DAYLIGHT_SHARED_IP_MIN_ACCOUNTS" in result.output


@pytest.mark.parametrize("jobs", ["1", "2"])
@pytest.mark.parametrize(
    ("setting", "kind"),
    [("DAYLIGHT_ANONYMIZER_ASN_MMDB", "ASN database"), ("DAYLIGHT_GEOIP_MMDB", "GeoIP database")],
)
def test_an_unreadable_database_fails_at_start_not_at_the_first_login(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, jobs: str, setting: str, kind: str
) -> None:
    """The file exists (the setting's own check passes) but is not a database: the command
    stops before reading an event, naming the setting, where it used to stop with a
    traceback at the first login the platform had not enriched (its ASN, its position)."""
    corrupt = tmp_path / "data.mmdb"
    corrupt.write_bytes(b"not a MaxMind database")
    monkeypatch.setenv(setting, str(corrupt))
    events = tmp_path / "events.jsonl"
    events.write_text("")  # not one login
    out = tmp_path / "o.jsonl"
    result = runner.invoke(app, ["replay", str(events), "--out", str(out), "--jobs", jobs])
    assert result.exit_code == 2, result.output
    said = " ".join(result.output.split())  # as one line, however the console wrapped it
    assert f"{setting}: " in said and f"is not a readable {kind}" in said
    assert not out.exists()


def test_a_geoip_database_that_does_not_exist_is_a_bad_setting(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DAYLIGHT_GEOIP_MMDB", str(tmp_path / "missing.mmdb"))
    events = tmp_path / "events.jsonl"
    events.write_text("")
    result = runner.invoke(app, ["replay", str(events), "--out", str(tmp_path / "o.jsonl")])
    assert result.exit_code == 2, result.output
    assert "DAYLIGHT_GEOIP_MMDB: " in result.output and "no such file" in result.output
    assert "DAYLIGHT_GEO_VELOCITY_DAYLIGHT" not in result.output


def test_schemas_export_writes_every_schema(tmp_path: Path) -> None:
    result = runner.invoke(app, ["schemas", "export", "--directory", str(tmp_path)])
    assert result.exit_code == 0
    assert {p.name for p in tmp_path.glob("*.json")} >= {"login.json", "finding.json"}


def test_produce_routes_by_type_and_reports_what_it_cannot() -> None:
    from streams.produce import route

    assert route(b'{"type": "login", "account_id": "a"}') == ("platform.logins", b"a")
    assert route(b'{"type": "rating_given", "account_id": "c"}') == ("platform.marketplace", b"c")
    for bad in (b"[]", b"{", b'{"type": "nope", "account_id": "a"}', b'{"type": "login"}'):
        with pytest.raises(ValueError):
            route(bad)


def test_simulate_then_evaluate(tmp_path: Path) -> None:
    world = tmp_path / "world"
    result = runner.invoke(
        app, ["simulate", "--out", str(world), "--seed", "3", "--accounts", "120", "--days", "3"]
    )
    assert result.exit_code == 0, result.output
    assert "team identities" in result.output
    alerts = tmp_path / "alerts.jsonl"
    runner.invoke(app, ["replay", str(world / "events.jsonl"), "--out", str(alerts)])
    table = runner.invoke(app, ["evaluate", str(alerts), str(world / "truth.json")])
    assert table.exit_code == 0 and "recall" in table.output and "shared_ip" in table.output
    scores = runner.invoke(
        app, ["evaluate", str(alerts), str(world / "truth.json"), "--json", "--min-recall", "0.9"]
    )
    assert scores.exit_code == 0
    document = orjson.loads(scores.output.splitlines()[0])
    assert {d["detector"] for d in document["detectors"]} >= {"geo_velocity", "payout_routing"}


def test_evaluate_fails_when_recall_is_too_low(tmp_path: Path) -> None:
    world = tmp_path / "world"
    runner.invoke(app, ["simulate", "--out", str(world), "--accounts", "60", "--days", "2"])
    empty = tmp_path / "none.jsonl"
    empty.write_text("")
    result = runner.invoke(app, ["evaluate", str(empty), str(world / "truth.json"),
                                 "--min-recall", "0.9"])  # fmt: skip
    assert result.exit_code == 1
    assert "recall under 0.9" in result.output


def test_replay_writes_cases_and_applies_feedback(tmp_path: Path) -> None:
    world = tmp_path / "world"
    runner.invoke(app, ["simulate", "--out", str(world), "--seed", "3", "--accounts", "120",
                        "--days", "3"])  # fmt: skip
    alerts, cases = tmp_path / "alerts.jsonl", tmp_path / "cases.jsonl"
    done = runner.invoke(app, ["replay", str(world / "events.jsonl"), "--out", str(alerts),
                               "--cases", str(cases)])  # fmt: skip
    assert done.exit_code == 0, done.output
    final = {}
    for line in cases.read_bytes().splitlines():
        message = orjson.loads(line)
        final[message["finding_info"]["uid"]] = message
    uid = next(u for u, m in final.items() if m["activity_id"] != 3)  # a case still open
    feedback = tmp_path / "feedback.jsonl"
    feedback.write_bytes(orjson.dumps({"type": "case_verdict", "case_uid": uid,
                                       "verdict": "confirmed", "analyst": "ana",
                                       "occurred_at": "2026-04-01T00:00:00Z"}) + b"\n")  # fmt: skip
    again = runner.invoke(app, ["replay", str(world / "events.jsonl"), "--out", str(alerts),
                                "--cases", str(cases), "--feedback", str(feedback)])  # fmt: skip
    assert again.exit_code == 0, again.output
    messages = [orjson.loads(line) for line in cases.read_bytes().splitlines()]
    last = {m["finding_info"]["uid"]: m for m in messages}
    assert last[uid]["activity_name"] == "Close" and last[uid]["verdict"] == "True Positive"
    scored = runner.invoke(app, ["evaluate", str(alerts), str(world / "truth.json"),
                                 "--cases", str(cases), "--json"])  # fmt: skip
    still_open = sum(1 for m in last.values() if m["activity_id"] != 3)
    assert orjson.loads(scored.output.splitlines()[0])["cases"]["open_cases"] == still_open
    feedback.write_bytes(b'{"type": "case_verdict", "case_uid": "x"}\n')
    bad = runner.invoke(app, ["replay", str(world / "events.jsonl"), "--out", str(alerts),
                              "--cases", str(cases), "--feedback", str(feedback)])  # fmt: skip
    assert bad.exit_code == 1 and "invalid_feedback" in bad.output


def test_suppress_takes_exactly_one_entity_and_names_a_template(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import streams.casecli

    sent: list[tuple[str, dict[str, object]]] = []
    monkeypatch.setattr(streams.casecli, "_publish", lambda key, value: sent.append((key, value)))
    base = ["feedback", "suppress", "--reason", "agency letter", "--analyst", "ana"]
    result = runner.invoke(app, [*base, "--template", "sim-123"])
    assert result.exit_code == 0, result.output
    ((key, value),) = sent
    assert key == "sim-123" and value["entity_kind"] == "template" and value["value"] == "sim-123"
    result = runner.invoke(app, [*base, "--template", "sim-1", "--instrument", "pp-1"])
    assert result.exit_code != 0 and "exactly one of" in result.output
