"""A whole backfill: the bulk runner (`bulk.runner`) in one process, or in several on
disjoint partitions with calibration processes beside them (with `tool_split`, two
processes share the case stage's partitions by the registry's tools:
`bulk.ownership.tool_split`)."""

from __future__ import annotations

import asyncio
import os
import resource
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from surveillance.bulk.batches import default_partition
from surveillance.bulk.calibration import Channels
from surveillance.bulk.ownership import Ownership, plan
from surveillance.bulk.processes import Slot, Totals, run_processes
from surveillance.bulk.runner import BulkRunner, Progress
from surveillance.engine.config import EngineConfig

#: How much lower the priority of a process that owns only join partitions is (a nice
#: increment). The case stage is the backfill's critical path: it takes the join's output
#: and costs more CPU per event. At one priority, the scheduler shares the cores evenly
#: among the join, the case stage and the calibration processes, so the join ran ahead
#: and the case stage went on alone for ~3.5 s after it (one core idle) at the end of the
#: 365-day benchmark backlog. Lower, the join takes what the others leave; it still has a
#: core to itself whenever they wait.
JOIN_NICENESS = 5


@dataclass
class Done:
    totals: Totals
    started: float  # monotonic, before the tables were restored
    cpu: float  # CPU seconds of every runner process from `started` to the end
    processes: int
    #: CPU seconds of this process before `started` (imports, settings, configuration):
    #: forked after them, the runner processes do not repeat them.
    before: float = 0.0


def backfill(config: EngineConfig, app_id: str, client: dict[str, Any], processes: int,
             on_progress: Callable[[Totals, float], None] | None = None,
             calibration_process: bool = True, tool_split: bool = False,
             **options: Any) -> Done:
    """The whole backfill in `processes` runner processes (1: in this one), with a
    calibration processes beside them if several and `calibration_process`. `options` go
    to each `BulkRunner`."""
    started, cpu = time.monotonic(), _cpu()
    # Each tool's cases are on one `cases.adjudicated` partition (keyed by the tool id).
    tools = ([default_partition(tool.encode(), config.partitions) for tool in config.registry]
             if tool_split else [])
    owners = plan(processes, config.partitions, tools)
    if len(owners) == 1:
        def batch_done(done: Progress) -> None:
            if on_progress is not None:
                on_progress(Totals(done.events, done.records, done.behind, done.last_batch,
                                   (done.busy_cpu,), (done.ready_cpu,)), started)

        runner = BulkRunner(config, app_id, client, on_batch=batch_done, **options)
        alone = asyncio.run(runner.run())
        totals = Totals(alone.events, alone.records, 0, alone.last_batch, (alone.busy_cpu,),
                        (alone.ready_cpu,))
        return Done(totals, started, _cpu() - cpu, 1, cpu)

    casers = [o for o in owners if o.cases]
    # One calibration process per core (at most 4): see `bulk.calibration`.
    channels = (Channels.make(len(casers), min(os.cpu_count() or 1, 4))
                if calibration_process else None)

    def runner_of(owned: Ownership) -> Callable[[Slot], None]:
        def run(slot: Slot) -> None:
            if not owned.cases:
                os.nice(JOIN_NICENESS)
            calibrator = channels.client(casers.index(owned)) if channels and owned.cases else None
            asyncio.run(BulkRunner(config, app_id, client, owned=owned, slot=slot,
                                   calibrator=calibrator, **options).run())
        return run

    def shown(totals: Totals) -> None:
        if on_progress is not None:
            on_progress(totals, started)

    totals = run_processes([runner_of(o) for o in owners], shown,
                           () if channels is None else channels.servers())
    return Done(totals, started, _cpu() - cpu, len(owners), cpu)


def _cpu() -> float:
    """CPU seconds of this process and of its children that have ended."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime
