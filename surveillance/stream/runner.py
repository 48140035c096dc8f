"""Run workers as child processes and talk to them: used by the demo, tests and benchmarks.

A worker is `surveillance worker` in its own process (so a test can SIGKILL it), with its
settings passed through the environment, exactly as an operator would run it.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from surveillance.embedded.broker import free_port
from surveillance.errors import SurveillanceError


class WorkerError(SurveillanceError):
    """A worker process could not be started or did not answer."""


class WorkerProcess:
    def __init__(
        self,
        bootstrap: str,
        state_dir: Path,
        env: Mapping[str, str] | None = None,
        web_port: int | None = None,
        command: str = "worker",
        args: tuple[str, ...] = (),
    ) -> None:
        self.command = command
        self.args = args
        self.bootstrap = bootstrap
        self.web_port = web_port or free_port()
        self.state_dir = state_dir / f"worker-{self.web_port}"
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.log_path = self.state_dir / "worker.log"
        self._env = {
            **os.environ,
            "SURVEILLANCE_KAFKA__BOOTSTRAP": bootstrap,
            "SURVEILLANCE_STATE_DIR": str(self.state_dir),
            "SURVEILLANCE_STREAM__WEB_PORT": str(self.web_port),
            # The store writer serves its /metrics here too (a process runs one or the other).
            "SURVEILLANCE_DATABASE__METRICS_PORT": str(self.web_port),
            # Workers started here run against the embedded broker (demo, tests, benchmarks).
            "SURVEILLANCE_KAFKA__PROBE_LOG_END": "true",
            # ... on simulated data: the demo key is allowed there (with a warning).
            "SURVEILLANCE_MODE": os.environ.get("SURVEILLANCE_MODE", "demo"),
            **(env or {}),
        }
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> WorkerProcess:
        with open(self.log_path, "ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "surveillance.cli", self.command, *self.args],
                env=self._env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        return self

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.web_port}"

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def get_json(self, path: str, timeout: float = 2.0) -> Any:
        with urllib.request.urlopen(self.url + path, timeout=timeout) as resp:
            return json.loads(resp.read())

    def counts(self) -> dict[str, Any] | None:
        """The worker's /surveillance/counts; None until it answers. An answer from another
        process (one that took the port picked for this worker first) is never taken."""
        try:
            result: dict[str, Any] = self.get_json("/surveillance/counts")
        except (urllib.error.URLError, OSError, json.JSONDecodeError):
            return None
        if self.proc is None or result.get("pid") != self.proc.pid:
            return None
        return result

    def kill(self) -> None:
        """SIGKILL: no shutdown handlers, no final commit — a crash."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def stop(self, timeout: float = 30.0) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def log_tail(self, chars: int = 3000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""


def combined_counts(workers: Iterable[WorkerProcess]) -> dict[str, dict[str, int]] | None:
    """Sum the per-tool counts of all live workers; None while any of them is not ready."""
    total: dict[str, dict[str, int]] = {}
    for worker in workers:
        if not worker.alive():
            continue
        answer = worker.counts()
        if answer is None or not answer.get("ready"):
            return None
        for tool, counts in answer["tools"].items():
            into = total.setdefault(tool, {})
            for k, n in counts.items():
                into[k] = into.get(k, 0) + int(n)
    return total


def calibrating(workers: Iterable[WorkerProcess]) -> set[str]:
    """The tools whose drift waits for a calibration in any live worker."""
    held: set[str] = set()
    for worker in workers:
        answer = worker.counts() if worker.alive() else None
        held.update((answer or {}).get("calibrating", ()))
    return held


def wait_for_counts(
    workers: list[WorkerProcess],
    expected: Mapping[str, int],
    timeout: float,
    settle: float = 3.0,
    outcomes: Mapping[str, Mapping[str, int]] | None = None,
) -> dict[str, dict[str, int]]:
    """Poll until the per-tool case totals equal `expected` (and each tool's counts equal
    `outcomes`, when given) and stay so for `settle` s.

    A case is counted when its AI result is joined, its outcome when its report is: a
    report that takes one more hop (`cases.join`) can be counted seconds after the last
    case, so a caller that checks outcomes waits for them too.
    A worker's drift alerts can come after its counts: while a tool waits for its
    calibration (`stream.calibration_process`) the counts are not taken as settled.
    Returns the last counts seen (equal or not) when the timeout expires; the caller
    compares and reports.
    """
    deadline = time.monotonic() + timeout
    last: dict[str, dict[str, int]] = {}
    matched_since: float | None = None
    while time.monotonic() < deadline:
        if not any(w.alive() for w in workers):
            tails = "\n".join(w.log_tail() for w in workers)
            raise WorkerError(f"every worker exited; last log lines:\n{tails}")
        counts = combined_counts(workers)
        if counts is not None:
            last = counts
            totals = {tool: c.get("cases", 0) for tool, c in counts.items()}
            if all(totals.get(t, 0) == n for t, n in expected.items()) and all(
                    counts.get(t, {}).get(k, 0) == n
                    for t, want in (outcomes or {}).items() for k, n in want.items()
            ) and not calibrating(workers):
                matched_since = matched_since or time.monotonic()
                if time.monotonic() - matched_since >= settle:
                    return counts
            else:
                matched_since = None
        time.sleep(0.25)
    return last
