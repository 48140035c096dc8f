"""The engine's metric calls made on the Prometheus registry (`observe.metrics`/`publish`).

The engine names each metric and gives its arguments (`engine.records.MetricCall`); this
is where the names meet the registry, so the engine imports no Prometheus client."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from surveillance.engine.records import MetricCall
from surveillance.observe import metrics, publish

_CALLS: dict[str, Callable[..., None]] = {
    "processed": lambda topic: metrics.record_processed(metrics.Topic(topic)),
    "duplicate": lambda topic: metrics.record_duplicate(metrics.Topic(topic)),
    "rerouted": lambda topic: metrics.record_rerouted(metrics.Topic(topic)),
    "dead_letter": lambda topic, reason: metrics.record_dead_letter(
        metrics.Topic(topic), metrics.DlqReason(reason)),
    "ai_result": metrics.record_ai_result,
    "report": metrics.record_report,
    "eligible": metrics.record_eligible,
    "case": metrics.record_case,
    "unvalidated_case": metrics.record_unvalidated_case,
    "horizon_evicted": metrics.record_horizon_evicted,
    "horizon_late": metrics.record_horizon_late,
    "adverse_event": metrics.record_adverse_event,
    "regulatory_clock": metrics.set_regulatory_clock,
    "publish_snapshots": publish.publish,
    "publish_drift": publish.publish_drift,
    "publish_verdicts": publish.publish_verdicts,
    "publish_charts": publish.publish_charts,
}


def record(calls: Iterable[MetricCall]) -> None:
    for name, args in calls:
        call: Callable[..., Any] = _CALLS[name]
        call(*args)
