"""The metrics module: naming conventions, bounded labels, and the helpers' behaviour."""

from __future__ import annotations

import math
import time

import pytest
from prometheus_client.parser import text_string_to_metric_families

from surveillance.clinical.lifecycle import ToolState
from surveillance.contracts import CaseOutcome, Outcome, ReportStatus
from surveillance.errors import SurveillanceError
from surveillance.observe import metrics as m
from surveillance.stream.topics import all_topics

# Substrings that must never appear in a label name: identifiers of people or studies.
FORBIDDEN_LABEL_PARTS = ("patient", "accession", "mrn", "uid", "name", "text", "report", "id")


# The tools these tests count for: only registered tools get their own series.
for _tool in ("t-agree", "t-airesult", "t-bad", "t-case", "t-clock", "t-cusum", "t-kept",
              "t-moved", "t-nan", "t-reject", "t-shadow", "t-ver"):
    m.register_tool(_tool, "CT")


def _value(name: str, **labels: str) -> float | None:
    return m.REGISTRY.get_sample_value(name, labels)


def _exposition_with_every_series() -> str:
    """The /metrics text after one child of every labelled metric has been created."""
    for metric in m.ALL_METRICS:
        labelnames = metric._labelnames
        if labelnames:
            metric.labels(*("conv-check" for _ in labelnames))
    body, content_type = m.render()
    assert content_type.startswith("text/plain")
    return body.decode()


def test_every_declared_metric_is_in_the_registry_and_vice_versa() -> None:
    declared = {metric._name for metric in m.ALL_METRICS}
    process = {
        "surveillance_process_" + n
        for n in (
            "virtual_memory_bytes",
            "resident_memory_bytes",
            "start_time_seconds",
            "cpu_seconds",
            "open_fds",
            "max_fds",
        )
    }
    collected = {family.name for family in m.REGISTRY.collect()}
    assert collected == declared | process
    assert len(declared) == len(m.ALL_METRICS)


def test_every_exposed_series_follows_the_naming_conventions() -> None:
    families = list(text_string_to_metric_families(_exposition_with_every_series()))
    # The text format exposes each counter's and histogram's `_created` as its own family.
    created = [f.name for f in families if f.name.endswith("_created")]
    stateful = [x._name for x in m.ALL_METRICS if x._type in ("counter", "histogram")]
    assert sorted(created) == sorted(f"{name}_created" for name in stateful)
    assert len(families) - len(created) == len(m.ALL_METRICS) + 6
    for family in families:
        assert family.name.startswith("surveillance_"), family.name
        for sample in family.samples:
            assert sample.name.startswith("surveillance_"), sample.name
            if family.type == "counter":
                assert sample.name.endswith(("_total", "_created")), sample.name


def test_counters_are_declared_with_total_and_nothing_else_is() -> None:
    for metric in m.ALL_METRICS:
        name = metric._name
        if metric._type == "counter":
            # prometheus_client strips `_total` from the family name; the declared name
            # below is what the sample is called.
            assert not name.endswith("_total")
            assert f"{name}_total" in m.exposed_sample_names()
        else:
            assert not name.endswith("_total"), name


def test_labels_come_only_from_the_allowed_bounded_sets() -> None:
    for metric in m.ALL_METRICS:
        for label in metric._labelnames:
            assert label in m.ALLOWED_LABELS, (metric._name, label)
    for label in m.ALLOWED_LABELS:
        assert not any(part in label for part in FORBIDDEN_LABEL_PARTS), label


def test_topic_label_values_are_the_topics_the_service_creates() -> None:
    created = {
        spec.name
        for spec in all_topics("surveillance", 1)
        if not spec.name.endswith((".dlq", "-changelog"))
    }
    assert {t.value for t in m.Topic} == created


def test_version_states_are_the_lifecycle_states() -> None:
    assert [s.value for s in m.VersionState] == [s.value for s in ToolState]


def test_output_features_match_the_alert_rule_regex() -> None:
    # deploy/prometheus/rules/drift.yml splits input from output drift on this regex.
    assert {f.value for f in m.OUTPUT_FEATURES} == {"score", "positive_rate", "embedding"}


@pytest.mark.parametrize(
    "value",
    ["John Smith", "ACC 12345", "", "a" * 65, "-leading-dash", "x/y", "ich\ntriage", "é"],
)
def test_identifier_labels_reject_free_text(value: str) -> None:
    with pytest.raises(m.MetricLabelError) as raised:
        m.identifier("site", value)
    assert isinstance(raised.value, SurveillanceError)
    assert isinstance(raised.value, ValueError)
    assert "site label" in str(raised.value)


@pytest.mark.parametrize("value", ["ich-triage", "4.2.1", "v2+build:7", "north_campus", "CT"])
def test_identifier_labels_accept_identifiers(value: str) -> None:
    assert m.identifier("tool", value) == value


def test_enumerated_labels_reject_values_outside_their_set() -> None:
    with pytest.raises(ValueError):
        m.DlqReason("stack trace of the parser")
    with pytest.raises(ValueError):
        m.Window("17d")


def test_record_ai_result_counts_volume_modality_and_last_seen_time() -> None:
    before = time.time()
    m.record_ai_result("t-airesult", "1.0", "north", "CT")
    m.record_ai_result("t-airesult", "1.0", "north", "CT")
    after = time.time()
    assert (
        _value("surveillance_ai_results_total", tool="t-airesult", version="1.0", site="north")
        == 2.0
    )
    last = _value("surveillance_last_event_timestamp_seconds", tool="t-airesult")
    assert last is not None and before <= last <= after
    assert (_value("surveillance_modality_studies_total", modality="CT") or 0) >= 2.0


def test_record_ai_result_makes_free_text_label_safe_instead_of_refusing_it() -> None:
    """Ingest accepted the event: its metric must not fail (that crash-looped the worker)."""
    m.record_ai_result("t-reject", "5.2.1 build 7", "Main Campus", "CT")
    assert _value("surveillance_ai_results_total", tool="t-reject", version="5.2.1_build_7",
                  site="Main_Campus") == 1.0


def test_dead_letters_are_counted_by_topic_and_reason() -> None:
    # The counter is the process's: other tests (in any order) may have counted before.
    def count(topic: str) -> float:
        return _value("surveillance_dlq_events_total", topic=topic, reason="oversize") or 0.0

    reports, results = count(m.Topic.REPORTS_FINAL), count(m.Topic.AI_RESULTS)
    m.record_dead_letter(m.Topic.REPORTS_FINAL, m.DlqReason.OVERSIZE)
    m.record_dead_letter(m.Topic.REPORTS_FINAL, m.DlqReason.OVERSIZE)
    assert count(m.Topic.REPORTS_FINAL) == reports + 2
    assert count(m.Topic.AI_RESULTS) == results


def test_set_agreement_publishes_estimate_interval_and_denominator() -> None:
    m.set_agreement(
        "t-agree",
        "2.0",
        "south",
        m.AgreementMetric.SENSITIVITY,
        m.Window.MONTH,
        value=0.9,
        lower=0.8,
        upper=0.95,
        denominator=40,
    )
    labels = {
        "tool": "t-agree",
        "version": "2.0",
        "site": "south",
        "metric": "sensitivity",
        "window": "30d",
    }
    assert _value("surveillance_agreement_value", **labels) == 0.9
    assert _value("surveillance_agreement_lower", **labels) == 0.8
    assert _value("surveillance_agreement_upper", **labels) == 0.95
    assert _value("surveillance_agreement_denominator", **labels) == 40.0


def test_set_agreement_accepts_nan_for_an_undefined_estimate() -> None:
    nan = float("nan")
    m.set_agreement(
        "t-nan",
        "2.0",
        "south",
        m.AgreementMetric.PPV,
        m.Window.WEEK,
        value=nan,
        lower=nan,
        upper=nan,
        denominator=0,
    )
    got = _value(
        "surveillance_agreement_value",
        tool="t-nan",
        version="2.0",
        site="south",
        metric="ppv",
        window="7d",
    )
    assert got is not None and math.isnan(got)


def test_set_agreement_refuses_an_estimate_outside_its_interval() -> None:
    with pytest.raises(m.MetricValueError, match="outside its interval"):
        m.set_agreement(
            "t-bad",
            "2.0",
            "south",
            m.AgreementMetric.SPECIFICITY,
            m.Window.WEEK,
            value=0.99,
            lower=0.8,
            upper=0.95,
            denominator=100,
        )
    assert (
        _value(
            "surveillance_agreement_value",
            tool="t-bad",
            version="2.0",
            site="south",
            metric="specificity",
            window="7d",
        )
        is None
    )


@pytest.mark.parametrize(("statistic", "signal"), [(4.19, 0.0), (4.2, 1.0), (7.0, 1.0)])
def test_cusum_signal_is_derived_from_statistic_and_threshold(
    statistic: float, signal: float
) -> None:
    m.set_cusum("t-cusum", "1", "north", m.AgreementMetric.SENSITIVITY, statistic, 4.2)
    labels = {"tool": "t-cusum", "version": "1", "site": "north", "metric": "sensitivity"}
    assert _value("surveillance_cusum_signal", **labels) == signal
    assert _value("surveillance_cusum_statistic", **labels) == statistic
    assert _value("surveillance_cusum_threshold", **labels) == 4.2


def test_set_version_state_keeps_one_state_per_version() -> None:
    m.set_version_state("t-ver", "3.1", m.VersionState.VALIDATING)
    m.set_version_state("t-ver", "3.1", m.VersionState.LIVE)
    m.set_version_state("t-ver", "3.0", m.VersionState.RETIRED)
    assert (
        _value("surveillance_model_version_info", tool="t-ver", version="3.1", state="live") == 1.0
    )
    assert (
        _value("surveillance_model_version_info", tool="t-ver", version="3.1", state="validating")
        is None
    )
    assert (
        _value("surveillance_model_version_info", tool="t-ver", version="3.0", state="retired")
        == 1.0
    )


def test_register_tool_creates_every_adverse_event_series_at_zero() -> None:
    m.register_tool("t-reg", "DX")
    assert _value("surveillance_tool_info", tool="t-reg", modality="DX") == 1.0
    for outcome in Outcome:
        assert (
            _value("surveillance_adverse_events_total", tool="t-reg", seriousness=outcome.value)
            == 0.0
        )
    m.record_adverse_event("t-reg", Outcome.DEATH)
    assert _value("surveillance_adverse_events_total", tool="t-reg", seriousness="death") == 1.0


def test_regulatory_clock_refuses_more_due_than_open() -> None:
    m.set_regulatory_clock("t-clock", open_events=3, due_soon=1, overdue=2)
    assert _value("surveillance_regulatory_reports_overdue", tool="t-clock") == 2.0
    with pytest.raises(m.MetricValueError):
        m.set_regulatory_clock("t-clock", open_events=1, due_soon=1, overdue=1)
    assert _value("surveillance_adverse_events_open", tool="t-clock") == 3.0


def test_shadow_helpers() -> None:
    m.record_shadow("t-shadow", scored=True)
    m.record_shadow("t-shadow", scored=False)
    m.record_shadow("t-shadow", scored=False)
    m.set_shadow_kappa("t-shadow", m.Window.WEEK, 0.81)
    assert _value("surveillance_shadow_scored_total", tool="t-shadow") == 1.0
    assert _value("surveillance_shadow_shed_total", tool="t-shadow") == 2.0
    assert _value("surveillance_shadow_kappa", tool="t-shadow", window="7d") == 0.81
    with pytest.raises(m.MetricValueError):
        m.set_shadow_kappa("t-shadow", m.Window.WEEK, 1.5)


def test_case_and_report_counters_use_the_contract_enums() -> None:
    m.record_case("t-case", "1", "north", CaseOutcome.FN)
    m.record_report(ReportStatus.CORRECTED)
    assert (
        _value("surveillance_cases_total", tool="t-case", version="1", site="north", outcome="FN")
        == 1.0
    )
    assert (_value("surveillance_reports_total", status="corrected") or 0) >= 1.0


def test_store_and_lag_gauges() -> None:
    m.set_store_state(outage=True, buffered_rows=1500)
    m.set_consumer_lag(m.Topic.AI_RESULTS, 12)
    assert _value("surveillance_store_outage") == 1.0
    assert _value("surveillance_store_buffered_rows") == 1500.0
    assert _value("surveillance_consumer_lag_messages", topic="ai.results") == 12.0
    with pytest.raises(m.MetricValueError):
        m.set_consumer_lag(m.Topic.AI_RESULTS, -1)
    m.set_store_state(outage=False, buffered_rows=0)
    assert _value("surveillance_store_outage") == 0.0


def test_forget_tool_drops_only_that_tools_state() -> None:
    for tool in ("t-moved", "t-kept"):
        m.set_below_baseline(
            tool, "1", "north", m.AgreementMetric.SENSITIVITY, m.Window.MONTH, True
        )
        m.set_cusum(tool, "1", "north", m.AgreementMetric.SENSITIVITY, 5.0, 4.0)
        m.set_drift(tool, m.DriftFeature.SCORE, m.DriftDetector.ADWIN, 0.3, True)
    m.set_baseline("t-moved", m.AgreementMetric.SENSITIVITY, 0.9, 0.05)
    m.forget_tool("t-moved")
    verdict = {"version": "1", "site": "north", "metric": "sensitivity", "window": "30d"}
    cusum = {"version": "1", "site": "north", "metric": "sensitivity"}
    drift = {"feature": "score", "detector": "adwin"}
    assert _value("surveillance_below_baseline", tool="t-moved", **verdict) is None
    assert _value("surveillance_cusum_signal", tool="t-moved", **cusum) is None
    assert _value("surveillance_drift_detected", tool="t-moved", **drift) is None
    assert _value("surveillance_below_baseline", tool="t-kept", **verdict) == 1.0
    assert _value("surveillance_cusum_signal", tool="t-kept", **cusum) == 1.0
    assert _value("surveillance_drift_detected", tool="t-kept", **drift) == 1.0
    # The clearance baseline is configuration, not partition state: it stays.
    assert _value("surveillance_baseline_value", tool="t-moved", metric="sensitivity") == 0.9
