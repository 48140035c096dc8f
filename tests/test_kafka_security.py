"""TLS/SASL settings and what each Kafka client is given (pure; the TLS connection itself
is tested in `test_kafka_tls.py`)."""

from __future__ import annotations

import asyncio
import os
import ssl
import subprocess
import sys
from pathlib import Path
from typing import Any

import faust
import pytest
from pydantic import ValidationError

from surveillance.kafka_clients import (
    KafkaSecurityError,
    client_options,
    faust_options,
)
from surveillance.settings import KafkaSettings
from tests.tls_broker import make_certificates

SCRAM = {"security_protocol": "SASL_SSL", "sasl_mechanism": "SCRAM-SHA-512",
         "sasl_username": "surveillance", "sasl_password": "s3cret-pw"}


@pytest.fixture(scope="module")
def ca(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_certificates(tmp_path_factory.mktemp("ca"))[0]


@pytest.mark.parametrize(("values", "message"), [
    ({"security_protocol": "SASL_SSL"}, "needs SASL_MECHANISM, SASL_USERNAME and SASL_PASSWORD"),
    ({**SCRAM, "sasl_password": ""}, "needs SASL_MECHANISM"),
    ({"sasl_mechanism": "PLAIN"}, "use SASL_SSL"),
    ({**SCRAM, "security_protocol": "SASL_PLAINTEXT", "sasl_mechanism": "PLAIN"},
     "PLAIN would send the password in clear"),
    ({"security_protocol": "SSL", "ssl_certfile": "/c.pem"}, "go together"),
])
def test_incoherent_security_settings_are_refused(values: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        KafkaSettings.model_validate(values)


def test_plaintext_gives_plaintext_everywhere() -> None:
    kafka = KafkaSettings()
    assert client_options(kafka) == {"security_protocol": "PLAINTEXT"}
    assert faust_options(kafka) == {}


def test_tls_gives_a_verifying_context_with_the_configured_ca(ca: Path) -> None:
    kafka = KafkaSettings(security_protocol="SSL", ssl_cafile=ca)
    options = client_options(kafka)
    assert options["security_protocol"] == "SSL"
    context = options["ssl_context"]
    assert context.verify_mode is ssl.CERT_REQUIRED and context.check_hostname
    assert [c["subject"] for c in context.get_ca_certs()] == [
        ((("commonName", "surveillance test CA"),),)]
    credentials = faust_options(kafka)["broker_credentials"]
    assert isinstance(credentials, faust.SSLCredentials)
    assert credentials.protocol.value == "SSL" and credentials.context.check_hostname


@pytest.mark.parametrize("mechanism", ["SCRAM-SHA-256", "SCRAM-SHA-512", "PLAIN"])
def test_sasl_over_tls_reaches_both_libraries_and_faust(ca: Path, mechanism: str) -> None:
    kafka = KafkaSettings.model_validate({**SCRAM, "sasl_mechanism": mechanism,
                                          "ssl_cafile": ca})
    options = client_options(kafka)
    assert {k: v for k, v in options.items() if k != "ssl_context"} == {
        "security_protocol": "SASL_SSL", "sasl_mechanism": mechanism,
        "sasl_plain_username": "surveillance", "sasl_plain_password": "s3cret-pw"}
    assert isinstance(options["ssl_context"], ssl.SSLContext)
    credentials = faust_options(kafka)["broker_credentials"]
    assert isinstance(credentials, faust.SASLCredentials)
    assert (credentials.protocol.value, credentials.mechanism.value) == ("SASL_SSL", mechanism)
    assert (credentials.username, credentials.password) == ("surveillance", "s3cret-pw")
    assert credentials.ssl_context is not None


def test_scram_without_tls_has_no_context() -> None:
    kafka = KafkaSettings.model_validate({**SCRAM, "security_protocol": "SASL_PLAINTEXT"})
    assert "ssl_context" not in client_options(kafka)
    assert faust_options(kafka)["broker_credentials"].protocol.value == "SASL_PLAINTEXT"


def test_a_missing_ca_file_is_one_clear_error(tmp_path: Path) -> None:
    kafka = KafkaSettings(security_protocol="SSL", ssl_cafile=tmp_path / "nope.pem")
    with pytest.raises(KafkaSecurityError, match="SURVEILLANCE_KAFKA__SSL_CAFILE"):
        client_options(kafka)


class _Captured(Exception):
    def __init__(self, kwargs: dict[str, Any]) -> None:
        self.kwargs = kwargs


def _capture(*args: Any, **kwargs: Any) -> Any:
    raise _Captured(kwargs)


SASL_OPTIONS = {"security_protocol": "SASL_SSL", "sasl_mechanism": "SCRAM-SHA-256",
                "sasl_plain_username": "u", "sasl_plain_password": "p"}


def test_each_client_construction_passes_the_options(monkeypatch: pytest.MonkeyPatch) -> None:
    """The producer, the intake publisher, the topic admin, the store writer's consumer and
    the shadow process's clients are built with exactly the options given."""
    import aiokafka
    import kafka

    from surveillance.intake.publisher import KafkaPublisher
    from surveillance.shadow import process
    from surveillance.store.writer import StoreWriter
    from surveillance.stream import topics
    from surveillance.stream.produce import produce

    monkeypatch.setattr(kafka, "KafkaProducer", _capture)
    monkeypatch.setattr(kafka, "KafkaAdminClient", _capture)
    with pytest.raises(_Captured) as producer:
        produce("b:1", [], SASL_OPTIONS)
    with pytest.raises(_Captured) as publisher:
        KafkaPublisher("b:1", "adverse.events", client_options=SASL_OPTIONS)._get_producer()
    with pytest.raises(_Captured) as admin:
        topics.provision("b:1", [], 1, SASL_OPTIONS)
    for captured in (producer, publisher, admin):
        assert SASL_OPTIONS.items() <= captured.value.kwargs.items()

    monkeypatch.setattr("surveillance.store.writer.AIOKafkaConsumer", _capture)
    writer = StoreWriter("b:1", "postgresql://x", client_options=SASL_OPTIONS)
    with pytest.raises(_Captured) as consumer:
        asyncio.run(writer.run(asyncio.Event()))
    assert SASL_OPTIONS.items() <= consumer.value.kwargs.items()

    # The shadow's scoring core (model, DICOM folder) is not what is tested here.
    monkeypatch.setattr(process, "ShadowCore", lambda *args, **kwargs: None)
    monkeypatch.setattr(aiokafka, "AIOKafkaConsumer", _capture)
    with pytest.raises(_Captured) as shadow:
        asyncio.run(process.run_shadow("b:1", Any, b"k" * 32, asyncio.Event(),
                                       client_options=SASL_OPTIONS))
    assert SASL_OPTIONS.items() <= shadow.value.kwargs.items()


def _cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "surveillance.cli", *args],
                          capture_output=True, text=True, timeout=120,
                          env={**os.environ, **env})


def _error_lines(stderr: str) -> list[str]:
    return [x for x in stderr.strip().splitlines() if not x.startswith("warning:")]


@pytest.mark.parametrize(("env", "message"), [
    ({"SURVEILLANCE_KAFKA__SECURITY_PROTOCOL": "SSL",
      "SURVEILLANCE_KAFKA__SSL_CAFILE": "/nonexistent/ca.pem"},
     "error: cannot use the Kafka TLS files"),
    ({"SURVEILLANCE_KAFKA__SECURITY_PROTOCOL": "SASL_SSL"},
     "error: bad setting SURVEILLANCE_KAFKA: Value error, SASL_SSL needs SASL_MECHANISM"),
])
def test_bad_security_settings_stop_the_commands_in_one_line(
    env: dict[str, str], message: str
) -> None:
    for command in (("topics", "create"), ("worker",)):
        result = _cli({"SURVEILLANCE_KAFKA__BOOTSTRAP": "127.0.0.1:9", **env}, *command)
        assert result.returncode == 2 and "Traceback" not in result.stderr
        (line,) = _error_lines(result.stderr)
        assert line.startswith(message), line


@pytest.mark.integration
def test_a_malformed_dlq_key_stops_the_worker_in_one_line() -> None:
    from surveillance.embedded import EmbeddedBroker
    from surveillance.stream.topics import all_topics, create_topics

    with EmbeddedBroker() as broker:
        create_topics(broker.bootstrap, all_topics("surveillance", 4))
        result = _cli({"SURVEILLANCE_KAFKA__BOOTSTRAP": broker.bootstrap,
                       "SURVEILLANCE_KAFKA__PARTITIONS": "4",
                       "SURVEILLANCE_DLQ_ENCRYPTION_KEY": "not-a-fernet-key"}, "worker")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    (line,) = _error_lines(result.stderr)
    assert line.startswith("error: SURVEILLANCE_DLQ_ENCRYPTION_KEY is not a Fernet key")
