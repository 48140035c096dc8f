"""Several bulk runner processes on disjoint partitions, and when they may all stop.

`surveillance backfill` forks one `BulkRunner` per ownership (`bulk.ownership.plan`): each
restores its own partitions of the changelogs, reads its own partitions, commits their
offsets in the worker's group and writes what its batches produce, as one runner alone
does. They share only a small array: per process its progress (for the progress bar) and
its idle state (for the stop). Forked, not spawned: a child starts at once, with the
engine's modules already imported (before any thread or event loop exists).

The stop. A process's own partitions read to their end is not enough: another process may
still produce into them (the join processes write `cases.adjudicated`; a join process may
forward to another's `cases.join`). Each process, once quiet for the idle time, notes when
it became quiet (after its last batch's sends were acknowledged) and, at each check that
finds its partitions at their ends, when that check began. All stop once every process is
quiet and every one's latest check began after the last of them became quiet: nothing was
produced since, so nothing unread remains.

Helpers (the calibration process, `bulk.calibration`) are children too, outside the stop:
they end when the runners they serve say they are done; each reports its CPU, and when
it finished its last job. A helper may still be working after the runners' last batch
(the case stage then waits for its thresholds and writes the held tools' alerts: their
acknowledgement moves `last_batch`, the end of the backfill's wall time), so its CPU is
also read here, from the operating system at each poll, to give the part of it spent
up to `last_batch`: the interval the backfill's wall time covers.

Crashes. Every child dies with the parent (PR_SET_PDEATHSIG): a SIGKILLed backfill leaves
no runner behind. A child that dies (a crash test's exit, or a failure) takes the others
down at once, unflushed, as a crash would; its offsets not committed are re-read next time.
"""

from __future__ import annotations

import ctypes
import multiprocessing
import os
import queue
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from multiprocessing.sharedctypes import RawArray
from pathlib import Path
from typing import Any

from surveillance.child_process import die_with_parent

EVENTS, RECORDS, BEHIND, LAST_BATCH, BUSY_CPU, QUIET_SINCE, CHECKED_AT, READY_CPU = range(8)
FIELDS = 8
POLL_SECONDS = 0.1


class ProcessFailed(Exception):
    """A runner process failed; the message is its error's."""


@dataclass
class Totals:
    events: int
    records: int
    behind: int
    last_batch: float  # monotonic, the last batch committed or held outputs acknowledged
    #: CPU seconds of each runner process from its start to its last batch (with enough
    #: cores, the busy wall time is at least the largest: how well the stages balance).
    busy_cpu: tuple[float, ...]
    #: CPU seconds of each from its start to its first batch (restore, connections).
    ready_cpu: tuple[float, ...] = ()
    #: CPU seconds of each helper process (the calibration process) to its last job.
    helper_cpu: tuple[float, ...] = ()
    #: monotonic, when each helper finished its last job (0: it had none).
    helper_ended: tuple[float, ...] = ()
    #: CPU seconds of each helper to `last_batch` (the wall time's interval), from the
    #: operating system's readings (`run_processes`); empty where it gives none.
    helper_cpu_to_last_batch: tuple[float, ...] = ()


class Slot:
    """One process's view of the shared array: what it writes and the stop it reads."""

    def __init__(self, shared: Any, index: int, stop: Any) -> None:
        self.shared = shared
        self.base = index * FIELDS
        self.stop = stop

    def progress(self, events: int, records: int, behind: int, last_batch: float,
                 busy_cpu: float, ready_cpu: float) -> None:
        s, b = self.shared, self.base
        s[b + EVENTS], s[b + RECORDS], s[b + BEHIND] = events, records, behind
        s[b + LAST_BATCH], s[b + BUSY_CPU], s[b + READY_CPU] = last_batch, busy_cpu, ready_cpu

    def cpu(self, seconds: float) -> None:
        """A helper's CPU so far, at the end of a job (and when that was)."""
        self.shared[self.base + BUSY_CPU] = seconds
        self.shared[self.base + LAST_BATCH] = time.monotonic()

    def busy(self) -> None:
        self.shared[self.base + QUIET_SINCE] = 0.0

    def caught_up(self, quiet_since: float, checked: float) -> bool:
        """This process is quiet since `quiet_since` and its partitions were at their ends
        at `checked`; whether every process may stop now."""
        self.shared[self.base + QUIET_SINCE] = quiet_since
        self.shared[self.base + CHECKED_AT] = checked
        return self.stopped()

    def stopped(self) -> bool:
        return bool(self.stop.is_set())


def all_caught_up(shared: Any, processes: int) -> bool:
    """Every process quiet, and each one's last end check begun after the last of them
    went quiet (so after the last record any of them produced was acknowledged)."""
    quiet = [shared[i * FIELDS + QUIET_SINCE] for i in range(processes)]
    checked = [shared[i * FIELDS + CHECKED_AT] for i in range(processes)]
    return all(q > 0 for q in quiet) and min(checked) > max(quiet)


def totals(shared: Any, processes: int, helpers: int = 0) -> Totals:
    def field(f: int, first: int = 0, count: int = processes) -> list[float]:
        return [shared[i * FIELDS + f] for i in range(first, first + count)]

    return Totals(int(sum(field(EVENTS))), int(sum(field(RECORDS))),
                  int(sum(field(BEHIND))), max(field(LAST_BATCH)), tuple(field(BUSY_CPU)),
                  tuple(field(READY_CPU)), tuple(field(BUSY_CPU, processes, helpers)),
                  tuple(field(LAST_BATCH, processes, helpers)))


def process_cpu(pid: int) -> float | None:
    """User + system CPU seconds a live process has used so far (Linux /proc; None
    elsewhere or once it has been reaped)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cpu_at(readings: list[tuple[float, float]], at: float, total: float,
           ended: float) -> float | None:
    """A process's CPU at monotonic `at`, from (time, CPU) readings taken while it ran,
    linear between the two around `at`; `total` if it had ended its work by then (it
    only waited afterwards). None when no reading brackets `at`."""
    if ended <= at:
        return total
    before = [r for r in readings if r[0] <= at]
    after = [r for r in readings if r[0] > at]
    if not before or not after:
        return None
    (t0, c0), (t1, c1) = before[-1], after[0]
    return c0 + (c1 - c0) * (at - t0) / (t1 - t0)


def run_processes(runners: list[Callable[[Slot], None]],
                  on_progress: Callable[[Totals], None] | None = None,
                  helpers: tuple[Callable[[Slot], None], ...] = ()) -> Totals:
    """Run each `runner(slot)` in a forked child until all may stop, and each helper
    until it returns; the totals. A child exiting 137 (a crash test's death) makes this
    process exit 137 too."""
    context = multiprocessing.get_context("fork")
    everyone = [*runners, *helpers]
    shared = RawArray(ctypes.c_double, len(everyone) * FIELDS)
    stop = context.Event()
    errors: Any = context.SimpleQueue()
    parent = os.getpid()
    children = [context.Process(target=_child, args=(run, Slot(shared, i, stop), parent, errors),
                                daemon=True) for i, run in enumerate(everyone)]
    for child in children:
        child.start()
    # Each helper's CPU as the operating system counts it, at each poll: its part up to
    # the last batch (`Totals.helper_cpu_to_last_batch`).
    readings: list[list[tuple[float, float]]] = [[] for _ in helpers]
    try:
        while any(child.exitcode is None for child in children):
            for reading, child in zip(readings, children[len(runners):], strict=True):
                pid = child.pid
                cpu = process_cpu(pid) if child.exitcode is None and pid is not None else None
                if cpu is not None:
                    reading.append((time.monotonic(), cpu))
            failed = [c for c in children if c.exitcode not in (None, 0)]
            if failed:
                _kill(children)
                if failed[0].exitcode == CRASH_EXIT:
                    os._exit(CRASH_EXIT)
                raise ProcessFailed(_error(errors, failed[0].exitcode))
            if not stop.is_set() and all_caught_up(shared, len(runners)):
                stop.set()
            if on_progress is not None:
                on_progress(totals(shared, len(runners), len(helpers)))
            time.sleep(POLL_SECONDS)
        failed = [c for c in children if c.exitcode != 0]
        if failed:
            if failed[0].exitcode == CRASH_EXIT:
                os._exit(CRASH_EXIT)
            raise ProcessFailed(_error(errors, failed[0].exitcode))
    finally:
        _kill(children)
    done = totals(shared, len(runners), len(helpers))
    to_last = [cpu_at(r, done.last_batch, total, ended) for r, total, ended in
               zip(readings, done.helper_cpu, done.helper_ended, strict=True)]
    if any(c is None for c in to_last):
        return done
    return replace(done, helper_cpu_to_last_batch=tuple(c for c in to_last if c is not None))


CRASH_EXIT = 137  # what a SIGKILLed process reports


def _child(run: Callable[[Slot], None], slot: Slot, parent: int, errors: Any) -> None:
    die_with_parent(parent, CRASH_EXIT)
    try:
        run(slot)
    except Exception as exc:  # the parent reports it, in one line
        errors.put(f"{type(exc).__name__}: {exc}")
        sys.exit(1)


def _error(errors: Any, exitcode: int | None) -> str:
    try:
        return str(errors.get()) if not errors.empty() else f"exit code {exitcode}"
    except (OSError, queue.Empty):
        return f"exit code {exitcode}"


def _kill(children: list[Any]) -> None:
    for child in children:
        if child.exitcode is None:
            child.kill()
    for child in children:
        child.join()
