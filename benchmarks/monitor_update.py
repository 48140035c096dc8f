"""CPU per case of `PerformanceMonitor.on_case`, every window key counted, beside a ceiling.

The input is what the worker gives the monitor: a simulated stream (every tool, sites,
scanners, sexes, ages, report delays, corrections) through the engine's join and ledger
(`engine.local.revisions`), made before the clock starts: one `(previous record, case,
stored record)` per new case revision, as the engine's case stage passes them (a case
usually comes twice: pending at its AI call, labelled at its report). Each revision is
counted under 8 window keys ((site, all sites) x (itself, scanner, sex, age band)), each
with its 7/30/90-day windows and last 200 cases, and feeds the label-free counts and the
two CUSUM charts. The windows count the 8 keys of a placement as one group (one bucket
per day for all 8, `stats.windows`); every key's window is the sum of its groups', and
the run checks that every case sits in the 90-day window of each of its 8 keys.

The clock runs from day 50 on (every version's charts designed: that Markov-chain design
runs once per version, ~0.1 s a chart, and is printed apart as the whole stream's cost).
The ceiling, measured in the same run on the same revisions: a bare loop that does one
dict increment per revision at its (group, day) (no windows, no charts); the monitor
cannot beat it. Also printed: one dict increment per window key of each revision (what
counting each key on its own costs at the least, the design the groups replaced), the
same revisions without the stored record (the monitor then reads the pydantic case),
and the daily evaluation per tool-day, with and without snapshots (it sums each key's
groups).

Unit. The target is "10 us per case", a figure first set against a benchmark that timed
one update call per case; here a case usually has two revisions (two `on_case` calls), so
both are printed: CPU per revision (per update call) and CPU per case (its revisions
together). And the engine's feed, which the target line judges: the case stage does not
hand the monitor every revision but, at each tool's daily evaluation point
(`engine.evaluation`), per case its highest revision in effect by the day's end (a
pending stand-in for a case whose report came on a later day), through
`clinical.evaluation_order.EvaluationQueue`; the same revisions are put through that
queue before the clock starts (a day evaluated once the stream's event time passed its
end by the engine's default grace), and `PerformanceMonitor.on_cases` takes each day's
batch: CPU per call and per case (all its calls), every key counted there too, and the
batched feed's alerts and end state equal to `on_case` called on each of its revisions.

    .venv/bin/python benchmarks/monitor_update.py [days]
"""

from __future__ import annotations

import gc
import hashlib
import os
import platform
import statistics
import sys
import time
from datetime import UTC, date, datetime, timedelta
from datetime import time as clock_time

from surveillance.clinical.baselines import load_registry
from surveillance.clinical.evaluation_order import EvaluationQueue
from surveillance.clinical.ledger import CaseRecord, record_of
from surveillance.clinical.monitor import PerformanceMonitor
from surveillance.contracts import AdjudicatedCase
from surveillance.engine.config import EngineConfig
from surveillance.engine.evaluation import EVALUATION_GRACE
from surveillance.engine.local import revisions
from surveillance.simulate import simulate
from surveillance.stats.windows import Key, age_band, subgroup_keys

Revision = tuple[CaseRecord | None, AdjudicatedCase, CaseRecord]
RUNS = 5
#: Days fed before the clock starts: by then every chart is designed (28 days of
#: reference, 2 of grace, 7 of settling), which happens once per version.
WARM_DAYS = 50


def _keys(case: AdjudicatedCase) -> tuple[Key, ...]:
    subgroups = {"scanner_manufacturer": case.scanner_manufacturer or "unknown",
                 "sex": case.sex.value, "age_band": age_band(case.age)}
    return tuple(
        key
        for site in (case.site, "all")
        for key in subgroup_keys((("tool", case.tool_id), ("version", case.software_version),
                                  ("site", site)), subgroups)
    )


def monitor_run(
    stream: list[Revision], warm: int, stored: bool = True
) -> tuple[float, float, float, PerformanceMonitor]:
    """CPU seconds of the whole stream and of the revisions after `warm` (every chart
    designed), wall seconds of those, and the monitor; `stored=False` leaves out the
    stored record."""
    monitor = PerformanceMonitor(load_registry())
    on_case = monitor.on_case
    gc.collect()  # not the collection of the previous run's garbage
    start = time.process_time()
    for previous, case, record in stream[:warm]:
        on_case(previous, case, record if stored else None)
    cpu, wall = time.process_time(), time.perf_counter()
    if stored:
        for previous, case, record in stream[warm:]:
            on_case(previous, case, record)
    else:
        for previous, case, _ in stream[warm:]:
            on_case(previous, case)
    end = time.process_time()
    return end - start, end - cpu, time.perf_counter() - wall, monitor


def day_batches(stream: list[Revision]) -> list[tuple[date, list[Revision]]]:
    """(day, its revisions) per tool and day as the engine's evaluation point hands them to
    the monitor: each case's highest revision in effect by the day's end, once the
    stream's event time has passed that end by the grace; the rest at the end."""
    queue = EvaluationQueue(timedelta(days=14))  # the join's default unlabelled horizon
    tools: list[str] = []
    batches: list[tuple[date, list[Revision]]] = []
    next_day: date | None = None

    def cut(day: date) -> None:
        end = datetime.combine(day, clock_time.min, tzinfo=UTC) + timedelta(days=1)
        for tool in tools:
            due = queue.due(tool, end)
            if due:
                batches.append((day, due))

    for previous, case, record in stream:
        if case.tool_id not in tools:
            tools.append(case.tool_id)
        queue.add(previous, case, record)
        clock = case.labelled_at or case.inference_date
        if next_day is None:
            next_day = case.inference_date.astimezone(UTC).date()
        while (datetime.combine(next_day, clock_time.min, tzinfo=UTC) + timedelta(days=1)
               + EVALUATION_GRACE <= clock):
            cut(next_day)
            next_day += timedelta(days=1)
    assert next_day is not None
    while len(queue):
        cut(next_day)
        next_day += timedelta(days=1)
    return batches


def batched_run(batches: list[tuple[date, list[Revision]]], warm: date
                ) -> tuple[float, PerformanceMonitor]:
    """CPU seconds of `on_cases` over the batches of `warm` and after, and the monitor."""
    monitor = PerformanceMonitor(load_registry())
    on_cases = monitor.on_cases
    gc.collect()
    timed = [batch for day, batch in batches if day >= warm]
    for day, batch in batches:
        if day < warm:
            on_cases(batch)
    cpu = time.process_time()
    for batch in timed:
        on_cases(batch)
    return time.process_time() - cpu, monitor


def batched_equal(batches: list[tuple[date, list[Revision]]]) -> str:
    """The batched feed through `on_cases` and through `on_case` one revision at a time:
    the same alerts, and the same windows, verdicts and charts at the end."""
    outs = []
    for batched in (True, False):
        monitor = PerformanceMonitor(load_registry())
        sha = hashlib.sha256()
        for _, batch in batches:
            if batched:
                alerts = monitor.on_cases(batch)
            else:
                alerts = [a for item in batch for a in monitor.on_case(*item)]
            sha.update(repr([a.model_dump_json() for a in alerts]).encode())
        for tool in sorted(monitor.state.windows):
            windows = monitor.tool_windows(tool)
            for key in sorted(monitor.window_keys(tool)):
                sha.update(repr([windows.window(key, w) for w in (*monitor.windows_days,
                                                                   "last_n")]).encode())
        sha.update(repr((monitor.chart_states(), sorted(monitor.verdicts().items()))).encode())
        outs.append(sha.hexdigest())
    return "equal" if outs[0] == outs[1] else "DIFFER"


def per_key_run(keyed: list[tuple[Key, ...]]) -> float:
    """CPU seconds of one dict increment per window key of every revision."""
    counts: dict[Key, int] = {}
    get = counts.get
    cpu = time.process_time()
    for keys in keyed:
        for key in keys:
            counts[key] = get(key, 0) + 1
    return time.process_time() - cpu


def ceiling_run(grouped: list[tuple[int, int]]) -> float:
    """CPU seconds of one dict increment per revision, at its (group number, day)."""
    counts: dict[tuple[int, int], int] = {}
    get = counts.get
    cpu = time.process_time()
    for cell in grouped:
        counts[cell] = get(cell, 0) + 1
    return time.process_time() - cpu


def every_key_counted(monitor: PerformanceMonitor, stream: list[Revision]) -> str:
    """Each case sits once in the 90-day window of each of the 8 keys of its place (that
    of its first revision), with its latest outcome."""
    first: dict[str, AdjudicatedCase] = {}
    for _, case, _ in stream:
        first.setdefault(case.case_id, case)
    end = max(c.inference_date for c in first.values())
    now = datetime.combine(end.date(), clock_time.min, tzinfo=UTC) + timedelta(days=1)
    start = now - timedelta(days=89)  # the window's first day: now's day and 89 before
    expected = sum(len(_keys(c)) for c in first.values() if c.inference_date >= start)
    counted = 0
    for tool in {c.tool_id for c in first.values()}:
        windows = monitor.tool_windows(tool)
        for key in monitor.window_keys(tool):
            w = windows.window(key, 90, now)
            counted += w.confusion.n + w.pending + w.unlabelled + w.indeterminate
    verdict = "every key counted" if counted == expected else "COUNTS DIFFER"
    return f"90-day window cells over all keys: {counted} (expected {expected}): {verdict}"


def digest(stream: list[Revision]) -> str:
    """SHA-256 of everything the monitor gives over the stream, fed as the engine feeds it:
    each revision's alerts, and every tool's daily evaluation (its alerts and snapshots)
    once the stream's event time has passed a day's end, with its charts' states then;
    then every key's 7/30/90-day and
    last-N counts, every verdict and every chart's state at the end. The same run without
    the stored records (the monitor reads the pydantic case) is hashed in too. Equal
    digests on two trees: the monitor's outputs are equal over the whole stream."""
    sha = hashlib.sha256()

    def add(*parts: object) -> None:
        sha.update(repr(parts).encode())

    for stored in (True, False):
        monitor = PerformanceMonitor(load_registry())
        tools: set[str] = set()
        next_day: date | None = None
        for previous, case, record in stream:
            latest = (case.labelled_at or case.inference_date).astimezone(UTC).date()
            if next_day is None:
                next_day = latest
            while next_day < latest:  # a day's end passed: evaluate it
                end = datetime.combine(next_day, clock_time.min, tzinfo=UTC) + timedelta(days=1)
                for tool in sorted(tools) if stored else ():
                    alerts, snapshots = monitor.evaluate(end, tools=[tool])
                    add("evaluate", tool, end, [a.model_dump_json() for a in alerts],
                        [s.model_dump_json() for s in snapshots], monitor.chart_states(tool))
                next_day += timedelta(days=1)
            tools.add(case.tool_id)
            alerts = monitor.on_case(previous, case, record if stored else None)
            add("case", case.case_id, [a.model_dump_json() for a in alerts])
        assert next_day is not None
        end = datetime.combine(next_day, clock_time.min, tzinfo=UTC) + timedelta(days=1)
        for tool in sorted(tools):
            windows = monitor.tool_windows(tool)
            for key in sorted(monitor.window_keys(tool)):
                add("key", key, windows.late_ignored(key),
                    [windows.window(key, w, None if w == "last_n" else end)
                     for w in (*monitor.windows_days, "last_n")])
        add("verdicts", sorted(monitor.verdicts().items()))
        add("charts", monitor.chart_states(), sorted(monitor.episodes().items()))
    return sha.hexdigest()


def evaluation_cost(monitor: PerformanceMonitor, stream: list[Revision]) -> tuple[float, float]:
    """CPU ms per tool-day of `evaluate` with and without snapshots, over the last 7 days."""
    tools = sorted({case.tool_id for _, case, _ in stream})
    end = max(case.inference_date for _, case, _ in stream).date()
    days = [datetime.combine(end - timedelta(days=d), clock_time.min, tzinfo=UTC)
            + timedelta(days=1) for d in range(7, 0, -1)]
    out = []
    for snapshots in (True, False):
        cpu = time.process_time()
        for day in days:
            for tool in tools:
                monitor.evaluate(day, tools=[tool], snapshots=snapshots)
        out.append((time.process_time() - cpu) / (len(days) * len(tools)) * 1e3)
    return out[0], out[1]


def main() -> None:
    days = int(sys.argv[1]) if len(sys.argv) > 1 else 120
    events, _ = simulate(days=days, seed=7)
    stream = [(previous, case, record_of(case, 0))
              for _, previous, case in revisions(EngineConfig.plain(4), events)]
    keyed = [_keys(case) for _, case, _ in stream]
    numbers: dict[tuple[Key, ...], int] = {}
    grouped = [(numbers.setdefault(keys, len(numbers)), case.inference_date.toordinal())
               for keys, (_, case, _) in zip(keyed, stream, strict=True)]
    cases = len({case.case_id for _, case, _ in stream})
    keys_per_revision = {len(k) for k in keyed}
    print(f"machine: {platform.platform()}, {platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} CPUs, Python {platform.python_version()}")
    print(f"{days} simulated days: {len(stream)} revisions of {cases} cases, "
          f"{sorted(keys_per_revision)} window keys per revision; {RUNS} runs")
    first = min(case.inference_date for _, case, _ in stream)
    warm = next(i for i, (_, case, _) in enumerate(stream)
                if case.inference_date - first >= timedelta(days=WARM_DAYS))
    timed = len(stream) - warm
    runs = [monitor_run(stream, warm) for _ in range(RUNS)]
    unstored = [monitor_run(stream, warm, stored=False)[1] for _ in range(RUNS)]
    ceilings = [ceiling_run(grouped[warm:]) for _ in range(RUNS)]
    per_keys = [per_key_run(keyed[warm:]) for _ in range(RUNS)]
    whole = statistics.median(r[0] for r in runs) / len(stream) * 1e6
    per_revision = statistics.median(r[1] for r in runs) / timed * 1e6
    wall = statistics.median(r[2] for r in runs) / timed * 1e6
    ceiling = statistics.median(ceilings) / timed * 1e6
    print(f"monitor.on_case after day {WARM_DAYS} (charts designed), {timed} revisions: "
          f"{per_revision:.2f} us CPU per revision, {per_revision * len(stream) / cases:.2f} "
          f"us CPU per case (its revisions), {wall:.2f} us wall per revision "
          f"(runs, CPU us per revision: "
          + ", ".join(f"{r[1] / timed * 1e6:.2f}" for r in runs) + ")")
    print(f"ceiling (one dict increment per revision at its group and day, same revisions): "
          f"{ceiling:.2f} us CPU per revision; monitor/ceiling {per_revision / ceiling:.1f}x")
    print(f"counting each key on its own, alone (one dict increment per window key): "
          f"{statistics.median(per_keys) / timed * 1e6:.2f} us CPU per revision")
    print(f"without the stored record (the monitor reads the pydantic case): "
          f"{statistics.median(unstored) / timed * 1e6:.2f} us CPU per revision")
    print(f"whole stream, chart designs included: {whole:.2f} us CPU per revision")
    print(every_key_counted(runs[0][3], stream))
    with_snapshots, without = evaluation_cost(runs[0][3], stream)
    print(f"daily evaluation: {with_snapshots:.2f} ms CPU per tool-day with snapshots, "
          f"{without:.2f} ms without")
    per_case = per_revision * len(stream) / cases
    batches = day_batches(stream)
    calls = sum(len(batch) for _, batch in batches)
    warm_day = first.astimezone(UTC).date() + timedelta(days=WARM_DAYS)
    timed_calls = sum(len(batch) for day, batch in batches if day >= warm_day)
    batched = [batched_run(batches, warm_day) for _ in range(RUNS)]
    per_call = statistics.median(b[0] for b in batched) / timed_calls * 1e6
    fed_per_case = per_call * calls / cases
    print(f"the engine's feed (per tool-day, each case's highest revision in effect by the "
          f"day's end, `on_cases`): {calls} calls for {cases} cases "
          f"({calls / cases:.2f} per case), {timed_calls} timed from day {WARM_DAYS}: "
          f"{per_call:.2f} us CPU per call, {fed_per_case:.2f} us CPU per case (runs, CPU us "
          f"per call: " + ", ".join(f"{b[0] / timed_calls * 1e6:.2f}" for b in batched)
          + f"); on_cases and on_case one by one: {batched_equal(batches)}")
    print("engine's feed: " + every_key_counted(
        batched[0][1], [item for _, batch in batches for item in batch]))
    print(f"digest of every alert, figure, window and chart over the stream: "
          f"{digest(stream)}")
    print(f"target 10 us per case (the engine's feed, every key counted): "
          f"{'met' if fed_per_case <= 10 else 'NOT met'} ({fed_per_case:.2f} us); per update "
          f"call (revision) {per_revision:.2f} us; per case with every revision fed "
          f"{per_case:.2f} us; load average "
          + " ".join(f"{v:.2f}" for v in os.getloadavg()))


if __name__ == "__main__":
    main()
