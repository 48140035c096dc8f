"""The engine's metric calls made on the Prometheus registry (`observe.metrics`/`publish`).

The engine names each metric and gives its arguments (`engine.records.MetricCall`); this
is where the names meet the registry, so the engine imports no Prometheus client.

A batch's counting calls are made once per label set with the count (a batch of 1,000
events makes a few dozen calls, not thousands: each costs a label lookup and a lock).
The other calls (gauges, published figures) are made in order; the counts gathered before
one of them are recorded first, so every label value is first seen in the same order as
call by call (the bounded labels admit sites and versions in that order).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from surveillance.engine.records import MetricCall
from surveillance.observe import metrics, publish

#: Counting calls: made with the number of times each label set occurred (`n`).
_COUNTED: dict[str, Callable[..., None]] = {
    "processed": lambda topic, n: metrics.record_processed(metrics.Topic(topic), n),
    "duplicate": lambda topic, n: metrics.record_duplicate(metrics.Topic(topic), n),
    "rerouted": lambda topic, n: metrics.record_rerouted(metrics.Topic(topic), n),
    "dead_letter": lambda topic, reason, n: metrics.record_dead_letter(
        metrics.Topic(topic), metrics.DlqReason(reason), n),
    "ai_result": metrics.record_ai_result,
    "report": metrics.record_report,
    "eligible": metrics.record_eligible,
    "case": metrics.record_case,
    "unvalidated_case": metrics.record_unvalidated_case,
    "horizon_late": metrics.record_horizon_late,
    "adverse_event": metrics.record_adverse_event,
}

_CALLS: dict[str, Callable[..., None]] = {
    "horizon_evicted": metrics.record_horizon_evicted,  # already a batch's number
    "regulatory_clock": metrics.set_regulatory_clock,
    "publish_snapshots": publish.publish,
    "publish_drift": publish.publish_drift,
    "publish_verdicts": publish.publish_verdicts,
    "publish_charts": publish.publish_charts,
}


def record(calls: Iterable[MetricCall]) -> None:
    counts: dict[tuple[str, tuple[Any, ...]], int] = {}
    for name, args in calls:
        if name in _COUNTED:
            if name == "eligible":  # (tools, site): the list of tools as a key
                args = (tuple(args[0]), args[1])
            key = (name, args)
            counts[key] = counts.get(key, 0) + 1
            continue
        _flush(counts)
        call: Callable[..., Any] = _CALLS[name]
        call(*args)
    _flush(counts)


def _flush(counts: dict[tuple[str, tuple[Any, ...]], int]) -> None:
    for (name, args), n in counts.items():
        _COUNTED[name](*args, n)
    counts.clear()
