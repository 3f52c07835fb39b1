"""Settings: environment over defaults; a bad value fails at start naming the variable."""

from __future__ import annotations

import pytest

from streams.settings import SettingsError, load_settings


def test_defaults() -> None:
    settings = load_settings()
    assert settings.topic_partitions == 6
    assert settings.confluent_config()["security.protocol"] == "plaintext"


def test_environment_is_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DAYLIGHT_BOOTSTRAP_SERVERS", "kafka-1:9093,kafka-2:9093")
    assert load_settings().servers == ["kafka-1:9093", "kafka-2:9093"]


def test_explicit_argument_beats_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DAYLIGHT_METRICS_PORT", "9200")
    assert load_settings(metrics_port=9300).metrics_port == 9300


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("DAYLIGHT_TOPIC_PARTITIONS", "zero"),
        ("DAYLIGHT_TOPIC_PARTITIONS", "0"),
        ("DAYLIGHT_METRICS_PORT", "70000"),
        ("DAYLIGHT_BOOTSTRAP_SERVERS", "no-port-here"),
        ("DAYLIGHT_SECURITY_PROTOCOL", "TLS"),
        ("DAYLIGHT_STORE", "redis"),
        ("DAYLIGHT_DETECTORS", "geo_velocity,teleport"),
        ("DAYLIGHT_DETECTORS", " , "),
        ("DAYLIGHT_BATCH_MAX_EVENTS", "0"),
        ("DAYLIGHT_PRODUCER_LINGER_MS", "-1"),
        ("DAYLIGHT_EVENT_LOOP", "gevent"),
        ("DAYLIGHT_COMMIT_INTERVAL_SECONDS", "0"),
        ("DAYLIGHT_STREAM_BUFFER_EVENTS", "0"),
        ("DAYLIGHT_GC_YOUNG_ALLOCATIONS", "-1"),
        ("DAYLIGHT_FETCH_PARTITION_BYTES", "1000"),
        ("DAYLIGHT_CASES", "sometimes"),
    ],
)
def test_bad_value_names_the_variable(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(SettingsError) as bad:
        load_settings()
    assert variable in str(bad.value)


def test_the_collector_setting_reaches_python(monkeypatch: pytest.MonkeyPatch) -> None:
    """What an operator sets is the young generation's threshold; 0 keeps Python's."""
    import gc

    from streams.settings import tune_collector

    before = gc.get_threshold()
    try:
        monkeypatch.setenv("DAYLIGHT_GC_YOUNG_ALLOCATIONS", "12345")
        tune_collector(load_settings().gc_young_allocations)
        assert gc.get_threshold() == (12345, *before[1:])
        assert gc.get_freeze_count() > 0, "what the process held is out of every collection"
        gc.set_threshold(*before)
        tune_collector(0)
        assert gc.get_threshold() == before
    finally:
        gc.set_threshold(*before)
        gc.unfreeze()


def test_secrets_never_show(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DAYLIGHT_SECURITY_PROTOCOL", "SASL_SSL")
    monkeypatch.setenv("DAYLIGHT_SASL_MECHANISM", "SCRAM-SHA-512")
    monkeypatch.setenv("DAYLIGHT_SASL_USERNAME", "daylight")
    monkeypatch.setenv("DAYLIGHT_SASL_PASSWORD", "hunter2-secret")
    settings = load_settings()
    assert "hunter2-secret" not in repr(settings) and "hunter2-secret" not in str(settings)
    config = settings.confluent_config()
    assert config["sasl.password"] == "hunter2-secret"
    assert config["sasl.mechanism"] == "SCRAM-SHA-512"


def test_detector_threshold_setting_with_a_bad_value_is_named(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from pydantic import ValidationError

    from detectors.geo_velocity import GeoVelocitySettings

    monkeypatch.setenv("DAYLIGHT_GEO_VELOCITY_MAX_SPEED_KMH", "-3")
    with pytest.raises(ValidationError) as bad:
        GeoVelocitySettings()
    assert "max_speed_kmh" in str(bad.value)


def test_a_worker_runs_the_detectors_named_and_reads_only_their_topics(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from detectors import all_detectors
    from streams.app import Daylight

    monkeypatch.setenv("DAYLIGHT_DETECTORS", "shared_ip, geo_velocity")
    settings = load_settings()
    assert settings.detector_ids == ("geo_velocity", "shared_ip")
    chosen = [d for d in all_detectors() if d.metadata.id in settings.detector_ids]
    daylight = Daylight(settings, chosen)
    assert set(daylight.inputs) == {"platform.logins"}
    assert set(daylight.engines) == {"geo_velocity", "shared_ip"}
    # One agent reads the inputs once (geo_velocity runs inside it); shared_ip, keyed by IP,
    # reads its repartition topic.
    agents = set(daylight.app.agents)
    assert {"input", "detector-shared_ip"} <= agents
    assert not any("payout" in name or "remote" in name or "geo" in name for name in agents)
    monkeypatch.setenv("DAYLIGHT_DETECTORS", "all")
    assert load_settings().detector_ids == tuple(d.metadata.id for d in all_detectors())


def test_a_group_without_the_case_agent_neither_reads_findings_nor_publishes_cases(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Detectors spread over two groups: the group with `DAYLIGHT_CASES=false` leaves the
    case book to the other one, so the SOC gets each case message once."""
    from detectors import all_detectors
    from streams.app import Daylight

    monkeypatch.setenv("DAYLIGHT_DETECTORS", "geo_velocity")
    chosen = [d for d in all_detectors() if d.metadata.id == "geo_velocity"]

    def reads(daylight: Daylight) -> set[str]:
        return {
            topic
            for agent in daylight.app.agents.values()
            for topic in getattr(agent.channel, "topics", ())
        }

    keeps = Daylight(load_settings(), chosen)
    assert {"cases-route", "cases"} <= set(keeps.app.agents)
    assert {"daylight.alerts", "daylight.feedback"} <= reads(keeps)
    monkeypatch.setenv("DAYLIGHT_CASES", "false")
    leaves = Daylight(load_settings(), chosen)
    assert not {"cases-route", "cases"} & set(leaves.app.agents)
    assert not {"daylight.alerts", "daylight.feedback"} & reads(leaves)
    assert not any(name.endswith("-cases-in") for name in leaves.internal_topics)
    assert set(leaves.engines) == {"geo_velocity"}


def test_end_offsets_come_from_a_new_client_once_one_has_failed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """After a broker restart librdkafka can hold a partition as unknown for minutes; the
    deferred decisions (payout_routing) waited that long, past every test's patience. The
    client that failed is dropped, and the next question goes to a fresh one."""
    import confluent_kafka
    from faust.types import TP

    from detectors import all_detectors
    from streams.app import Daylight

    made: list[FakeClient] = []

    class FakeClient:
        def __init__(self, config: dict[str, object]) -> None:
            self.broken = not made  # the first client is the one that saw the restart
            self.closed = False
            made.append(self)

        def offsets_for_times(self, tps: list, timeout: float) -> list:
            if self.broken:
                raise confluent_kafka.KafkaException("Local: Unknown partition")
            assert all(tp.offset == confluent_kafka.OFFSET_END for tp in tps)  # the latest
            return [confluent_kafka.TopicPartition(tp.topic, tp.partition, 42) for tp in tps]

        def close(self) -> None:
            self.closed = True

    monkeypatch.setattr(confluent_kafka, "Consumer", FakeClient)
    daylight = Daylight(load_settings(), all_detectors())
    tps = [TP("platform.payouts", 3), TP("platform.accounts", 3)]
    with pytest.raises(confluent_kafka.KafkaException):
        daylight._end_offsets(tps)
    assert made[0].closed
    assert daylight._end_offsets(tps) == {tps[0]: 42, tps[1]: 42}
    assert daylight._end_offsets(tps) == {tps[0]: 42, tps[1]: 42}
    assert len(made) == 2, "a client that answers is kept"


def test_commit_and_buffer_settings_reach_faust(monkeypatch: pytest.MonkeyPatch) -> None:
    """What an operator sets is what the worker's Faust app runs with."""
    from detectors import all_detectors
    from streams.app import Daylight

    monkeypatch.setenv("DAYLIGHT_COMMIT_INTERVAL_SECONDS", "1.5")
    monkeypatch.setenv("DAYLIGHT_STREAM_BUFFER_EVENTS", "1024")
    monkeypatch.setenv("DAYLIGHT_FETCH_PARTITION_BYTES", "524288")
    conf = Daylight(load_settings(), all_detectors()).app.conf
    assert conf.broker_commit_interval == 1.5
    assert conf.stream_buffer_maxsize == 1024
    assert conf.consumer_max_fetch_size == 524288  # aiokafka's max_partition_fetch_bytes


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("DAYLIGHT_RATING_BURST_MIN_FREELANCERS", "1"),
        ("DAYLIGHT_BID_PATTERN_MAX_ACCEPTED_SHARE", "1.5"),
        ("DAYLIGHT_ANONYMIZER_NETWORKS_FILE", "/nonexistent/networks.json"),
        ("DAYLIGHT_ANONYMIZER_ASN_MMDB", "/nonexistent/asn.mmdb"),
        ("DAYLIGHT_PAYOUT_HOLDER_CHANGE_NAME_SIMILARITY_MIN", "0"),
        ("DAYLIGHT_CRYPTO_PAYOUT_REPEAT_MIN_PAYOUTS", "1"),
        ("DAYLIGHT_SHIPPING_MISMATCH_FARM_MIN_ACCOUNTS", "1"),
        ("DAYLIGHT_UNVERIFIED_ACTIVITY_REQUIRE_ACCOUNT_CREATED", "perhaps"),
        ("DAYLIGHT_WORKING_HOURS_WORK_END_HOUR", "6"),
        ("DAYLIGHT_WORKING_HOURS_MIN_ACTIVE_DAYS", "20"),
        ("DAYLIGHT_WORKING_HOURS_SUSPECT_OFFSETS_HOURS", '[8, "nine"]'),
    ],
)
def test_a_bad_marketplace_setting_stops_the_start_naming_it(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str
) -> None:
    from detectors import DetectorSettingsError, all_detectors

    monkeypatch.setenv(variable, value)
    with pytest.raises(DetectorSettingsError) as bad:
        all_detectors()
    assert variable in str(bad.value)
