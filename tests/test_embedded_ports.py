"""The embedded broker and PostgreSQL server when the port they picked is taken by another
process before they bind it (another run's broker or server on the same machine): each
starts on another port, and never takes the stranger that answers on the port for itself.
Nor does a worker started by `stream.runner` take another process's counts for its own.

The race is made certain, not waited for: the port picked first is the suite's own
broker's or server's (a real stranger of the same kind, answering the same protocol).
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import psycopg
import pytest
from kafka import KafkaAdminClient

import surveillance.embedded.broker as broker_code
import surveillance.embedded.postgres as postgres_code
from surveillance.embedded import EmbeddedBroker, EmbeddedError, EmbeddedPostgres, free_port
from surveillance.embedded.ports import START_ATTEMPTS
from surveillance.stream.runner import WorkerProcess

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


def test_a_broker_whose_every_pick_is_taken_stops_after_the_last_attempt(
        broker: EmbeddedBroker, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(broker_code, "free_port", lambda: broker.port)
    ours = EmbeddedBroker()
    with pytest.raises(EmbeddedError, match=(
            f"the embedded broker could not listen: another process took the port picked "
            f"{START_ATTEMPTS} times in a row \\(last port {broker.port}\\)")):
        ours.start()
    assert not ours.running
    assert _cluster_id(broker.bootstrap) == broker.cluster_id


def test_a_database_whose_every_pick_is_taken_stops_after_the_last_attempt(
        postgres: EmbeddedPostgres, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(postgres_code, "free_port", lambda: postgres.port)
    ours = EmbeddedPostgres(data_dir=tmp_path / "pg")
    try:
        with pytest.raises(EmbeddedError, match=(
                f"PostgreSQL server could not listen: .* {START_ATTEMPTS} times in a row "
                f"\\(last port {postgres.port}\\)")):
            ours.start()
        assert not ours.running
    finally:
        ours.cleanup()


def test_a_worker_never_reads_another_process_counts(tmp_path: Path) -> None:
    """A server on the worker's port answers /surveillance/counts as a worker would: its
    counts are read only when they name the worker's own process."""
    pid: list[int] = [0]

    class Counts(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = json.dumps({"pid": pid[0], "ready": True, "assigned": [],
                               "tools": {"ich-triage": {"cases": 7}}}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    stranger = ThreadingHTTPServer(("127.0.0.1", 0), Counts)
    threading.Thread(target=stranger.serve_forever, daemon=True).start()
    worker = WorkerProcess("127.0.0.1:9", tmp_path, web_port=stranger.server_address[1])
    # Our "worker" is a process that serves nothing: the port's answers are the stranger's.
    worker.proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        pid[0] = worker.proc.pid + 1
        assert worker.counts() is None
        pid[0] = worker.proc.pid  # the same answer, from the worker itself
        assert worker.counts() == {"pid": worker.proc.pid, "ready": True, "assigned": [],
                                   "tools": {"ich-triage": {"cases": 7}}}
    finally:
        worker.kill()
        stranger.shutdown()
        stranger.server_close()
