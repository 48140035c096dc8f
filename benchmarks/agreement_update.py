"""Per-case cost of updating a tool's agreement state: all windows, subgroups and both CUSUMs.

One case = `AgreementWindows.apply` under 4 keys (tool x version x site, and that refined by
scanner manufacturer, sex and age band), each key holding 7/30/90-day windows and the last
200 cases, plus routing the case to the sensitivity or specificity CUSUM. 5% of the events
are corrections of an earlier case. Inputs are built before the clock starts. Also printed:
the cost of reading all windows of a case's keys and judging them (done per verdict, not
necessarily per case).

    .venv/bin/python benchmarks/agreement_update.py [n_cases]
"""

from __future__ import annotations

import os
import platform
import random
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta

from surveillance.clinical.baselines import load_registry
from surveillance.clinical.verdicts import chart_designs, chart_observation, judge
from surveillance.contracts import CaseOutcome
from surveillance.stats.cusum import BernoulliCUSUM
from surveillance.stats.windows import AgreementWindows, Key, age_band, subgroup_keys

Event = tuple[tuple[Key, ...], str, CaseOutcome | None, CaseOutcome, datetime]


def make_events(n_cases: int, seed: int = 1) -> list[Event]:
    rng = random.Random(seed)
    base: Key = (("tool", "ptx-triage"), ("version", "3.0"), ("site", "A"))
    start = datetime(2024, 1, 1, tzinfo=UTC)
    events: list[Event] = []
    current: dict[str, tuple[tuple[Key, ...], CaseOutcome, datetime]] = {}
    for i in range(n_cases):
        if current and rng.random() < 0.05:
            case_id = rng.choice(list(current)[-500:])
            keys, previous, when = current[case_id]
            new = rng.choice([CaseOutcome.TP, CaseOutcome.FN, CaseOutcome.INDETERMINATE])
        else:
            case_id = f"case-{i}"
            keys = subgroup_keys(
                base,
                {
                    "scanner_manufacturer": rng.choice(["GE", "Siemens", "Philips", "Canon"]),
                    "sex": rng.choice(["F", "M"]),
                    "age_band": age_band(rng.randrange(18, 95)),
                },
            )
            previous = None
            when = start + timedelta(minutes=5 * i)  # ~290 cases a day
            positive = rng.random() < 0.1
            ai_right = rng.random() < (0.92 if positive else 0.97)
            new = (
                (CaseOutcome.TP if ai_right else CaseOutcome.FN)
                if positive
                else (CaseOutcome.TN if ai_right else CaseOutcome.FP)
            )
        events.append((keys, case_id, previous, new, when))
        current[case_id] = (keys, new, when)
        if len(current) > 2_000:
            current.pop(next(iter(current)))
    return events


def run(events: list[Event]) -> float:
    """Seconds to apply every event to fresh state."""
    windows = AgreementWindows(days=(7, 30, 90), last_n=200)
    designs = chart_designs(
        load_registry()["ptx-triage"], weekly_positives=200, weekly_negatives=1800
    )
    charts = {metric: BernoulliCUSUM(d.p0, d.p1, d.h) for metric, d in designs.items()}
    begin = time.perf_counter()
    for keys, case_id, previous, new, when in events:
        windows.apply(keys, case_id, previous, new, when)
        routed = chart_observation(previous, new)
        if routed is not None:
            charts[routed[0]].update(routed[1])
    return time.perf_counter() - begin


def read_cost(events: list[Event], repeats: int = 2_000) -> float:
    """Microseconds to read every window of every key of one case and judge the base key."""
    windows = AgreementWindows(days=(7, 30, 90), last_n=200)
    for keys, case_id, previous, new, when in events:
        windows.apply(keys, case_id, previous, new, when)
    tool = load_registry()["ptx-triage"]
    keys = events[-1][0]
    begin = time.perf_counter()
    for _ in range(repeats):
        for key in keys:
            for window in (7, 30, 90, "last_n"):
                counts = windows.window(key, window)
        judge(counts.confusion, tool)
    return (time.perf_counter() - begin) / repeats * 1e6


def main() -> None:
    n_cases = int(sys.argv[1]) if len(sys.argv) > 1 else 200_000
    events = make_events(n_cases)
    per_case = [run(events) / n_cases * 1e6 for _ in range(5)]
    print(
        f"machine: {platform.platform()}, {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} CPUs, Python {platform.python_version()}"
    )
    print(f"{n_cases} cases x 5 runs, 4 keys each (windows 7/30/90 d + last 200), 2 CUSUMs")
    best, median = min(per_case), statistics.median(per_case)
    runs = ", ".join(f"{v:.2f}" for v in per_case)
    print(f"per-case update: best {best:.2f} us, median {median:.2f} us (runs: {runs})")
    print(f"reading 16 windows + one sensitivity/specificity verdict: {read_cost(events):.0f} us")


if __name__ == "__main__":
    main()
