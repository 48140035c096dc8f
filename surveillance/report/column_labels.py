"""Column names as a committee member reads them, with units, for the HTML and PDF.

The CSV and JSON keep the machine names (`sensitivity_value`, `baseline_ci95_lower`):
scripts read those. Proportions are shown in percent by `quarterly_tables.cell`, except
the `baseline` and `value` columns (three decimals), and the labels say so.
"""

from __future__ import annotations

_METRICS = {
    "sensitivity": "Sensitivity",
    "specificity": "Specificity",
    "ppv": "PPV (positive predictive value)",
    "npv": "NPV (negative predictive value)",
    "prevalence": "Prevalence",
    "kappa": "Cohen's kappa",
}

_FIXED = {
    "software_version": "Model version",
    "site": "Site",
    "volume": "Studies",
    "tp": "True positives",
    "fp": "False positives",
    "tn": "True negatives",
    "fn": "False negatives",
    "indeterminate": "Indeterminate reads",
    "pending": "Awaiting report",
    "unlabelled": "Report without the finding",
    "metric": "Figure",
    "baseline": "Baseline (proportion)",
    "baseline_ci95_lower": "Baseline 95% CI low (%)",
    "baseline_ci95_upper": "Baseline 95% CI high (%)",
    "tolerance": "Tolerance (% points)",
    "reference": "Tested against (%)",
    "observed": "Observed (%)",
    "lower": "Observed 95% CI low (%)",
    "upper": "Observed 95% CI high (%)",
    "successes": "Correct calls",
    "n": "Cases",
    "min_count": "Cases needed",
    "p_value": "One-sided p-value",
    "verdict": "Verdict",
    "week_start": "Week starting",
    "dimension": "Subgroup",
    "value": "Value",
    "below_floor": "Below floor",
    "first_seen": "First seen (UTC)",
    "last_seen": "Last seen (UTC)",
    "cumulative_tp": "True positives to date",
    "cumulative_fp": "False positives to date",
    "cumulative_tn": "True negatives to date",
    "cumulative_fn": "False negatives to date",
    "cumulative_sensitivity": "Sensitivity to date (%)",
    "cumulative_specificity": "Specificity to date (%)",
    "validation_status": "Local validation",
    "not_passed": "Criteria not met",
    "lifecycle_state": "Lifecycle state",
    "flagged_unvalidated": "Used while unvalidated",
    "alert_id": "Alert",
    "kind": "Kind",
    "severity": "Severity",
    "raised_at": "Raised (UTC)",
    "summary": "Summary",
    "resolved_at": "Resolved (UTC)",
    "resolved_by": "Resolved by",
    "event_id": "Report id",
    "aware_date": "Aware on",
    "event_date": "Event date",
    "outcome": "Outcome",
    "discordance_type": "Discordance",
    "obligation": "Regulatory obligation",
    "due": "Due",
    "status": "Status",
    "basis": "Basis",
    "at": "When (UTC)",
    "source": "Source",
    "verdict_id": "Id",
    "feature": "Feature",
    "detector": "Detector",
    "day": "Day",
    "results": "AI results",
    "positive_calls": "Positive calls",
    "days_charted": "Days charted",
    "highest_statistic": "Highest CUSUM value (log-likelihood ratio)",
    "highest_on": "Highest on",
    "threshold": "Decision threshold (log-likelihood ratio)",
    "signals": "CUSUM signals",
}

_PARTS = {"value": "", "lower": " 95% CI low", "upper": " 95% CI high"}

#: Drift features and detectors as people read them (the drift timeline's rows).
_FEATURES = {
    "kvp": "Tube voltage (kV)",
    "slice_thickness": "Slice thickness (mm)",
    "pixel_spacing": "Pixel spacing (mm)",
    "age": "Patient age (years)",
    "sex": "Patient sex",
    "scanner_manufacturer": "Scanner manufacturer",
    "scanner_model": "Scanner model",
    "scanner_software_version": "Scanner software",
    "protocol_name": "Protocol",
    "site": "Site",
    "age_band": "Age band (years)",
    "contrast": "Contrast use",
    "score": "AI score",
    "positive_call": "AI positive-call rate",
    "embedding": "Image embedding (shadow model)",
}
_DETECTORS = {
    "psi": "PSI",
    "new_category": "new value",
    "adwin": "ADWIN",
    "page_hinkley": "Page-Hinkley",
    "kswin": "KSWIN",
    "jensen_shannon": "Jensen-Shannon",
    "chi_square": "chi-square",
}


def human_label(column: str) -> str:
    """The people's name of a table column; unknown columns raise (add them here)."""
    if column in _FIXED:
        return _FIXED[column]
    metric, _, part = column.rpartition("_")
    if metric in _METRICS and part in _PARTS:
        unit = "" if metric == "kappa" else " (%)"
        return f"{_METRICS[metric]}{_PARTS[part]}{unit}"
    raise KeyError(f"no human label for table column {column!r}: add one in column_labels.py")


def human_feature(feature: str) -> str:
    """`kvp:psi` -> `Tube voltage (kV), PSI`; unknown parts are shown as they are (a drift
    verdict of a feature added later must still be drawn)."""
    name, _, detector = feature.partition(":")
    label = _FEATURES.get(name, name)
    return f"{label}, {_DETECTORS.get(detector, detector)}" if detector else label
