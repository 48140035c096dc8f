"""`surveillance demo`: the whole path on the embedded stack, with a summary per tool.

Starts the embedded broker, creates the topics, starts a worker, replays the simulator's
days of AI results and reports, waits until the worker has counted every case, and
prints per tool what the simulator produced next to what the worker counted.
"""

from __future__ import annotations

import time
from pathlib import Path

from surveillance.clinical.ledger import LABELLED
from surveillance.embedded import EmbeddedBroker
from surveillance.simulate import Faults, scenario_by_name, simulate
from surveillance.stream.produce import produce
from surveillance.stream.runner import WorkerProcess, wait_for_counts
from surveillance.stream.topics import all_topics, create_topics
from surveillance.settings import get_settings

OUTCOMES = ("TP", "FP", "TN", "FN", "indeterminate")


def run_demo(
    days: int, seed: int, scenario: str, timeout: float, state_dir: Path, partitions: int
) -> bool:
    t0 = time.monotonic()
    events, truth = simulate(days=days, seed=seed, scenario=scenario_by_name(scenario), faults=Faults())
    print(f"simulated {len(events)} events over {days} days "
          f"(scenario {scenario!r}, seed {seed}) in {time.monotonic() - t0:.1f}s")
    with EmbeddedBroker(log_dir=state_dir) as broker:
        create_topics(broker.bootstrap, all_topics(get_settings().stream.app_id, partitions))
        worker = WorkerProcess(broker.bootstrap, state_dir).start()
        try:
            t1 = time.monotonic()
            n = produce(broker.bootstrap, ((e.topic, e.key, e.value) for e in events))
            print(f"replayed {n} events into {broker.bootstrap} in {time.monotonic() - t1:.1f}s")
            expected = {tool: t.cases for tool, t in truth.items()}
            counts = wait_for_counts([worker], expected, timeout=timeout)
            elapsed = time.monotonic() - t0
        finally:
            worker.stop()
    ok = _summary(truth, counts)
    print(f"end to end {elapsed:.1f}s; worker log: {worker.log_path}")
    return ok


def _summary(truth: dict, counts: dict[str, dict[str, int]]) -> bool:  # type: ignore[type-arg]
    header = f"{'tool':<12} {'cases sim':>9} {'counted':>8}  " + "  ".join(
        f"{o[:5]:>11}" for o in OUTCOMES
    )
    print(header)
    print("-" * len(header))
    ok = True
    for tool in sorted(truth):
        sim = truth[tool]
        got = counts.get(tool, {})
        cells = []
        for o in OUTCOMES:
            s, g = sim.final_outcomes.get(o, 0), got.get(o, 0)
            cells.append(f"{s:>5}/{g:<5}")
            ok &= s == g
        ok &= sim.cases == got.get("cases", 0)
        print(f"{tool:<12} {sim.cases:>9} {got.get('cases', 0):>8}  " + "  ".join(cells))
    labelled = sum(v for t in counts.values() for k, v in t.items() if k in LABELLED)
    print(f"(outcome cells: simulated/counted; {labelled} labelled cases in the confusion "
          "matrices; cases still awaiting a report are counted as pending)")
    print("RESULT:", "all counts equal" if ok else "COUNTS DIFFER")
    return ok
