"""The live worker's calibration process (`stream.calibration_process`): the drift Monte
Carlo in a spawned child gives the very outputs calibrating in the worker gives; a child
that dies is replaced (its jobs calibrated in the worker) without a threshold lost; and
the child dies with the worker.

The backlog, the chunked engine run and the comparison are the bulk calibration test's
(`tests/test_calibration_process.py`): the same alerts (every byte, per tool in order),
every other record, the same case-table changes and each tool's final state snapshot.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from surveillance.engine.records import Record
from surveillance.stats.drift_calibration_cache import Entries
from surveillance.stats.drift_feature_bank import Reference
from surveillance.stream.calibration_process import CalibrationProcess
from tests.test_calibration_process import Run, assert_same, records, reference, run

__all__ = ["records", "reference"]  # the module's fixtures, used here

ROOT = Path(__file__).resolve().parent.parent


class Counting(CalibrationProcess):
    """Counts the jobs and the children started; kills the child right after job
    `kill_after` was handed to it (None: never)."""

    def __init__(self, kill_after: int | None = None) -> None:
        super().__init__()
        self.kill_after = kill_after
        self.submitted = 0
        self.children: set[int] = set()
        self.handed_back = 0

    def submit(self, job: int, references: list[Reference]) -> None:
        super().submit(job, references)
        self.submitted += 1
        self.children.add(self._process.pid)
        if self.submitted == self.kill_after:
            self._process.kill()
            self._process.join()

    def results(self, block: bool) -> list[tuple[int, Entries]]:
        found = super().results(block)
        self.handed_back += len(found)
        return found


def test_the_live_calibration_process_gives_the_in_process_outputs(
        records: list[Record], reference: Run) -> None:
    calibrator = Counting()
    try:
        got = run(records, calibrator)
    finally:
        calibrator.close()
    # Not vacuous: both tools' references went to one spawned child and came back.
    assert calibrator.submitted == 2 and calibrator.handed_back == 2
    assert len(calibrator.children) == 1 and calibrator.pending == 0
    assert_same(got, reference)


@pytest.mark.parametrize("kill_after", [1, 2])
def test_a_dead_calibration_child_costs_time_not_thresholds(
        records: list[Record], reference: Run, caplog: pytest.LogCaptureFixture,
        kill_after: int) -> None:
    """Killed with the first job, the child is replaced at the second submit (both jobs
    go to the new one) or, if the engine asks first, its job is calibrated in the worker;
    killed with the last job, nothing more is submitted: the worker calibrates it."""
    calibrator = Counting(kill_after=kill_after)
    try:
        with caplog.at_level(logging.ERROR, "surveillance.stream.calibration_process"):
            got = run(records, calibrator)
    finally:
        calibrator.close()
    assert calibrator.submitted == 2 and calibrator.handed_back == 2
    in_worker = "the calibration process exited" in caplog.text
    if kill_after == 2:
        assert in_worker and len(calibrator.children) == 1
    else:
        assert in_worker or len(calibrator.children) == 2
    assert_same(got, reference)


CHILD_OF_A_WORKER = """
import sys, time
from surveillance.stream.calibration_process import CalibrationProcess
calibrator = CalibrationProcess()
calibrator._start()
print(calibrator._process.pid, flush=True)
time.sleep(120)
"""


def test_the_calibration_child_dies_with_the_worker() -> None:
    worker = subprocess.Popen([sys.executable, "-c", CHILD_OF_A_WORKER], cwd=ROOT,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert worker.stdout is not None
        child = int(worker.stdout.readline())
        assert _alive(child)
    finally:
        worker.send_signal(signal.SIGKILL)  # no goodbye: as an OOM kill or a node loss
        worker.wait()
    deadline = time.monotonic() + 30
    while _alive(child) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _alive(child)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    status = Path(f"/proc/{pid}/status")
    return not status.exists() or "zombie" not in status.read_text()
