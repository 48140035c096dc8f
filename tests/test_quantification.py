"""Quantification tools: contracts, registry, pairing, and the simulated bias drift.

The simulator's `ich-volume` tool measures hemorrhage volume against the report's
structured reference; `BiasDrift` makes it read high from a given day. The Bland-Altman
figures of the pipeline are checked against a recomputation straight from the raw JSON
events with numpy and scipy, sharing no code with the pairing or the statistics.
"""

from __future__ import annotations

import json
import math
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from pydantic import ValidationError
from scipy.stats import nct, ttest_1samp

from surveillance.clinical.agreement_baselines import load_agreement_baselines
from surveillance.clinical.baselines import RegistryError
from surveillance.clinical.quantification import (
    assess_quantification,
    pair_measurements,
)
from surveillance.contracts import AIResult, Measurement, ReportFinal
from surveillance.simulate.events import SimEvent
from surveillance.simulate.quantification import BiasDrift, simulate_quantification
from surveillance.simulate.scenario import ScenarioError

START = date(2026, 7, 1)
DRIFT_DAY = 60
TOOLS = load_agreement_baselines()
TOOL = TOOLS["ich-volume"]


def _parse(events: list[SimEvent]) -> tuple[list[AIResult], list[ReportFinal]]:
    ai = [AIResult.model_validate_json(e.value) for e in events if e.topic == "ai.results"]
    reports = [ReportFinal.model_validate_json(e.value) for e in events
               if e.topic == "reports.final"]
    return ai, reports


@pytest.fixture(scope="module")
def drifted() -> list[SimEvent]:
    return simulate_quantification(days=90, start=START, drift=BiasDrift(DRIFT_DAY, 3.0))


@pytest.fixture(scope="module")
def stable() -> list[SimEvent]:
    return simulate_quantification(days=90, start=START)


def test_injected_bias_drift_is_flagged_soon_after_it_starts(drifted: list[SimEvent]) -> None:
    pairs, _ = pair_measurements(*_parse(drifted), TOOLS)
    assessment = assess_quantification(pairs, TOOL)
    drift_start = datetime(2026, 7, 1, tzinfo=UTC) + timedelta(days=DRIFT_DAY)
    assert assessment.bias_signals, "the bias chart must signal the injected drift"
    first = assessment.bias_signals[0]
    print(f"drift from {drift_start}, signal at {first.measured_at}, change after "
          f"{first.change_at}")
    assert first.direction == "up"
    assert drift_start <= first.measured_at <= drift_start + timedelta(days=7)
    assert first.change_at >= drift_start - timedelta(days=3)
    assert any("bias chart" in c for c in assessment.concerns)


def test_stable_tool_raises_no_concern(stable: list[SimEvent]) -> None:
    pairs, _ = pair_measurements(*_parse(stable), TOOLS)
    assessment = assess_quantification(pairs, TOOL)
    assert assessment.bias_signals == []
    assert assessment.concerns == []
    ba = assessment.overall.bland_altman
    assert ba is not None
    assert ba.bias.lower <= TOOL.agreement.bias <= ba.bias.upper


def _independent_figures(events: list[SimEvent]) -> tuple[int, dict[str, float]]:
    """Bland-Altman from the raw JSON: last report per accession, unit-checked, numpy."""
    ai: dict[str, dict[str, object]] = {}
    ref: dict[str, tuple[str, float]] = {}
    for e in events:
        doc = json.loads(e.value)
        if e.topic == "ai.results":
            ai[doc["accession_number"]] = doc
        else:
            values = [m["value"] for m in doc.get("reference_measurements") or []
                      if m["finding_code"] == "intracranial_hemorrhage" and m["unit"] == "mL"]
            held = ref.get(doc["accession_number"])
            if values and (held is None or doc["finalized_at"] >= held[0]):
                ref[doc["accession_number"]] = (doc["finalized_at"], values[-1])
    d = np.array([float(ai[a]["measurement"]["value"]) - ref[a][1]  # type: ignore[index]
                  for a in ai if a in ref])
    n, mean, sd = d.size, float(d.mean()), float(d.std(ddof=1))
    ci = ttest_1samp(d, 0.0).confidence_interval(0.95)
    z = 1.959963984540054
    q_low, q_high = nct.ppf([0.025, 0.975], n - 1, z * math.sqrt(n))
    return n, {
        "bias": mean, "bias_low": float(ci.low), "bias_high": float(ci.high), "sd": sd,
        "upper": mean + z * sd, "lower": mean - z * sd,
        "upper_low": mean + sd * q_low / math.sqrt(n),
        "upper_high": mean + sd * q_high / math.sqrt(n),
    }


def test_bland_altman_figures_equal_an_independent_recomputation(
    drifted: list[SimEvent],
) -> None:
    pairs, unpaired = pair_measurements(*_parse(drifted), TOOLS)
    ba = assess_quantification(pairs, TOOL).overall.bland_altman
    assert ba is not None
    n, expected = _independent_figures(drifted)
    assert ba.n == n == len(pairs)
    assert ba.bias.value == pytest.approx(expected["bias"], rel=1e-12)
    assert (ba.bias.lower, ba.bias.upper) == pytest.approx(
        (expected["bias_low"], expected["bias_high"]), rel=1e-12)
    assert ba.sd == pytest.approx(expected["sd"], rel=1e-12)
    assert ba.upper_loa.value == pytest.approx(expected["upper"], rel=1e-12)
    assert ba.lower_loa.value == pytest.approx(expected["lower"], rel=1e-12)
    assert (ba.upper_loa.lower, ba.upper_loa.upper) == pytest.approx(
        (expected["upper_low"], expected["upper_high"]), rel=1e-9)
    ai_events = sum(e.topic == "ai.results" for e in drifted)
    assert len(pairs) + len(unpaired) == ai_events  # every AI result paired or explained
    assert {u.reason for u in unpaired} <= {
        "the report has no reference measurement of intracranial_hemorrhage",
        "no report for the accession yet",
    }


def _ai(event_id: str, accession: str, value: float | None, unit: str = "mL",
        minute: int = 0) -> AIResult:
    doc = {
        "event_id": event_id, "tool_id": "ich-volume", "manufacturer": "V", "model": "M",
        "software_version": "1", "finding_code": "intracranial_hemorrhage", "ai_result": 0.9,
        "operating_threshold": 0.5, "result_indicator": True, "patient_id": "P",
        "accession_number": accession, "study_instance_uid": "1.2", "study_date": "2026-07-01",
        "site": "site-a", "modality": "CT", "body_part_examined": "HEAD",
        "scanner": {"manufacturer": "GE", "model": "X", "software_version": "1"},
        "inference_date": f"2026-07-01T10:{minute:02d}:00Z",
    }
    if value is not None:
        doc["measurement"] = {"value": value, "unit": unit}
    return AIResult.model_validate(doc)


def _report(event_id: str, accession: str, value: float | None, hour: int = 12,
            status: str = "final", unit: str = "mL") -> ReportFinal:
    doc: dict[str, object] = {
        "event_id": event_id, "accession_number": accession, "site": "site-a",
        "finalized_at": f"2026-07-01T{hour:02d}:00:00Z", "status": status,
        "findings": [{"finding_code": "intracranial_hemorrhage", "label": "present"}],
    }
    if value is not None:
        doc["reference_measurements"] = [
            {"finding_code": "intracranial_hemorrhage", "value": value, "unit": unit}]
    return ReportFinal.model_validate(doc)


def test_pairing_uses_the_last_report_and_explains_every_unpaired_result() -> None:
    results = [
        _ai("e1", "A1", 12.0),
        _ai("e1", "A1", 12.0),  # duplicate delivery: counted once
        _ai("e2", "A2", None),
        _ai("e3", "A3", 30.0, unit="mm"),
        _ai("e4", "A4", 5.0),
        _ai("e5", "A5", 8.0),
        _ai("e6", "A6", 1.0, minute=1),
        _ai("e7", "A6", 2.0, minute=5),  # re-run replaces the earlier result
    ]
    reports = [
        _report("r1", "A1", 10.0, hour=12),
        _report("r1b", "A1", 11.0, hour=15, status="corrected"),
        _report("r2", "A2", 4.0),
        _report("r3", "A3", 30.0),
        _report("r5", "A5", None),
        _report("r6", "A6", 2.5),
    ]
    pairs, unpaired = pair_measurements(results, reports, TOOLS)
    assert [(p.accession, p.ai, p.reference) for p in pairs] == [("A1", 12.0, 11.0),
                                                                 ("A6", 2.0, 2.5)]
    assert sorted((u.event_id, u.reason) for u in unpaired) == [
        ("e2", "the AI result carries no measurement"),
        ("e3", "AI measurement in mm, registry says mL"),
        ("e4", "no report for the accession yet"),
        ("e5", "the report has no reference measurement of intracranial_hemorrhage"),
    ]


def test_reference_in_another_unit_is_not_paired() -> None:
    pairs, unpaired = pair_measurements([_ai("e1", "A1", 12.0)],
                                        [_report("r1", "A1", 1.2, unit="mm")], TOOLS)
    assert pairs == []
    assert unpaired[0].reason == "reference measurement in mm, registry says mL"


def test_too_few_pairs_report_no_figures() -> None:
    pairs, _ = pair_measurements([_ai("e1", "A1", 12.0)], [_report("r1", "A1", 11.0)], TOOLS)
    assessment = assess_quantification(pairs, TOOL)
    assert assessment.overall.n == 1
    assert assessment.overall.bland_altman is None
    assert assessment.concerns == []


@pytest.mark.parametrize("value", ["NaN", "Infinity", "-Infinity", 1e7])
def test_measurement_must_be_a_finite_plausible_number(value: object) -> None:
    with pytest.raises(ValidationError):
        Measurement.model_validate_json(json.dumps({"value": value, "unit": "mL"})
                                        .replace('"NaN"', "NaN")
                                        .replace('"Infinity"', "Infinity")
                                        .replace('"-Infinity"', "-Infinity"))


def test_unknown_unit_is_rejected() -> None:
    with pytest.raises(ValidationError):
        Measurement.model_validate({"value": 1.0, "unit": "ml; DROP TABLE"})


def test_registry_errors_are_one_clear_line(tmp_path: Path) -> None:
    bad = tmp_path / "reg.yaml"
    bad.write_text("tools: {}\nquantification:\n  x:\n    unit: mL\n")
    with pytest.raises(RegistryError, match="quantification tool 'x': field display_name"):
        load_agreement_baselines(bad)
    bad.write_text("tools: {}\nquantification: [1, 2]\n")
    with pytest.raises(RegistryError, match="must be a mapping"):
        load_agreement_baselines(bad)
    bad.write_text("tools: {}\n")
    assert load_agreement_baselines(bad) == {}


def test_simulator_rejects_bad_settings() -> None:
    with pytest.raises(ScenarioError, match="not a quantification tool"):
        simulate_quantification(days=2, tool_id="ich-triage")
    with pytest.raises(ScenarioError, match="finite"):
        simulate_quantification(days=2, drift=BiasDrift(1, math.nan))


def test_simulator_is_deterministic_and_in_arrival_order() -> None:
    first = simulate_quantification(days=5, seed=3)
    assert first == simulate_quantification(days=5, seed=3)
    assert [e.arrival for e in first] == sorted(e.arrival for e in first)
    assert all(e.arrival < datetime(2026, 7, 6, tzinfo=UTC) for e in first)


def test_weekly_bias_chart_equals_a_plain_recursion(drifted: list[SimEvent]) -> None:
    """The chart the dashboard and the store show (weekly maximum of the two-sided CUSUM
    on AI minus reference, restarting after a signal), recomputed from the textbook
    recursion S+ = max(0, S+ + z - k), S- = max(0, S- - z - k), z = (d - bias) / sd."""
    pairs, _ = pair_measurements(*_parse(drifted), TOOLS)
    assessment = assess_quantification(pairs, TOOL)
    k = TOOL.tolerance.bias / (2.0 * TOOL.agreement.sd_differences)
    h = assessment.bias_threshold
    up = down = 0.0
    weekly: dict[date, float] = {}
    signals = 0
    for p in sorted(pairs, key=lambda p: p.measured_at):
        z = (p.ai - p.reference - TOOL.agreement.bias) / TOOL.agreement.sd_differences
        up, down = max(0.0, up + z - k), max(0.0, down - z - k)
        day = p.measured_at.date()
        week = day - timedelta(days=day.weekday())
        weekly[week] = max(weekly.get(week, 0.0), up, down)
        if up >= h or down >= h:
            signals += 1
            up = down = 0.0
    assert [(c.week_start, c.statistic) for c in assessment.bias_chart] == [
        (w, pytest.approx(v, rel=1e-12)) for w, v in sorted(weekly.items())]
    assert signals == len(assessment.bias_signals) >= 1
    assert max(c.statistic for c in assessment.bias_chart) >= h
