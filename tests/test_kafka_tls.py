"""Every Kafka client of the service against a broker that REQUIRES TLS.

The broker is the embedded Tansu behind stunnel (`tests/tls_broker.py`): it advertises
only its TLS address, so a client that forgot its TLS settings for any one connection
cannot work. Through it, as an operator would run them (real commands, settings in the
environment): `surveillance topics create` (kafka-python admin), the simulator's
producer (kafka-python), `surveillance worker` (Faust/aiokafka), `surveillance
store-writer` (aiokafka) into PostgreSQL, and `surveillance intake` (its kafka-python
publisher), with exact counts at the end. The same worker also shows that Faust's
`/table/...` pages are not served while `/metrics` is, and that the `adverse_state`
changelog holds no narrative or reporter contact.

SASL cannot be required by a local broker (Tansu 0.6 `--authentication` needs users that
only an authenticated client can create, in memory storage): `test_sasl_real_broker`
runs against a real one when `SURVEILLANCE_TEST_SASL_BOOTSTRAP` is set, and
`tests/test_kafka_security.py` checks what each client is given.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

from surveillance.contracts import AIResult, DeadLetter, Label, ReportFinal
from surveillance.demo import DEMO_TOKEN, wait_for_rows
from surveillance.embedded import EmbeddedPostgres
from surveillance.embedded.broker import free_port
from surveillance.kafka_clients import client_options
from surveillance.settings import KafkaSettings
from surveillance.simulate import simulate
from surveillance.store import migrate
from surveillance.stream.dlq_seal import open_letter
from surveillance.stream.produce import produce
from surveillance.stream.runner import WorkerProcess, wait_for_counts
from surveillance.stream.topics import TopicSpec, create_topics
from tests import tls_broker
from tests.tls_broker import STUNNEL, TlsBroker
from tests.topic_read import read_topic

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(STUNNEL is None, reason="needs stunnel4 (make system-deps)"),
]

PARTITIONS = 2
DLQ_KEY = Fernet.generate_key().decode()
NARRATIVE = "Jane Q Example MRN 00123456 DOB 1950-02-03: pneumothorax missed by triage"


def cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "surveillance.cli", *args],
                          capture_output=True, text=True, timeout=120,
                          env={**os.environ, **env})


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TlsBroker]:
    with TlsBroker(tmp_path_factory.mktemp("tls-broker")) as broker:
        yield broker


def test_a_tls_broker_whose_ports_were_taken_starts_on_others(
        tls: TlsBroker, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The ports picked first are those of the module's TLS broker (taken, and a broker
    answers there): the second starts on two others, and answers as itself."""
    picks = iter([tls.plain_port, tls.tls_port])
    monkeypatch.setattr(tls_broker, "free_port", lambda: next(picks, None) or free_port())
    with TlsBroker(tmp_path) as second:
        assert {second.plain_port, second.tls_port}.isdisjoint({tls.plain_port, tls.tls_port})
        create_topics(second.bootstrap, [TopicSpec("tls.second", 1)],
                      client_options=client_options(second.kafka))
        assert "tls.second" not in list_topics(tls)


def list_topics(broker: TlsBroker) -> set[str]:
    from kafka import KafkaAdminClient

    admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap, request_timeout_ms=5000,
                             **client_options(broker.kafka))
    try:
        return set(admin.list_topics())
    finally:
        admin.close()


@pytest.fixture(scope="module")
def tls_env(tls: TlsBroker) -> dict[str, str]:
    return {**tls.env, "SURVEILLANCE_KAFKA__PARTITIONS": str(PARTITIONS)}


@pytest.fixture(scope="module")
def topics_output(tls_env: dict[str, str]) -> str:
    result = cli("topics", "create", env=tls_env)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_a_plaintext_client_gets_nowhere(tls: TlsBroker, topics_output: str) -> None:
    from kafka import KafkaAdminClient
    from kafka.errors import KafkaError

    with pytest.raises(KafkaError):
        KafkaAdminClient(bootstrap_servers=tls.bootstrap, request_timeout_ms=2000,
                         api_version_auto_timeout_ms=2000).list_topics()
    # ... nor does one that does not trust the broker's CA.
    untrusted = KafkaSettings(bootstrap=tls.bootstrap, security_protocol="SSL")
    with pytest.raises(KafkaError):
        KafkaAdminClient(bootstrap_servers=tls.bootstrap, request_timeout_ms=2000,
                         api_version_auto_timeout_ms=2000,
                         **client_options(untrusted)).list_topics()


def test_topics_create_over_tls_prints_what_it_set(topics_output: str) -> None:
    lines = topics_output.splitlines()
    assert "created surveillance-join_state-changelog (2 partitions; cleanup.policy=compact)" \
        in lines
    assert ("created ai.results.dlq (2 partitions; cleanup.policy=delete, "
            "retention.ms=1209600000)") in lines
    assert ("created adverse.events (2 partitions; cleanup.policy=delete, "
            "retention.ms=2592000000)") in lines
    assert "created ai.results (2 partitions)" in lines
    assert "16 topics created, 0 already present" in lines
    assert not any(x.startswith("MISMATCH") for x in lines)


@pytest.fixture(scope="module")
def stack(tls: TlsBroker, tls_env: dict[str, str], topics_output: str,
          tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, WorkerProcess | str]]:
    """TLS broker + PostgreSQL + worker + store writer + intake, all over TLS."""
    state = tmp_path_factory.mktemp("tls-stack")
    with EmbeddedPostgres(state / "pg") as pg:
        migrate(pg.url)
        # No embedded log-end probe: it is a plaintext helper for the embedded broker.
        env = {**tls_env, "SURVEILLANCE_KAFKA__PROBE_LOG_END": "false",
               "SURVEILLANCE_DLQ_ENCRYPTION_KEY": DLQ_KEY}
        worker = WorkerProcess(tls.bootstrap, state, env=env).start()
        writer = WorkerProcess(tls.bootstrap, state, command="store-writer",
                               env={**env, "SURVEILLANCE_DATABASE__URL": pg.url}).start()
        port = free_port()
        intake = WorkerProcess(tls.bootstrap, state, command="intake",
                               args=("--port", str(port)), web_port=port,
                               env={**env, "SURVEILLANCE_INTAKE_API_TOKENS":
                                    json.dumps({"demo": DEMO_TOKEN})}).start()
        try:
            yield {"worker": worker, "writer": writer, "intake": intake, "db": pg.url}
        finally:
            for p in (intake, writer, worker):
                p.stop()


def test_worker_and_store_writer_count_exactly_over_tls(
    tls: TlsBroker, stack: dict[str, WorkerProcess | str]
) -> None:
    worker, writer = stack["worker"], stack["writer"]
    assert isinstance(worker, WorkerProcess) and isinstance(writer, WorkerProcess)
    events, truth = simulate(days=3, seed=5)
    sent = produce(tls.bootstrap, ((e.topic, e.key, e.value) for e in events),
                   client_options(tls.kafka))
    assert sent == len(events)
    expected = {tool: t.cases for tool, t in truth.items()}
    counts = wait_for_counts([worker], expected, timeout=120)
    assert {t: c.get("cases", 0) for t, c in counts.items()} == expected, worker.log_tail()
    for tool, t in truth.items():
        for outcome in ("TP", "FP", "TN", "FN", "indeterminate"):
            assert counts[tool].get(outcome, 0) == t.final_outcomes.get(outcome, 0), (
                tool, outcome)
    db = stack["db"]
    assert isinstance(db, str)
    total = sum(expected.values())
    assert wait_for_rows(db, total, timeout=90) == total, writer.log_tail()


def _a_case(events_seed: int = 5) -> AIResult:
    events, _ = simulate(days=3, seed=events_seed)
    reported = {ReportFinal.model_validate_json(e.value).accession_number
                for e in events if e.valid and e.topic == "reports.final"}
    return next(a for a in (AIResult.model_validate_json(e.value)
                            for e in events if e.valid and e.topic == "ai.results")
                if a.accession_number in reported)


def _file_report(intake: WorkerProcess, ai: AIResult) -> str:
    body = {
        "submission_id": "tls-ae-0001", "aware_date": ai.study_date.isoformat(),
        "patient": {"patient_id": ai.patient_id, "age": ai.age, "sex": ai.sex.value},
        "event": {"outcome": "required_intervention", "event_date": ai.study_date.isoformat(),
                  "narrative": NARRATIVE},
        "device": {"tool_id": ai.tool_id, "manufacturer": ai.manufacturer,
                   "software_version": ai.software_version},
        "reporter": {"name": "Reporting Nurse", "role": "quality",
                     "contact": "nurse.reporter@example.org"},
        "accession_number": ai.accession_number, "ai_output": ai.ai_result,
        "ai_threshold": ai.operating_threshold, "radiologist_read": Label.PRESENT.value,
        "discordance_type": "false_negative",
    }
    deadline = time.monotonic() + 60
    while True:
        request = urllib.request.Request(
            f"{intake.url}/api/v1/adverse-events", data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json",
                     "Authorization": f"Bearer {DEMO_TOKEN}"}, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=10) as resp:
                assert resp.status in (200, 201, 202)
                return str(json.loads(resp.read()).get("event_id") or body["submission_id"])
        except (urllib.error.URLError, OSError):
            if time.monotonic() > deadline or not intake.alive():
                raise AssertionError(f"intake did not accept: {intake.log_tail()}") from None
            time.sleep(0.5)


def _status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        return exc.code


def _adverse_processed(worker: WorkerProcess) -> bool:
    try:
        with urllib.request.urlopen(worker.url + "/metrics", timeout=5) as resp:
            text = resp.read().decode()
    except (urllib.error.URLError, OSError):  # still starting
        return False
    return any(line.startswith("surveillance_adverse_events_total{") and
               not line.rstrip().endswith(" 0.0") for line in text.splitlines())


def test_no_table_pages_and_no_narrative_in_the_changelog(
    tls: TlsBroker, stack: dict[str, WorkerProcess | str]
) -> None:
    worker, intake = stack["worker"], stack["intake"]
    assert isinstance(worker, WorkerProcess) and isinstance(intake, WorkerProcess)
    _file_report(intake, _a_case())
    deadline = time.monotonic() + 120
    while not _adverse_processed(worker):
        assert time.monotonic() < deadline, worker.log_tail()
        time.sleep(0.5)
    assert _status(worker.url + "/metrics") == 200
    assert _status(worker.url + "/surveillance/counts") == 200
    for page in ("/table/adverse_state/", "/table/case_state/", "/router/", "/graph/",
                 "/stats/", "/performance/"):
        assert _status(worker.url + page) == 404, page
    # The adverse_state changelog (compacted, kept forever) keeps no narrative or contact.
    # The worker counts a batch before its changelog records are acknowledged: read until
    # the report's record is there.
    values: list[bytes] = []
    deadline = time.monotonic() + 120
    while not any(b"withheld" in v for v in values) and time.monotonic() < deadline:
        values = read_topic(tls.bootstrap, "surveillance-adverse_state-changelog",
                            **client_options(tls.kafka))
        time.sleep(0.5)
    assert values, "the adverse report never reached the table"
    assert all(b"MRN 00123456" not in v and b"nurse.reporter" not in v for v in values)
    assert any(b"withheld" in v for v in values)


def test_dead_letters_are_sealed_with_the_dlq_key(
    tls: TlsBroker, stack: dict[str, WorkerProcess | str]
) -> None:
    junk = b'{"patient_id": "MRN-0099123", "accession_number": "ACC-SECRET-77", "score": '
    produce(tls.bootstrap, [("ai.results", b"ACC-SECRET-77", junk)], client_options(tls.kafka))
    deadline, letters = time.monotonic() + 120, []
    while not letters and time.monotonic() < deadline:
        letters = [v for v in read_topic(tls.bootstrap, "ai.results.dlq",
                                         **client_options(tls.kafka))
                   if b"MRN" in v or b"fernet" in v]
        time.sleep(0.5)
    assert len(letters) == 1, letters
    assert b"MRN-0099123" not in letters[0] and b"ACC-SECRET" not in letters[0]
    sealed = DeadLetter.model_validate_json(letters[0])
    assert sealed.encryption == "fernet" and sealed.reason.startswith("invalid_json")
    assert open_letter(sealed, DLQ_KEY) == junk


@pytest.mark.skipif(not os.environ.get("SURVEILLANCE_TEST_SASL_BOOTSTRAP"),
                    reason="no SASL broker: set SURVEILLANCE_TEST_SASL_BOOTSTRAP, _MECHANISM, "
                           "_USERNAME, _PASSWORD (and _CAFILE) to run against a real one")
def test_sasl_real_broker(tmp_path: Path) -> None:
    """`topics create` and a produce/consume round trip with SASL (SCRAM or PLAIN over TLS)."""
    get = os.environ.get
    env = {
        "SURVEILLANCE_KAFKA__BOOTSTRAP": get("SURVEILLANCE_TEST_SASL_BOOTSTRAP", ""),
        "SURVEILLANCE_KAFKA__SECURITY_PROTOCOL": get("SURVEILLANCE_TEST_SASL_PROTOCOL",
                                                     "SASL_SSL"),
        "SURVEILLANCE_KAFKA__SASL_MECHANISM": get("SURVEILLANCE_TEST_SASL_MECHANISM",
                                                  "SCRAM-SHA-512"),
        "SURVEILLANCE_KAFKA__SASL_USERNAME": get("SURVEILLANCE_TEST_SASL_USERNAME", ""),
        "SURVEILLANCE_KAFKA__SASL_PASSWORD": get("SURVEILLANCE_TEST_SASL_PASSWORD", ""),
        "SURVEILLANCE_KAFKA__SSL_CAFILE": get("SURVEILLANCE_TEST_SASL_CAFILE", ""),
        "SURVEILLANCE_STREAM__APP_ID": f"sasl-test-{int(time.time())}",
    }
    env = {k: v for k, v in env.items() if v}
    result = cli("topics", "create", env=env)
    assert result.returncode == 0, result.stderr
    kafka = KafkaSettings.model_validate({k.removeprefix("SURVEILLANCE_KAFKA__").lower(): v
                                          for k, v in env.items() if "KAFKA__" in k})
    marker = f"sasl-{time.time_ns()}".encode()
    produce(kafka.bootstrap, [("surveillance.alerts", b"sasl-test", marker)],
            client_options(kafka))
    from kafka import KafkaConsumer

    consumer = KafkaConsumer("surveillance.alerts", bootstrap_servers=kafka.bootstrap,
                             auto_offset_reset="earliest", consumer_timeout_ms=10_000,
                             **client_options(kafka))
    try:
        assert any(m.value == marker for m in consumer)
    finally:
        consumer.close()
