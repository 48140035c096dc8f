"""The numbers of one tool's quarterly review, as one JSON-ready dict.

Everything the HTML, PDF, CSV and JSON outputs show comes from `build_review`, so the four
can never disagree. Values are plain `int`/`float`/`str`/`None` in a fixed order (lists
sorted by the queries, timestamps as UTC ISO strings), so the same stored data always
gives the same dict and the same JSON bytes.

Comparison with the clearance baseline: sensitivity and specificity are tested one-sided
(exact binomial, H1: p < baseline - tolerance, `stats.binomial_test`); a verdict needs the
registry's minimum counts, below which the window is `insufficient data`. A version's
validation status is `clinical.validation.validate` (the registry's acceptance criteria)
on all its cases up to the end of the quarter. Regulatory
status of adverse events is taken on the last day of the quarter, so a past quarter's
report never changes with the day it is run.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import UTC, date, datetime, timedelta
from typing import Any

import psycopg

from surveillance.clinical.baselines import ToolBaseline
from surveillance.clinical.regulatory_clock import obligations, status
from surveillance.clinical.validation import validate
from surveillance.contracts import Outcome
from surveillance.stats.agreement import Confusion, Estimate, KappaEstimate
from surveillance.stats.binomial_test import below_reference
from surveillance.store import chart_queries, event_queries, queries
from surveillance.store.queries import Counts, Quarter

#: Significance level of the one-sided test against baseline - tolerance.
ALPHA = 0.05
METRICS = ("sensitivity", "specificity", "ppv", "npv", "prevalence")


def _ts(value: datetime | None) -> str | None:
    return value.astimezone(UTC).isoformat() if value is not None else None


def _finite(value: float | None) -> float | None:
    """Alert and snapshot values may be NaN/inf upstream; JSON has no such numbers."""
    return value if value is not None and math.isfinite(value) else None


def _estimate(e: Estimate) -> dict[str, Any]:
    lower, upper = e.interval if e.interval is not None else (None, None)
    return {
        "value": e.value,
        "lower": lower,
        "upper": upper,
        "numerator": e.numerator,
        "denominator": e.denominator,
    }


def _kappa(k: KappaEstimate) -> dict[str, Any]:
    lower, upper = k.interval if k.interval is not None else (None, None)
    return {"value": k.value, "lower": lower, "upper": upper, "se": k.se, "n": k.n}


def figures(c: Confusion) -> dict[str, Any]:
    """Proportions with 95% Wilson intervals, and kappa with its Wald interval."""
    return {
        "sensitivity": _estimate(c.sensitivity()),
        "specificity": _estimate(c.specificity()),
        "ppv": _estimate(c.ppv()),
        "npv": _estimate(c.npv()),
        "prevalence": _estimate(c.prevalence()),
        "kappa": _kappa(c.kappa()),
    }


def _counts(c: Counts) -> dict[str, int]:
    return {
        "volume": c.volume,
        "tp": c.tp,
        "fp": c.fp,
        "tn": c.tn,
        "fn": c.fn,
        "indeterminate": c.indeterminate,
        "pending": c.pending,
        "unlabelled": c.unlabelled,
    }


def baseline_comparison(c: Confusion, tool: ToolBaseline) -> list[dict[str, Any]]:
    out = []
    for metric, successes, n, min_n in (
        ("sensitivity", c.tp, c.positives, tool.min_counts.positives),
        ("specificity", c.tn, c.negatives, tool.min_counts.negatives),
    ):
        figure = getattr(tool.baseline, metric)
        tolerance = getattr(tool.tolerance, metric)
        test = below_reference(successes, n, figure.value, tolerance)
        if n < min_n:
            verdict = "insufficient data"
        elif test.p_value < ALPHA:
            verdict = "below baseline"
        else:
            verdict = "consistent with baseline"
        ci = figure.ci95
        out.append(
            {
                "metric": metric,
                "baseline": figure.value,
                "baseline_ci95_lower": ci[0] if ci else None,
                "baseline_ci95_upper": ci[1] if ci else None,
                "tolerance": tolerance,
                "reference": test.reference,
                "observed": _estimate(
                    c.sensitivity() if metric == "sensitivity" else c.specificity()
                ),
                "min_count": min_n,
                "p_value": test.p_value,
                "verdict": verdict,
            }
        )
    return out


def _validation(
    conn: psycopg.Connection[Any], tool: ToolBaseline, version: str, quarter: Quarter
) -> dict[str, Any]:
    """Local validation of a version (clinical/validation.py) on its cases to date."""
    result = validate(tool, queries.version_cases(conn, tool.tool_id, version, quarter), version)
    core = [c for c in result.criteria if c.name != "subgroup_floor"]
    if result.passed:
        verdict = "meets acceptance"
    elif any(c.status == "insufficient" for c in core):
        verdict = "insufficient evidence"
    else:
        verdict = "fails acceptance"
    return {
        "status": verdict,
        # Failed criteria, and overall criteria short of data (an insufficient subgroup
        # does not decide the verdict, so it is not listed).
        "not_passed": sorted(
            {c.name for c in result.criteria if c.status == "fail"}
            | {c.name for c in core if c.status == "insufficient"}
        ),
    }


def _adverse_event(e: event_queries.AdverseEventRow, as_of: date) -> dict[str, Any]:
    owed = obligations(Outcome(e.outcome), e.aware_date)
    return {
        "event_id": e.event_id,
        "received_at": _ts(e.received_at),
        "aware_date": e.aware_date.isoformat(),
        "event_date": e.event_date.isoformat(),
        "outcome": e.outcome,
        "event_type": e.event_type,
        "software_version": e.software_version,
        "discordance_type": e.discordance_type,
        "radiologist_read": e.radiologist_read,
        "ai_output": e.ai_output,
        "ai_threshold": e.ai_threshold,
        "regulatory": [
            {
                "obligation": o.key,
                "due": o.due.isoformat(),
                "basis": o.basis,
                "status": status(o, as_of, submitted=o.key in e.filed).value,
            }
            for o in owed
        ],
    }


def build_review(
    conn: psycopg.Connection[Any],
    tool: ToolBaseline,
    quarter: Quarter,
    as_of: datetime,
    lifecycle: Mapping[tuple[str, str], str] | None = None,
) -> dict[str, Any]:
    """Every figure of one tool's quarter, from the store.

    Regulatory obligations are judged as of `as_of` (the export's time, in the facility's
    time zone): the committee reads the review after the quarter, and a report due after
    the quarter's end but before the review is overdue by then, or done if filed.

    `lifecycle` maps (tool, version) to the version's lifecycle state (shadow, validating,
    live, ...) from the audit trail, when the caller has one.
    """
    t = tool.tool_id
    groups = queries.group_counts(conn, t, quarter)
    overall = next((g for g in groups if g.software_version is None), None)
    total = overall.confusion if overall is not None else Confusion()
    last_day = quarter.end - timedelta(days=1)
    floor = tool.acceptance.subgroup_floor
    return {
        "tool": {
            "tool_id": t,
            "display_name": tool.display_name,
            "manufacturer": tool.manufacturer,
            "product": tool.product,
            "clearance": tool.clearance.submission,
            "finding_code": tool.finding_code,
            "operating_threshold": tool.operating_threshold,
        },
        "quarter": quarter.label,
        "period": {"start": quarter.start.isoformat(), "end": last_day.isoformat()},
        "status_as_of": as_of.date().isoformat(),
        "counts": _counts(overall) if overall is not None else None,
        "figures": figures(total),
        "baseline_comparison": baseline_comparison(total, tool),
        "by_version_site": [
            {
                "software_version": g.software_version,
                "site": g.site,
                **_counts(g),
                "figures": figures(g.confusion),
            }
            for g in groups
            if g.software_version is not None
        ],
        "weekly": [
            {"week_start": w.week_start.isoformat(), **_counts(w), "figures": figures(w.confusion)}
            for w in queries.weekly_counts(conn, t, quarter)
        ],
        "subgroups": [
            {
                "dimension": s.dimension,
                "value": s.value,
                **_counts(s),
                "figures": figures(s.confusion),
                "below_floor": [
                    m
                    for m in ("sensitivity", "specificity")
                    if (v := figures(s.confusion)[m]["value"]) is not None and v < floor
                ],
            }
            for s in queries.subgroup_counts(conn, t, quarter)
        ],
        "subgroup_floor": floor,
        "model_versions": [
            {
                "software_version": v.software_version,
                "first_seen": _ts(v.first_seen),
                "last_seen": _ts(v.last_seen),
                **_counts(v),
                "cumulative": {
                    "tp": v.cumulative_tp,
                    "fp": v.cumulative_fp,
                    "tn": v.cumulative_tn,
                    "fn": v.cumulative_fn,
                    "sensitivity": _estimate(v.cumulative.sensitivity()),
                    "specificity": _estimate(v.cumulative.specificity()),
                },
                "validation": _validation(conn, tool, v.software_version, quarter),
                "lifecycle_state": (
                    lifecycle.get((t, v.software_version), "unregistered")
                    if lifecycle is not None
                    else None
                ),
                "flagged_unvalidated": v.flagged_unvalidated,
            }
            for v in queries.model_versions(conn, t, quarter)
        ],
        "alerts": [
            {
                "alert_id": a.alert_id,
                "kind": a.kind,
                "severity": a.severity,
                "raised_at": _ts(a.raised_at),
                "software_version": a.software_version,
                "site": a.site,
                "metric": a.metric,
                "value": _finite(a.value),
                "baseline": _finite(a.baseline),
                "summary": a.summary,
                "resolved_at": _ts(a.resolved_at),
                "resolved_by": a.resolved_by,
            }
            for a in event_queries.alerts(conn, t, quarter)
        ],
        "adverse_events": [
            _adverse_event(e, as_of.date())
            for e in event_queries.adverse_events(conn, t, quarter, as_of)
        ],
        "ai_daily": [
            {
                "day": v.day.astimezone(UTC).date().isoformat(),
                "results": v.results,
                "positive_calls": v.positive_calls,
            }
            for v in event_queries.ai_daily(conn, t, quarter)
        ],
        "drift": [
            {
                "at": _ts(d.at),
                "source": d.source,
                "verdict_id": d.verdict_id,
                "feature": d.feature,
                "detector": d.detector,
                "value": _finite(d.value),
                "severity": d.severity,
                "summary": d.summary,
            }
            for d in event_queries.drift_verdicts(conn, t, quarter)
        ],
        "cusum": [
            {
                "at": _ts(c.at),
                "software_version": c.software_version,
                "metric": c.metric,
                "statistic": _finite(c.statistic),
                "threshold": _finite(c.threshold),
                "cases": c.cases,
            }
            for c in chart_queries.cusum_points(conn, t, quarter)
        ],
    }
