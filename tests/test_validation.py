"""Local validation against the registry's acceptance block, and its HTML/JSON report."""

from __future__ import annotations

import math
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
from statsmodels.stats.proportion import proportion_confint

from surveillance.clinical.baselines import RegistryError, load_registry
from surveillance.clinical.validation import Status, ValidationResult, required_n, validate
from surveillance.contracts import AdjudicatedCase, CaseOutcome, Label, Sex
from surveillance.report.validation_report import run_validation, to_html, to_json

REGISTRY = load_registry()
ICH = REGISTRY["ich-triage"]
NOW = datetime(2025, 4, 1, tzinfo=UTC)


def case(
    i: int,
    outcome: CaseOutcome,
    *,
    site: str = "site-a",
    maker: str = "GE",
    sex: Sex = Sex.FEMALE,
    age: int | None = 50,
    version: str = "2.0",
    tool: str = "ich-triage",
    revision: int = 0,
) -> AdjudicatedCase:
    read_present = outcome in (CaseOutcome.TP, CaseOutcome.FN)
    called = outcome in (CaseOutcome.TP, CaseOutcome.FP)
    return AdjudicatedCase(
        case_id=f"c{i}",
        revision=revision,
        outcome=outcome,
        label=Label.PRESENT if read_present else Label.ABSENT,
        tool_id=tool,
        software_version=version,
        finding_code="intracranial_hemorrhage",
        site=site,
        ai_result=0.9 if called else 0.1,
        operating_threshold=0.5,
        result_indicator=called,
        accession=f"a{i}",
        study_date=date(2025, 3, 1),
        inference_date=datetime(2025, 3, 1, tzinfo=UTC),
        modality="CT",
        scanner_manufacturer=maker,
        scanner_model="m",
        scanner_software_version="1",
        age=age,
        sex=sex,
        ai_event_id=f"ai{i}",
    )


def block(start: int, counts: dict[CaseOutcome, int], **kw: object) -> list[AdjudicatedCase]:
    out: list[AdjudicatedCase] = []
    for outcome, n in counts.items():
        for _ in range(n):
            out.append(case(start + len(out), outcome, **kw))  # type: ignore[arg-type]
    return out


TP, FP, TN, FN = CaseOutcome.TP, CaseOutcome.FP, CaseOutcome.TN, CaseOutcome.FN


def _lower(successes: int, n: int) -> float:
    return float(proportion_confint(successes, n, alpha=0.05, method="wilson")[0])


@pytest.mark.parametrize(
    ("expected", "criterion"),
    [(0.962, 0.85), (0.995, 0.95), (0.635, 0.50), (0.927, 0.85), (0.907, 0.85), (0.9, 0.89)],
)
def test_required_n_is_the_smallest_n_whose_wilson_bound_reaches_the_criterion(
    expected: float, criterion: float
) -> None:
    n = required_n(expected, criterion)
    assert n is not None
    assert _lower(math.floor(expected * n + 1e-9), n) >= criterion
    assert all(_lower(math.floor(expected * m + 1e-9), m) < criterion for m in range(1, n))


def test_required_n_is_none_when_the_baseline_does_not_beat_the_criterion() -> None:
    assert required_n(0.85, 0.85) is None
    assert required_n(0.80, 0.85) is None
    assert required_n(0.8501, 0.85) is None  # beyond the 10,000-case search


def test_passing_version_matches_an_independent_recomputation() -> None:
    cases = block(0, {TP: 55, FN: 2, TN: 240, FP: 3})
    result = validate(ICH, cases, "2.0")
    assert (result.tp, result.fn, result.tn, result.fp) == (55, 2, 240, 3)
    assert result.sensitivity.lower == pytest.approx(_lower(55, 57), abs=1e-12)
    assert result.specificity.lower == pytest.approx(_lower(240, 243), abs=1e-12)
    core = {c.name: c.status for c in result.criteria if c.name != "subgroup_floor"}
    assert core == {
        "min_positives": Status.PASS,
        "min_negatives": Status.PASS,
        "sensitivity_lower_bound": Status.PASS,
        "specificity_lower_bound": Status.PASS,
    }
    assert result.passed
    assert [s.more_needed for s in result.sample_size] == [0, 0]


def test_too_few_cases_says_how_many_more_are_needed() -> None:
    cases = block(0, {TP: 20, TN: 100})
    result = validate(ICH, cases, "2.0")
    assert not result.passed
    statuses = {c.name: c.status for c in result.criteria if c.name != "subgroup_floor"}
    assert statuses["min_positives"] == Status.FAIL
    assert statuses["min_negatives"] == Status.FAIL

    # Independent: smallest n with statsmodels' Wilson bound at the baseline >= criterion.
    def smallest(p: float, c: float) -> int:
        return next(m for m in range(1, 5000) if _lower(math.floor(p * m + 1e-9), m) >= c)

    need_pos = max(50, smallest(0.962, 0.85))
    need_neg = max(200, smallest(0.995, 0.95))
    sens, spec = result.sample_size
    assert (sens.required, sens.have, sens.more_needed) == (need_pos, 20, need_pos - 20)
    assert (spec.required, spec.have, spec.more_needed) == (need_neg, 100, need_neg - 100)


def test_a_lower_bound_below_the_criterion_fails_even_with_enough_cases() -> None:
    result = validate(ICH, block(0, {TP: 48, FN: 7, TN: 250}), "2.0")
    crit = next(c for c in result.criteria if c.name == "sensitivity_lower_bound")
    assert crit.observed == pytest.approx(_lower(48, 55), abs=1e-12)
    assert crit.status == (Status.PASS if _lower(48, 55) >= 0.85 else Status.FAIL)
    assert crit.status == Status.FAIL and not result.passed


def test_a_weak_subgroup_fails_and_a_tiny_one_is_only_reported() -> None:
    strong = block(0, {TP: 60, TN: 250}, site="site-a")
    weak = block(1000, {TP: 15, FN: 5}, site="site-b", maker="Canon")  # 0.75 < floor 0.80
    tiny = block(2000, {FN: 2, TN: 3}, site="site-c")  # 0/2 sensitivity: too few to judge
    result = validate(ICH, strong + weak + tiny, "2.0")
    floors = {
        (next(iter((c.subgroup or {}).items())), c.metric): c.status
        for c in result.criteria
        if c.name == "subgroup_floor"
    }
    assert floors[(("site", "site-b"), "sensitivity")] == Status.FAIL
    assert floors[(("scanner_manufacturer", "Canon"), "sensitivity")] == Status.FAIL
    assert floors[(("site", "site-c"), "sensitivity")] == Status.INSUFFICIENT
    assert floors[(("site", "site-a"), "sensitivity")] == Status.PASS
    assert not result.passed
    without_weak = validate(ICH, strong + tiny, "2.0")
    assert without_weak.passed  # the insufficient subgroup does not block


def test_subgroup_counts_by_age_band_and_sex() -> None:
    ages = [None, 5, 17, 18, 39, 40, 64, 65, 79, 80, 101]
    cases = [
        case(i, (TP, FN, TN, FP)[i % 4], age=age, sex=(Sex.MALE, Sex.FEMALE, Sex.UNKNOWN)[i % 3])
        for i, age in enumerate(ages)
    ]
    result = validate(ICH, cases, "2.0")

    def band(age: int | None) -> str:
        if age is None:
            return "unknown"
        edges = [(18, "0-17"), (40, "18-39"), (65, "40-64"), (80, "65-79")]
        return next((name for edge, name in edges if age < edge), "80+")

    for dimension, key in (("age_band", lambda c: band(c.age)), ("sex", lambda c: c.sex.value)):
        got = {
            g.level: (g.tp, g.fp, g.tn, g.fn) for g in result.subgroups if g.dimension == dimension
        }
        expected: dict[str, list[int]] = {}
        for c in cases:
            cell = expected.setdefault(key(c), [0, 0, 0, 0])
            cell[[TP, FP, TN, FN].index(c.outcome)] += 1
        assert got == {k: tuple(v) for k, v in expected.items()}


def test_latest_revision_counts_once_and_other_cases_are_left_out() -> None:
    cases = [
        case(1, FN),
        case(1, TP, revision=2),  # a corrected report
        case(1, FN, revision=1),  # an older revision redelivered late
        case(2, TN),
        case(2, TN),  # at-least-once duplicate
        case(3, CaseOutcome.INDETERMINATE),
        case(4, CaseOutcome.PENDING),
        case(5, TP, version="1.0"),
        case(6, TP, tool="lvo-triage"),
    ]
    result = validate(ICH, cases, "2.0")
    assert (result.tp, result.fp, result.tn, result.fn) == (1, 0, 1, 0)
    assert result.cases_undecided == 2
    all_versions = validate(ICH, cases)
    assert (all_versions.tp, all_versions.software_version) == (2, None)


def test_report_is_escaped_self_contained_and_round_trips(tmp_path: Path) -> None:
    hostile = "<script>alert('x')</script>"
    cases = block(0, {TP: 30, TN: 30}, site=hostile)
    result = validate(ICH, cases, "2.0")
    html = to_html(result, NOW)
    assert hostile not in html and "&lt;script&gt;" in html
    assert "<script" not in html and "http" not in html and "src=" not in html
    assert ValidationResult.model_validate_json(to_json(result)) == result
    _, html_path, json_path = run_validation(REGISTRY, "ich-triage", "2.0", cases, tmp_path, NOW)
    assert html_path.name == "ich-triage-2.0-validation.html"
    assert json_path.read_text() == to_json(result)
    with pytest.raises(RegistryError, match="not in the baseline registry"):
        run_validation(REGISTRY, "no-such-tool", "1", cases, tmp_path, NOW)
