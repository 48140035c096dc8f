"""The backfill's calibration process: the drift Monte Carlo away from the case stage.

A bank's calibration is seconds of CPU once per tool reference (a tool's first 30 days,
each new software version's). In the case-stage process it stops everything else that
process does; here it runs beside it, on the core the join process leaves idle. The case
stage's drift banks submit what a bank is built on (`stats.drift_feature_bank.Reference`,
by value) and hold that tool's drift until the thresholds come back (`engine.drift`):
the verdicts are the same whenever they arrive.

Calibration processes (one per core by default) serve every case-stage process of the
backfill: jobs come in on one queue, the next one to whichever is free, and the
thresholds leave on the submitting process's own queue. Several, because the last
references complete near the end of a backlog: their jobs (seconds each) are then the
backfill's tail, with the other processes idle, and jobs are independent (a held tool
is released whenever its own come back, in any order: `engine.drift`). Multiprocessing
queues, so that handing over a reference (a few hundred kB) never waits for a
calibration in progress: the queue's feeder thread writes it. Each process ends once
each case-stage process has said it is done; a crash of any process takes all down
(`bulk.processes`), and a restarted backfill submits again what it needs (the thresholds
are not stored).
"""

from __future__ import annotations

import multiprocessing
import pickle
import queue
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from surveillance.bulk.processes import Slot
from surveillance.stats.drift_calibration_cache import Entries
from surveillance.stats.drift_feature_bank import Reference, thresholds_of

#: How long `results(block=True)` waits at a time (it waits again while nothing came).
WAIT_SECONDS = 0.05


@dataclass
class Channels:
    """The queues, made before the processes are forked: one in, one out per client."""

    jobs: Any
    results: list[Any]
    #: How many calibration processes take from `jobs`.
    count: int = 1

    @classmethod
    def make(cls, clients: int, servers: int = 1) -> Channels:
        context = multiprocessing.get_context("fork")
        return cls(context.Queue(), [context.Queue() for _ in range(clients)], servers)

    def client(self, index: int) -> CalibrationClient:
        return CalibrationClient(self, index)

    def servers(self) -> tuple[Callable[[Slot], None], ...]:
        """Each calibration process's function."""
        return (self.serve,) * self.count

    def serve(self, slot: Slot) -> None:
        """A calibration process: jobs in order, until it has taken as many of the
        clients' ends as there are clients. Each client ends with one per process, after
        its last job, on one queue: the last process to stop takes the last end, after
        every job was taken."""
        started = time.process_time()
        ends = 0
        while ends < len(self.results):
            index, job, payload = self.jobs.get()
            if job is None:
                ends += 1
                continue
            references: list[Reference] = pickle.loads(payload)
            self.results[index].put((job, thresholds_of(references)))
            slot.cpu(time.process_time() - started)


class CalibrationClient:
    """A case-stage process's end (`engine.drift.Calibrator`)."""

    def __init__(self, channels: Channels, index: int) -> None:
        self.jobs = channels.jobs
        self.inbox = channels.results[index]
        self.index = index
        self.count = channels.count

    def submit(self, job: int, references: list[Reference]) -> None:
        # Pickled here, not by the feeder thread later: the bank's reference is what it
        # was at the call.
        self.jobs.put((self.index, job, pickle.dumps(references, pickle.HIGHEST_PROTOCOL)))

    def results(self, block: bool) -> list[tuple[int, Entries]]:
        found: list[tuple[int, Entries]] = []
        while True:
            try:
                found.append(self.inbox.get(timeout=WAIT_SECONDS) if block and not found
                             else self.inbox.get_nowait())
            except queue.Empty:
                if block and not found:
                    continue
                return found

    def done(self) -> None:
        """This client submits nothing more (each calibration process ends after all)."""
        for _ in range(self.count):
            self.jobs.put((self.index, None, b""))

