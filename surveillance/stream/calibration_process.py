"""The live worker's drift calibrations in a process of their own.

A drift bank's Monte Carlo calibration is seconds of CPU once per tool reference (a tool's
first 30 days, each new software version's): in the worker's process it would hold the
event loop for all of it, with every agent, the web server and Faust's heartbeats
waiting (ten times as long on a loaded machine). Here it runs in a child process, on the
core the worker leaves idle, as the bulk runner's does (`bulk.calibration`): the case
stage holds that tool's drift until the thresholds come back and then replays its queued
calls (`engine.drift`), so the verdicts and alerts are the same whenever they arrive.

The child is spawned on the first job (not forked: the worker then has threads and an
event loop) and dies with the worker (PR_SET_PDEATHSIG). If it dies first (killed, out of
memory), the jobs it had are calibrated in the worker as before, and the next job starts
a new child: a lost child costs time, never thresholds.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import pickle
import queue
from typing import Any

from surveillance.child_process import die_with_parent
from surveillance.stats.drift_calibration_cache import Entries
from surveillance.stats.drift_feature_bank import Reference, thresholds_of

log = logging.getLogger(__name__)

#: How long `results(block=True)` waits at a time (it checks the child between waits).
WAIT_SECONDS = 0.05


class CalibrationProcess:
    """An `engine.drift.Calibrator` whose Monte Carlo runs in a child process."""

    def __init__(self) -> None:
        self._context = multiprocessing.get_context("spawn")
        self._process: Any = None
        self._jobs: Any = None
        self._results: Any = None
        #: Submitted and not yet handed back: job -> the pickled references (for the
        #: fallback in this process if the child dies).
        self._pending: dict[int, bytes] = {}

    @property
    def pending(self) -> int:
        return len(self._pending)

    def submit(self, job: int, references: list[Reference]) -> None:
        # Pickled now: the bank's reference is what it was at the call.
        payload = pickle.dumps(references, pickle.HIGHEST_PROTOCOL)
        self._pending[job] = payload
        self._start()
        self._jobs.put((job, payload))

    def results(self, block: bool) -> list[tuple[int, Entries]]:
        found: list[tuple[int, Entries]] = []
        while self._pending:
            try:
                job, entries = (self._results.get(timeout=WAIT_SECONDS) if block and not found
                                else self._results.get_nowait())
            except queue.Empty:
                if not self._process.is_alive():
                    found += self._in_process()
                    continue
                if block and not found:
                    continue
                break
            if self._pending.pop(job, None) is not None:
                found.append((job, entries))
        return found

    def close(self) -> None:
        """Stop the child (the worker is shutting down); jobs still pending are dropped:
        a restarted worker submits again what it needs."""
        if self._process is None:
            return
        if self._process.is_alive():
            self._process.kill()
        self._process.join(timeout=5)
        self._drop()

    def _drop(self) -> None:
        """Forget the child and its queues. A job still in a queue's pipe, with no one left
        to read it, would otherwise hold this process at exit (the queue's feeder thread
        is joined then)."""
        for channel in (self._jobs, self._results):
            if channel is not None:
                channel.cancel_join_thread()
                channel.close()
        self._process = self._jobs = self._results = None

    def _start(self) -> None:
        if self._process is not None and self._process.is_alive():
            return
        if self._process is not None:
            self._process.join(timeout=5)
            self._drop()
        self._jobs, self._results = self._context.Queue(), self._context.Queue()
        self._process = self._context.Process(
            target=_serve, args=(self._jobs, self._results, os.getpid()),
            name="surveillance-calibration", daemon=True)
        self._process.start()
        # Jobs the last child had not finished go to this one.
        for job, payload in self._pending.items():
            self._jobs.put((job, payload))

    def _in_process(self) -> list[tuple[int, Entries]]:
        log.error("the calibration process exited (code %s) with %d job(s) pending; "
                  "calibrating them in the worker", self._process.exitcode, len(self._pending))
        done = [(job, thresholds_of(pickle.loads(payload)))
                for job, payload in self._pending.items()]
        self._pending.clear()
        self._process.join(timeout=5)
        self._drop()
        return done


def _serve(jobs: Any, results: Any, parent: int) -> None:
    """The child: jobs in order until the parent goes."""
    die_with_parent(parent, 1)
    while True:
        job, payload = jobs.get()
        results.put((job, thresholds_of(pickle.loads(payload))))
