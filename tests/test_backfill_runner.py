"""`surveillance backfill` on the real embedded broker, then the real worker takes over.

Two thirds of a 21-day faulty stream (duplicates, invalid events, corrections) are
backfilled by the bulk runner (a child process, as an operator runs it): SIGKILLed once
it has committed some batches (mid-backlog, wherever it is: before, during or after a
batch's sends), then run again to the end; it exits once caught up. A Faust worker
started afterwards must hold exactly the cases the backfill counted without reading any
input again (its tables recovered from the changelogs the backfill wrote, its offsets
those the backfill committed), then count the live third: the final counts equal the
simulator's truth, outcome by outcome.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from surveillance.embedded import EmbeddedBroker
from surveillance.simulate import Faults, Scenario, SimEvent, simulate
from surveillance.stream.runner import WorkerProcess, wait_for_counts
from surveillance.stream.topics import AI_RESULTS
from tests.test_pipeline_integration import (
    assert_exact,
    assert_no_crash,
    expected_counts,
    metric_samples,
    send,
    stack,  # noqa: F401 (the fixture)
)

pytestmark = pytest.mark.integration


def case_totals(events: list[SimEvent]) -> dict[str, int]:
    """Distinct valid AI results per tool: the cases any correct count of `events` holds."""
    seen: dict[str, set[str]] = {}
    for e in events:
        if e.valid and e.topic == AI_RESULTS:
            tool = json.loads(e.value)["tool_id"]
            seen.setdefault(tool, set()).add(str(e.event_id))
    return {tool: len(ids) for tool, ids in seen.items()}


def inputs_processed(worker: WorkerProcess) -> float:
    samples = metric_samples(worker, "surveillance_events_processed_total")
    return sum(v for labels, v in samples.items()
               if dict(labels).get("topic") in ("ai.results", "reports.final"))


@pytest.mark.parametrize("point", ["flushed", "committed"])
def test_a_backfill_then_the_worker_continue_to_exact_counts(
    stack: EmbeddedBroker, tmp_path: Path, point: str  # noqa: F811
) -> None:
    """The runner dies (as if SIGKILLed) after its third batch: with the batch's outputs
    acknowledged but its offsets not committed ("flushed": the restart re-reads a batch
    whose effects are already on the topics and changelogs), or right after the commit."""
    events, truth = simulate(
        days=21, seed=5, scenario=Scenario(),
        faults=Faults(duplicate_rate=0.02, invalid_rate=0.01, correction_rate=0.01),
    )
    cut = len(events) * 2 // 3
    backlog, live = events[:cut], events[cut:]
    send(stack, backlog)
    args = ("--idle-seconds", "3", "--max-records", "500")
    crashed = WorkerProcess(stack.bootstrap, tmp_path, command="backfill",
                            args=(*args, "--crash-after-batch", "3", "--crash-point", point)
                            ).start()
    assert crashed.proc is not None
    assert crashed.proc.wait(timeout=300) == 137, crashed.log_tail()
    assert "backfill done" not in crashed.log_tail()
    runner = WorkerProcess(stack.bootstrap, tmp_path, command="backfill", args=args).start()
    assert runner.proc is not None
    assert runner.proc.wait(timeout=900) == 0, runner.log_tail()
    done = [line for line in runner.log_tail().splitlines() if "backfill done" in line]
    print(f"{len(backlog)} backlog events, {len(live)} live; restarted: {done[-1]}")
    taken = int(done[-1].split()[2])
    assert 0 < taken < len(backlog)  # the rest of the backlog, from the committed offsets

    worker = WorkerProcess(stack.bootstrap, tmp_path).start()
    try:
        before = case_totals(backlog)
        recovered = wait_for_counts([worker], before, timeout=240)
        assert {t: c["cases"] for t, c in recovered.items()} == before
        assert inputs_processed(worker) == 0  # recovered, not re-read
        send(stack, live)
        counts = wait_for_counts([worker], expected_counts(truth), timeout=240)
        print("worker after the live third:",
              {t: dict(Counter(c)) for t, c in sorted(counts.items())})
        assert_exact(truth, counts)
        assert inputs_processed(worker) == len(live)  # from the backfill's offsets on
        assert_no_crash(worker)
    finally:
        worker.stop()
