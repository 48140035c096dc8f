"""Every Prometheus metric of the service, declared once.

Metrics live in the module-level `REGISTRY` (a dedicated `CollectorRegistry`, not the
prometheus_client default), so that `/metrics` shows exactly what this module declares
plus the process collector, and tests can inspect it without seeing other libraries'
metrics. Serve it with `render()`.

Conventions (checked by tests/test_metrics.py): one `surveillance_` prefix, base units in
the name, counters end in `_total`, and labels only from small bounded sets. Enumerated
labels (metric, window, reason, detector, feature, state, seriousness, outcome, status,
topic) take a member of a fixed enum. Identifier labels are bounded too, and mapped, never
refused (an event ingest accepted must not fail on its metric): a tool is its own label
only when registered (`register_tool`), a modality only when a registered tool reads it, a
site only when configured (`bound_labels`; unconfigured, the first `max_sites` seen), a
version only among the first `max_versions_per_tool` of its registered tool; everything
else is counted under `other`. Values are made label-safe first ("5.2.1 build 7" ->
"5.2.1_build_7"). Patient, accession and report text never reach a label: no helper
accepts them.

The families are declared in `observe/metric_families.py` and the label sets in
`observe/metric_labels.py`; this module re-exports both, so callers keep one import
(`from surveillance.observe import metrics`). The helpers below are the hot paths the
agents call. They validate label values and keep
related series consistent (a point estimate is never published without its interval).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterable

from surveillance.contracts import CaseOutcome, Outcome, ReportStatus
from surveillance.observe.metric_families import (
    ADVERSE_EVENTS,
    ADVERSE_EVENTS_OPEN,
    AGREEMENT_DENOMINATOR,
    AGREEMENT_LOWER,
    AGREEMENT_UPPER,
    AGREEMENT_VALUE,
    AI_RESULTS,
    ALL_METRICS,
    BASELINE_TOLERANCE,
    BASELINE_VALUE,
    BELOW_BASELINE,
    CASES,
    CONSUMER_LAG,
    COVERAGE_FLOOR,
    CUSUM_SIGNAL,
    CUSUM_STATISTIC,
    CUSUM_THRESHOLD,
    DICOM_OBJECTS,
    DICOM_PENDING,
    DICOM_RESULTS,
    DICOM_RESULTS_WITHOUT_IMAGES,
    DLQ_EVENTS,
    DRIFT_DETECTED,
    DRIFT_STATISTIC,
    DUPLICATE_EVENTS,
    ELIGIBLE_STUDIES,
    EVENT_PROCESSING_SECONDS,
    EVENTS_PROCESSED,
    HORIZON_EVICTED,
    HORIZON_LATE,
    JOIN_REROUTED,
    LAST_EVENT_TIMESTAMP,
    MODALITY_STUDIES,
    MODEL_VERSION_INFO,
    REGISTRY,
    REGULATORY_DUE_SOON,
    REGULATORY_OVERDUE,
    REPORTS,
    SHADOW_KAPPA,
    SHADOW_SCORED,
    SHADOW_SHED,
    STORE_BUFFERED_ROWS,
    STORE_OUTAGE,
    TIMESCALEDB_JOB_CONSECUTIVE_FAILURES,
    TIMESCALEDB_JOB_FAILED,
    TIMESCALEDB_JOB_OVERDUE_SECONDS,
    TOOL_INFO,
    TOOL_STATE_REBUILDS,
    UNVALIDATED_VERSION_CASES,
    exposed_sample_names,
    render,
)
from surveillance.observe.metric_labels import (
    ALL_SITES,
    ALLOWED_LABELS,
    OTHER,
    OUTPUT_FEATURES,
    AgreementMetric,
    DicomOutcome,
    DlqReason,
    DriftDetector,
    DriftFeature,
    MetricLabelError,
    MetricValueError,
    StateRebuild,
    Topic,
    VersionState,
    Window,
    _bounds,
    _ids,
    admit_tools,
    bound_labels,
    identifier,
    label_safe,
)

#: Re-exported from metric_labels and metric_families, and the helpers defined here.
__all__ = [
    "ADVERSE_EVENTS", "ADVERSE_EVENTS_OPEN", "AGREEMENT_DENOMINATOR", "AGREEMENT_LOWER",
    "AGREEMENT_UPPER", "AGREEMENT_VALUE", "AI_RESULTS", "ALLOWED_LABELS", "ALL_METRICS",
    "ALL_SITES", "BASELINE_TOLERANCE", "BASELINE_VALUE", "BELOW_BASELINE", "CASES",
    "CONSUMER_LAG", "COVERAGE_FLOOR", "CUSUM_SIGNAL", "CUSUM_STATISTIC", "CUSUM_THRESHOLD",
    "DICOM_OBJECTS", "DICOM_PENDING", "DICOM_RESULTS", "DICOM_RESULTS_WITHOUT_IMAGES",
    "DLQ_EVENTS", "DRIFT_DETECTED", "DRIFT_STATISTIC", "DUPLICATE_EVENTS", "ELIGIBLE_STUDIES",
    "EVENTS_PROCESSED", "EVENT_PROCESSING_SECONDS", "HORIZON_EVICTED", "HORIZON_LATE",
    "JOIN_REROUTED", "LAST_EVENT_TIMESTAMP", "MODALITY_STUDIES", "MODEL_VERSION_INFO",
    "OTHER", "OUTPUT_FEATURES", "REGISTRY",
    "REGULATORY_DUE_SOON", "REGULATORY_OVERDUE", "REPORTS", "SHADOW_KAPPA", "SHADOW_SCORED",
    "SHADOW_SHED", "STORE_BUFFERED_ROWS", "STORE_OUTAGE",
    "TIMESCALEDB_JOB_CONSECUTIVE_FAILURES", "TIMESCALEDB_JOB_FAILED",
    "TIMESCALEDB_JOB_OVERDUE_SECONDS", "TOOL_INFO", "TOOL_STATE_REBUILDS",
    "UNVALIDATED_VERSION_CASES", "AgreementMetric", "DicomOutcome", "DlqReason",
    "DriftDetector", "DriftFeature", "MetricLabelError", "MetricValueError", "StateRebuild",
    "Topic", "VersionState", "Window", "admit_tools", "bound_labels", "exposed_sample_names",
    "forget_tool", "identifier", "label_safe", "record_adverse_event", "record_ai_result",
    "record_case", "record_dead_letter", "record_dicom_object", "record_dicom_result",
    "record_duplicate", "record_eligible", "record_horizon_evicted", "record_horizon_late",
    "record_processed", "record_report", "record_rerouted", "record_shadow",
    "record_state_rebuilds", "record_study",
    "record_unvalidated_case", "register_coverage_floor", "register_tool", "render",
    "set_agreement", "set_baseline", "set_below_baseline", "set_consumer_lag", "set_cusum",
    "set_dicom_pending", "set_drift", "set_regulatory_clock", "set_shadow_kappa",
    "set_store_state", "set_timescaledb_jobs", "set_version_state",
]


def register_tool(tool: str, modality: str) -> None:
    """Publish a registered tool and create its counters at zero.

    Alert rules use `increase()`, which cannot see the first increment of a series that
    did not exist before; creating the series at zero on startup makes it visible.
    """
    tool = identifier("tool", tool)
    _bounds.tools.add(tool)
    _bounds.modalities.add(identifier("modality", modality))
    TOOL_INFO.labels(tool, modality).set(1)
    for seriousness in Outcome:
        ADVERSE_EVENTS.labels(tool, seriousness.value)
    SHADOW_SHED.labels(tool)
    SHADOW_SCORED.labels(tool)


#: Gauges holding per-tool state computed by whichever worker owns the tool's partitions.
_TOOL_STATE_GAUGES = (
    AGREEMENT_VALUE,
    AGREEMENT_LOWER,
    AGREEMENT_UPPER,
    AGREEMENT_DENOMINATOR,
    BELOW_BASELINE,
    CUSUM_STATISTIC,
    CUSUM_THRESHOLD,
    CUSUM_SIGNAL,
    DRIFT_STATISTIC,
    DRIFT_DETECTED,
    SHADOW_KAPPA,
    LAST_EVENT_TIMESTAMP,
)


def forget_tool(tool: str) -> None:
    """Stop exporting the tool's state gauges, e.g. when its partitions move elsewhere.

    Otherwise this worker would keep exporting its last verdicts forever, and a stale
    below-baseline 1 would keep the alert firing after the new owner has cleared it.
    """
    tool = _bounds.tool(tool)
    for gauge in _TOOL_STATE_GAUGES:
        names = gauge._labelnames
        for family in gauge.collect():
            stale = {
                tuple(sample.labels[n] for n in names)
                for sample in family.samples
                if sample.labels.get("tool") == tool
            }
            for labelvalues in stale:
                gauge.remove(*labelvalues)


# `n`: the counting calls take a count, so that a worker records a batch's events with one
# call per label set (`stream.effects`).
def record_processed(topic: Topic, n: int = 1) -> None:
    EVENTS_PROCESSED.labels(topic.value).inc(n)


def record_duplicate(topic: Topic, n: int = 1) -> None:
    DUPLICATE_EVENTS.labels(topic.value).inc(n)


def record_rerouted(topic: Topic, n: int = 1) -> None:
    JOIN_REROUTED.labels(topic.value).inc(n)


def record_dead_letter(topic: Topic, reason: DlqReason, n: int = 1) -> None:
    DLQ_EVENTS.labels(topic.value, reason.value).inc(n)


def set_consumer_lag(topic: Topic, messages: int) -> None:
    if messages < 0:
        raise MetricValueError(f"consumer lag must be >= 0, got {messages}")
    CONSUMER_LAG.labels(topic.value).set(messages)


def set_store_state(outage: bool, buffered_rows: int) -> None:
    STORE_OUTAGE.set(1 if outage else 0)
    STORE_BUFFERED_ROWS.set(buffered_rows)


def set_timescaledb_jobs(jobs: Iterable[tuple[str, bool, int, float]]) -> None:
    """(job, last run failed, consecutive failures, overdue seconds) of every scheduled job;
    jobs no longer listed disappear (a policy replaced by `db migrate`)."""
    gauges = (
        TIMESCALEDB_JOB_FAILED,
        TIMESCALEDB_JOB_CONSECUTIVE_FAILURES,
        TIMESCALEDB_JOB_OVERDUE_SECONDS,
    )
    for gauge in gauges:
        gauge.clear()
    for job, failed, failures, overdue in jobs:
        name = identifier("job", job)
        TIMESCALEDB_JOB_FAILED.labels(name).set(1 if failed else 0)
        TIMESCALEDB_JOB_CONSECUTIVE_FAILURES.labels(name).set(failures)
        TIMESCALEDB_JOB_OVERDUE_SECONDS.labels(name).set(max(0.0, overdue))


def record_ai_result(tool: str, version: str, site: str, modality: str, n: int = 1) -> None:
    """Count AI results: volume, its modality's studies, and the tool's last-seen time."""
    tool, version, site = _ids(tool, version, site)
    AI_RESULTS.labels(tool, version, site).inc(n)
    MODALITY_STUDIES.labels(_bounds.modality(modality)).inc(n)
    LAST_EVENT_TIMESTAMP.labels(tool).set_to_current_time()


def record_study(modality: str) -> None:
    """Count a study seen on a source other than AI results (e.g. a report with modality)."""
    MODALITY_STUDIES.labels(_bounds.modality(modality)).inc()


def record_report(status: ReportStatus, n: int = 1) -> None:
    REPORTS.labels(status.value).inc(n)


def record_eligible(tools: Iterable[str], site: str, n: int = 1) -> None:
    """Count `n` studies every tool in `tools` should have seen at `site`."""
    for tool in tools:
        ELIGIBLE_STUDIES.labels(_bounds.tool(tool), _bounds.site(site)).inc(n)


def register_coverage_floor(tool: str, floor: float) -> None:
    """Publish the tool's coverage floor (the alert rule compares coverage with it)."""
    COVERAGE_FLOOR.labels(_bounds.tool(tool)).set(floor)


def record_case(tool: str, version: str, site: str, outcome: CaseOutcome, n: int = 1) -> None:
    CASES.labels(*_ids(tool, version, site), outcome.value).inc(n)


def set_agreement(
    tool: str,
    version: str,
    site: str,
    metric: AgreementMetric,
    window: Window,
    value: float,
    lower: float,
    upper: float,
    denominator: int,
) -> None:
    """Publish an estimate with its 95% interval and denominator (NaN when undefined)."""
    if all(math.isfinite(x) for x in (value, lower, upper)) and not lower <= value <= upper:
        raise MetricValueError(
            f"{metric.value} estimate {value} is outside its interval [{lower}, {upper}]"
        )
    if denominator < 0:
        raise MetricValueError(f"denominator must be >= 0, got {denominator}")
    labels = (*_ids(tool, version, site), metric.value, window.value)
    AGREEMENT_VALUE.labels(*labels).set(value)
    AGREEMENT_LOWER.labels(*labels).set(lower)
    AGREEMENT_UPPER.labels(*labels).set(upper)
    AGREEMENT_DENOMINATOR.labels(*labels).set(denominator)


def set_baseline(tool: str, metric: AgreementMetric, value: float, tolerance: float) -> None:
    tool = _bounds.tool(tool)
    BASELINE_VALUE.labels(tool, metric.value).set(value)
    BASELINE_TOLERANCE.labels(tool, metric.value).set(tolerance)


def set_below_baseline(
    tool: str, version: str, site: str, metric: AgreementMetric, window: Window, below: bool
) -> None:
    BELOW_BASELINE.labels(*_ids(tool, version, site), metric.value, window.value).set(
        1 if below else 0
    )


def set_cusum(tool: str, version: str, site: str, metric: AgreementMetric, statistic: float,
              threshold: float) -> None:
    """Publish a CUSUM state; the signal is derived here so it can never disagree."""
    if threshold <= 0:
        raise MetricValueError(f"CUSUM threshold must be > 0, got {threshold}")
    labels = (*_ids(tool, version, site), metric.value)
    CUSUM_STATISTIC.labels(*labels).set(statistic)
    CUSUM_THRESHOLD.labels(*labels).set(threshold)
    CUSUM_SIGNAL.labels(*labels).set(1 if statistic >= threshold else 0)


def set_drift(
    tool: str, feature: DriftFeature, detector: DriftDetector, statistic: float, detected: bool
) -> None:
    labels = (_bounds.tool(tool), feature.value, detector.value)
    DRIFT_STATISTIC.labels(*labels).set(statistic)
    DRIFT_DETECTED.labels(*labels).set(1 if detected else 0)


def set_version_state(tool: str, version: str, state: VersionState) -> None:
    """Mark the version's current state; its series for other states are removed."""
    tool, version = _bounds.tool(tool), _bounds.version(tool, version)
    for other in VersionState:
        if other is not state:
            # remove() raises KeyError for a label set that was never created.
            with contextlib.suppress(KeyError):
                MODEL_VERSION_INFO.remove(tool, version, other.value)
    MODEL_VERSION_INFO.labels(tool, version, state.value).set(1)


def record_horizon_evicted(n: int) -> None:
    HORIZON_EVICTED.inc(n)


def record_horizon_late(tool: str, status: str, n: int = 1) -> None:
    HORIZON_LATE.labels(_bounds.tool(tool), status).inc(n)


def record_state_rebuilds(how: dict[str, StateRebuild]) -> None:
    for tool, status in how.items():
        TOOL_STATE_REBUILDS.labels(_bounds.tool(tool), StateRebuild(status).value).inc()


def record_unvalidated_case(tool: str, version: str, n: int = 1) -> None:
    UNVALIDATED_VERSION_CASES.labels(_bounds.tool(tool), _bounds.version(tool, version)).inc(n)


def record_adverse_event(tool: str, seriousness: Outcome, n: int = 1) -> None:
    ADVERSE_EVENTS.labels(_bounds.tool(tool), seriousness.value).inc(n)


def set_regulatory_clock(tool: str, open_events: int, due_soon: int, overdue: int) -> None:
    if not 0 <= due_soon + overdue <= open_events:
        raise MetricValueError(
            f"due soon ({due_soon}) plus overdue ({overdue}) must be between 0 and the "
            f"open adverse events ({open_events})"
        )
    tool = _bounds.tool(tool)
    ADVERSE_EVENTS_OPEN.labels(tool).set(open_events)
    REGULATORY_DUE_SOON.labels(tool).set(due_soon)
    REGULATORY_OVERDUE.labels(tool).set(overdue)


def record_shadow(tool: str, scored: bool) -> None:
    """Count one sampled study: re-scored, or shed because the scorer was saturated."""
    (SHADOW_SCORED if scored else SHADOW_SHED).labels(_bounds.tool(tool)).inc()


def set_shadow_kappa(tool: str, window: Window, kappa: float) -> None:
    if math.isfinite(kappa) and not -1.0 <= kappa <= 1.0:
        raise MetricValueError(f"kappa must be in [-1, 1], got {kappa}")
    SHADOW_KAPPA.labels(_bounds.tool(tool), window.value).set(kappa)


def record_dicom_object(outcome: DicomOutcome, modality: str | None) -> None:
    # The receiver names the modality from a fixed map of SOP classes: a bounded set.
    modality_label = identifier("modality", modality) if modality else "unknown"
    DICOM_OBJECTS.labels(DicomOutcome(outcome).value, modality_label).inc()


def record_dicom_result(tool: str, with_images: bool) -> None:
    DICOM_RESULTS.labels(_bounds.tool(tool)).inc()
    if not with_images:
        DICOM_RESULTS_WITHOUT_IMAGES.labels(_bounds.tool(tool)).inc()


def set_dicom_pending(results: int) -> None:
    DICOM_PENDING.set(results)
