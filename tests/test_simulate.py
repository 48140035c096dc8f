"""The simulator: determinism, truth = what the bytes say, calibration, faults, scenarios."""

from __future__ import annotations

import json
import math
from collections import Counter, defaultdict
from dataclasses import replace
from datetime import date, datetime
from pathlib import Path

import numpy as np
import pytest
from pydantic import ValidationError

from surveillance.clinical.baselines import load_registry
from surveillance.clinical.labels import extract_labels
from surveillance.contracts import (
    MAX_EVENT_BYTES,
    TOPIC_MODELS,
    AIResult,
    Label,
    ReportFinal,
    ReportStatus,
)
from surveillance.simulate import (
    NAMED_SCENARIOS,
    Faults,
    Scenario,
    ScenarioError,
    SimEvent,
    ToolTruth,
    run_simulate,
    simulate,
    write_jsonl,
)
from surveillance.simulate.output import read_jsonl
from surveillance.simulate.profiles import TOOL_PROFILES
from surveillance.simulate.reports import (
    TEMPLATED_FINDINGS,
    finding_sentence,
    render_report_text,
)
from surveillance.simulate.scores import UPDATED_SHAPE, ScoreShape, solve_score_model

REGISTRY = load_registry()
CODES = {tool: REGISTRY[tool].finding_code for tool in REGISTRY}
START = date(2026, 7, 1)


@pytest.fixture(scope="module")
def demo() -> tuple[list[SimEvent], dict[str, ToolTruth]]:
    return simulate(days=90, seed=7)


def _truth_from_events(events: list[SimEvent]) -> dict[str, ToolTruth]:
    """Recompute every ToolTruth count from the event bytes alone."""
    seen: set[str] = set()
    results: list[AIResult] = []
    reports: dict[str, list[ReportFinal]] = defaultdict(list)
    for event in events:
        if not event.valid or event.event_id in seen:
            continue
        assert event.event_id is not None
        seen.add(event.event_id)
        if event.topic == "ai.results":
            results.append(AIResult.model_validate_json(event.value))
        else:
            report = ReportFinal.model_validate_json(event.value)
            reports[report.accession_number].append(report)
    truth: dict[str, ToolTruth] = defaultdict(ToolTruth)
    for result in results:
        counts = truth[result.tool_id]
        counts.cases += 1
        counts.versions[result.software_version] += 1
        history = sorted(reports.get(result.accession_number, []), key=lambda r: r.finalized_at)
        if not history:
            counts.final_outcomes["no_report"] += 1
            continue
        code = result.finding_code
        labels = [_label(r, code) for r in history]
        final = labels[-1]
        if final is Label.INDETERMINATE:
            outcome = "indeterminate"
        elif final is Label.PRESENT:
            outcome = "TP" if result.result_indicator else "FN"
        else:
            outcome = "FP" if result.result_indicator else "TN"
        counts.final_outcomes[outcome] += 1
        revisions = [i for i, r in enumerate(history) if r.status is not ReportStatus.FINAL]
        counts.correction_reports += len(revisions)
        if any(labels[i] != labels[0] for i in revisions):
            counts.corrections += 1
    return dict(truth)


def _label(report: ReportFinal, code: str) -> Label:
    if report.findings is not None:
        return {f.finding_code: f.label for f in report.findings}[code]
    assert report.report_text is not None
    return extract_labels(report.report_text, [code])[code]


def test_same_arguments_give_byte_identical_events(tmp_path: Path) -> None:
    faults = Faults(duplicate_rate=0.02, invalid_rate=0.02)
    first, truth1 = simulate(days=7, seed=11, faults=faults, scenario=NAMED_SCENARIOS["all"])
    second, truth2 = simulate(days=7, seed=11, faults=faults, scenario=NAMED_SCENARIOS["all"])
    assert first == second
    assert truth1 == truth2
    write_jsonl(first, tmp_path / "a.jsonl")
    write_jsonl(second, tmp_path / "b.jsonl")
    assert (tmp_path / "a.jsonl").read_bytes() == (tmp_path / "b.jsonl").read_bytes()
    other, _ = simulate(days=7, seed=12, faults=faults, scenario=NAMED_SCENARIOS["all"])
    assert [e.value for e in other] != [e.value for e in first]


def test_demo_volume_and_arrival_order(demo: tuple[list[SimEvent], dict[str, ToolTruth]]) -> None:
    events, truth = demo
    assert 40_000 <= len(events) <= 60_000
    arrivals = [e.arrival for e in events]
    assert arrivals == sorted(arrivals)
    assert all(a.utcoffset() is not None for a in arrivals)
    end = datetime(2026, 9, 29, tzinfo=arrivals[0].tzinfo)
    assert arrivals[-1] < end
    per_tool = Counter(json.loads(e.value)["tool_id"] for e in events if e.topic == "ai.results")
    assert set(per_tool) == {"ich-triage", "lvo-triage", "ptx-triage", "dr-screen"}
    # Every head CT is scored by both head tools.
    assert per_tool["ich-triage"] == per_tool["lvo-triage"]
    assert {tool: t.cases for tool, t in truth.items()} == dict(per_tool)


def test_truth_equals_counts_recomputed_from_the_events(
    demo: tuple[list[SimEvent], dict[str, ToolTruth]],
) -> None:
    events, truth = demo
    assert _truth_from_events(events) == truth
    for counts in truth.values():
        assert sum(counts.final_outcomes.values()) == counts.cases
        assert set(counts.final_outcomes) <= {"TP", "FP", "TN", "FN", "indeterminate",
                                              "no_report"}
        assert counts.corrections > 0


def test_truth_with_faults_equals_counts_recomputed_from_the_events() -> None:
    faults = Faults(duplicate_rate=0.05, invalid_rate=0.03, correction_rate=0.05)
    events, truth = simulate(days=20, seed=3, faults=faults, scenario=NAMED_SCENARIOS["all"])
    assert _truth_from_events(events) == truth


def test_prevalence_matches_the_profiles(
    demo: tuple[list[SimEvent], dict[str, ToolTruth]],
) -> None:
    _, truth = demo
    expected = {"ich-triage": 0.10, "lvo-triage": 0.04, "ptx-triage": 0.05, "dr-screen": 0.24}
    for tool, p in expected.items():
        o = truth[tool].final_outcomes
        read = o["TP"] + o["FN"] + o["FP"] + o["TN"]
        observed = (o["TP"] + o["FN"]) / read
        # Reads exclude the 2% indeterminate; corrections restore true labels, so no slack
        # beyond sampling error is needed.
        assert abs(observed - p) <= 4 * math.sqrt(p * (1 - p) / read)


def _labels_by_report(events: list[SimEvent]) -> dict[str, list[tuple[datetime, dict[str, Label]]]]:
    """Per accession, each report's (finalization time, labels of its tools' findings)."""
    codes: dict[str, list[str]] = defaultdict(list)
    for event in events:
        if event.topic == "ai.results":
            result = AIResult.model_validate_json(event.value)
            codes[result.accession_number].append(result.finding_code)
    out: dict[str, list[tuple[datetime, dict[str, Label]]]] = defaultdict(list)
    for event in events:
        if event.topic == "reports.final":
            report = ReportFinal.model_validate_json(event.value)
            labels = {c: _label(report, c) for c in codes[report.accession_number]}
            out[report.accession_number].append((report.finalized_at, labels))
    return {a: sorted(r, key=lambda x: x[0]) for a, r in out.items()}


def test_a_correction_fixes_a_misread_original_with_the_label_a_correct_read_states() -> None:
    # The same seed with and without corrections draws the same studies and labels (the
    # correction draws are made either way), so the correction-free stream is the oracle
    # of what each study's correct read is.
    corrected, _ = simulate(days=20, seed=4, faults=Faults(correction_rate=0.3))
    clean, _ = simulate(days=20, seed=4, faults=Faults(correction_rate=0.0))
    with_fix = _labels_by_report(corrected)
    without = _labels_by_report(clean)
    kinds: Counter[str] = Counter()
    for accession, history in with_fix.items():
        if len(history) == 1:
            # Uncorrected, or misread with its correction due after the stream's end.
            read, correct_read = history[0][1], without[accession][0][1]
            assert sum(read[c] != correct_read[c] for c in read) <= 1
            kinds["uncorrected misread"] += read != correct_read
            continue
        (_, original), (_, revised) = history
        (_, correct), = without[accession]
        changed = [c for c in revised if original[c] != revised[c]]
        assert len(changed) == 1, accession  # one finding misread, the others as read
        code = changed[0]
        for c in revised:
            if c != code:
                assert revised[c] == original[c] == correct[c]
        assert revised[code] is not Label.INDETERMINATE
        # The correction states the true label: what a correct read states, unless that
        # read was itself hedged (then the correction resolves it).
        assert correct[code] in (revised[code], Label.INDETERMINATE)
        kinds["hedged" if original[code] is Label.INDETERMINATE else "opposite"] += 1
    print(f"\nmisreads fixed by a correction: {dict(kinds)}")
    assert kinds["hedged"] > 20 and kinds["opposite"] > 4 * kinds["hedged"] * 0.5


@pytest.mark.parametrize("tool", sorted(REGISTRY))
@pytest.mark.parametrize("shape", [ScoreShape(), UPDATED_SHAPE])
def test_score_model_reproduces_the_cleared_operating_point(tool: str, shape: ScoreShape) -> None:
    entry = REGISTRY[tool]
    model = solve_score_model(entry.baseline.sensitivity.value, entry.baseline.specificity.value,
                              entry.operating_threshold, shape)
    n = 200_000
    uniform = np.random.default_rng(2024).random(n)
    pos = model.scores(uniform, np.ones(n, dtype=bool))
    neg = model.scores(uniform, np.zeros(n, dtype=bool))
    assert pos.min() >= 0.0 and pos.max() <= 1.0 and neg.min() >= 0.0 and neg.max() <= 1.0
    for observed, p in (
        (float(np.mean(pos >= entry.operating_threshold)), entry.baseline.sensitivity.value),
        (float(np.mean(neg < entry.operating_threshold)), entry.baseline.specificity.value),
    ):
        assert abs(observed - p) <= 4 * math.sqrt(p * (1 - p) / n)


def test_score_model_rejects_impossible_operating_points() -> None:
    with pytest.raises(ValueError, match="sensitivity"):
        solve_score_model(1.0, 0.9, 0.5)
    with pytest.raises(ValueError, match="threshold"):
        solve_score_model(0.9, 0.9, 0.0)


def _clean_sens_spec(
    events: list[SimEvent], tool: str, day_from: int, day_to: int
) -> tuple[float, int, float, int]:
    """Sensitivity and specificity of `tool` on studies of days [day_from, day_to)."""
    labels: dict[str, Label] = {}
    for e in events:
        if e.topic == "reports.final":
            report = ReportFinal.model_validate_json(e.value)
            labels[report.accession_number] = _label(report, CODES[tool])
    tp = fn = tn = fp = 0
    for e in events:
        if e.topic != "ai.results":
            continue
        r = AIResult.model_validate_json(e.value)
        day = (r.study_date - START).days
        if r.tool_id != tool or not day_from <= day < day_to:
            continue
        label = labels.get(r.accession_number)
        if label is Label.PRESENT:
            tp += r.result_indicator
            fn += not r.result_indicator
        elif label is Label.ABSENT:
            fp += r.result_indicator
            tn += not r.result_indicator
    return tp / (tp + fn), tp + fn, tn / (tn + fp), tn + fp


def test_sensitivity_drop_from_its_day() -> None:
    scenario = NAMED_SCENARIOS["sensitivity_drop"]
    events, _ = simulate(days=60, seed=5, scenario=scenario, tools=["ptx-triage"],
                         volume_scale=3.0, faults=Faults(correction_rate=0.0))
    baseline = REGISTRY["ptx-triage"].baseline
    day = scenario.sensitivity_drop_day
    assert day is not None
    for lo, hi, sens_expected in ((0, day, baseline.sensitivity.value),
                                  (day, 60, scenario.drop_to)):
        sens, n_pos, spec, n_neg = _clean_sens_spec(events, "ptx-triage", lo, hi)
        assert n_pos > 300
        assert abs(sens - sens_expected) <= 4 * math.sqrt(sens_expected * (1 - sens_expected)
                                                          / n_pos)
        p = baseline.specificity.value
        assert abs(spec - p) <= 4 * math.sqrt(p * (1 - p) / n_neg)


def test_model_update_changes_version_from_its_day_only_for_that_tool() -> None:
    scenario = replace(NAMED_SCENARIOS["model_update"], model_update_day=5)
    events, truth = simulate(days=10, seed=2, scenario=scenario)
    for e in events:
        if e.topic != "ai.results":
            continue
        r = AIResult.model_validate_json(e.value)
        if r.tool_id == "ich-triage":
            assert r.software_version == ("5.3.0" if (r.study_date - START).days >= 5
                                          else "5.2.1")
        else:
            assert r.software_version == TOOL_PROFILES[r.tool_id].base_version
    assert set(truth["ich-triage"].versions) == {"5.2.1", "5.3.0"}
    assert set(truth["lvo-triage"].versions) == {"5.2.1"}


def test_protocol_change_and_new_scanner_software_from_their_days() -> None:
    scenario = Scenario(protocol_change_day=4, new_scanner_software_day=6)
    events, _ = simulate(days=9, seed=4, scenario=scenario, tools=["ich-triage"])
    seen_protocol: Counter[tuple[bool, str]] = Counter()
    new_software: Counter[tuple[bool, str]] = Counter()
    for e in events:
        r = AIResult.model_validate_json(e.value) if e.topic == "ai.results" else None
        if r is None:
            continue
        day = (r.study_date - START).days
        changed = r.acquisition.protocol_name == "HEAD LOW DOSE 2.5MM"
        seen_protocol[(day >= 4, r.site)] += changed
        if changed:
            assert (r.acquisition.kvp, r.acquisition.slice_thickness) == (100.0, 2.5)
        else:
            assert (r.acquisition.kvp, r.acquisition.slice_thickness) == (120.0, 5.0)
        new_software[(day >= 6, r.site)] += r.scanner.software_version.endswith("-SP2")
    assert seen_protocol[(True, "site-b")] > 0
    assert sum(v for k, v in seen_protocol.items() if k != (True, "site-b")) == 0
    assert new_software[(True, "site-c")] > 0
    assert sum(v for k, v in new_software.items() if k != (True, "site-c")) == 0


def test_reports_before_ai_results_happen_about_five_percent_of_studies(
    demo: tuple[list[SimEvent], dict[str, ToolTruth]],
) -> None:
    events, _ = demo
    first: dict[tuple[bytes, str], datetime] = {}
    for e in events:
        first.setdefault((e.key, e.topic), e.arrival)
    studies = [k for (k, topic) in first if topic == "ai.results" and (k, "reports.final") in first]
    early = sum(first[(k, "reports.final")] < first[(k, "ai.results")] for k in studies)
    fraction = early / len(studies)
    assert 0.04 <= fraction <= 0.06


def test_valid_events_validate_and_invalid_events_do_not() -> None:
    faults = Faults(duplicate_rate=0.05, invalid_rate=0.05)
    events, _ = simulate(days=10, seed=9, faults=faults)
    valid_ids = {e.event_id for e in events if e.valid}
    invalid = [e for e in events if not e.valid]
    assert len(invalid) > 100
    kinds: Counter[str] = Counter()
    for e in events:
        model = TOPIC_MODELS[e.topic]
        if e.valid:
            assert len(e.value) <= MAX_EVENT_BYTES
            assert model.model_validate_json(e.value).event_id == e.event_id  # type: ignore[attr-defined]
            continue
        assert e.event_id is None or e.event_id not in valid_ids
        if len(e.value) > MAX_EVENT_BYTES:
            kinds["oversize"] += 1
            continue
        with pytest.raises(ValidationError) as info:
            model.model_validate_json(e.value)
        kinds[info.value.errors()[0]["type"]] += 1
    assert set(kinds) == {"oversize", "json_invalid", "missing", "float_parsing", "list_type",
                          "timezone_aware", "less_than_equal", "greater_than_equal"}


def test_duplicates_repeat_an_earlier_event_verbatim() -> None:
    clean, _ = simulate(days=10, seed=9)
    events, _ = simulate(days=10, seed=9, faults=Faults(duplicate_rate=0.05))
    first: dict[str, SimEvent] = {}
    repeats = 0
    for e in events:
        assert e.event_id is not None
        if e.event_id in first:
            original = first[e.event_id]
            assert (e.topic, e.key, e.value) == (original.topic, original.key, original.value)
            assert e.arrival >= original.arrival
            repeats += 1
        else:
            first[e.event_id] = e
    assert repeats > 0.04 * len(clean)
    # Faults are drawn from their own random stream: the clean events are unchanged.
    assert list(first.values()) == clean


@pytest.mark.parametrize("tools", [None, ("pe-triage", "ad-triage")])
def test_structured_share_changes_only_the_wording_and_texts_read_back_exactly(
    tools: tuple[str, ...] | None,
) -> None:
    faults = Faults(correction_rate=0.2)
    days = 20 if tools is None else 60
    structured, _ = simulate(days=days, seed=13, tools=tools,
                             faults=replace(faults, structured_rate=1.0))
    textual, _ = simulate(days=days, seed=13, tools=tools,
                          faults=replace(faults, structured_rate=0.0))
    assert [(e.event_id, e.arrival) for e in structured] == [
        (e.event_id, e.arrival) for e in textual
    ]
    compared = Counter[str]()
    for s, t in zip(structured, textual, strict=True):
        if s.topic != "reports.final":
            assert s.value == t.value
            continue
        truth = ReportFinal.model_validate_json(s.value)
        text = ReportFinal.model_validate_json(t.value)
        assert truth.findings is not None and text.report_text is not None
        expected = {f.finding_code: f.label for f in truth.findings}
        assert extract_labels(text.report_text, expected) == expected
        compared.update(label.value for label in expected.values())
        compared[text.status.value] += 1
    assert compared["indeterminate"] > 20 and compared["present"] > 100
    assert compared["corrected"] > 0 and compared["addendum"] > 0


@pytest.mark.parametrize("code", TEMPLATED_FINDINGS)
@pytest.mark.parametrize("label", list(Label))
def test_every_template_sentence_reads_back_as_its_label(code: str, label: Label) -> None:
    rng = np.random.default_rng(1)
    for _ in range(200):
        sentence = finding_sentence(rng, code, label)
        assert extract_labels(sentence, [code]) == {code: label}, sentence


def test_report_text_states_each_finding_in_findings_and_impression() -> None:
    rng = np.random.default_rng(3)
    labels = {"intracranial_hemorrhage": Label.ABSENT, "large_vessel_occlusion": Label.PRESENT}
    text = render_report_text(rng, "head_ct", labels, ReportStatus.ADDENDUM)
    assert text.startswith("ADDENDUM:")
    assert "FINDINGS:" in text and "IMPRESSION:" in text
    assert extract_labels(text, labels) == labels


def test_bad_arguments_raise_one_clear_error() -> None:
    with pytest.raises(ScenarioError, match="unknown-tool"):
        simulate(days=1, tools=["unknown-tool"])
    with pytest.raises(ScenarioError, match="drop_tool"):
        simulate(days=1, scenario=Scenario(drop_tool="nope"))
    with pytest.raises(ScenarioError, match="protocol_change_site"):
        simulate(days=1, scenario=Scenario(protocol_change_site="site-z"))
    with pytest.raises(ScenarioError, match="days"):
        simulate(days=0)
    with pytest.raises(ValueError, match="duplicate_rate"):
        Faults(duplicate_rate=1.5)


def test_run_simulate_writes_a_replayable_file(tmp_path: Path) -> None:
    out = tmp_path / "events.jsonl"
    truth = run_simulate(out, days=3, seed=1, scenario_name="all")
    events, expected = simulate(days=3, seed=1, scenario=NAMED_SCENARIOS["all"])
    assert truth == expected
    assert read_jsonl(out) == events
    assert len(out.read_text().splitlines()) == len(events)
    with pytest.raises(ScenarioError, match="unknown scenario 'nope'"):
        run_simulate(out, days=3, seed=1, scenario_name="nope")
