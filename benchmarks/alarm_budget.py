"""False alarms per tool-year through the whole worker path, and delays to flag a drop.

    .venv/bin/python benchmarks/alarm_budget.py --tool-years N [--seed S] [--tool ptx-triage]
        [--jobs 2]

1. N stable tool-years: the simulator's stream of one tool (`surveillance.simulate`,
   with its report corrections and orchestrator backlog), `WARMUP_DAYS` of references
   and then a year, run through the worker's pure path as `stream.app`'s case agent runs
   it: ingest -> join on 4 partitions -> case ledger (`engine.local.revisions`) ->
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
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from datetime import time as clock_time

from scipy.stats import chi2

from surveillance.clinical.baselines import load_registry
from surveillance.clinical.monitor import PerformanceMonitor
from surveillance.contracts import Alert
from surveillance.engine.config import SOURCE_IDLE_SECONDS as IDLE_SECONDS
from surveillance.engine.config import EngineConfig
from surveillance.engine.drift import DriftBanks
from surveillance.engine.local import revisions
from surveillance.simulate import Scenario, simulate
from surveillance.stats.alarm_budget import DEFAULT_BUDGET, FAMILIES
from surveillance.stats.cusum import average_run_length, threshold_for_arl
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


@dataclass(frozen=True)
class Run:
    alerts: list[Alert]
    lag_days: float  # median AI call -> first report
    monitor: PerformanceMonitor


def run_worker(
    tool: str, days: int, seed: int, scenario: Scenario, stop_at_flag_after: float | None = None
) -> Run:
    """The case agent's pure path (stream/app.py `_count`) over one simulated stream;
    with `stop_at_flag_after`, it stops at the first performance flag raised after that
    day (a drop's delay is all that is measured)."""
    events, _ = simulate(days=days, seed=seed, start=START, scenario=scenario, tools=[tool])
    monitor = PerformanceMonitor(load_registry())
    banks: dict = {}
    sources = SourceWatermark(IDLE_SECONDS, range(PARTITIONS), 0.0)
    evaluated: date | None = None
    alerts: list[Alert] = []
    lags: list[float] = []
    for wall, ((source, reached), previous, case) in enumerate(
        revisions(EngineConfig.plain(PARTITIONS), events)
    ):
        now = wall / 1000
        sources.observe(source, reached, now)
        alerts += monitor.on_case(previous, case)
        bank = DriftBanks(banks).take(previous, case)
        if previous is None and case.labelled_at is not None:
            lags.append((case.labelled_at - case.inference_date) / timedelta(days=1))
        low = sources.low(now)
        if low is None:
            continue
        alerts += [v.to_alert() for v in bank.advance(low)]
        day = low.date()
        if evaluated is None:
            evaluated = day
        elif day > evaluated:
            evaluated = day
            alerts += monitor.evaluate(
                datetime.combine(day, clock_time.min, tzinfo=UTC), tools=[tool],
                snapshots=False,
            )[0]
        if stop_at_flag_after is not None and any(
            a.kind in FLAGS and _day(a.raised_at) >= stop_at_flag_after for a in alerts[-8:]
        ):
            break
    return Run(alerts, statistics.median(lags) if lags else 0.0, monitor)


def _day(at: datetime) -> float:
    return (at - datetime.combine(START, clock_time.min, tzinfo=UTC)) / timedelta(days=1)


def stable_year(tool: str, seed: int) -> tuple[Counter[str], Counter[str]]:
    """(budgeted alerts per family, facts per kind) in the year after the warm-up."""
    run = run_worker(tool, WARMUP_DAYS + YEAR_DAYS, seed, Scenario())
    families: Counter[str] = Counter()
    facts: Counter[str] = Counter()
    for alert in run.alerts:
        if not WARMUP_DAYS <= _day(alert.raised_at) < WARMUP_DAYS + YEAR_DAYS:
            continue
        family = FAMILY_OF.get(alert.kind)
        if family is None:
            facts[alert.kind] += 1
        else:
            families[family] += 1
    return families, facts


def drop_scenario(tool: str, seed: int) -> tuple[float | None, str, float]:
    """(days from the drop to the first flag or None, its kind, optimal days)."""
    baseline = load_registry()[tool].baseline.sensitivity.value
    scenario = Scenario(sensitivity_drop_day=DROP_DAY, drop_tool=tool, drop_to=baseline - DROP)
    run = run_worker(tool, DROP_DAY + FOLLOW_DAYS, seed, scenario, DROP_DAY)
    flags = sorted(
        (a for a in run.alerts if a.kind in FLAGS and _day(a.raised_at) >= DROP_DAY),
        key=lambda a: a.raised_at,
    )
    version = run.monitor.versions(tool)[0]
    design = run.monitor.chart_design(tool, version, "sensitivity")
    assert design is not None, "the charts were not designed before the drop"
    p_drop = 1.0 - (baseline - DROP)
    h = threshold_for_arl(design.p0, p_drop, design.arl0_cases)
    arl1 = average_run_length(design.p0, p_drop, h, p_drop)
    optimal = arl1 / (design.weekly_volume / 7.0) + run.monitor.settle_days + run.lag_days
    if not flags:
        return None, "", optimal
    return _day(flags[0].raised_at) - DROP_DAY, flags[0].kind, optimal


def one(tool: str, seed: int) -> tuple[Counter[str], Counter[str], float | None, str, float]:
    families, facts = stable_year(tool, seed)
    delay, kind, optimal = drop_scenario(tool, seed)
    return families, facts, delay, kind, optimal


def garwood(count: int, exposure: float) -> tuple[float, float]:
    low = 0.0 if count == 0 else chi2.ppf(0.025, 2 * count) / 2
    return low / exposure, chi2.ppf(0.975, 2 * count + 2) / 2 / exposure


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tool-years", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--tool", default="ptx-triage", choices=sorted(load_registry()))
    parser.add_argument("--jobs", type=int, default=min(2, os.cpu_count() or 1))
    args = parser.parse_args()
    if args.tool_years < 1 or args.jobs < 1:
        print("error: --tool-years and --jobs must be >= 1", file=sys.stderr)
        raise SystemExit(2)
    n = args.tool_years
    began = time.perf_counter()
    seeds = [args.seed + i for i in range(n)]
    results = []
    with ProcessPoolExecutor(args.jobs) as pool:
        for seed, result in zip(seeds, pool.map(one, [args.tool] * n, seeds), strict=True):
            fam, fact, delay, kind, best = result
            shown = "missed" if delay is None else f"{delay:.1f} days ({kind})"
            print(f"  seed {seed}: stable year {dict(fam) or 'no alarms'}; drop flagged "
                  f"after {shown}; optimal {best:.1f} days", flush=True)
            results.append(result)
    elapsed = time.perf_counter() - began
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
          f"{elapsed:.0f} s on {args.jobs} processes ({platform.machine()}, "
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
