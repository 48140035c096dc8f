"""Adapter: what the performance monitor computes -> Prometheus gauges.

The monitor (`clinical.monitor`) is pure; the worker passes its outputs here after each
`evaluate`. Labels are only tool, version, site, metric and window (`observe.metrics`
validates them). Undefined estimates (no cases in the denominator) are published as NaN
with their denominator, never as 0.

Windows without a fixed Prometheus label (the last-N-cases window) are stored through
`surveillance.snapshots` only and skipped here.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

from surveillance.clinical.baselines import ToolBaseline
from surveillance.clinical.monitor_state import ChartState, VerdictKey
from surveillance.clinical.verdicts import METRICS, MetricVerdict, VerdictKind
from surveillance.contracts import MetricSnapshot
from surveillance.observe import metrics
from surveillance.observe.metrics import AgreementMetric, Window

_WINDOWS = {w.value: w for w in Window}
_METRICS = {m.value: m for m in AgreementMetric}


def _nan(value: float | None) -> float:
    return math.nan if value is None else value


def publish(snapshots: Iterable[MetricSnapshot]) -> None:
    """Set the agreement gauges from the agreement snapshots that have a window label."""
    for snap in snapshots:
        window = _WINDOWS.get(snap.window or "")
        metric = _METRICS.get(snap.metric)
        if (
            snap.kind != "agreement" or window is None or metric is None
            or snap.software_version is None or snap.site is None or snap.subgroup
        ):
            continue
        metrics.set_agreement(
            snap.tool_id, snap.software_version, snap.site, metric, window,
            _nan(snap.value), _nan(snap.lower), _nan(snap.upper), snap.n or 0,
        )


def publish_verdicts(verdicts: Mapping[VerdictKey, MetricVerdict]) -> None:
    """`surveillance_below_baseline` for every judged (tool, version, site, window, metric)."""
    for (tool, version, site, days, metric), verdict in verdicts.items():
        window = _WINDOWS.get(f"{days}d")
        if window is None:
            continue
        metrics.set_below_baseline(
            tool, version, site, AgreementMetric(metric), window,
            verdict.kind is VerdictKind.BELOW_BASELINE,
        )


def publish_charts(states: Iterable[ChartState]) -> None:
    """CUSUM statistic, threshold and signal per (tool, version) chart; site label "all"."""
    for state in states:
        metrics.set_cusum(
            state.tool, state.version, "all", AgreementMetric(state.metric), state.statistic,
            state.threshold,
        )


#: Drift-bank feature names -> the fixed `feature` label set of the drift gauges.
_DRIFT_FEATURES: dict[str, metrics.DriftFeature] = {
    "score": metrics.DriftFeature.SCORE,
    "positive_call": metrics.DriftFeature.POSITIVE_RATE,
    "kvp": metrics.DriftFeature.KVP,
    "slice_thickness": metrics.DriftFeature.SLICE_THICKNESS,
    "pixel_spacing": metrics.DriftFeature.PIXEL_SPACING,
    "age": metrics.DriftFeature.AGE,
    "sex": metrics.DriftFeature.SEX,
    "scanner_manufacturer": metrics.DriftFeature.SCANNER,
    "scanner_model": metrics.DriftFeature.SCANNER,
    "scanner_software_version": metrics.DriftFeature.SCANNER,
    "protocol_name": metrics.DriftFeature.PROTOCOL,
    "site": metrics.DriftFeature.SITE,
}


def publish_drift(tool: str, statistics: Iterable[tuple[str, str, float, bool]]) -> None:
    """Each feature's last window statistic and episode state as drift gauges.

    Features that share a label (the three scanner fields) report the largest statistic,
    and "detected" when any of them is in an episode. Features outside the label set
    (contrast) are not exported.
    """
    merged: dict[tuple[metrics.DriftFeature, str], tuple[float, bool]] = {}
    for feature, detector, value, detected in statistics:
        label = _DRIFT_FEATURES.get(feature)
        if label is None or not math.isfinite(value):
            continue
        key = (label, detector)
        old = merged.get(key)
        merged[key] = (value, detected) if old is None else (
            max(old[0], value), old[1] or detected)
    for (label, detector), (value, detected) in merged.items():
        metrics.set_drift(tool, label, metrics.DriftDetector(detector), value, detected)


def publish_baselines(registry: Mapping[str, ToolBaseline]) -> None:
    """Clearance baseline and tolerance of every registered tool (once, at startup)."""
    for tool, entry in registry.items():
        for metric in METRICS:
            metrics.set_baseline(
                tool, AgreementMetric(metric), getattr(entry.baseline, metric).value,
                getattr(entry.tolerance, metric),
            )


def register_tools(registry: Mapping[str, ToolBaseline], sites: list[str], max_sites: int,
                   max_versions_per_tool: int) -> None:
    """A worker's metrics set up at startup: each registered tool's labels and coverage
    floor, the bounds on the site and version labels, and the tools' baselines."""
    for entry in registry.values():
        metrics.register_tool(entry.tool_id, entry.modality)
        if entry.coverage is not None:
            metrics.register_coverage_floor(entry.tool_id, entry.coverage.floor)
    metrics.bound_labels(sites, max_sites, max_versions_per_tool)
    publish_baselines(registry)
