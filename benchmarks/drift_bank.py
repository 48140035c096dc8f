"""Per-event cost of one tool's whole drift bank, beside a bare-loop ceiling and Evidently.

Run: .venv/bin/python benchmarks/drift_bank.py [--per-day 200] [--days 91] [--evidently-days 14]
    [--repeats 3]

Builds a seeded synthetic head-CT tool (all 13 features of DEFAULT_FEATURES: 11 input,
2 output), calibrates a bank on a 30-day reference, then times `bank.update` over the
monitored days (window closes included), as process CPU and wall time per event. In the
same run:
- the ceiling: a bare loop that reads the same 13 features of each event and counts
  each in a dict (the least any per-event drift bookkeeping does), timed the same way;
- calibration kept out of `advance`: a bank that takes its first 30 days as the
  reference (`for_tool`, `calibrate_inline=False`) is fed the whole stream; the CPU per
  event of `update`/`advance` (the hot path) is printed apart from `calibrate()`, then
  the same bank again from the calibration cache;
- Evidently's DataDriftPreset recomputing drift for each of the first --evidently-days
  daily windows against the same reference;
- the calibration's CPU per calibration by kind (Page-Hinkley per continuous numeric
  feature, PSI windows per numeric feature, PSI/JS/chi-square windows per categorical
  feature), beside main af19bc4's calibration (`calibration_reference.py`) on the same
  inputs in the same run;
- with --engine-days N: the whole engine in process (`engine.local`) over the simulator's
  N-day backlog (90: the 45,000 events of `throughput.py`), once with main af19bc4's
  calibrations and once with today's: process CPU of the engine and of its calibrations
  by kind.
Ends with `drift D us/event (CPU); ceiling C us/event; ratio R; target 5 us: met|NOT met`.
"""

from __future__ import annotations

import argparse
import gc
import os
import platform
import time
import warnings
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from importlib.metadata import version
from typing import Any

import calibration_reference as before
import numpy as np
import pandas as pd
from evidently import DataDefinition, Dataset, Report
from evidently.presets import DataDriftPreset

from surveillance.contracts import Acquisition, AIResult, Scanner, Sex
from surveillance.report.drift_report import write_drift_report
from surveillance.stats.drift_bank import DriftBank, DriftBankConfig
from surveillance.stats.drift_calibration_cache import Calibrations
from surveillance.stats.drift_features import DEFAULT_FEATURES, feature_row

START = datetime(2024, 1, 1, tzinfo=UTC)
SCANNERS = [("GE", "Revolution", "rev-1.2"), ("Siemens", "SOMATOM Force", "VB20"),
            ("Canon", "Aquilion ONE", "v10")]  # fmt: skip


def synthetic_results(seed: int, first_day: int, days: int, per_day: float) -> list[AIResult]:
    rng = np.random.default_rng(seed)
    out = []
    for day in range(first_day, first_day + days):
        n = int(rng.poisson(per_day))
        seconds = np.sort(rng.uniform(0, 86_400, n))
        protocol = rng.choice(["HEAD ROUTINE", "HEAD TRAUMA", "HEAD STROKE"], n, p=[0.7, 0.2, 0.1])
        thickness = rng.choice([0.625, 1.25, 2.5, 5.0], n, p=[0.1, 0.2, 0.3, 0.4])
        scanner = rng.choice(3, n, p=[0.5, 0.35, 0.15])
        kvp = rng.choice([100.0, 120.0, 140.0], n, p=[0.2, 0.7, 0.1])
        spacing = rng.normal(0.45, 0.04, n).clip(0.2, 1.0)
        age = rng.integers(18, 95, n)
        score = rng.beta(1.2, 6.0, n)
        site = rng.choice(["site-a", "site-b"], n, p=[0.6, 0.4])
        sex = rng.choice(["F", "M"], n)
        contrast = rng.random(n) < 0.05
        for i in range(n):
            manufacturer, model, software = SCANNERS[int(scanner[i])]
            at = START + timedelta(days=day, seconds=float(seconds[i]))
            out.append(AIResult(
                event_id=f"{seed}-{day}-{i}", tool_id="ich-triage", manufacturer="Vendor",
                model="ICH", software_version="4.0", finding_code="intracranial_hemorrhage",
                ai_result=float(score[i]), operating_threshold=0.5,
                result_indicator=bool(score[i] >= 0.5), patient_id="p", accession_number="a",
                study_instance_uid="u", study_date=at.date(), site=str(site[i]), modality="CT",
                body_part_examined="HEAD", contrast_indication=bool(contrast[i]),
                scanner=Scanner(manufacturer=manufacturer, model=model, software_version=software),
                acquisition=Acquisition(kvp=float(kvp[i]), slice_thickness=float(thickness[i]),
                                        pixel_spacing=float(spacing[i]),
                                        protocol_name=str(protocol[i])),
                age=int(age[i]), sex=Sex(str(sex[i])), inference_date=at, pseudonymized=True,
            ))  # fmt: skip
    return out


def machine() -> str:
    cpu = platform.processor() or "unknown CPU"
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return (
        f"{cpu}, {os.cpu_count()} cores, {platform.system()} {platform.release()}, "
        f"Python {platform.python_version()}, numpy {version('numpy')}, river {version('river')}, "
        f"evidently {version('evidently')}, pandas {version('pandas')}"
    )


TARGET_US = 5.0


def per_event(run: Callable[[], object], n: int, repeats: int) -> tuple[float, float]:
    """Best of `repeats` runs: (process CPU, wall) in us per event."""
    best_cpu = best_wall = float("inf")
    for _ in range(repeats):
        cpu, wall = time.process_time(), time.perf_counter()
        run()
        best_cpu = min(best_cpu, time.process_time() - cpu)
        best_wall = min(best_wall, time.perf_counter() - wall)
    return best_cpu / n * 1e6, best_wall / n * 1e6


def ceiling_loop(results: list[AIResult]) -> None:
    """Read the 13 features of each event and count each value in a dict."""
    extracts = [spec.extract for spec in DEFAULT_FEATURES]
    counts: list[dict[object, int]] = [{} for _ in extracts]
    for r in results:
        for extract, seen in zip(extracts, counts, strict=True):
            value = extract(r)
            seen[value] = seen.get(value, 0) + 1


def hot_path(results: list[AIResult], calibrations: Calibrations) -> tuple[float, float, int]:
    """(CPU s in update/advance, CPU s in calibrate, verdicts) of a `for_tool` bank."""
    bank = DriftBank.for_tool("ich-triage", DriftBankConfig(), calibrations,
                              calibrate_inline=False)
    hot = calibrating = 0.0
    verdicts = 0
    for r in results:
        t0 = time.process_time()
        verdicts += len(bank.update(r))
        t1 = time.process_time()
        hot += t1 - t0
        if bank.calibration_due:
            verdicts += len(bank.calibrate())
            calibrating += time.process_time() - t1
    return hot, calibrating, verdicts


class RecordedCalibrations(Calibrations):
    """Calibrations that keep each computed call's inputs and CPU seconds, by kind."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[str, dict[str, Any], float]] = []

    def window_thresholds(self, reference_counts: Any, events_per_window: float,
                          per_window_rate: float, **kw: Any) -> Any:
        started = time.process_time()
        out = super().window_thresholds(reference_counts, events_per_window, per_window_rate,
                                        **kw)
        kind = "windows, PSI (numeric)" if kw["tests"] == ("psi",) else (
            "windows, PSI+JS+chi-square (categorical)")
        self.calls.append((kind, dict(kw, reference_counts=reference_counts,
                                      events_per_window=events_per_window,
                                      per_window_rate=per_window_rate),
                           time.process_time() - started))
        return out

    def page_hinkley(self, standardised: Any, events_per_quarter: int,
                     rate_per_quarter: float, **kw: Any) -> float:
        started = time.process_time()
        out = super().page_hinkley(standardised, events_per_quarter, rate_per_quarter, **kw)
        self.calls.append(("Page-Hinkley", dict(kw, standardised=standardised,
                                                events_per_quarter=events_per_quarter,
                                                rate=rate_per_quarter),
                           time.process_time() - started))
        return out


def calibration_costs(reference: list[AIResult]) -> list[str]:
    """CPU per calibration by kind, today's and main af19bc4's, on the same inputs."""
    recorded = RecordedCalibrations()
    DriftBank.from_reference("ich-triage", reference, DriftBankConfig(), recorded)
    config = DriftBankConfig()
    kinds: dict[str, list[tuple[float, float]]] = {}
    for kind, args, now in recorded.calls:
        started = time.process_time()
        if kind == "Page-Hinkley":
            before.calibrate_page_hinkley(
                args["standardised"], args["events_per_quarter"], args["rate"],
                seed=args["seed"], min_instances=args["min_instances"], delta=args["delta"],
                calibration_quarters=config.calibration_quarters)
        else:
            # main's calibration had no total-variation gate.
            before.calibrate_window_thresholds(
                **{k: v for k, v in args.items() if k != "min_total_variation"})
        kinds.setdefault(kind, []).append((now, time.process_time() - started))
    lines = []
    for kind, pairs in kinds.items():
        now = sum(p[0] for p in pairs)
        then = sum(p[1] for p in pairs)
        lines.append(f"calibration {kind}: {len(pairs)} per bank, {now / len(pairs):.3f} s CPU "
                     f"each (main af19bc4: {then / len(pairs):.3f} s)")
    now = sum(p[0] for pairs in kinds.values() for p in pairs)
    then = sum(p[1] for pairs in kinds.values() for p in pairs)
    lines.append(f"calibration of one bank: {now:.2f} s CPU (main af19bc4: {then:.2f} s); "
                 f"ratio {then / now:.1f}x")
    return lines


def engine_calibration(days: int, reference: bool) -> list[str]:
    """The engine over the simulator's backlog; its CPU and its calibrations' CPU by kind
    (`reference`: main af19bc4's calibrations, patched in where the cache calls them)."""
    from unittest.mock import patch

    import surveillance.stats.drift_calibration_cache as cache
    from surveillance.engine import collector
    from surveillance.engine.config import EngineConfig
    from surveillance.engine.local import LocalPipeline
    from surveillance.simulate import Faults, Scenario, simulate

    spent: dict[str, list[float]] = {}

    def timed(kind: str, compute: Callable[..., Any]) -> Callable[..., Any]:
        def run(*args: Any, **kw: Any) -> Any:
            started = time.process_time()
            out = compute(*args, **kw)
            spent.setdefault(kind, []).append(time.process_time() - started)
            return out
        return run

    def old_page_hinkley(standardised: Any, per_quarter: int, rate: float, *, seed: int,
                         n_quarters: int, min_instances: int, delta: float) -> float:
        return before.calibrate_page_hinkley(standardised, per_quarter, rate, seed=seed,
                                             min_instances=min_instances, delta=delta)

    windows = before.calibrate_window_thresholds if reference else (
        cache.calibrate_window_thresholds)
    page_hinkley = old_page_hinkley if reference else cache.calibrate_page_hinkley
    events, _ = simulate(days=days, seed=7, scenario=Scenario(), faults=Faults())
    threshold = gc.get_threshold()
    collector.for_long_lived_state()
    with patch.object(cache, "calibrate_window_thresholds", timed("windows", windows)), \
            patch.object(cache, "calibrate_page_hinkley", timed("Page-Hinkley", page_hinkley)):
        path = LocalPipeline(EngineConfig.plain(4))
        started = time.process_time()
        for e in events:
            path.feed(e)
        total = time.process_time() - started
    gc.set_threshold(*threshold)
    calibrating = sum(sum(v) for v in spent.values())
    which = "main af19bc4's calibrations" if reference else "today's calibrations"
    kinds = "; ".join(f"{kind} {len(v)} x {sum(v) / len(v):.3f} s = {sum(v):.2f} s"
                      for kind, v in sorted(spent.items()))
    return [f"engine over {days} days ({len(events)} events), {which}: {total:.2f} s CPU, "
            f"of which calibration {calibrating:.2f} s ({calibrating / total:.0%}): {kinds}; "
            f"load average {os.getloadavg()[0]:.1f}"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-day", type=float, default=200.0)
    parser.add_argument("--days", type=int, default=91)
    parser.add_argument("--evidently-days", type=int, default=14)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--calibration-only", action="store_true",
                        help="only the calibration lines")
    parser.add_argument("--engine-days", type=int, default=0,
                        help="also run the engine over the simulator's backlog of this many "
                             "days, with main af19bc4's calibrations and with today's")
    args = parser.parse_args()

    reference = synthetic_results(1, 0, 30, args.per_day)
    calibration = calibration_costs(reference)
    if args.engine_days:
        calibration += engine_calibration(args.engine_days, reference=True)
        calibration += engine_calibration(args.engine_days, reference=False)
    if args.calibration_only:
        print(f"machine: {machine()}")
        print(f"tool volume {args.per_day:.0f}/day, reference {len(reference)} events (30 days)")
        print("\n".join(calibration))
        print(f"load average at the end: {os.getloadavg()[0]:.1f} (1 min)")
        return
    monitored = synthetic_results(2, 30, args.days, args.per_day)
    calibrations = Calibrations()
    t0 = time.perf_counter()
    DriftBank.from_reference("ich-triage", reference, DriftBankConfig(), calibrations)
    build = time.perf_counter() - t0
    # Fresh banks with their thresholds from the cache: the time is the per-event work.
    banks = [DriftBank.from_reference("ich-triage", reference, DriftBankConfig(), calibrations)
             for _ in range(args.repeats)]
    verdicts = 0

    def run_bank() -> None:
        nonlocal verdicts
        bank = banks.pop()
        verdicts = sum(len(bank.update(r)) for r in monitored)

    bank_cpu, bank_wall = per_event(run_bank, len(monitored), args.repeats)
    ceiling_cpu, ceiling_wall = per_event(lambda: ceiling_loop(monitored), len(monitored),
                                          args.repeats)
    stream = reference + monitored
    hot, calibrating, stream_verdicts = hot_path(stream, Calibrations())
    hot_again, calibrating_again, _ = hot_path(stream, calibrations)

    reference_frame = pd.DataFrame([feature_row(r) for r in reference])
    by_day: dict[int, list[AIResult]] = {}
    for r in monitored:
        by_day.setdefault((r.inference_date - START).days, []).append(r)
    days = sorted(by_day)[: args.evidently_days]
    frames = [pd.DataFrame([feature_row(r) for r in by_day[day]]) for day in days]
    evidently_events = sum(len(f) for f in frames)
    numeric = [s.name for s in DEFAULT_FEATURES if s.kind == "numeric"]
    categorical = [s.name for s in DEFAULT_FEATURES if s.kind == "categorical"]
    definition = DataDefinition(numerical_columns=numeric, categorical_columns=categorical)
    reference_ds = Dataset.from_pandas(reference_frame, data_definition=definition)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        t0 = time.perf_counter()
        for frame in frames:  # drift computation only, as the bank does
            Report([DataDriftPreset()]).run(
                Dataset.from_pandas(frame, data_definition=definition), reference_ds
            )
        evidently_seconds = time.perf_counter() - t0
        t0 = time.perf_counter()
        write_drift_report(reference_frame, frames[0], "/tmp/drift-bench-reports", "one day")
        report_seconds = time.perf_counter() - t0
    evidently_us = evidently_seconds / evidently_events * 1e6

    print(f"machine: {machine()}")
    print(f"load average at the end: {os.getloadavg()[0]:.1f} (1 min)")
    print(f"tool volume {args.per_day:.0f}/day, reference {len(reference)} events (30 days), "
          f"13 features (11 input + 2 output)")  # fmt: skip
    print(f"bank calibration (once per reference): {build:.2f} s")
    print("\n".join(calibration))
    print(f"bank: {len(monitored)} events over {args.days} days: {bank_cpu:.2f} us/event CPU, "
          f"{bank_wall:.2f} us/event wall (window closes included), "
          f"{verdicts} verdicts")  # fmt: skip
    print(f"ceiling (bare loop: read 13 features, one dict count each): {ceiling_cpu:.2f} "
          f"us/event CPU, {ceiling_wall:.2f} us/event wall")  # fmt: skip
    print(f"for_tool over the whole stream ({len(stream)} events, {stream_verdicts} verdicts): "
          f"update/advance {hot / len(stream) * 1e6:.2f} us/event CPU; calibrate() apart, "
          f"{calibrating:.2f} s CPU; again from the cache: update/advance "
          f"{hot_again / len(stream) * 1e6:.2f} us/event, calibrate() "
          f"{calibrating_again:.3f} s")  # fmt: skip
    print(f"evidently DataDriftPreset, {len(days)} daily windows ({evidently_events} events): "
          f"{evidently_seconds:.2f} s = {evidently_seconds / len(days):.3f} s/window = "
          f"{evidently_us:.1f} us/event (Report.run only)")  # fmt: skip
    print(f"write_drift_report for one day (run + HTML + JSON): {report_seconds:.2f} s")
    print(f"ratio evidently/bank per event: {evidently_us / bank_wall:.0f}x (wall)")
    met = "met" if bank_cpu <= TARGET_US else "NOT met"
    print(f"drift {bank_cpu:.2f} us/event (CPU); ceiling {ceiling_cpu:.2f} us/event; "
          f"ratio {bank_cpu / ceiling_cpu:.1f}; target {TARGET_US:g} us: {met}")

if __name__ == "__main__":
    main()
