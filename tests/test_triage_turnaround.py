"""Triage turnaround: flagged vs unflagged finding-present studies, minutes to report.

Oracle for the interval: scipy.stats.bootstrap (two-sample percentile) on the same data.
Scenarios: the simulator with `triage_speedup` (flagged studies read in 40% of the usual
delay) must show a difference whose interval excludes 0; without it, one that includes 0.
"""

from __future__ import annotations

import functools
import math
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import bootstrap

from surveillance.clinical.baselines import load_registry
from surveillance.clinical.triage_turnaround import (
    PositiveStudy,
    positive_studies,
    turnaround,
)
from surveillance.contracts import AIResult, ReportFinal
from surveillance.simulate import Scenario, simulate
from surveillance.stats.intervals import StatsParameterError
from surveillance.stats.median_difference import median_difference

REGISTRY = load_registry()
HEAD_CT = ("ich-triage", "lvo-triage")
CODES = {t: REGISTRY[t].finding_code for t in HEAD_CT}


def test_interval_agrees_with_scipy_bootstrap() -> None:
    rng = np.random.default_rng(1)
    a = rng.lognormal(math.log(120), 1.2, 60)
    b = rng.lognormal(math.log(300), 1.2, 200)
    ours = median_difference(a.tolist(), b.tolist(), resamples=20_000)
    ref = bootstrap((a, b), lambda x, y, axis: np.median(x, axis=axis) - np.median(y, axis=axis),
                    method="percentile", n_resamples=20_000, random_state=2,
                    vectorized=True).confidence_interval
    width = ref.high - ref.low
    assert ours.difference == pytest.approx(float(np.median(a) - np.median(b)))
    assert ours.lower == pytest.approx(ref.low, abs=0.05 * width)
    assert ours.upper == pytest.approx(ref.high, abs=0.05 * width)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.floats(0, 1e4), min_size=5, max_size=30),
       st.lists(st.floats(0, 1e4), min_size=5, max_size=30), st.floats(-1e3, 1e3))
def test_a_constant_shift_moves_the_difference_and_interval(
    a: list[float], b: list[float], shift: float
) -> None:
    base = median_difference(a, b, resamples=200)
    moved = median_difference([x + shift for x in a], b, resamples=200)
    assert base.lower is not None and base.upper is not None
    assert moved.difference == pytest.approx(base.difference + shift, abs=1e-6)
    assert moved.lower == pytest.approx(base.lower + shift, abs=1e-6)
    assert moved.upper == pytest.approx(base.upper + shift, abs=1e-6)


def test_small_groups_get_no_interval_and_bad_input_is_clear() -> None:
    few = median_difference([1.0, 2.0], [3.0, 4.0, 5.0, 6.0, 7.0])
    assert (few.difference, few.lower, few.upper) == (-3.5, None, None)
    with pytest.raises(StatsParameterError, match="finite"):
        median_difference([1.0, math.nan], [1.0])
    with pytest.raises(StatsParameterError, match="at least one"):
        median_difference([], [1.0])


@functools.cache
def _studies(speedup: float) -> tuple[list[PositiveStudy], dict[str, dict[str, int]]]:
    events, _ = simulate(days=60, scenario=Scenario(triage_speedup=speedup), tools=HEAD_CT)
    results = [AIResult.model_validate_json(e.value) for e in events if e.topic == "ai.results"]
    reports = [ReportFinal.model_validate_json(e.value) for e in events
               if e.topic == "reports.final"]
    return positive_studies(results, reports, CODES)


@pytest.mark.parametrize("tool", HEAD_CT)
def test_flagged_positives_read_faster_show_an_interval_below_zero(tool: str) -> None:
    studies, excluded = _studies(0.4)
    figures = turnaround(studies, tool, excluded.get(tool))
    d = figures.report_difference
    assert d is not None and d.upper is not None
    print(f"{tool} speedup: {d.difference:.0f} min [{d.lower:.0f}, {d.upper:.0f}], "
          f"{figures.n_flagged} flagged vs {figures.n_unflagged}")
    assert d.upper < 0
    assert figures.median_minutes_to_ai is not None and 1 < figures.median_minutes_to_ai < 15
    assert figures.excluded == {}


@pytest.mark.parametrize("tool", HEAD_CT)
def test_without_a_triage_effect_the_interval_includes_zero(tool: str) -> None:
    studies, excluded = _studies(1.0)
    d = turnaround(studies, tool, excluded.get(tool)).report_difference
    assert d is not None and d.lower is not None and d.upper is not None
    print(f"{tool} no effect: {d.difference:.0f} min [{d.lower:.0f}, {d.upper:.0f}]")
    assert d.lower < 0 < d.upper


def _result(event_id: str, accession: str, flagged: bool, acquired: datetime | None,
            inferred: datetime) -> AIResult:
    return AIResult.model_validate({
        "event_id": event_id, "tool_id": "ich-triage", "manufacturer": "V", "model": "M",
        "software_version": "1", "finding_code": "intracranial_hemorrhage",
        "ai_result": 0.9 if flagged else 0.1, "operating_threshold": 0.5,
        "result_indicator": flagged, "patient_id": "P", "accession_number": accession,
        "study_instance_uid": "1.2", "study_date": "2026-07-01", "site": "site-a",
        "modality": "CT", "body_part_examined": "HEAD",
        "scanner": {"manufacturer": "GE", "model": "X", "software_version": "1"},
        "inference_date": inferred.isoformat(),
        "acquired_at": acquired.isoformat() if acquired else None,
    })


def test_text_reports_corrections_and_clock_errors() -> None:
    t = datetime(2026, 7, 1, 8, tzinfo=UTC)
    results = [
        _result("e1", "A1", True, t, t + timedelta(minutes=3)),
        _result("e2", "A2", False, None, t + timedelta(minutes=3)),
        _result("e3", "A3", True, t + timedelta(hours=2), t + timedelta(minutes=3)),
        _result("e4", "A4", False, t, t + timedelta(minutes=5)),
    ]

    def report(event_id: str, accession: str, hours: float, text: str,
               status: str = "final") -> ReportFinal:
        return ReportFinal.model_validate({
            "event_id": event_id, "accession_number": accession, "site": "site-a",
            "finalized_at": (t + timedelta(hours=hours)).isoformat(), "status": status,
            "report_text": text})

    reports = [
        report("r1", "A1", 1, "Acute left subdural hematoma measuring 6 mm."),
        report("r2", "A2", 1, "Acute left subdural hematoma measuring 6 mm."),
        report("r3", "A3", 1, "Acute left subdural hematoma measuring 6 mm."),
        # Read as negative first, corrected to positive: the read that counts is the first.
        report("r4", "A4", 2, "No evidence of acute intracranial hemorrhage."),
        report("r4c", "A4", 30, "Acute left subdural hematoma measuring 6 mm.",
               status="corrected"),
    ]
    studies, excluded = positive_studies(results, reports, {"ich-triage": CODES["ich-triage"]})
    assert [(s.flagged, s.minutes_to_ai, s.minutes_to_report) for s in studies] == [
        (True, 3.0, 60.0), (False, 5.0, 120.0)]
    assert excluded == {"ich-triage": {"no acquisition time": 1, "time runs backwards": 1}}
