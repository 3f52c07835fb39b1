"""`daylight`: the command line of Daylight."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any

import orjson
import typer
from rich.console import Console

from streams.casecli import feedback_app, register_case_commands
from streams.settings import Settings, SettingsError, load_settings, tune_collector

__all__ = ["app", "main"]

app = typer.Typer(
    help="Daylight: finds DPRK IT-worker red flags in a platform's Kafka event stream.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
broker_app = typer.Typer(help="Run a local Apache Kafka (KRaft) from Maven Central jars.")
topics_app = typer.Typer(help="Manage the topics of the contract (deploy/topics.yaml).")
alerts_app = typer.Typer(help="Read findings from daylight.alerts.")
schemas_app = typer.Typer(help="The JSON Schemas of the contract.")
app.add_typer(broker_app, name="broker")
app.add_typer(topics_app, name="topics")
app.add_typer(alerts_app, name="alerts")
app.add_typer(schemas_app, name="schemas")


def _console(stderr: bool = False) -> Console:
    """A terminal gets its own width; a log, a pipe or a file gets room enough that ids,
    detector names and summaries are never cut (rich would otherwise assume 80 columns)."""
    stream = sys.stderr if stderr else sys.stdout
    wide = None if stream.isatty() else 240
    return Console(stderr=stderr, soft_wrap=True, width=wide)


out = _console()
err = _console(stderr=True)


def _settings(**overrides: Any) -> Settings:
    try:
        return load_settings(**overrides)
    except SettingsError as exc:
        err.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from None


def _detectors(only: Sequence[str] | None = None, ready: bool = False) -> list[Any]:
    """The detectors `only` names (all by default); `ready`: with what they read besides
    events loaded now (`detectors.prepare`), for a command that runs them."""
    from detectors import DetectorSettingsError, all_detectors

    try:
        detectors = [d for d in all_detectors() if only is None or d.metadata.id in only]
    except DetectorSettingsError as exc:
        err.print(f"[red]error:[/red] {exc}", highlight=False)
        raise typer.Exit(2) from None
    if ready:
        _prepare(detectors)
    return detectors


def _prepare(detectors: list[Any]) -> None:
    """What the detectors read besides events, loaded now (`detectors.prepare`); a file that
    cannot be read stops the command, naming its setting."""
    from detectors import DetectorSettingsError, prepare

    try:
        prepare(detectors)
    except DetectorSettingsError as exc:
        err.print(f"[red]error:[/red] {exc}", highlight=False)
        raise typer.Exit(2) from None


def _case_settings() -> Any:
    """DAYLIGHT_CASE_* settings; a bad value fails at start, naming the variable."""
    from pydantic import ValidationError

    from detectors.core.casework import CaseSettings

    try:
        return CaseSettings()
    except ValidationError as exc:
        problems = "; ".join(
            f"DAYLIGHT_CASE_{'_'.join(map(str, e['loc'])).upper() or '*'}: {e['msg']}"
            for e in exc.errors(include_url=False)
        )
        err.print(f"[red]error:[/red] invalid setting: {problems}", highlight=False)
        raise typer.Exit(2) from None


def _fail(message: str, code: int = 1) -> typer.Exit:
    err.print(f"[red]error:[/red] {message}", highlight=False)
    return typer.Exit(code)


# ---------------------------------------------------------------- broker
PortOption = Annotated[int, typer.Option("--port", help="client port; the controller uses port+1")]
DataDirOption = Annotated[
    Path | None, typer.Option("--data-dir", help="broker data dir (default .daylight/kafka-data)")
]
VersionOption = Annotated[
    str | None,
    typer.Option(
        "--kafka-version", envvar="DAYLIGHT_KAFKA_VERSION", help="Kafka version, 3.9.x or 4.1.x"
    ),
]


def _broker(port: int, data_dir: Path | None, kafka_version: str | None) -> Any:
    from streams.broker import DEFAULT_KAFKA_VERSION, PROJECT_ROOT, LocalBroker

    return LocalBroker(
        port=port,
        data_dir=(data_dir or PROJECT_ROOT / ".daylight" / "kafka-data").resolve(),
        kafka_version=kafka_version or DEFAULT_KAFKA_VERSION,
    )


@broker_app.command("start")
def broker_start(
    port: PortOption = 9092, data_dir: DataDirOption = None, kafka_version: VersionOption = None
) -> None:
    """Start the local broker (idempotent); return once it answers metadata requests."""
    from streams.broker import BrokerError

    try:
        out.print(_broker(port, data_dir, kafka_version).start())
    except BrokerError as exc:
        raise _fail(str(exc)) from None


@broker_app.command("stop")
def broker_stop(
    port: PortOption = 9092, data_dir: DataDirOption = None, kafka_version: VersionOption = None
) -> None:
    """Stop the local broker cleanly."""
    out.print(_broker(port, data_dir, kafka_version).stop())


@broker_app.command("status")
def broker_status(
    port: PortOption = 9092, data_dir: DataDirOption = None, kafka_version: VersionOption = None
) -> None:
    """Say whether the local broker runs; exit 1 when it does not."""
    running, text = _broker(port, data_dir, kafka_version).status()
    out.print(text)
    if not running:
        raise typer.Exit(1)


@broker_app.command("fetch")
def broker_fetch(kafka_version: VersionOption = None) -> None:
    """Resolve the Kafka jars from Maven Central (done by `start` when needed)."""
    from streams.broker import BrokerError

    try:
        out.print(f"Kafka jars in {_broker(9092, None, kafka_version).fetch()}")
    except BrokerError as exc:
        raise _fail(str(exc)) from None


# ---------------------------------------------------------------- topics
@topics_app.command("acls")
def topics_acls(
    worker: Annotated[
        str, typer.Option("--worker", help="the worker's principal, e.g. User:daylight")
    ],
    soc: Annotated[
        str, typer.Option("--soc", help="the SOC's principal, the only feedback writer")
    ],
    reader: Annotated[
        list[str] | None, typer.Option("--reader", help="a principal that reads cases (repeat)")
    ] = None,
) -> None:
    """Grant the ACLs under which only the SOC's principal may write daylight.feedback (the
    broker must run an authorizer, e.g. KRaft's StandardAuthorizer)."""
    from confluent_kafka import KafkaException

    from streams.acls import apply_acls, bindings

    settings = _settings()
    _require_broker(settings)
    acls = bindings(worker, soc, tuple(reader or ()), settings.app_id)
    try:
        count = apply_acls(settings.confluent_config(), acls)
    except KafkaException as exc:
        raise _fail(f"ACLs not applied: {exc.args[0].str() if exc.args else exc}") from None
    out.print(f"{count} ACL bindings applied: only {soc} may write daylight.feedback",
              highlight=False)  # fmt: skip


@topics_app.command("create")
def topics_create(
    partitions: Annotated[
        int | None, typer.Option(help="override the partition count of every topic")
    ] = None,
) -> None:
    """Create every topic of deploy/topics.yaml that is missing (idempotent)."""
    from confluent_kafka import KafkaException

    from streams.admin import create_topics, load_topic_specs

    settings = _settings()
    _require_broker(settings)
    try:
        for line in create_topics(
            settings.confluent_config(),
            load_topic_specs(partitions=partitions or settings.topic_partitions),
        ):
            out.print(line, highlight=False)
    except KafkaException as exc:
        raise _fail(f"creating topics failed: {exc}") from None


def _require_broker(settings: Settings) -> None:
    from streams.broker import probe_broker

    problem = probe_broker(
        settings.bootstrap_servers,
        timeout=settings.broker_check_timeout_seconds,
        config=settings.confluent_config(),
    )
    if problem == "authentication":
        raise _fail(
            f"Kafka at {settings.bootstrap_servers} refused the credentials of user "
            f"{settings.sasl_username!r} ({settings.security_protocol} "
            f"{settings.sasl_mechanism}): check DAYLIGHT_SASL_USERNAME and DAYLIGHT_SASL_PASSWORD",
            code=3,
        )
    if problem is not None:
        raise _fail(
            f"no Kafka broker answers at {settings.bootstrap_servers} within "
            f"{settings.broker_check_timeout_seconds:g}s (DAYLIGHT_BOOTSTRAP_SERVERS); "
            "is it running? `daylight broker start` runs a local one; check the security "
            "settings (DAYLIGHT_SECURITY_PROTOCOL, DAYLIGHT_SASL_*) if it needs credentials",
            code=3,
        )


# ---------------------------------------------------------------- produce
@app.command("produce")
def produce(
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="JSON Lines events")],
    progress: Annotated[bool, typer.Option("--progress", help="show a progress bar")] = False,
) -> None:
    """Publish each event of FILE to its topic by `type`, keyed by account_id (murmur2)."""
    from rich.progress import Progress

    from streams.produce import produce_lines

    settings = _settings()
    _require_broker(settings)
    with file.open("rb") as lines, Progress(console=err, disable=not progress) as bar:
        total = sum(1 for _ in file.open("rb")) if progress else None
        task = bar.add_task(f"publishing {file.name}", total=total)
        report = produce_lines(
            settings.confluent_config(),
            lines,
            on_progress=lambda number: bar.update(task, completed=number),
        )
    for topic, count in sorted(report.sent.items()):
        out.print(f"{count:>8} -> {topic}", highlight=False)
    for number, reason in report.unroutable:
        err.print(f"{file}:{number}: not sent: {reason}", highlight=False)
    if report.unroutable:
        err.print(f"{len(report.unroutable)} line(s) could not be routed")
    if report.failed:
        raise _fail(f"{report.failed} message(s) were not acknowledged by the broker")


# ---------------------------------------------------------------- worker
@app.command("worker")
def worker(
    metrics_port: Annotated[
        int | None, typer.Option(help="Prometheus port (DAYLIGHT_METRICS_PORT, default 9108)")
    ] = None,
) -> None:
    """Run a Faust worker with every agent; stops on SIGTERM or Ctrl-C."""
    from streams.admin import missing_topics
    from streams.runner import run_worker
    from streams.topics import ALERTS, CASES, DLQ, FEEDBACK, INPUT_TOPICS

    settings = _settings(metrics_port=metrics_port)
    detectors = _detectors(settings.detector_ids, ready=True)
    cases = _case_settings()
    _require_broker(settings)
    needed = [*INPUT_TOPICS, ALERTS, DLQ, CASES, FEEDBACK]
    missing = missing_topics(settings.confluent_config(), needed)
    if missing:
        raise _fail(f"missing topics {', '.join(missing)}: run `daylight topics create`", code=3)
    run_worker(settings, detectors, announce=err.print, cases=cases)


# ---------------------------------------------------------------- alerts
@alerts_app.command("tail")
def alerts_tail(
    from_beginning: Annotated[
        bool, typer.Option("--from-beginning", help="start at the oldest")
    ] = False,
    as_json: Annotated[
        bool, typer.Option("--json", help="print each finding as one JSON line")
    ] = False,
    idle: Annotated[
        float | None, typer.Option("--idle", help="stop after SECONDS without a new finding")
    ] = None,
    live: Annotated[
        bool, typer.Option("--live", help="a live table of the newest findings")
    ] = False,
    out_file: Annotated[
        Path | None, typer.Option("--out", help="also write every finding to this JSON Lines file")
    ] = None,
) -> None:
    """Print findings from daylight.alerts as they arrive."""
    from contextlib import ExitStack

    from rich.live import Live

    from streams.console import LiveFindings, alert_line
    from streams.tail import tail_alerts

    settings = _settings()
    _require_broker(settings)
    board = LiveFindings()
    with ExitStack() as stack:
        sink = stack.enter_context(out_file.open("wb")) if out_file else None
        screen = (
            stack.enter_context(Live(board.render(), console=out, refresh_per_second=4))
            if live
            else None
        )
        try:
            for value in tail_alerts(settings.confluent_config(), from_beginning, idle):
                if sink is not None:
                    sink.write(value + b"\n")
                if as_json:
                    sys.stdout.write(value.decode() + "\n")
                    sys.stdout.flush()
                    continue
                finding = orjson.loads(value)
                if screen is not None:
                    board.add(finding)
                    screen.update(board.render())
                else:
                    out.print(alert_line(finding), highlight=False)
        except KeyboardInterrupt:
            pass


# ---------------------------------------------------------------- replay
@app.command("replay")
def replay_command(
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="JSON Lines events")],
    out_file: Annotated[
        Path, typer.Option("--out", help="where to write the findings (JSON Lines)")
    ],
    cases_file: Annotated[
        Path | None, typer.Option("--cases", help="also write the cases (JSON Lines)")
    ] = None,
    feedback_file: Annotated[
        Path | None,
        typer.Option(
            "--feedback", exists=True, dir_okay=False, help="analysts' feedback (JSON Lines)"
        ),
    ] = None,
    jobs: Annotated[
        int | None,
        typer.Option(
            "--jobs",
            min=1,
            max=1024,
            help="processes (default: the cores available); events split by entity as "
            "Kafka partitions split them, the same findings whatever the number",
        ),
    ] = None,
) -> None:
    """Run every detector over FILE offline, without Kafka, and write the findings (and the
    cases the live case agent would publish)."""
    from detectors.core.parallel import default_jobs, replay_parallel
    from detectors.core.replay import ReplayReport, replay
    from schemas.codec import encode_finding

    report = ReplayReport()
    published: list[bytes] = []
    jobs = jobs or default_jobs()
    settings = _settings()
    # DAYLIGHT_DETECTORS, as the worker reads it. One job loads what they read besides events
    # now; several jobs load it while they work out which job owns each line (the jobs fork
    # after it, and inherit it). The collector then freezes what the process holds.
    chosen = _detectors(settings.detector_ids, ready=jobs == 1)
    tune_collector(settings.gc_young_allocations)
    if jobs == 1:  # streamed: memory does not grow with the file
        with out_file.open("wb") as sink, file.open("rb") as lines:
            for finding in replay(lines, chosen, report):
                value = encode_finding(finding)
                sink.write(value + b"\n")
                if cases_file is not None:
                    published.append(value)
    else:

        def ready() -> None:
            _prepare(chosen)
            tune_collector(settings.gc_young_allocations)

        result = replay_parallel(file.read_bytes().splitlines(), chosen, jobs, ready)
        report.events, report.malformed = result.events, result.malformed
        report.findings.update(result.by_detector)
        with out_file.open("wb") as sink:
            for value in result.findings:
                sink.write(value + b"\n")
        if cases_file is not None:
            published = result.findings
    if cases_file is not None:
        _write_cases(published, cases_file, feedback_file)
    for number, reason, message in report.malformed[:20]:
        err.print(f"{file}:{number}: {reason}: {message}", highlight=False)
    if report.malformed:
        err.print(f"{len(report.malformed)} malformed line(s) skipped", highlight=False)
    total = sum(report.findings.values())
    by_detector = ", ".join(f"{k}={v}" for k, v in sorted(report.findings.items())) or "none"
    err.print(
        f"{report.events} events, {total} findings ({by_detector}) -> {out_file}", highlight=False
    )


def _write_cases(findings: list[bytes], cases_file: Path, feedback_file: Path | None) -> None:
    from detectors.core.casework import replay_cases
    from schemas.codec import InvalidEvent, decode_feedback, encode_case

    feedback = []
    if feedback_file is not None:
        for number, line in enumerate(feedback_file.read_bytes().splitlines(), start=1):
            if line.strip():
                try:
                    feedback.append(decode_feedback(line))
                except InvalidEvent as exc:
                    raise _fail(f"{feedback_file}:{number}: {exc.reason}: {exc.message}") from None
    settings = _case_settings()
    count = 0
    with cases_file.open("wb") as sink:
        for case in replay_cases((orjson.loads(f) for f in findings), feedback, settings):
            sink.write(encode_case(case) + b"\n")
            count += 1
    err.print(f"{count} case messages -> {cases_file}", highlight=False)


# ---------------------------------------------------------------- cases
cases_app = typer.Typer(
    help="Cases on daylight.cases (list, show) and the detectors' test cases (export)."
)
app.add_typer(cases_app, name="cases")
app.add_typer(feedback_app, name="feedback")


def _topic_values(topic: str) -> Any:
    """Every value of `topic` from its beginning, until 3 s pass without a new one."""
    from streams.tail import tail_alerts

    settings = _settings()
    _require_broker(settings)
    return tail_alerts(settings.confluent_config(), True, 3.0, topic=topic)


register_case_commands(cases_app, out, _topic_values)


@cases_app.command("export")
def cases_export(
    out_file: Annotated[Path, typer.Argument(help="JSON Lines file to write")],
) -> None:
    """Write every case's events as one JSON Lines file, in event-time order (demo input)."""
    from detectors.core.cases import case_events, load_cases

    events = case_events(load_cases())
    with out_file.open("wb") as sink:
        for event in events:
            sink.write(orjson.dumps(event) + b"\n")
    err.print(f"{len(events)} events -> {out_file}", highlight=False)


# ---------------------------------------------------------------- simulate / evaluate
@app.command("simulate")
def simulate_command(
    out_dir: Annotated[
        Path, typer.Option("--out", help="directory for events.jsonl and truth.json")
    ],
    seed: Annotated[int, typer.Option(help="the same seed writes the same world")] = 7,
    accounts: Annotated[int, typer.Option(min=10, help="accounts on the platform")] = 300,
    days: Annotated[int, typer.Option(min=2, help="days of activity")] = 7,
    teams: Annotated[int, typer.Option(min=0, help="DPRK IT-worker teams among them")] = 2,
    rate: Annotated[
        float | None,
        typer.Option(help="also publish the events to Kafka at N events/s, in event-time order"),
    ] = None,
) -> None:
    """Write a synthetic platform with known answers: benign users and DPRK teams."""
    from simulator.simulate import lines, simulate

    world = simulate(seed=seed, accounts=accounts, days=days, teams=teams)
    out_dir.mkdir(parents=True, exist_ok=True)
    with (out_dir / "events.jsonl").open("wb") as sink:
        for line in lines(world):
            sink.write(line + b"\n")
    (out_dir / "truth.json").write_bytes(orjson.dumps(world.truth(), option=orjson.OPT_INDENT_2))
    identities = sum(len(members) for members in world.teams.values())
    err.print(
        f"{len(world.events)} events, {accounts} accounts ({identities} team identities in "
        f"{len(world.teams)} teams) over {days} days -> {out_dir}/events.jsonl, truth.json",
        highlight=False,
    )
    if rate is not None:
        from streams.produce import publish_paced

        settings = _settings()
        _require_broker(settings)
        sent = publish_paced(settings.confluent_config(), lines(world), rate, err)
        err.print(f"published {sent} events at {rate:g}/s", highlight=False)


@app.command("evaluate")
def evaluate_command(
    alerts_file: Annotated[
        Path, typer.Argument(exists=True, dir_okay=False, help="findings (JSON Lines)")
    ],
    truth_file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="truth.json")],
    as_json: Annotated[bool, typer.Option("--json", help="print the scores as JSON")] = False,
    min_recall: Annotated[
        float | None, typer.Option(help="exit 1 when a detector's recall is below this")
    ] = None,
    cases_file: Annotated[
        Path | None,
        typer.Option("--cases", exists=True, dir_okay=False, help="cases (JSON Lines) to score"),
    ] = None,
) -> None:
    """Per detector: recall, precision, findings per flagged account; overall coverage; with
    --cases, the cases: identity recall, benign accounts in a case, team coherence."""
    from simulator.evaluate import evaluate, evaluate_cases
    from streams.console import case_evaluation_table, evaluation_table

    findings = [
        orjson.loads(line) for line in alerts_file.read_bytes().splitlines() if line.strip()
    ]
    truth = orjson.loads(truth_file.read_bytes())
    evaluation = evaluate(findings, truth)
    scored = None
    if cases_file is not None:
        cases = [
            orjson.loads(line) for line in cases_file.read_bytes().splitlines() if line.strip()
        ]
        scored = evaluate_cases(cases, findings, truth)
    if as_json:
        result = evaluation.as_dict() | ({"cases": scored.as_dict()} if scored else {})
        sys.stdout.write(orjson.dumps(result).decode() + "\n")
    else:
        out.print(evaluation_table(evaluation))
        if scored is not None:
            out.print(case_evaluation_table(scored))
    if min_recall is not None and (low := evaluation.recall_below(min_recall)):
        raise _fail(f"recall under {min_recall:g} for {', '.join(low)}")


# ---------------------------------------------------------------- schemas
@schemas_app.command("export")
def schemas_export(
    directory: Annotated[
        Path | None, typer.Option(help="target directory (default schemas/json)")
    ] = None,
) -> None:
    """Write the JSON Schema of every event type and of the finding."""
    from schemas.jsonschema import JSON_DIR, write

    for path in write(directory or JSON_DIR):
        out.print(str(path), highlight=False)


def main() -> None:
    app()


if __name__ == "__main__":  # `python -m streams.cli` (benchmarks run a checkout this way)
    main()
