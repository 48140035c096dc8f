"""Every Prometheus metric family of the service, declared once, in its own registry.

`REGISTRY` is a dedicated `CollectorRegistry` (not the prometheus_client default), so that
`/metrics` shows exactly what is declared here plus the process collector. The helpers
that update these families are in `observe/metrics.py`.
"""

from __future__ import annotations

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
HORIZON_EVICTED = Counter(
    "surveillance_horizon_evicted_cases",
    "Case records that left the worker's live state at the case horizon (counts kept).",
    registry=REGISTRY,
)
HORIZON_LATE = Counter(
    "surveillance_horizon_late_cases",
    "Revisions of cases older than the case horizon and not in the live state, by what "
    "became of them: resolved (against the store), new, replayed, dead_lettered (no store).",
    ["tool", "status"],
    registry=REGISTRY,
)
TOOL_STATE_REBUILDS = Counter(
    "surveillance_tool_state_rebuilds", "Tools' state rebuilt on an assignment, by how: "
    "snapshot, rewound (after a crash, exact), replayed (approximate: see the README).",
    ["tool", "status"], registry=REGISTRY)

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
    HORIZON_EVICTED,
    HORIZON_LATE,
    TOOL_STATE_REBUILDS,
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
