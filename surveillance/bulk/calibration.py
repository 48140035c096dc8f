"""The backfill's calibration process: the drift Monte Carlo away from the case stage.

A bank's calibration is seconds of CPU once per tool reference (a tool's first 30 days,
each new software version's). In the case-stage process it stops everything else that
process does; here it runs beside it, on the core the join process leaves idle. The case
stage's drift banks submit what a bank is built on (`stats.drift_feature_bank.Reference`,
by value) and hold that tool's drift until the thresholds come back (`engine.drift`):
the verdicts are the same whenever they arrive.

One calibration process serves every case-stage process of the backfill: jobs come in
on one queue and leave on the submitting process's own. A multiprocessing queue, so
that handing over a reference (a few hundred kB) never waits for a calibration in
progress: the queue's feeder thread writes it. The process ends once each case-stage
process has said it is done; a crash of any process takes all down (`bulk.processes`),
and a restarted backfill submits again what it needs (the thresholds are not stored).
"""

from __future__ import annotations

import multiprocessing
import pickle
import queue
import time
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

    @classmethod
    def make(cls, clients: int) -> Channels:
        context = multiprocessing.get_context("fork")
        return cls(context.Queue(), [context.Queue() for _ in range(clients)])

    def client(self, index: int) -> CalibrationClient:
        return CalibrationClient(self, index)

    def serve(self, slot: Slot) -> None:
        """The calibration process: jobs in order, until every client is done."""
        started = time.process_time()
        open_clients = set(range(len(self.results)))
        while open_clients:
            index, job, payload = self.jobs.get()
            if job is None:
                open_clients.discard(index)
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
        """This client submits nothing more (the calibration process ends after all)."""
        self.jobs.put((self.index, None, b""))

