"""The quarterly review as flat tables: one CSV each, and the tables of the HTML and PDF.

Each table is built from the review dict only (`quarterly_review.build_review`), so the
CSV, HTML, PDF and JSON outputs show the same numbers. Values stay raw (full precision);
formatting for people happens in `cell`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

Value = str | int | float | bool | None

METRIC_COLUMNS = ("sensitivity", "specificity", "ppv", "npv", "prevalence", "kappa")
COUNT_COLUMNS = ("volume", "tp", "fp", "tn", "fn", "indeterminate", "pending", "unlabelled")


@dataclass(frozen=True)
class Table:
    name: str
    title: str
    columns: tuple[str, ...]
    rows: list[tuple[Value, ...]]


def _metric_columns(metrics: tuple[str, ...] = METRIC_COLUMNS) -> tuple[str, ...]:
    return tuple(f"{m}_{part}" for m in metrics for part in ("value", "lower", "upper"))


def _metric_values(
    figures: dict[str, Any], metrics: tuple[str, ...] = METRIC_COLUMNS
) -> tuple[Value, ...]:
    return tuple(figures[m][part] for m in metrics for part in ("value", "lower", "upper"))


def _counts(row: dict[str, Any]) -> tuple[Value, ...]:
    return tuple(row[c] for c in COUNT_COLUMNS)


def tables(review: dict[str, Any]) -> list[Table]:
    overall_counts = review["counts"] or dict.fromkeys(COUNT_COLUMNS, 0)
    performance = [("all", "all", *_counts(overall_counts), *_metric_values(review["figures"]))]
    performance += [
        (r["software_version"], r["site"] or "all", *_counts(r), *_metric_values(r["figures"]))
        for r in review["by_version_site"]
    ]
    two = ("sensitivity", "specificity")
    return [
        Table(
            "performance",
            "Performance by version and site (95% Wilson intervals; kappa: Wald)",
            ("software_version", "site", *COUNT_COLUMNS, *_metric_columns()),
            performance,
        ),
        Table(
            "baseline_comparison",
            "Against the clearance baseline (one-sided exact binomial test)",
            ("metric", "baseline", "baseline_ci95_lower", "baseline_ci95_upper", "tolerance",
             "reference", "observed", "lower", "upper", "successes", "n", "min_count",
             "p_value", "verdict"),
            [
                (b["metric"], b["baseline"], b["baseline_ci95_lower"], b["baseline_ci95_upper"],
                 b["tolerance"], b["reference"], b["observed"]["value"], b["observed"]["lower"],
                 b["observed"]["upper"], b["observed"]["numerator"],
                 b["observed"]["denominator"], b["min_count"], b["p_value"], b["verdict"])
                for b in review["baseline_comparison"]
            ],
        ),
        Table(
            "weekly",
            "Weekly trend (weeks start on Monday, by study date)",
            ("week_start", *COUNT_COLUMNS, *_metric_columns(two)),
            [(w["week_start"], *_counts(w), *_metric_values(w["figures"], two))
             for w in review["weekly"]],
        ),
        Table(
            "subgroups",
            f"Subgroups (floor {review['subgroup_floor']} on sensitivity and specificity)",
            ("dimension", "value", *COUNT_COLUMNS, *_metric_columns(), "below_floor"),
            [(s["dimension"], s["value"], *_counts(s), *_metric_values(s["figures"]),
              ";".join(s["below_floor"])) for s in review["subgroups"]],
        ),
        Table(
            "model_versions",
            "Model versions: local validation on all cases to the end of the quarter",
            ("software_version", "first_seen", "last_seen", *COUNT_COLUMNS, "cumulative_tp",
             "cumulative_fp", "cumulative_tn", "cumulative_fn", "cumulative_sensitivity",
             "cumulative_specificity", "validation_status", "not_passed", "lifecycle_state",
             "flagged_unvalidated"),
            [
                (v["software_version"], v["first_seen"], v["last_seen"], *_counts(v),
                 v["cumulative"]["tp"], v["cumulative"]["fp"], v["cumulative"]["tn"],
                 v["cumulative"]["fn"], v["cumulative"]["sensitivity"]["value"],
                 v["cumulative"]["specificity"]["value"], v["validation"]["status"],
                 ";".join(v["validation"]["not_passed"]), v["lifecycle_state"],
                 v["flagged_unvalidated"])
                for v in review["model_versions"]
            ],
        ),
        Table(
            "alerts",
            "Alerts raised or resolved in the quarter",
            ("alert_id", "kind", "severity", "raised_at", "software_version", "site", "metric",
             "value", "baseline", "summary", "resolved_at", "resolved_by"),
            [tuple(a[c] for c in ("alert_id", "kind", "severity", "raised_at",
                                  "software_version", "site", "metric", "value", "baseline",
                                  "summary", "resolved_at", "resolved_by"))
             for a in review["alerts"]],
        ),
        Table(
            "adverse_events",
            "Adverse events (awareness in the quarter) and regulatory obligations",
            ("event_id", "aware_date", "event_date", "outcome", "discordance_type",
             "software_version", "obligation", "due", "status", "basis"),
            [
                (e["event_id"], e["aware_date"], e["event_date"], e["outcome"],
                 e["discordance_type"], e["software_version"], o["obligation"], o["due"],
                 o["status"], o["basis"])
                for e in review["adverse_events"]
                for o in (e["regulatory"] or [{"obligation": "none (not reportable)",
                                                "due": None, "status": None, "basis": None}])
            ],
        ),
        Table(
            "ai_daily",
            "AI results and positive calls per day of inference (UTC)",
            ("day", "results", "positive_calls"),
            [(d["day"], d["results"], d["positive_calls"]) for d in review["ai_daily"]],
        ),
        Table(
            "cusum",
            "CUSUM charts per model version (charted against the clearance baseline)",
            ("software_version", "metric", "days_charted", "highest_statistic",
             "highest_on", "threshold", "signals"),
            cusum_summary(review),
        ),
        Table(
            "drift",
            "Drift verdicts (detector snapshots and drift alerts)",
            ("at", "source", "verdict_id", "feature", "detector", "value", "severity",
             "summary"),
            [tuple(d[c] for c in ("at", "source", "verdict_id", "feature", "detector", "value",
                                  "severity", "summary")) for d in review["drift"]],
        ),
    ]  # fmt: skip


def cusum_summary(review: dict[str, Any]) -> list[tuple[Value, ...]]:
    """One row per version and chart: the highest value in the quarter, the threshold it
    is judged against, and the CUSUM signals raised (the daily values are in the JSON)."""
    signals: dict[tuple[str, str], int] = {}
    for a in review["alerts"]:
        if a["kind"] == "cusum_signal":
            key = (a["software_version"], a["metric"])
            signals[key] = signals.get(key, 0) + 1
    points: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for c in review["cusum"]:
        points.setdefault((c["software_version"], c["metric"]), []).append(c)
    rows: list[tuple[Value, ...]] = []
    for (version, metric), chart in sorted(points.items()):
        charted = [c for c in chart if c["statistic"] is not None]
        top = max(charted, key=lambda c: c["statistic"]) if charted else None
        thresholds = [c["threshold"] for c in chart if c["threshold"] is not None]
        rows.append((version, metric, len({c["at"][:10] for c in chart}),
                     None if top is None else top["statistic"],
                     None if top is None else top["at"][:10],
                     thresholds[-1] if thresholds else None,
                     signals.get((version, metric), 0)))
    return rows


def cell(value: Value, column: str) -> str:
    """A value as people read it: proportions in percent, p-values to 4 places."""
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        if column == "p_value":
            return f"{value:.4f}"
        if column in ("highest_statistic", "threshold"):
            return f"{value:.2f}"
        if column.startswith("kappa") or column in ("value", "baseline"):
            return f"{value:.3f}"
        return f"{100 * value:.1f}%"
    return str(value)
