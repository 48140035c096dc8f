"""The embedded broker and PostgreSQL server when the port they picked is taken by another
process before they bind it (another run's broker or server on the same machine): each
starts on another port, and never takes the stranger that answers on the port for itself.

The race is made certain, not waited for: the port picked first is the suite's own
broker's or server's (a real stranger of the same kind, answering the same protocol).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from kafka import KafkaAdminClient

import surveillance.embedded.broker as broker_code
import surveillance.embedded.postgres as postgres_code
from surveillance.embedded import EmbeddedBroker, EmbeddedError, EmbeddedPostgres, free_port

pytestmark = pytest.mark.integration


def _picks(first: int) -> Iterator[int]:
    yield first
    while True:
        yield free_port()


def _cluster_id(bootstrap: str) -> str:
    admin = KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=5000)
    try:
        return str(admin.describe_cluster()["cluster_id"])
    finally:
        admin.close()


def test_a_broker_whose_port_was_taken_starts_on_another(
        broker: EmbeddedBroker, monkeypatch: pytest.MonkeyPatch) -> None:
    stranger = broker
    picks = _picks(stranger.port)
    monkeypatch.setattr(broker_code, "free_port", lambda: next(picks))
    with EmbeddedBroker() as ours:
        assert ours.port != stranger.port
        assert ours.bootstrap == f"127.0.0.1:{ours.port}"
        assert _cluster_id(ours.bootstrap) == ours.cluster_id != stranger.cluster_id
    assert _cluster_id(stranger.bootstrap) == stranger.cluster_id  # left alone


def test_a_broker_given_a_taken_port_says_so(broker: EmbeddedBroker) -> None:
    with pytest.raises(EmbeddedError, match=f"port {broker.port} is taken"):
        EmbeddedBroker(port=broker.port).start()


def test_a_database_whose_port_was_taken_starts_on_another(
        postgres: EmbeddedPostgres, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    stranger = postgres
    picks = _picks(stranger.port)
    monkeypatch.setattr(postgres_code, "free_port", lambda: next(picks))
    ours = EmbeddedPostgres(data_dir=tmp_path / "pg")
    try:
        ours.start()
        assert ours.port != stranger.port
        assert ours.url.startswith(f"postgresql://postgres@127.0.0.1:{ours.port}/")
        with psycopg.connect(ours.url) as conn:
            row = conn.execute("SHOW data_directory").fetchone()
        assert row is not None and Path(row[0]).resolve() == ours.data_dir.resolve()
        ours.stop()
        ours.start()  # served there once: a restart keeps the port
        assert ours.port != stranger.port
    finally:
        ours.cleanup()
