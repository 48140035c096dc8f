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

The helpers below are the hot paths the agents call. They validate label values and keep
related series consistent (a point estimate is never published without its interval).
"""

from __future__ import annotations

import contextlib
import math
import re
from collections.abc import Iterable
from enum import StrEnum

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.metrics import MetricWrapperBase

from surveillance.contracts import CaseOutcome, Outcome, ReportStatus
from surveillance.errors import SurveillanceError


class MetricLabelError(SurveillanceError, ValueError):
    """A label value is not an identifier or not in its fixed set; fix the caller."""


class MetricValueError(SurveillanceError, ValueError):
    """Related metric values are inconsistent (e.g. an estimate outside its interval)."""


class Topic(StrEnum):
    AI_RESULTS = "ai.results"
    REPORTS_FINAL = "reports.final"
    ADVERSE_EVENTS = "adverse.events"
    CASES_JOIN = "cases.join"
    CASES_ADJUDICATED = "cases.adjudicated"
    ALERTS = "surveillance.alerts"
    SNAPSHOTS = "surveillance.snapshots"


class DlqReason(StrEnum):
    """Why an input event went to `<topic>.dlq`."""

    OVERSIZE = "oversize"
    ENCODING = "encoding"
    INVALID_JSON = "invalid_json"
    SCHEMA = "schema"
    INTERNAL = "internal"
    HEADER = "header"  # a `cases.adjudicated` record with forged or unreadable source headers


class DicomOutcome(StrEnum):
    """What the DICOM receiver (C-STORE SCP, STOW-RS) did with one object."""

    STORED = "stored"
    DUPLICATE = "duplicate"
    REFUSED = "refused"


class AgreementMetric(StrEnum):
    SENSITIVITY = "sensitivity"
    SPECIFICITY = "specificity"
    PPV = "ppv"
    NPV = "npv"
    PREVALENCE = "prevalence"
    KAPPA = "kappa"
    ACCURACY = "accuracy"


class Window(StrEnum):
    """Rolling windows over which agreement and shadow concordance are published."""

    DAY = "24h"
    WEEK = "7d"
    MONTH = "30d"
    QUARTER = "90d"
    YEAR = "365d"
    ALL = "all"


class DriftDetector(StrEnum):
    ADWIN = "adwin"
    PAGE_HINKLEY = "page_hinkley"
    KSWIN = "kswin"
    PSI = "psi"
    JENSEN_SHANNON = "jensen_shannon"
    CHI_SQUARE = "chi_square"


class DriftFeature(StrEnum):
    """Monitored features; `score`, `positive_rate` and `embedding` describe the output."""

    SCORE = "score"
    POSITIVE_RATE = "positive_rate"
    EMBEDDING = "embedding"
    KVP = "kvp"
    SLICE_THICKNESS = "slice_thickness"
    PIXEL_SPACING = "pixel_spacing"
    AGE = "age"
    SEX = "sex"
    SCANNER = "scanner"
    PROTOCOL = "protocol"
    SITE = "site"


#: Features whose drift is output drift (the alert rules split on this set too).
OUTPUT_FEATURES = frozenset(
    {DriftFeature.SCORE, DriftFeature.POSITIVE_RATE, DriftFeature.EMBEDDING}
)


class VersionState(StrEnum):
    SHADOW = "shadow"
    VALIDATING = "validating"
    LIVE = "live"
    SUSPENDED = "suspended"
    RETIRED = "retired"


#: Label names any metric may use. Everything else (patient, accession, text) is forbidden.
ALLOWED_LABELS = frozenset(
    {
        "tool",
        "version",
        "site",
        "modality",
        "metric",
        "window",
        "feature",
        "detector",
        "topic",
        "reason",
        "seriousness",
        "status",
        "state",
        "outcome",
        # TimescaleDB background jobs: the policies `db migrate` sets up (about eight).
        "job",
    }
)

# Tool ids, versions, sites and modalities: short identifiers, never sentences.
_IDENTIFIER = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:+-]{0,63}")
_UNSAFE = re.compile(r"[^A-Za-z0-9._:+-]+")
#: The label of every tool, version, site or modality outside its bounded set.
OTHER = "other"
#: The site label of figures over all sites (`clinical.monitor.ALL_SITES`): always kept.
ALL_SITES = "all"

REGISTRY = CollectorRegistry()
ProcessCollector(namespace="surveillance", registry=REGISTRY)

_ID = ("tool", "version", "site")

# Pipeline -------------------------------------------------------------------------------
EVENTS_PROCESSED = Counter(
    "surveillance_events_processed_total",
    "Events accepted and processed, by topic.",
    ["topic"],
    registry=REGISTRY,
)
DLQ_EVENTS = Counter(
    "surveillance_dlq_events_total",
    "Input events sent to the dead-letter topic, by source topic and reason.",
    ["topic", "reason"],
    registry=REGISTRY,
)
DUPLICATE_EVENTS = Counter(
    "surveillance_duplicate_events_total",
    "Redelivered events recognised by id and not counted again.",
    ["topic"],
    registry=REGISTRY,
)
JOIN_REROUTED = Counter(
    "surveillance_join_rerouted_total",
    "Input events not on their accession's partition (the producer did not key by "
    "accession), joined after one more hop through cases.join.",
    ["topic"],
    registry=REGISTRY,
)
EVENT_PROCESSING_SECONDS = Histogram(
    "surveillance_event_processing_seconds",
    "Wall time to process one event, by topic.",
    ["topic"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
    registry=REGISTRY,
)
CONSUMER_LAG = Gauge(
    "surveillance_consumer_lag_messages",
    "Messages behind the log end, summed over this worker's assigned partitions.",
    ["topic"],
    registry=REGISTRY,
)
STORE_OUTAGE = Gauge(
    "surveillance_store_outage",
    "1 while the database is unreachable and rows are buffered in memory, else 0.",
    registry=REGISTRY,
)
STORE_BUFFERED_ROWS = Gauge(
    "surveillance_store_buffered_rows",
    "Rows waiting in memory for the database writer.",
    registry=REGISTRY,
)
TIMESCALEDB_JOB_FAILED = Gauge(
    "surveillance_timescaledb_job_last_run_failed",
    "1 if the TimescaleDB background job's last run failed (policies: refresh, "
    "compression, retention), else 0; exported by the store writer.",
    ["job"],
    registry=REGISTRY,
)
TIMESCALEDB_JOB_CONSECUTIVE_FAILURES = Gauge(
    "surveillance_timescaledb_job_consecutive_failures",
    "Runs of the TimescaleDB background job that failed in a row.",
    ["job"],
    registry=REGISTRY,
)
TIMESCALEDB_JOB_OVERDUE_SECONDS = Gauge(
    "surveillance_timescaledb_job_overdue_seconds",
    "Seconds past the TimescaleDB job's next scheduled start (0 when on time): the "
    "scheduler is not running it.",
    ["job"],
    registry=REGISTRY,
)
LAST_EVENT_TIMESTAMP = Gauge(
    "surveillance_last_event_timestamp_seconds",
    "Unix time (wall clock) this worker last processed an AI result of the tool.",
    ["tool"],
    registry=REGISTRY,
)
MODALITY_STUDIES = Counter(
    "surveillance_modality_studies_total",
    "Studies seen per modality on any input, to tell a silent tool from a quiet scanner.",
    ["modality"],
    registry=REGISTRY,
)
TOOL_INFO = Gauge(
    "surveillance_tool_info",
    "1 for every registered tool, with the modality it reads (joins tool to modality).",
    ["tool", "modality"],
    registry=REGISTRY,
)
AI_RESULTS = Counter(
    "surveillance_ai_results_total",
    "AI results received (volume), by tool, version and site.",
    list(_ID),
    registry=REGISTRY,
)
REPORTS = Counter(
    "surveillance_reports_total",
    "Final reports received, by report status (final, corrected, addendum, cancelled).",
    ["status"],
    registry=REGISTRY,
)
ELIGIBLE_STUDIES = Counter(
    "surveillance_eligible_studies_total",
    "Studies a tool should have seen (original final reports whose ordered exam matches "
    "the tool's coverage rule), by tool and site; coverage is AI results over these.",
    ["tool", "site"],
    registry=REGISTRY,
)
COVERAGE_FLOOR = Gauge(
    "surveillance_coverage_floor_ratio",
    "Registry floor of the share of eligible studies the tool must produce a result for.",
    ["tool"],
    registry=REGISTRY,
)
CASES = Counter(
    "surveillance_cases_total",
    "Adjudicated case revisions by outcome; a corrected case counts again under its new "
    "outcome, so use surveillance_ai_results_total for volume.",
    [*_ID, "outcome"],
    registry=REGISTRY,
)

# Performance verdicts -------------------------------------------------------------------
_AGREEMENT = [*_ID, "metric", "window"]
AGREEMENT_VALUE = Gauge(
    "surveillance_agreement_value",
    "Point estimate of an agreement metric over a rolling window (ratio).",
    _AGREEMENT,
    registry=REGISTRY,
)
AGREEMENT_LOWER = Gauge(
    "surveillance_agreement_lower",
    "Lower bound of the 95% interval of the agreement metric.",
    _AGREEMENT,
    registry=REGISTRY,
)
AGREEMENT_UPPER = Gauge(
    "surveillance_agreement_upper",
    "Upper bound of the 95% interval of the agreement metric.",
    _AGREEMENT,
    registry=REGISTRY,
)
AGREEMENT_DENOMINATOR = Gauge(
    "surveillance_agreement_denominator",
    "Cases in the metric's denominator (e.g. radiologist-positive cases for sensitivity).",
    _AGREEMENT,
    registry=REGISTRY,
)
BASELINE_VALUE = Gauge(
    "surveillance_baseline_value",
    "Clearance baseline of the metric, from the baseline registry (ratio).",
    ["tool", "metric"],
    registry=REGISTRY,
)
BASELINE_TOLERANCE = Gauge(
    "surveillance_baseline_tolerance",
    "How far below the baseline the metric may fall before a below-baseline verdict.",
    ["tool", "metric"],
    registry=REGISTRY,
)
BELOW_BASELINE = Gauge(
    "surveillance_below_baseline",
    "1 when the one-sided test finds the metric below baseline minus tolerance, else 0.",
    _AGREEMENT,
    registry=REGISTRY,
)
_CUSUM = [*_ID, "metric"]
CUSUM_STATISTIC = Gauge(
    "surveillance_cusum_statistic",
    "Current value of the one-sided CUSUM against the clearance baseline.",
    _CUSUM,
    registry=REGISTRY,
)
CUSUM_THRESHOLD = Gauge(
    "surveillance_cusum_threshold",
    "CUSUM decision threshold h, chosen from the target in-control average run length.",
    _CUSUM,
    registry=REGISTRY,
)
CUSUM_SIGNAL = Gauge(
    "surveillance_cusum_signal",
    "1 when the CUSUM statistic has reached its threshold, else 0.",
    _CUSUM,
    registry=REGISTRY,
)

# Drift ----------------------------------------------------------------------------------
DRIFT_STATISTIC = Gauge(
    "surveillance_drift_statistic",
    "Latest drift statistic of a detector on a feature (PSI, JS distance, chi-square...).",
    ["tool", "feature", "detector"],
    registry=REGISTRY,
)
DRIFT_DETECTED = Gauge(
    "surveillance_drift_detected",
    "1 while the detector reports drift on the feature, else 0.",
    ["tool", "feature", "detector"],
    registry=REGISTRY,
)

# Versions -------------------------------------------------------------------------------
MODEL_VERSION_INFO = Gauge(
    "surveillance_model_version_info",
    "1 for each known model version of a tool, labelled with its validation state.",
    ["tool", "version", "state"],
    registry=REGISTRY,
)
UNVALIDATED_VERSION_CASES = Counter(
    "surveillance_unvalidated_version_cases_total",
    "AI results produced by a version that is not validated for clinical (live) use.",
    ["tool", "version"],
    registry=REGISTRY,
)

# Adverse events -------------------------------------------------------------------------
ADVERSE_EVENTS = Counter(
    "surveillance_adverse_events_total",
    "Adverse-event reports received, by tool and 3500A outcome (seriousness).",
    ["tool", "seriousness"],
    registry=REGISTRY,
)
ADVERSE_EVENTS_OPEN = Gauge(
    "surveillance_adverse_events_open",
    "Adverse events received and not yet closed by the governance committee.",
    ["tool"],
    registry=REGISTRY,
)
REGULATORY_DUE_SOON = Gauge(
    "surveillance_regulatory_reports_due_soon",
    "Open adverse events whose regulatory report deadline is near and not yet filed.",
    ["tool"],
    registry=REGISTRY,
)
REGULATORY_OVERDUE = Gauge(
    "surveillance_regulatory_reports_overdue",
    "Open adverse events whose regulatory report deadline has passed unfiled.",
    ["tool"],
    registry=REGISTRY,
)

# Shadow re-scoring ----------------------------------------------------------------------
SHADOW_SHED = Counter(
    "surveillance_shadow_shed_total",
    "Sampled studies not re-scored because the shadow scorer was saturated.",
    ["tool"],
    registry=REGISTRY,
)
SHADOW_SCORED = Counter(
    "surveillance_shadow_scored_total",
    "Studies re-scored by the shadow model.",
    ["tool"],
    registry=REGISTRY,
)
SHADOW_KAPPA = Gauge(
    "surveillance_shadow_kappa",
    "Cohen's kappa between the deployed tool and the shadow model over a window.",
    ["tool", "window"],
    registry=REGISTRY,
)

# DICOM interop (C-STORE SCP, STOW-RS) --------------------------------------------------
DICOM_OBJECTS = Counter(
    "surveillance_dicom_objects_total",
    "DICOM objects received by the C-STORE SCP or STOW-RS, by outcome (stored, duplicate, "
    "refused) and modality (SR for structured reports).",
    ["status", "modality"],
    registry=REGISTRY,
)
DICOM_RESULTS = Counter(
    "surveillance_dicom_results_total",
    "AI results from DICOM SRs published on ai.results.",
    ["tool"],
    registry=REGISTRY,
)
DICOM_RESULTS_WITHOUT_IMAGES = Counter(
    "surveillance_dicom_results_without_images_total",
    "AI results published after the wait with scanner and acquisition unknown (no image "
    "of their study arrived).",
    ["tool"],
    registry=REGISTRY,
)
DICOM_PENDING = Gauge(
    "surveillance_dicom_pending_results",
    "AI results acknowledged to the sender and waiting in the spool to be published.",
    registry=REGISTRY,
)

#: Every metric this module declares, for tests and documentation.
ALL_METRICS: tuple[MetricWrapperBase, ...] = (
    EVENTS_PROCESSED,
    DLQ_EVENTS,
    DUPLICATE_EVENTS,
    JOIN_REROUTED,
    EVENT_PROCESSING_SECONDS,
    CONSUMER_LAG,
    STORE_OUTAGE,
    STORE_BUFFERED_ROWS,
    TIMESCALEDB_JOB_FAILED,
    TIMESCALEDB_JOB_CONSECUTIVE_FAILURES,
    TIMESCALEDB_JOB_OVERDUE_SECONDS,
    LAST_EVENT_TIMESTAMP,
    MODALITY_STUDIES,
    TOOL_INFO,
    AI_RESULTS,
    REPORTS,
    ELIGIBLE_STUDIES,
    COVERAGE_FLOOR,
    CASES,
    AGREEMENT_VALUE,
    AGREEMENT_LOWER,
    AGREEMENT_UPPER,
    AGREEMENT_DENOMINATOR,
    BASELINE_VALUE,
    BASELINE_TOLERANCE,
    BELOW_BASELINE,
    CUSUM_STATISTIC,
    CUSUM_THRESHOLD,
    CUSUM_SIGNAL,
    DRIFT_STATISTIC,
    DRIFT_DETECTED,
    MODEL_VERSION_INFO,
    UNVALIDATED_VERSION_CASES,
    ADVERSE_EVENTS,
    ADVERSE_EVENTS_OPEN,
    REGULATORY_DUE_SOON,
    REGULATORY_OVERDUE,
    SHADOW_SHED,
    SHADOW_SCORED,
    SHADOW_KAPPA,
    DICOM_OBJECTS,
    DICOM_RESULTS,
    DICOM_RESULTS_WITHOUT_IMAGES,
    DICOM_PENDING,
)


def identifier(kind: str, value: str) -> str:
    """Return `value` if it can be an identifier label (`kind` names it in the error)."""
    if not _IDENTIFIER.fullmatch(value):
        raise MetricLabelError(
            f"{kind} label {value[:40]!r} is not an identifier (letters, digits, '._:+-', "
            "at most 64 characters); pass the tool/version/site id, never free text"
        )
    return value


def label_safe(value: str) -> str:
    """`value` as an identifier label: runs of other characters become one `_`, leading
    punctuation is dropped, 64 characters at most; `other` when nothing is left."""
    safe = _UNSAFE.sub("_", value.strip()).lstrip("._:+-")[:64]
    return safe if _IDENTIFIER.fullmatch(safe) else OTHER


class _Bounds:
    """Which identifier values get their own series (see the module docstring)."""

    def __init__(self) -> None:
        self.tools: set[str] = set()
        self.modalities: set[str] = set()
        self.sites: set[str] = set()
        self.sites_fixed = False
        self.max_sites = 32
        self.max_versions = 16
        self.versions: dict[str, set[str]] = {}

    def tool(self, tool: str) -> str:
        return tool if tool in self.tools else OTHER

    def version(self, tool: str, version: str) -> str:
        if tool not in self.tools:
            return OTHER
        return _admit(self.versions.setdefault(tool, set()), label_safe(version),
                      self.max_versions)

    def site(self, site: str) -> str:
        safe = label_safe(site)
        if safe == ALL_SITES:
            return safe
        if self.sites_fixed:
            return safe if safe in self.sites else OTHER
        return _admit(self.sites, safe, self.max_sites)

    def modality(self, modality: str) -> str:
        return modality if modality in self.modalities else OTHER


def _admit(known: set[str], value: str, limit: int) -> str:
    if value in known:
        return value
    if value == OTHER or len(known) >= limit:
        return OTHER
    known.add(value)
    return value


_bounds = _Bounds()


def bound_labels(sites: list[str], max_sites: int, max_versions_per_tool: int) -> None:
    """Set the site and version bounds (settings `metrics`), before anything is counted."""
    _bounds.sites = {identifier("site", s) for s in sites}
    _bounds.sites_fixed = bool(sites)
    _bounds.max_sites = max_sites
    _bounds.max_versions = max_versions_per_tool


def admit_tools(tools: Iterable[str]) -> None:
    """Give these tools their own series without publishing them (a process that counts
    for some tools only, e.g. the shadow re-scorer)."""
    _bounds.tools.update(identifier("tool", t) for t in tools)


def _ids(tool: str, version: str, site: str) -> tuple[str, str, str]:
    return _bounds.tool(tool), _bounds.version(tool, version), _bounds.site(site)


def render() -> tuple[bytes, str]:
    """The `/metrics` response body and its content type."""
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST


def exposed_sample_names() -> frozenset[str]:
    """Every series name `/metrics` can expose (what alert rules and dashboards may query).

    A counter `x` is exposed as `x_total` and `x_created`, a histogram as `x_bucket`,
    `x_sum`, `x_count` and `x_created`.
    """
    suffixes = {
        "counter": ("_total", "_created"),
        "histogram": ("_bucket", "_sum", "_count", "_created"),
        "summary": ("", "_sum", "_count", "_created"),
        "info": ("_info",),
    }
    return frozenset(
        family.name + suffix
        for family in REGISTRY.collect()
        for suffix in suffixes.get(family.type, ("",))
    )


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


def record_processed(topic: Topic) -> None:
    EVENTS_PROCESSED.labels(topic.value).inc()


def record_duplicate(topic: Topic) -> None:
    DUPLICATE_EVENTS.labels(topic.value).inc()


def record_rerouted(topic: Topic) -> None:
    JOIN_REROUTED.labels(topic.value).inc()


def record_dead_letter(topic: Topic, reason: DlqReason) -> None:
    DLQ_EVENTS.labels(topic.value, reason.value).inc()


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


def record_ai_result(tool: str, version: str, site: str, modality: str) -> None:
    """Count one AI result: volume, its modality's studies, and the tool's last-seen time."""
    tool, version, site = _ids(tool, version, site)
    AI_RESULTS.labels(tool, version, site).inc()
    MODALITY_STUDIES.labels(_bounds.modality(modality)).inc()
    LAST_EVENT_TIMESTAMP.labels(tool).set_to_current_time()


def record_study(modality: str) -> None:
    """Count a study seen on a source other than AI results (e.g. a report with modality)."""
    MODALITY_STUDIES.labels(_bounds.modality(modality)).inc()


def record_report(status: ReportStatus) -> None:
    REPORTS.labels(status.value).inc()


def record_eligible(tools: Iterable[str], site: str) -> None:
    """Count one study every tool in `tools` should have seen at `site`."""
    for tool in tools:
        ELIGIBLE_STUDIES.labels(_bounds.tool(tool), _bounds.site(site)).inc()


def register_coverage_floor(tool: str, floor: float) -> None:
    """Publish the tool's coverage floor (the alert rule compares coverage with it)."""
    COVERAGE_FLOOR.labels(_bounds.tool(tool)).set(floor)


def record_case(tool: str, version: str, site: str, outcome: CaseOutcome) -> None:
    CASES.labels(*_ids(tool, version, site), outcome.value).inc()


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


def set_cusum(
    tool: str,
    version: str,
    site: str,
    metric: AgreementMetric,
    statistic: float,
    threshold: float,
) -> None:
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


def record_unvalidated_case(tool: str, version: str) -> None:
    UNVALIDATED_VERSION_CASES.labels(_bounds.tool(tool), _bounds.version(tool, version)).inc()


def record_adverse_event(tool: str, seriousness: Outcome) -> None:
    ADVERSE_EVENTS.labels(_bounds.tool(tool), seriousness.value).inc()


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
