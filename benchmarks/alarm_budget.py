"""False alarms per tool-year through the whole worker path, and delays to flag a drop.

    .venv/bin/python benchmarks/alarm_budget.py --tool-years N [--seed S] [--tool ptx-triage]
        [--jobs 2]

1. N stable tool-years: the simulator's stream of one tool (`surveillance.simulate`,
   with its report corrections and orchestrator backlog), `WARMUP_DAYS` of references
   and then a year, run through the worker's pure path as `stream.app`'s case agent runs
   it: ingest -> join on 4 partitions -> case ledger (`engine.local.JoinFeed`) ->
   `PerformanceMonitor.on_case`, the tool's drift bank with the worker's configuration
   (`stream.case_features.new_bank`) advanced to the low watermark of the join
   partitions, and `evaluate` once per event-time day of that clock. Every alert raised
   in the year is counted, together and per detector family (`stats.alarm_budget`);
   version changes and new-category notices are facts outside the budget, counted apart.
2. N drop scenarios: the same tool's sensitivity falls from its baseline to baseline -
   0.10 on day `DROP_DAY` (specificity kept), at the tool's volume. The delay is from the
   drop to the first performance alert (CUSUM signal, baseline deviation, label-free
   warning or output drift); a drop not flagged within `FOLLOW_DAYS` counts as missed.
   The optimal delay of each scenario is the exact likelihood-ratio CUSUM's (in control
   at the monitor's chart rate, tuned for the actual drop, its threshold giving the
   monitor's chart's own in-control run length at the same volume; Markov-chain ARL of
   `stats.cusum`), plus the same settling and the scenario's median report lag.

Last line: `false alarms per tool-year F (95% CI L-U); drops flagged D/N; median delay M
days (optimal O days)`, the interval exact Poisson (Garwood). Tool-years run in `--jobs`
processes; each is seeded by S + its index, so the output does not depend on --jobs.
`--minutes M` stops after M minutes and reports the first K seeds finished (K is printed).

Cost (ptx-triage, 2026-12-01): 67 s of CPU per tool-year before the fork, the structured
reports, the frozen event lists and the blockwise Page-Hinkley calibration, 39.5 s after
(`time`, one process, 1 tool-year, seed 0). What is left is the worker's own per-case path
(ingest and join ~1/3, monitor ~1/4, drift bank, daily evaluation): about 92,000 cases a
tool-year at ~0.3 ms each, which no change to the benchmark can remove.
"""

from __future__ import annotations

import argparse
import gc
import multiprocessing
import os
import pickle
import platform
import statistics
import sys
import time
from collections import Counter
from datetime import UTC, date, datetime, timedelta
from datetime import time as clock_time
from functools import partial

from scipy.stats import chi2

from surveillance.clinical.baselines import load_registry
from surveillance.clinical.ledger import CaseLedger, CaseRecord
from surveillance.clinical.monitor import PerformanceMonitor
from surveillance.contracts import Alert
from surveillance.engine.config import SOURCE_IDLE_SECONDS as IDLE_SECONDS
from surveillance.engine.config import EngineConfig
from surveillance.engine.drift import DriftBanks
from surveillance.engine.local import JoinFeed
from surveillance.simulate import Scenario, SimEvent, simulate
from surveillance.simulate.faults import Faults
from surveillance.stats.alarm_budget import DEFAULT_BUDGET, FAMILIES
from surveillance.stats.cusum import average_run_length, threshold_for_arl
from surveillance.stats.drift_bank import DriftBank
from surveillance.stream.watermark import SourceWatermark

START = date(2026, 1, 1)
PARTITIONS = 4
#: References (drift 30 days, charts 28 + grace + settling) close before counting starts.
WARMUP_DAYS = 45
YEAR_DAYS = 365
DROP_DAY = 60
FOLLOW_DAYS = 150
DROP = 0.10
FAMILY_OF = {
    "cusum_signal": "cusum",
    "baseline_deviation": "baseline_test",
    "label_free_warning": "label_free",
    "input_drift": "drift",
    "output_drift": "drift",
}
FLAGS = ("cusum_signal", "baseline_deviation", "label_free_warning", "output_drift")


#: All reports structured: the same stream (the report-text generator has its own random
#: stream and the NLP reads every simulated text right: 0 wrong of 27,458 labels, README
#: "Report labels"), without rendering and re-reading 50% of reports as text.
STRUCTURED = Faults(structured_rate=1.0)


class Worker:
    """The case agent's pure path (stream/app.py `_count`), fed one event at a time:
    ingest and the join on `PARTITIONS` (`engine.local.JoinFeed`), the case ledger,
    `PerformanceMonitor.on_case`, the tool's drift bank (`take`) advanced to the low
    watermark of the join partitions, and `evaluate` once per event-time day of that clock.
    A plain object, so that `copy.deepcopy` forks it (the drop scenario, see `one`)."""

    def __init__(self, tool: str) -> None:
        self.tool = tool
        self.join = JoinFeed(EngineConfig.plain(PARTITIONS))
        self.ledger = CaseLedger()
        self.table: dict[str, CaseRecord] = {}
        self.monitor = PerformanceMonitor(load_registry())
        self.banks: dict[str, DriftBank] = {}
        self.sources = SourceWatermark(IDLE_SECONDS, range(PARTITIONS), 0.0)
        self.evaluated: date | None = None
        self.wall = 0  # one ms of wall time per case revision
        self.alerts: list[Alert] = []
        self.lags: list[float] = []  # days from AI call to the first report

    def feed(self, event: SimEvent, stop_at_flag_after: float | None = None) -> bool:
        """Take one event; with `stop_at_flag_after`, True as soon as a performance flag
        raised on or after that day is out (the rest of the event is not processed)."""
        for source, reached, case in self.join.feed(event):
            previous = self.table.get(case.case_id)
            record = self.ledger.apply(previous, case, 0, source)
            if record is None:
                continue
            self.table[case.case_id] = record
            now = self.wall / 1000
            self.wall += 1
            self.sources.observe(source, reached, now)
            raised = self.monitor.on_case(previous, case)
            bank = DriftBanks(self.banks).take(previous, case)
            if previous is None and case.labelled_at is not None:
                self.lags.append((case.labelled_at - case.inference_date) / timedelta(days=1))
            low = self.sources.low(now)
            if low is not None:
                raised += [v.to_alert() for v in bank.advance(low)]
                day = low.date()
                if self.evaluated is None:
                    self.evaluated = day
                elif day > self.evaluated:
                    self.evaluated = day
                    raised += self.monitor.evaluate(
                        datetime.combine(day, clock_time.min, tzinfo=UTC), tools=[self.tool],
                        snapshots=False,
                    )[0]
            self.alerts += raised
            if stop_at_flag_after is not None and any(
                a.kind in FLAGS and _day(a.raised_at) >= stop_at_flag_after for a in raised
            ):
                return True
        return False

    @property
    def lag_days(self) -> float:
        return statistics.median(self.lags) if self.lags else 0.0


def _day(at: datetime) -> float:
    return (at - datetime.combine(START, clock_time.min, tzinfo=UTC)) / timedelta(days=1)


def stable_year(alerts: list[Alert]) -> tuple[Counter[str], Counter[str]]:
    """(budgeted alerts per family, facts per kind) in the year after the warm-up."""
    families: Counter[str] = Counter()
    facts: Counter[str] = Counter()
    for alert in alerts:
        if not WARMUP_DAYS <= _day(alert.raised_at) < WARMUP_DAYS + YEAR_DAYS:
            continue
        family = FAMILY_OF.get(alert.kind)
        if family is None:
            facts[alert.kind] += 1
        else:
            families[family] += 1
    return families, facts


def drop_delay(tool: str, fork: Worker) -> tuple[float | None, str, float]:
    """(days from the drop to the first flag or None, its kind, optimal days)."""
    baseline = load_registry()[tool].baseline.sensitivity.value
    flags = sorted(
        (a for a in fork.alerts if a.kind in FLAGS and _day(a.raised_at) >= DROP_DAY),
        key=lambda a: a.raised_at,
    )
    version = fork.monitor.versions(tool)[0]
    design = fork.monitor.chart_design(tool, version, "sensitivity")
    assert design is not None, "the charts were not designed before the drop"
    p_drop = 1.0 - (baseline - DROP)
    h = threshold_for_arl(design.p0, p_drop, design.arl0_cases)
    arl1 = average_run_length(design.p0, p_drop, h, p_drop)
    optimal = arl1 / (design.weekly_volume / 7.0) + fork.monitor.settle_days + fork.lag_days
    if not flags:
        return None, "", optimal
    return _day(flags[0].raised_at) - DROP_DAY, flags[0].kind, optimal


def diverge(a: list[SimEvent], b: list[SimEvent]) -> int:
    """Index of the first event where two streams differ."""
    return next((i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y),
                min(len(a), len(b)))


def one(tool: str, seed: int) -> tuple[Counter[str], Counter[str], float | None, str, float]:
    """One stable tool-year and one drop scenario from the same seed.

    The simulator draws the same random numbers whatever the scenario, so the drop's
    stream (same days and seed) equals the stable one up to the first result scored
    after the drop (`diverge`). The worker runs the stable stream; at that event the
    process forks: the child runs the rest of the drop's stream on the worker's state as
    it is there, the parent the rest of the stable year. The child's result is exactly
    what a separate run of the drop's stream gives, without repeating its first
    `DROP_DAY` days and the drift bank's calibration, and without copying the state
    (a deep copy took longer than the days it saves)."""
    days = WARMUP_DAYS + YEAR_DAYS
    baseline = load_registry()[tool].baseline.sensitivity.value
    dropped = Scenario(sensitivity_drop_day=DROP_DAY, drop_tool=tool, drop_to=baseline - DROP)
    stable, _ = simulate(days=days, seed=seed, start=START, faults=STRUCTURED, tools=[tool])
    drop, _ = simulate(days=days, seed=seed, start=START, scenario=dropped,
                       faults=STRUCTURED, tools=[tool])
    split = diverge(stable, drop)
    # The long-lived event lists need no cyclic collection: freezing them stops every
    # full collection from walking them again.
    gc.collect()
    gc.freeze()
    worker = Worker(tool)
    for event in stable[:split]:
        worker.feed(event)
    readable, writable = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover (runs in the forked child)
        code = 1
        try:
            os.close(readable)
            with os.fdopen(writable, "wb") as out:
                pickle.dump(run_drop(tool, worker, drop[split:]), out)
            code = 0
        finally:
            os._exit(code)
    os.close(writable)
    del drop
    for event in stable[split:]:
        worker.feed(event)
    families, facts = stable_year(worker.alerts)
    with os.fdopen(readable, "rb") as result:
        delay, kind, optimal = pickle.load(result)
    _, status = os.waitpid(child, 0)
    gc.unfreeze()
    if status != 0:
        raise RuntimeError(f"the drop scenario of seed {seed} failed (status {status})")
    return families, facts, delay, kind, optimal


def run_drop(
    tool: str, fork: Worker, rest: list[SimEvent]
) -> tuple[float | None, str, float]:
    """The drop scenario from the fork on, up to its first flag or `FOLLOW_DAYS`."""
    end = datetime.combine(START, clock_time.min, tzinfo=UTC) + timedelta(
        days=DROP_DAY + FOLLOW_DAYS)
    for event in rest:
        if event.arrival >= end or fork.feed(event, DROP_DAY):
            break
    return drop_delay(tool, fork)


def garwood(count: int, exposure: float) -> tuple[float, float]:
    low = 0.0 if count == 0 else chi2.ppf(0.025, 2 * count) / 2
    return low / exposure, chi2.ppf(0.975, 2 * count + 2) / 2 / exposure


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tool-years", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--tool", default="ptx-triage", choices=sorted(load_registry()))
    parser.add_argument("--jobs", type=int, default=min(2, os.cpu_count() or 1))
    parser.add_argument(
        "--minutes", type=float, default=None,
        help="stop after this much wall time and report the tool-years done by then: the "
        "first K seeds in order, so a slow seed is never dropped for a faster one",
    )
    args = parser.parse_args()
    if args.tool_years < 1 or args.jobs < 1 or (args.minutes is not None and args.minutes <= 0):
        print("error: --tool-years and --jobs must be >= 1, --minutes > 0", file=sys.stderr)
        raise SystemExit(2)
    began = time.perf_counter()
    seeds = [args.seed + i for i in range(args.tool_years)]
    results = []
    with multiprocessing.get_context("fork").Pool(args.jobs) as pool:
        pending = pool.imap(partial(one, args.tool), seeds)
        for seed in seeds:
            left = None if args.minutes is None else (
                args.minutes * 60 - (time.perf_counter() - began))
            try:
                if left is not None and left <= 0:
                    raise multiprocessing.TimeoutError
                result = pending.next(left)
            except multiprocessing.TimeoutError:
                print(f"  stopped after {args.minutes:g} minutes at seed {seed}", flush=True)
                break  # leaving the block terminates the workers
            fam, fact, delay, kind, best = result
            shown = "missed" if delay is None else f"{delay:.1f} days ({kind})"
            print(f"  seed {seed}: stable year {dict(fam) or 'no alarms'}; drop flagged "
                  f"after {shown}; optimal {best:.1f} days", flush=True)
            results.append(result)
    elapsed = time.perf_counter() - began
    n = len(results)
    if n == 0:
        print("error: no tool-year finished within --minutes", file=sys.stderr)
        raise SystemExit(2)
    families: Counter[str] = Counter()
    facts: Counter[str] = Counter()
    delays: list[float] = []
    optimal: list[float] = []
    by_kind: Counter[str] = Counter()
    for fam, fact, delay, kind, best in results:
        families += fam
        facts += fact
        optimal.append(best)
        if delay is not None:
            delays.append(delay)
            by_kind[kind] += 1
    print(f"{args.tool}: {n} stable tool-years + {n} drops to baseline - {DROP:g}; "
          f"{elapsed:.0f} s on {args.jobs} processes, load average {os.getloadavg()[0]:.1f} "
          f"({platform.machine()}, "
          f"{os.cpu_count()} cores, Python {platform.python_version()})")
    for family in FAMILIES:
        share = DEFAULT_BUDGET.per_year(family)
        low, high = garwood(families[family], n)
        verdict = "within" if families[family] / n <= share else "OVER"
        print(f"  {family:14s} {families[family] / n:.3f}/tool-year (95% CI {low:.3f}-"
              f"{high:.3f}); share {share:.3f}: {verdict}")
    print(f"  facts outside the budget: {dict(facts) or 'none'}")
    print(f"  first flags of drops: {dict(by_kind)}")
    total = sum(families.values())
    low, high = garwood(total, n)
    # Missed drops count as later than any flagged one: the median is over all N.
    padded = sorted(delays) + [float("inf")] * (n - len(delays))
    median = statistics.median(padded)
    print(f"false alarms per tool-year {total / n:.2f} (95% CI {low:.2f}-{high:.2f}); "
          f"drops flagged {len(delays)}/{n}; median delay {median:.1f} days "
          f"(optimal {statistics.median(optimal):.1f} days)")


if __name__ == "__main__":
    main()
