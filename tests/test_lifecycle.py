"""Tool-version lifecycle: allowed transitions, the audit trail, and a vendor update end to end."""

from __future__ import annotations

import json
import threading
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from statsmodels.stats.proportion import proportion_confint

from surveillance.clinical.baselines import load_registry
from surveillance.clinical.lifecycle import (
    ALLOWED,
    LifecycleError,
    LifecycleStore,
    ToolState,
    check_version,
    history,
    promote,
    register,
    retire,
    suspend,
    version_alert,
)
from surveillance.clinical.validation import ValidationResult, validate
from surveillance.contracts import AdjudicatedCase, AlertSeverity, CaseOutcome, Label, Sex
from surveillance.errors import SurveillanceError
from surveillance.report.validation_report import run_validation

T0 = datetime(2025, 3, 1, 9, 0, tzinfo=UTC)
ICH = load_registry()["ich-triage"]


def _cases(
    version: str, sens: float, spec: float, n_pos: int, n_neg: int, seed: int
) -> list[AdjudicatedCase]:
    rng = np.random.default_rng(seed)
    cases = []
    for i in range(n_pos + n_neg):
        positive = i < n_pos
        called = bool(rng.uniform() < (sens if positive else 1 - spec))
        outcome = {
            (True, True): CaseOutcome.TP,
            (True, False): CaseOutcome.FN,
            (False, True): CaseOutcome.FP,
            (False, False): CaseOutcome.TN,
        }[(positive, called)]
        cases.append(
            AdjudicatedCase(
                case_id=f"{version}-{i}",
                revision=0,
                outcome=outcome,
                label=Label.PRESENT if positive else Label.ABSENT,
                tool_id="ich-triage",
                software_version=version,
                finding_code="intracranial_hemorrhage",
                site=("site-a", "site-b")[i % 2],
                ai_result=0.9 if called else 0.1,
                operating_threshold=0.5,
                result_indicator=called,
                accession=f"acc-{version}-{i}",
                study_date=date(2025, 2, 1),
                inference_date=T0 - timedelta(days=20),
                modality="CT",
                scanner_manufacturer=("GE", "Siemens", "Canon")[i % 3],
                scanner_model="m",
                scanner_software_version="1",
                age=int(rng.integers(20, 95)),
                sex=(Sex.FEMALE, Sex.MALE)[int(rng.integers(0, 2))],
                ai_event_id=f"ai-{version}-{i}",
            )
        )
    return cases


def test_transition_table_is_the_documented_one() -> None:
    assert ALLOWED[None] == {ToolState.SHADOW}
    assert ALLOWED[ToolState.SHADOW] == {ToolState.VALIDATING, ToolState.RETIRED}
    assert ALLOWED[ToolState.VALIDATING] == {ToolState.LIVE, ToolState.SHADOW, ToolState.RETIRED}
    assert ALLOWED[ToolState.LIVE] == {ToolState.SUSPENDED, ToolState.RETIRED}
    assert ALLOWED[ToolState.SUSPENDED] == {ToolState.VALIDATING, ToolState.RETIRED}
    assert ALLOWED[ToolState.RETIRED] == frozenset()


def test_a_vendor_update_goes_shadow_validating_live_with_a_full_audit_trail(
    tmp_path: Path,
) -> None:
    state = tmp_path / "state"
    states = LifecycleStore(state).states()
    # The vendor ships 2.0 without telling anyone: its first result is alert-worthy.
    unannounced = check_version(states, "ich-triage", "2.0")
    assert unannounced.alert and unannounced.severity == AlertSeverity.CRITICAL

    register(state, "ich-triage", "2.0", "alice", "vendor release notes 2025-02", T0)
    in_shadow = check_version(LifecycleStore(state).states(), "ich-triage", "2.0")
    assert in_shadow.alert and in_shadow.state == ToolState.SHADOW
    alert = version_alert(in_shadow, T0)
    assert alert is not None and alert.kind == "unvalidated_version"
    assert alert.severity == AlertSeverity.WARNING and alert.software_version == "2.0"

    with pytest.raises(LifecycleError, match="cannot go from shadow to live"):
        promote(
            state,
            "ich-triage",
            "2.0",
            ToolState.LIVE,
            "bob",
            "skip it",
            validation=validate(ICH, _cases("2.0", 0.97, 0.99, 80, 300, 1), "2.0"),
        )
    promote(
        state,
        "ich-triage",
        "2.0",
        ToolState.VALIDATING,
        "bob",
        "shadow concordance ok",
        at=T0 + timedelta(days=14),
    )

    cases = _cases("2.0", 0.97, 0.99, 80, 300, seed=1)
    result, html_path, json_path = run_validation(
        load_registry(), "ich-triage", "2.0", cases, tmp_path / "reports", T0
    )
    # Independent recomputation of the report's numbers from the raw cases.
    tp = sum(c.outcome == CaseOutcome.TP for c in cases)
    fn = sum(c.outcome == CaseOutcome.FN for c in cases)
    tn = sum(c.outcome == CaseOutcome.TN for c in cases)
    fp = sum(c.outcome == CaseOutcome.FP for c in cases)
    assert (result.tp, result.fn, result.tn, result.fp) == (tp, fn, tn, fp)
    sens_ci = proportion_confint(tp, tp + fn, alpha=0.05, method="wilson")
    spec_ci = proportion_confint(tn, tn + fp, alpha=0.05, method="wilson")
    assert result.sensitivity.value == pytest.approx(tp / (tp + fn), abs=1e-15)
    assert (result.sensitivity.lower, result.sensitivity.upper) == pytest.approx(sens_ci, abs=1e-12)
    assert (result.specificity.lower, result.specificity.upper) == pytest.approx(spec_ci, abs=1e-12)
    assert result.passed is (sens_ci[0] >= 0.85 and spec_ci[0] >= 0.95)
    assert result.passed
    on_disk = ValidationResult.model_validate_json(json_path.read_text())
    assert on_disk == result
    html = html_path.read_text()
    assert f"{tp}/{tp + fn} = {tp / (tp + fn):.4f} [{sens_ci[0]:.4f}, {sens_ci[1]:.4f}]" in html
    assert f"{tn}/{tn + fp} = {tn / (tn + fp):.4f} [{spec_ci[0]:.4f}, {spec_ci[1]:.4f}]" in html

    promote(
        state,
        "ich-triage",
        "2.0",
        ToolState.LIVE,
        "carol",
        "committee approved 2025-03-20",
        validation=result,
        at=T0 + timedelta(days=19),
    )
    assert not check_version(LifecycleStore(state).states(), "ich-triage", "2.0").alert

    trail = history(state, "ich-triage", "2.0")
    assert [(t.from_state, t.to_state, t.who, t.at, t.why) for t in trail] == [
        (None, ToolState.SHADOW, "alice", T0, "vendor release notes 2025-02"),
        (
            ToolState.SHADOW,
            ToolState.VALIDATING,
            "bob",
            T0 + timedelta(days=14),
            "shadow concordance ok",
        ),
        (
            ToolState.VALIDATING,
            ToolState.LIVE,
            "carol",
            T0 + timedelta(days=19),
            "committee approved 2025-03-20",
        ),
    ]
    evidence = trail[-1].evidence
    assert evidence is not None
    assert (evidence["positives"], evidence["negatives"]) == (tp + fn, tn + fp)
    assert evidence["sensitivity_lower"] == pytest.approx(sens_ci[0], abs=1e-12)
    # The file is the audit trail: one JSON line per transition, nothing else.
    lines = (state / "lifecycle.jsonl").read_text().splitlines()
    assert [json.loads(line)["to_state"] for line in lines] == ["shadow", "validating", "live"]


def test_illegal_transitions_raise(tmp_path: Path) -> None:
    with pytest.raises(LifecycleError, match="cannot go from unregistered to suspended"):
        suspend(tmp_path, "ich-triage", "1.0", "a", "why")
    register(tmp_path, "ich-triage", "1.0", "a", "new")
    with pytest.raises(LifecycleError, match="cannot go from shadow to shadow"):
        register(tmp_path, "ich-triage", "1.0", "a", "again")
    with pytest.raises(LifecycleError, match="needs a passed local validation"):
        promote(tmp_path, "ich-triage", "1.0", ToolState.LIVE, "a", "no evidence")
    promote(tmp_path, "ich-triage", "1.0", ToolState.VALIDATING, "a", "start")
    failing = validate(ICH, _cases("1.0", 0.6, 0.99, 80, 300, 2), "1.0")
    assert not failing.passed
    with pytest.raises(LifecycleError, match="did not pass local validation"):
        promote(tmp_path, "ich-triage", "1.0", ToolState.LIVE, "a", "try", validation=failing)
    other = validate(ICH, _cases("9.9", 0.97, 0.99, 80, 300, 3), "9.9")
    with pytest.raises(LifecycleError, match=r"validation is of ich-triage 9\.9"):
        promote(tmp_path, "ich-triage", "1.0", ToolState.LIVE, "a", "try", validation=other)
    passing = validate(ICH, _cases("1.0", 0.97, 0.99, 80, 300, 4), "1.0")
    promote(tmp_path, "ich-triage", "1.0", ToolState.LIVE, "a", "ok", validation=passing)
    suspend(tmp_path, "ich-triage", "1.0", "oncall", "sensitivity CUSUM signal")
    with pytest.raises(LifecycleError, match="cannot go from suspended to live"):
        promote(tmp_path, "ich-triage", "1.0", ToolState.LIVE, "a", "back", validation=passing)
    retire(tmp_path, "ich-triage", "1.0", "a", "replaced by 2.0")
    for target in ToolState:
        with pytest.raises(LifecycleError, match="allowed: nothing"):
            promote(tmp_path, "ich-triage", "1.0", target, "a", "zombie", validation=passing)
    with pytest.raises(LifecycleError, match="who must be 1-1000 characters"):
        register(tmp_path, "ich-triage", "3.0", "  ", "blank who")
    assert issubclass(LifecycleError, SurveillanceError)
    assert [t.to_state for t in history(tmp_path, "ich-triage", "1.0")] == [
        ToolState.SHADOW,
        ToolState.VALIDATING,
        ToolState.LIVE,
        ToolState.SUSPENDED,
        ToolState.RETIRED,
    ]


def test_verdicts_for_every_state(tmp_path: Path) -> None:
    register(tmp_path, "t", "v", "a", "new")
    severities = {}
    for target in (ToolState.VALIDATING, ToolState.RETIRED):
        states = LifecycleStore(tmp_path).states()
        severities[states[("t", "v")]] = check_version(states, "t", "v").severity
        promote(tmp_path, "t", "v", target, "a", "step")
    states = LifecycleStore(tmp_path).states()
    retired = check_version(states, "t", "v")
    assert severities == {
        ToolState.SHADOW: AlertSeverity.WARNING,
        ToolState.VALIDATING: AlertSeverity.WARNING,
    }
    assert retired.alert and retired.severity == AlertSeverity.CRITICAL
    first, second = version_alert(retired, T0), version_alert(retired, T0 + timedelta(hours=1))
    assert first is not None and second is not None and first.alert_id == second.alert_id


def test_corrupt_or_tampered_state_file_is_reported_with_its_line(tmp_path: Path) -> None:
    register(tmp_path, "t", "v", "a", "new", T0)
    path = tmp_path / "lifecycle.jsonl"
    good = path.read_text()
    path.write_text(good + "{not json\n")
    with pytest.raises(LifecycleError, match="line 2 is invalid"):
        history(tmp_path)
    # A hand-added line that skips validation breaks the replay.
    jump = json.loads(good)
    jump.update(from_state="shadow", to_state="live")
    path.write_text(good + json.dumps(jump) + "\n")
    with pytest.raises(LifecycleError, match="line 2 is invalid"):
        LifecycleStore(tmp_path).states()
    # So does a hand-added "live" line in the right order but without validation evidence.
    steps = [
        dict(jump, from_state="shadow", to_state="validating"),
        dict(jump, from_state="validating", to_state="live"),
    ]
    path.write_text(good + "".join(json.dumps(step) + "\n" for step in steps))
    with pytest.raises(LifecycleError, match="line 3 is invalid"):
        LifecycleStore(tmp_path).states()


def test_concurrent_promotions_from_the_same_state_let_exactly_one_through(
    tmp_path: Path,
) -> None:
    register(tmp_path, "t", "v", "a", "new")
    outcomes: list[str] = []
    lock = threading.Lock()

    def attempt(who: str) -> None:
        try:
            promote(tmp_path, "t", "v", ToolState.VALIDATING, who, "race")
            result = "ok"
        except LifecycleError:
            result = "refused"
        with lock:
            outcomes.append(result)

    threads = [threading.Thread(target=attempt, args=(f"user{i}",)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert sorted(outcomes) == ["ok"] + ["refused"] * 7
    assert len(history(tmp_path, "t", "v")) == 2
