"""`make bench`: throughput, latency and memory of Daylight against the raw-client ceiling and a
Quix Streams peer, all on one local broker in one run. Prints one JSON line with every figure.

    python -m tests.bench.run --servers 127.0.0.1:19592 [--accounts 1000] [--logins 100000]

Phases (each worker in a consumer group of its own, reading the same backlog from the start):
1. publish: a simulated platform (`daylight simulate`) plus a login-heavy stream;
2. ceiling: a bare confluent-kafka consumer that only decodes (orjson) every event;
3. floor: a stock Faust agent that only iterates its stream over every input topic;
   daylight: one worker per detector alone, the all-agents worker of an earlier commit
   (`--baseline`, a git worktree), then this one with all of them, each draining the backlog
   (with the cost of an event split into detection and engine); the floor, the baselines and
   the all-agents worker `--drain-repeats` times, interleaved, each figure the median;
4. peer: geo_velocity written with Quix Streams, on platform.logins;
5. latency: the all-agents worker, caught up, fed at half its sustained rate, with probe logins
   that must raise a geo_velocity finding; produce-to-finding time as a SOC consumer sees it;
6. replay: `daylight replay` over the same events, with one job and with one per core, the
   first five detectors, and the `--baseline` commit's replay, each `--replay-repeats` times,
   interleaved (the machine's speed drifts: each figure is the median of its runs);
7. memory: state bytes per active account in geo_velocity and shared_ip, and RSS over a 5M-event
   replay of a rolling population (expiry must flatten it).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import random
import signal
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient

from detectors import DETECTOR_IDS, all_detectors
from detectors.core.engine import DetectorRunner
from schemas.codec import decode_event
from streams.produce import produce_lines, route
from streams.topics import ALERTS, FEEDBACK, INPUT_TOPICS

ROOT = Path(__file__).resolve().parents[2]
# `python -m streams.cli` in this checkout (a benchmark may run an older checkout of Daylight).
DAYLIGHT = [sys.executable, "-m", "streams.cli"]
QUIX_PYTHON = ROOT / ".bench-venv" / "bin" / "python"
WORK = ROOT / ".daylight" / "bench"
#: The detectors of the first landing, which the commit before issue 14 (84fb69c) had.
FIRST_FIVE = "geo_velocity,shared_ip,remote_access,continuous_session,payout_routing"
TOPICS_BY_DETECTOR = {d.metadata.id: d.metadata.topics for d in all_detectors()}
PLACES = [("US", 40.71, -74.01), ("GB", 51.51, -0.13), ("DE", 52.52, 13.40),
          ("IN", 12.97, 77.59), ("BR", -23.55, -46.63), ("JP", 35.68, 139.69)]  # fmt: skip


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# ------------------------------------------------------------------ events
def login_stream(count: int, accounts: int, start: datetime) -> Iterator[bytes]:
    """Logins of `accounts` people from fixed homes, one in 50 from far away within minutes."""
    rng = random.Random(11)
    for i in range(count):
        number = rng.randrange(accounts)
        country, lat, lon = PLACES[number % len(PLACES)]
        if i % 50 == 49:
            country, lat, lon = PLACES[(number + 3) % len(PLACES)]
        at = start + timedelta(seconds=i * 2)
        yield orjson.dumps(
            {
                "event_id": f"bench-login-{i}",
                "type": "login",
                "occurred_at": at.strftime("%Y-%m-%dT%H:%M:%SZ"),
                "account_id": f"bench-{number}",
                "ip": f"198.18.{(number >> 8) & 255}.{number & 255}",
                "geo": {"country": country, "lat": lat, "lon": lon},
            }
        )


def build_events(accounts: int, days: int, logins: int) -> list[bytes]:
    from simulator.simulate import START, lines, simulate

    world = list(lines(simulate(seed=7, accounts=accounts, days=days, teams=2)))
    extra = list(login_stream(logins, max(1000, logins // 20), START))
    return world + extra


def newest_event_time(events: list[bytes]) -> datetime:
    """The newest `occurred_at` of the backlog."""
    return max(datetime.fromisoformat(orjson.loads(line)["occurred_at"]) for line in events)


# ------------------------------------------------------------------ kafka helpers
def end_offsets(servers: str, topics: list[str]) -> dict[tuple[str, int], int]:
    consumer = Consumer({"bootstrap.servers": servers, "group.id": "bench-offsets"})
    try:
        ends = {}
        metadata = consumer.list_topics(timeout=10)
        for topic in topics:
            for partition in metadata.topics[topic].partitions:
                for attempt in range(50):  # a topic just created may not have a leader yet
                    try:
                        _, high = consumer.get_watermark_offsets(
                            TopicPartition(topic, partition), timeout=10
                        )
                        break
                    except KafkaException:
                        if attempt == 49:
                            raise
                        time.sleep(0.2)
                ends[(topic, partition)] = high
        return ends
    finally:
        consumer.close()


def committed(servers: str, group: str, tps: list[tuple[str, int]]) -> dict[tuple[str, int], int]:
    consumer = Consumer({"bootstrap.servers": servers, "group.id": group})
    try:
        got = consumer.committed([TopicPartition(t, p) for t, p in tps], timeout=10)
        return {(tp.topic, tp.partition): max(tp.offset, 0) for tp in got}
    finally:
        consumer.close()


def forget_findings(servers: str) -> int:
    """Truncate what a new worker's case agent reads besides the events (the findings and
    feedback of earlier drains) and return how many records that was. A worker in a new
    group reads `daylight.alerts` from its beginning: without this, each drain on a broker
    also rebuilt the case book from every earlier drain's findings, a few thousand more
    each time, so later drains did more work than earlier ones."""
    end_offsets(servers, [ALERTS, FEEDBACK])  # their leaders are known
    consumer = Consumer({"bootstrap.servers": servers, "group.id": "bench-offsets"})
    try:
        held = {}
        for topic in (ALERTS, FEEDBACK):
            for partition in consumer.list_topics(topic, timeout=10).topics[topic].partitions:
                tp = TopicPartition(topic, partition)
                low, high = consumer.get_watermark_offsets(tp, timeout=10)
                if high > low:
                    held[TopicPartition(topic, partition, high)] = high - low
    finally:
        consumer.close()
    if held:
        admin = AdminClient({"bootstrap.servers": servers})  # kept: its futures need it alive
        for future in admin.delete_records(list(held)).values():
            future.result(timeout=60)
    return sum(held.values())


def internal_topics(servers: str, group: str) -> list[str]:
    names = AdminClient({"bootstrap.servers": servers}).list_topics(timeout=10).topics
    return sorted(n for n in names if n.startswith(f"{group}-") and "-by-" in n)


#: How often a draining worker's metrics are read. Each read renders every metric of the
#: worker on its own threads: at 0.1 s that took 7% of the worker's samples in a profile
#: (Prometheus itself scrapes every 15 s); at 0.5 s a drain's time is still known to 1%.
SAMPLE_SECONDS = 0.5


def metric_samples(port: int) -> dict[str, float]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as answer:
            text = answer.read().decode()
    except OSError:
        return {}
    samples = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            samples[name] = float(value)
    return samples


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


# ------------------------------------------------------------------ phases
def publish(servers: str, events: list[bytes]) -> dict[str, int]:
    started = time.perf_counter()
    report = produce_lines({"bootstrap.servers": servers}, events)
    assert not report.failed and not report.unroutable, report
    log(f"published {sum(report.sent.values())} events in {time.perf_counter() - started:.1f}s")
    return dict(report.sent)


def ceiling(servers: str, total: int) -> dict[str, float]:
    """A bare consumer loop: fetch in batches, decode every value with orjson, nothing else."""
    consumer = Consumer(
        {
            "bootstrap.servers": servers,
            "group.id": f"bench-ceiling-{uuid.uuid4().hex[:6]}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    consumer.subscribe(list(INPUT_TOPICS))
    seen, first = 0, 0.0
    deadline = time.monotonic() + 300
    while seen < total and time.monotonic() < deadline:
        for message in consumer.consume(num_messages=1000, timeout=1.0):
            if message.error():
                continue
            if not seen:
                first = time.perf_counter()
            orjson.loads(message.value())
            seen += 1
    elapsed = time.perf_counter() - first
    consumer.close()
    assert seen >= total, f"the ceiling consumer read {seen} of {total}"
    return {"events": seen, "seconds": round(elapsed, 3), "events_per_s": round(seen / elapsed)}


class Worker:
    """A `daylight worker` subprocess in a group of its own."""

    def __init__(self, servers: str, detectors: str, label: str, root: Path = ROOT) -> None:
        self.group = f"bench-{label}-{uuid.uuid4().hex[:6]}"
        self.port = free_port()
        self.log_path = WORK / f"{self.group}.log"
        env = {
            **os.environ,
            "DAYLIGHT_BOOTSTRAP_SERVERS": servers,
            "DAYLIGHT_APP_ID": self.group,
            "DAYLIGHT_DATA_DIR": str(WORK / self.group),
            "DAYLIGHT_METRICS_PORT": str(self.port),
            "DAYLIGHT_DETECTORS": detectors,
        }
        with self.log_path.open("wb") as sink:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "streams.cli", "worker"],
                env=env,
                stdout=sink,
                stderr=subprocess.STDOUT,
                cwd=root,
            )

    def stop(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def progress(samples: dict[str, float]) -> float:
    """Events handled so far by every agent: intake, routers and stages (a sum that only
    grows while any of them works)."""
    return sum(
        value
        for name, value in samples.items()
        if name.startswith("daylight_events_consumed_total")
        or name.startswith("daylight_detector_processing_seconds_count")
    )


def drain(servers: str, detectors: str, label: str, topics: list[str], keep: bool = False,
          root: Path = ROOT) -> Any:  # fmt: skip
    """Start a worker on the backlog; time from its first event to its last, once every
    offset it reads (inputs and repartition topics) is committed at the end of the topic."""
    events = sum(
        high for (topic, _), high in end_offsets(servers, topics).items() if topic in topics
    )
    forgotten = forget_findings(servers)
    worker = Worker(servers, detectors, label, root)
    first = last = 0.0
    level = 0.0
    peak_rss = 0
    deadline = time.monotonic() + 1800
    try:
        while time.monotonic() < deadline:
            time.sleep(SAMPLE_SECONDS)
            assert worker.process.poll() is None, worker.log_path.read_text()[-3000:]
            now = time.perf_counter()
            value = progress(metric_samples(worker.port))
            if value > level:
                first = first or now
                last, level = now, value
            peak_rss = max(peak_rss, rss_kib(worker.process.pid))
            if first and now - last > 1.0 and now - first > 3.0:
                read = topics + internal_topics(servers, worker.group)
                ends = end_offsets(servers, read)
                done = committed(servers, worker.group, list(ends))
                if all(done.get(tp, 0) >= high for tp, high in ends.items()):
                    break
        else:
            raise AssertionError(f"{label}: not drained in 30 min; see {worker.log_path}")
    finally:
        if not keep:
            worker.stop()
    # A small stage can drain between two samples: its time is then the sampling
    # interval (its rate a lower bound), not zero.
    seconds = max(last - first, SAMPLE_SECONDS)
    result = {
        "events": events,
        "seconds": round(seconds, 3),
        "events_per_s": round(events / seconds),
        "peak_rss_mib": round(peak_rss / 1024, 1),
    }
    log(f"daylight {label}: {result} (earlier findings truncated first: {forgotten})")
    return (result, worker) if keep else result


def quix_peer(servers: str, logins: int) -> dict[str, float]:
    group = f"bench-quix-{uuid.uuid4().hex[:6]}"
    out = f"bench-quix-alerts-{group}"
    process = subprocess.Popen(
        [str(QUIX_PYTHON), str(ROOT / "tests" / "bench" / "quix_geo.py"),
         servers, group, str(logins), out],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, cwd=ROOT,
    )  # fmt: skip
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
    finally:
        process.terminate()
        process.wait(timeout=60)
    assert line, "the Quix Streams peer stopped without a result"
    times = json.loads(line)
    seconds = times["last"] - times["first"]
    result = {
        "events": logins,
        "seconds": round(seconds, 3),
        "events_per_s": round(logins / seconds),
    }
    log(f"quix geo_velocity: {result}")
    return result


def latency(
    servers: str, worker: Worker, rate: float, seconds: float, start: datetime
) -> dict[str, float]:
    """Feed the caught-up worker at `rate` events/s (sessions of a live platform) with a
    probe pair of logins every 50 ms; time each probe's second login to its finding.

    The phase's event time runs on from `start`, the backlog's newest event: a live platform
    caught up does not jump weeks ahead, and a jump would have the worker's first batches
    expire every state the backlog left (about 0.6 s of sweeping, all of it in the slowest
    probes, when the phase began four weeks after the backlog)."""
    arrived: dict[str, float] = {}
    stop = threading.Event()

    def watch() -> None:
        consumer = Consumer(
            {
                "bootstrap.servers": servers,
                "group.id": f"bench-soc-{uuid.uuid4().hex[:6]}",
                "auto.offset.reset": "latest",
            }
        )
        consumer.subscribe(["daylight.alerts"], on_assign=lambda c, parts: assigned.set())
        while not stop.is_set():
            message = consumer.poll(0.05)
            if message is None or message.error():
                continue
            key = message.key() or b""
            # The probe's geo_velocity finding only: another detector's finding on the same
            # account comes later and would stand for one the watcher missed.
            if (key.startswith(b"probe-") and key.decode() not in arrived
                    and b'"geo_velocity' in (message.value() or b"")):  # fmt: skip
                arrived[key.decode()] = time.time()
        consumer.close()

    assigned = threading.Event()
    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    # The watcher reads from the end of daylight.alerts once it has its partitions (a new
    # group waits out the broker's initial rebalance delay, 3 s by default): a finding written
    # before then would be skipped.
    assert assigned.wait(60), "the watcher got no partition of daylight.alerts"
    time.sleep(2)
    producer = Producer({"bootstrap.servers": servers, "partitioner": "murmur2_random",
                         "linger.ms": 5})  # fmt: skip
    # Connected, with the topics' leaders known, before the clock starts: a client's first
    # metadata round trip is not the worker's latency.
    producer.list_topics(timeout=10)
    for topic in INPUT_TOPICS:
        producer.list_topics(topic, timeout=10)
    sent_at: dict[str, float] = {}
    began = time.monotonic()
    began_wall = time.time()
    tag = uuid.uuid4().hex[:6]
    sent = probes = 0
    background = 0
    while time.monotonic() - began < seconds:
        elapsed = time.monotonic() - began
        moment = start + timedelta(seconds=elapsed)
        while sent < elapsed * rate:
            background += 1
            number = background % 5000
            line = orjson.dumps(
                {
                    "event_id": f"live-{background}",
                    "type": "session_heartbeat",
                    "occurred_at": moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
                    "account_id": f"live-{number}",
                    "session_id": f"live-s-{number}",
                    "ip": f"198.19.{(number >> 8) & 255}.{number & 255}",
                }
            )
            topic, key = route(line)
            producer.produce(topic, key=key, value=line)
            sent += 1
        if elapsed >= probes * 0.05:
            probes += 1
            account = f"probe-{tag}-{probes}"  # new accounts on a broker already probed
            for index, (country, lat, lon, offset) in enumerate(
                [("US", 40.71, -74.01, 0), ("KP", 39.02, 125.75, 600)]
            ):
                line = orjson.dumps(
                    {
                        "event_id": f"{account}-{index}",
                        "type": "login",
                        "occurred_at": (moment + timedelta(seconds=offset)).strftime(
                            "%Y-%m-%dT%H:%M:%S.%fZ"
                        ),
                        "account_id": account,
                        "ip": f"203.0.113.{index + 1}",
                        "geo": {"country": country, "lat": lat, "lon": lon},
                    }
                )
                producer.produce("platform.logins", key=account.encode(), value=line)
                if index == 1:
                    sent_at[account] = time.time()
                sent += 1
        producer.poll(0)
        time.sleep(0.001)
    producer.flush(30)
    deadline = time.monotonic() + 30
    while len(arrived) < len(sent_at) and time.monotonic() < deadline:
        time.sleep(0.2)
    stop.set()
    watcher.join(10)
    delays = sorted(arrived[a] - sent_at[a] for a in sent_at if a in arrived)
    assert delays, "no probe finding arrived"

    def pct(q: float) -> float:
        return round(delays[min(len(delays) - 1, int(q * len(delays)))] * 1000, 1)

    result = {
        "rate_events_per_s": round(sent / seconds),
        "probes": len(sent_at),
        "findings": len(delays),
        "p50_ms": pct(0.50),
        "p99_ms": pct(0.99),
        "max_ms": round(delays[-1] * 1000, 1),
        # The three slowest probes: (probe number, seconds into the phase, latency ms).
        "slowest": sorted(
            (
                (int(a.rsplit("-", 1)[1]), round(sent_at[a] - began_wall, 2),
                 round((arrived[a] - sent_at[a]) * 1000, 1))
                for a in sent_at if a in arrived
            ),
            key=lambda probe: -probe[2],
        )[:3],
    }  # fmt: skip
    log(f"latency: {result}")
    return result


def replay_rate(events_file: Path, jobs: int | None, root: Path = ROOT,
                detectors: str = "all", label: str = "") -> dict[str, float]:  # fmt: skip
    """`daylight replay` of the backlog file, start-up included: this checkout's, or an
    earlier one's (`root`; `jobs` None for a version without `--jobs`), with the detectors
    `DAYLIGHT_DETECTORS` names. The rate counts the file's events (a re-run on a warm broker
    holds more: each latency phase adds its probes there, not to the file)."""
    total = sum(1 for line in events_file.read_bytes().splitlines() if line.strip())
    started = time.perf_counter()
    subprocess.run(
        [*DAYLIGHT, "replay", str(events_file), "--out", str(WORK / "replay-findings.jsonl"),
         *(["--jobs", str(jobs)] if jobs is not None else [])],
        cwd=root,
        check=True,
        capture_output=True,
        env={**os.environ, "DAYLIGHT_DETECTORS": detectors},
    )  # fmt: skip
    seconds = time.perf_counter() - started
    result = {"events": total, "seconds": round(seconds, 3), "events_per_s": round(total / seconds)}
    log(f"replay{label}, {jobs or 1} job(s), detectors {detectors}: {result}")
    return result


def _at_least_one(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def _median_run(runs: list[dict[str, float]]) -> dict[str, Any]:
    """One figure from repeated runs of the same replay: the median time, and every run's."""
    seconds = sorted(run["seconds"] for run in runs)
    median = statistics.median(seconds)
    events = runs[0]["events"]
    return {"events": events, "seconds": round(median, 3),
            "events_per_s": round(events / median), "runs_s": seconds}  # fmt: skip


def _median_drain(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """One figure from repeated drains of the same backlog: the run of median rate (the lower
    of the middle two for an even count: a rate that was measured), with every run's rate."""
    rates = sorted(run["events_per_s"] for run in runs)
    median = statistics.median_low(rates)
    chosen = next(run for run in runs if run["events_per_s"] == median)
    return {**chosen, "runs_events_per_s": rates}


def replays(events_file: Path, jobs: int, baseline: str, repeats: int) -> dict[str, Any]:
    """Each replay `repeats` times, one of each in turn: a drift of the shared machine's speed
    (a quarter within half an hour has been seen) then weighs on every figure alike, and the
    median of each is reported with its runs."""
    wanted: dict[str, Callable[[], dict[str, float]]] = {
        "replay": lambda: replay_rate(events_file, 1)
    }
    if jobs > 1:
        wanted["replay_jobs"] = lambda: replay_rate(events_file, jobs)
    # Like for like with the commit before issue 14, which had the first five detectors:
    # this checkout with those five, and that commit's own replay (one process).
    wanted["replay_five"] = lambda: replay_rate(events_file, 1, detectors=FIRST_FIVE)
    reference = next(iter(filter(None, baseline.split(","))), None)
    if reference is not None:
        try:
            root = baseline_checkout(reference)
        except subprocess.CalledProcessError as exc:
            log(f"baseline {reference} replay skipped: {exc}")
        else:
            wanted["baseline_replay"] = lambda: replay_rate(
                events_file, None, root, label=f" at {reference}"
            )
    runs: dict[str, list[dict[str, float]]] = {name: [] for name in wanted}
    for _ in range(repeats):
        for name, measure in wanted.items():
            runs[name].append(measure())
    figures = {name: _median_run(taken) for name, taken in runs.items()}
    if "replay_jobs" in figures:
        figures["replay_jobs"] = {"jobs": jobs, **figures["replay_jobs"]}
    if "baseline_replay" in figures:
        figures["baseline_replay"] = {"commit": reference, **figures["baseline_replay"]}
    return figures


def floor(servers: str, total: int) -> dict[str, float]:
    """A stock Faust agent that only iterates its stream, over every input topic."""
    group = f"bench-noop-{uuid.uuid4().hex[:6]}"
    done = subprocess.run(
        [sys.executable, str(ROOT / "tests" / "bench" / "faust_noop.py"), servers, group,
         str(total)],
        cwd=ROOT, check=True, capture_output=True, timeout=1800,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )  # fmt: skip
    result: dict[str, float] = json.loads(done.stdout.decode().strip().splitlines()[-1])
    log(f"stock Faust no-op agent: {result}")
    return result


def cost_split(samples: dict[str, float], result: dict[str, Any]) -> dict[str, Any]:
    """Microseconds an event costs the all-agents worker: in the detectors' own steps (the
    stage's `process`, as daylight_detector_processing_seconds measures it) and around them
    (Kafka, Faust, decoding, batching, producing: the engine)."""
    detection = {
        name.split('detector="')[1].split('"')[0]: value
        for name, value in samples.items()
        if name.startswith("daylight_detector_processing_seconds_sum")
        and 'detector="cases"' not in name  # per batch of findings, broker round trips included
    }
    events = result["events"]
    total_us = result["seconds"] * 1e6 / events
    detection_us = sum(detection.values()) * 1e6 / events
    split = {
        "total_us_per_event": round(total_us, 1),
        "detection_us_per_event": round(detection_us, 1),
        "engine_us_per_event": round(total_us - detection_us, 1),
        "detection_us_per_event_by_detector": {
            name: round(value * 1e6 / events, 2) for name, value in sorted(detection.items())
        },
    }
    log(f"per event: {split}")
    return split


def baseline_checkout(ref: str) -> Path:
    """A worktree of Daylight at `ref`, whose worker is measured on the same backlog."""
    where = WORK / f"baseline-{ref}"
    if not where.exists():
        subprocess.run(["git", "worktree", "prune"], cwd=ROOT, check=True, capture_output=True)
        subprocess.run(["git", "worktree", "add", "--detach", str(where), ref], cwd=ROOT,
                       check=True, capture_output=True)  # fmt: skip
    return where


def state_bytes_per_account(accounts: int = 100_000) -> dict[str, float]:
    """Bytes of Python heap held by the state of `accounts` active accounts, per detector
    (two logins each, from the account's own IP), measured with tracemalloc."""
    import tracemalloc

    from detectors import geo_velocity, shared_ip

    events = [
        decode_event(line)
        for i in range(accounts)
        for line in (
            orjson.dumps(
                {
                    "event_id": f"m-{i}-{n}",
                    "type": "login",
                    "occurred_at": f"2026-04-01T{n:02d}:{i % 60:02d}:00Z",
                    "account_id": f"mem-{i}",
                    "ip": f"10.{(i >> 16) & 255}.{(i >> 8) & 255}.{i & 255}",
                    "geo": {"country": "US", "lat": 40.71, "lon": -74.01},
                }
            )
            for n in (8, 9)
        )
    ]
    result = {}
    for module in (geo_velocity, shared_ip):
        runner = DetectorRunner(module.build())
        gc.collect()
        tracemalloc.start()
        before = tracemalloc.get_traced_memory()[0]
        for event in events:
            runner.feed(event)
        gc.collect()
        held = tracemalloc.get_traced_memory()[0] - before
        tracemalloc.stop()
        assert runner.state_entries() >= accounts * 0.99
        result[module.METADATA.id] = round(held / accounts)
        del runner
    log(f"state bytes per active account: {result}")
    return result


def rss_over_long_run(count: int) -> dict[str, Any]:
    """RSS of a replay process over `count` events of a rolling population (tests/reliability
    soak stream): state expires by event time, so RSS must stop growing after warm-up."""
    code = (
        "import sys, orjson\n"
        "from detectors import all_detectors\n"
        "from detectors.core.engine import DetectorRunner\n"
        "from schemas.codec import decode_event\n"
        "from tests.reliability.soak import soak_events\n"
        "runners = [DetectorRunner(d) for d in all_detectors()]\n"
        "step = max(1, int(sys.argv[1]) // 10)\n"
        "for i, line in enumerate(soak_events(int(sys.argv[1])), 1):\n"
        "    event = decode_event(line)\n"
        "    for r in runners: r.feed(event)\n"
        "    if i % step == 0:\n"
        "        rss = [l for l in open('/proc/self/status') if l.startswith('VmRSS')][0]\n"
        "        state = sum(r.state_entries() for r in runners)\n"
        "        print(orjson.dumps({'events': i, 'rss_kib': int(rss.split()[1]),"
        " 'state': state}).decode(), flush=True)\n"
    )
    started = time.perf_counter()
    output = subprocess.run(
        [sys.executable, "-c", code, str(count)], check=True, capture_output=True, cwd=ROOT
    ).stdout
    samples = [json.loads(line) for line in output.splitlines()]
    warm = samples[len(samples) // 5]["rss_kib"]
    end = samples[-1]["rss_kib"]
    result = {
        "events": count,
        "seconds": round(time.perf_counter() - started, 1),
        "rss_mib": [round(s["rss_kib"] / 1024, 1) for s in samples],
        "state_entries": [s["state"] for s in samples],
        "growth_after_warmup_pct": round((end - warm) * 100 / warm, 1),
    }
    log(f"long run: {result}")
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--servers", required=True)
    parser.add_argument("--accounts", type=int, default=1000)
    parser.add_argument("--days", type=int, default=7)
    parser.add_argument("--logins", type=int, default=100_000)
    parser.add_argument("--latency-seconds", type=float, default=20.0)
    parser.add_argument("--long-run-events", type=int, default=5_000_000)
    parser.add_argument("--only", default="", help="comma-separated phases to run (debugging)")
    parser.add_argument("--agents", default=",".join(DETECTOR_IDS), help="detectors run alone")
    parser.add_argument("--baseline", default="84fb69c",
                        help="earlier commits (comma-separated) whose all-agents worker is "
                             "measured too; the first is the reference of the ratios")  # fmt: skip
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1,
                        help="replay processes besides one")  # fmt: skip
    parser.add_argument("--replay-repeats", type=_at_least_one, default=3,
                        help="runs of each replay, interleaved; each figure is their median")  # fmt: skip
    parser.add_argument("--drain-repeats", type=_at_least_one, default=3,
                        help="drains of the floor, the baseline workers and the all-agents "
                             "worker, interleaved; each figure is their median")  # fmt: skip
    args = parser.parse_args()
    only = set(filter(None, args.only.split(",")))

    def wanted(phase: str) -> bool:
        return not only or phase in only

    WORK.mkdir(parents=True, exist_ok=True)
    servers = args.servers
    events = build_events(args.accounts, args.days, args.logins)
    events_file = WORK / "events.jsonl"
    events_file.write_bytes(b"\n".join(events) + b"\n")
    subprocess.run([*DAYLIGHT, "topics", "create"], check=True, capture_output=True, cwd=ROOT,
                   env={**os.environ, "DAYLIGHT_BOOTSTRAP_SERVERS": servers})  # fmt: skip
    already = sum(end_offsets(servers, list(INPUT_TOPICS)).values())
    if already == 0:
        publish(servers, events)
    else:  # a re-run on the same broker reads the backlog it holds (latency runs add to it)
        log(f"the broker already holds {already} events: reading those")
    sent = _per_topic(servers)
    total = sum(sent.values())
    figures: dict[str, Any] = {
        "machine": {"cores": os.cpu_count(), "python": sys.version.split()[0]},
        "events": {"total": total, "per_topic": sent},
    }
    if wanted("ceiling"):
        figures["ceiling"] = ceiling(servers, total)
        log(f"ceiling: {figures['ceiling']}")
    # The floor, the baselines and this worker drain the same backlog `--drain-repeats`
    # times, one of each in turn, and each figure is the median of its runs: this shared
    # machine's noise weighs on every figure alike. Each drain starts with the findings of
    # the earlier ones truncated (`forget_findings`), so every drain does the same work.
    drains: dict[str, list[dict[str, Any]]] = {}
    roots: dict[str, Path | dict[str, str]] = {}  # a worktree, or why it was skipped
    if wanted("baseline") and args.baseline:
        for ref in filter(None, args.baseline.split(",")):
            try:
                roots[ref] = baseline_checkout(ref)
            except subprocess.CalledProcessError as exc:  # a shallow clone: say so, go on
                reason = exc.stderr.decode(errors="replace").strip()[-300:]
                roots[ref] = {"commit": ref, "skipped": reason}
                log(f"baseline {ref} skipped: {reason}")
    kept: Worker | None = None
    for repeat in range(args.drain_repeats):
        if wanted("floor"):
            drains.setdefault("floor", []).append(floor(servers, total))
        if repeat == 0 and wanted("agents"):
            figures["agents"] = {
                detector: drain(
                    servers,
                    detector,
                    detector.replace("_", "-"),
                    list(TOPICS_BY_DETECTOR[detector]),
                )
                for detector in args.agents.split(",")
            }
        # Before the latency phase, which adds events: the same backlog as every other worker.
        for index, (ref, root) in enumerate(roots.items()):
            if isinstance(root, Path):
                label = f"baseline-{index}-{repeat}"
                drains.setdefault(ref, []).append(
                    drain(servers, "all", label, list(INPUT_TOPICS), root=root)
                )
        if wanted("all") or wanted("latency"):
            # The last run's worker stays up for the cost split and the latency phase.
            label = f"all-{repeat}"
            if repeat == args.drain_repeats - 1:
                result, kept = drain(servers, "all", label, list(INPUT_TOPICS), keep=True)
            else:
                result = drain(servers, "all", label, list(INPUT_TOPICS))
            drains.setdefault("all", []).append(result)
    if "floor" in drains:
        figures["floor_faust_noop"] = _median_drain(drains["floor"])
    for index, (ref, root) in enumerate(roots.items()):
        result = (
            root if not isinstance(root, Path) else {"commit": ref, **_median_drain(drains[ref])}
        )
        if index == 0:
            figures["baseline_all_agents"] = result
        else:  # further commits to compare with (e.g. the one before a change)
            figures.setdefault("earlier_all_agents", []).append(result)
    if kept is not None:
        figures["all_agents"] = _median_drain(drains["all"])
        try:
            # The cost split is the kept (last) run's: its worker's own counters.
            figures["cost_per_event"] = cost_split(metric_samples(kept.port), drains["all"][-1])
            if wanted("latency"):
                figures["latency"] = latency(
                    servers,
                    kept,
                    figures["all_agents"]["events_per_s"] / 2,
                    args.latency_seconds,
                    newest_event_time(events) + timedelta(seconds=1),
                )
        finally:
            kept.stop()
    if wanted("peer"):
        logins = sent.get("platform.logins", 0)
        figures["peer_quix_geo_velocity"] = quix_peer(servers, logins)
    if wanted("replay"):
        figures.update(replays(events_file, args.jobs, args.baseline, args.replay_repeats))
    if wanted("memory"):
        figures["state_bytes_per_account"] = state_bytes_per_account()
        figures["long_run"] = rss_over_long_run(args.long_run_events)
    figures["ratios"] = _ratios(figures)
    print(json.dumps(figures, separators=(",", ":")))


def _per_topic(servers: str) -> dict[str, int]:
    counts: dict[str, int] = {}
    for (topic, _), high in end_offsets(servers, list(INPUT_TOPICS)).items():
        counts[topic] = counts.get(topic, 0) + high
    return counts


def _ratios(figures: dict[str, Any]) -> dict[str, float]:
    ratios = {}
    ceiling_rate = figures.get("ceiling", {}).get("events_per_s")
    if ceiling_rate and "all_agents" in figures:
        ratios["all_agents_vs_ceiling"] = round(
            figures["all_agents"]["events_per_s"] / ceiling_rate, 4
        )
    all_rate = figures.get("all_agents", {}).get("events_per_s")
    noop = figures.get("floor_faust_noop", {}).get("events_per_s")
    if all_rate and noop:
        ratios["all_agents_vs_faust_noop"] = round(all_rate / noop, 3)
    before = figures.get("baseline_all_agents", {}).get("events_per_s")
    if all_rate and before:
        ratios["all_agents_vs_baseline"] = round(all_rate / before, 2)
    for earlier in figures.get("earlier_all_agents", []):
        if all_rate and earlier.get("events_per_s"):
            ratios[f"all_agents_vs_{earlier['commit']}"] = round(
                all_rate / earlier["events_per_s"], 2
            )
    one = figures.get("replay", {}).get("events_per_s")
    many = figures.get("replay_jobs", {}).get("events_per_s")
    if one and many:
        ratios["replay_jobs_vs_one"] = round(many / one, 2)
    replay_before = figures.get("baseline_replay", {}).get("events_per_s")
    five = figures.get("replay_five", {}).get("events_per_s")
    if replay_before and one:
        ratios["replay_vs_baseline"] = round(one / replay_before, 2)
    if replay_before and five:
        ratios["replay_five_vs_baseline"] = round(five / replay_before, 2)
    peer = figures.get("peer_quix_geo_velocity", {}).get("events_per_s")
    geo = figures.get("agents", {}).get("geo_velocity", {}).get("events_per_s")
    if peer and geo:
        ratios["geo_velocity_vs_quix"] = round(geo / peer, 3)
    return ratios


if __name__ == "__main__":
    main()
