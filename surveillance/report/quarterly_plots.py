"""Figures of the quarterly review (matplotlib, Agg backend: no display, no network).

Trend plots show the weekly estimate with its Wilson interval against three references:
the clearance baseline (line), the tolerance band down to baseline - tolerance (shaded:
the region a one-sided test treats as acceptable), and the published 95% interval of the
baseline where the registry has one (hatched). Version changes are marked as vertical
lines, so a step in the trend can be told from a new model.
"""

from __future__ import annotations

import io
from datetime import date, datetime
from typing import Any

import matplotlib

matplotlib.use("Agg")

import matplotlib.dates as mdates
import matplotlib.pyplot as plt
from matplotlib.figure import Figure

from surveillance.report.column_labels import human_feature

#: Fixed PNG metadata (no software version or timestamp): same data, same bytes.
PNG_METADATA: dict[str, str | None] = {"Software": None}
SEVERITY_COLOURS = {"info": "#4c78a8", "warning": "#f58518", "critical": "#e45756"}


def png(fig: Figure) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100, metadata=PNG_METADATA)
    return buffer.getvalue()


def _num(moment: date | datetime) -> float:
    """Matplotlib's date number: plotting numbers keeps the axes typed and tz-explicit."""
    return float(mdates.date2num(moment))  # type: ignore[no-untyped-call]


def _iso(text: str) -> float:
    return _num(datetime.fromisoformat(text))


def _date_axis(ax: Any) -> None:
    ax.xaxis.set_major_formatter(mdates.DateFormatter("%d %b"))  # type: ignore[no-untyped-call]


def trend_figure(review: dict[str, Any]) -> Figure:
    weeks = review["weekly"]
    x = [_num(date.fromisoformat(w["week_start"])) for w in weeks]
    fig, axes = plt.subplots(3, 1, figsize=(8.3, 9.0), sharex=True, layout="constrained")
    baseline = {b["metric"]: b for b in review["baseline_comparison"]}
    for ax, metric in zip(axes[:2], ("sensitivity", "specificity"), strict=True):
        b = baseline[metric]
        ax.axhline(b["baseline"], color="black", lw=1.2, label=f"baseline {b['baseline']:.3f}")
        ax.axhspan(
            b["reference"],
            b["baseline"],
            color="#54a24b",
            alpha=0.15,
            label=f"tolerance (to {b['reference']:.3f})",
        )
        if b["baseline_ci95_lower"] is not None:
            ax.axhspan(
                b["baseline_ci95_lower"],
                b["baseline_ci95_upper"],
                fill=False,
                hatch="///",
                edgecolor="#888888",
                lw=0,
                label="baseline 95% CI",
            )
        points = [
            (xi, w["figures"][metric])
            for xi, w in zip(x, weeks, strict=True)
            if w["figures"][metric]["value"] is not None
        ]
        if points:
            xs = [p[0] for p in points]
            values = [p[1]["value"] for p in points]
            errors = [
                [p[1]["value"] - p[1]["lower"] for p in points],
                [p[1]["upper"] - p[1]["value"] for p in points],
            ]
            ax.errorbar(
                xs,
                values,
                yerr=errors,
                fmt="o-",
                color="#4c78a8",
                ms=4,
                capsize=2,
                label="weekly (95% Wilson)",
            )
        ax.set_ylabel(metric)
        ax.set_ylim(0.0, 1.02)
        ax.legend(loc="lower left", fontsize=7, ncols=2)
    volume = axes[2]
    volume.bar(x, [w["volume"] for w in weeks], width=5, color="#bab0ac", label="volume")
    volume.set_ylabel("cases per week")
    prevalence = volume.twinx()
    prev = [
        (xi, w["figures"]["prevalence"]["value"])
        for xi, w in zip(x, weeks, strict=True)
        if w["figures"]["prevalence"]["value"] is not None
    ]
    prevalence.plot([p[0] for p in prev], [p[1] for p in prev], "s-", color="#e45756", ms=3)
    prevalence.set_ylabel("prevalence", color="#e45756")
    for v in review["model_versions"]:
        seen = _iso(v["first_seen"])
        if x and x[0] <= seen:
            for ax in axes:
                ax.axvline(seen, color="#9d755d", ls="--", lw=1)
            axes[0].annotate(f"v{v['software_version']}", (seen, 0.05), fontsize=7, color="#9d755d")
    _date_axis(axes[2])
    fig.suptitle(f"{review['tool']['tool_id']} {review['quarter']}: weekly trend")
    return fig


def subgroup_figure(review: dict[str, Any]) -> Figure:
    groups = review["subgroups"]
    fig, axes = plt.subplots(
        1, 2, figsize=(8.3, 0.28 * len(groups) + 1.6), sharey=True, layout="constrained"
    )
    labels = [f"{human_feature(g['dimension'])}: {g['value']}" for g in groups]
    ys = list(range(len(groups)))[::-1]
    baseline = {b["metric"]: b for b in review["baseline_comparison"]}
    for ax, metric in zip(axes, ("sensitivity", "specificity"), strict=True):
        for y, g in zip(ys, groups, strict=True):
            f = g["figures"][metric]
            if f["value"] is not None:
                ax.errorbar(
                    f["value"],
                    y,
                    xerr=[[f["value"] - f["lower"]], [f["upper"] - f["value"]]],
                    fmt="o",
                    color="#4c78a8",
                    ms=3,
                    capsize=2,
                )
        ax.axvline(baseline[metric]["baseline"], color="black", lw=1)
        ax.axvline(review["subgroup_floor"], color="#e45756", ls=":", lw=1)
        ax.set_xlim(0.0, 1.02)
        ax.set_title(metric, fontsize=9)
    axes[0].set_yticks(ys, labels, fontsize=7)
    fig.suptitle("Subgroups (95% Wilson; black: baseline, red: subgroup floor)", fontsize=9)
    return fig


def drift_figure(review: dict[str, Any]) -> Figure:
    drift = review["drift"]
    features = sorted({d["feature"] for d in drift})
    fig, ax = plt.subplots(figsize=(8.3, 0.45 * max(len(features), 1) + 1.8), layout="constrained")
    row = {f: i for i, f in enumerate(features)}
    for d in drift:
        at = _iso(d["at"])
        if d["source"] == "alert":
            ax.scatter(
                at,
                row[d["feature"]],
                marker="^",
                s=60,
                zorder=3,
                color=SEVERITY_COLOURS.get(d["severity"] or "", "#4c78a8"),
            )
        else:
            ax.scatter(at, row[d["feature"]], marker="o", s=12, color="#bab0ac", zorder=2)
    for a in review["alerts"]:
        if a["alert_id"] in {d["verdict_id"] for d in drift} and a["resolved_at"]:
            feature = next(d["feature"] for d in drift if d["verdict_id"] == a["alert_id"])
            ax.plot(
                [_iso(a["raised_at"]), _iso(a["resolved_at"])],
                [row[feature], row[feature]],
                color="#54a24b",
                lw=3,
                alpha=0.6,
            )
    ax.set_xlim(
        _num(date.fromisoformat(review["period"]["start"])),
        _num(date.fromisoformat(review["period"]["end"])) + 1.0,
    )
    ax.set_yticks(range(len(features)), [human_feature(f) for f in features], fontsize=8)
    if not features:
        ax.text(0.5, 0.5, "No drift was detected in the quarter", ha="center", va="center",
                transform=ax.transAxes)
    _date_axis(ax)
    # The worker stores drift alerts; detector snapshots appear only where a store has them.
    snapshots = "grey: detector snapshots; " if any(d["source"] != "alert" for d in drift) else ""
    ax.set_title(
        f"Drift timeline ({snapshots}triangles: drift alerts by severity, blue info, orange "
        "warning, red critical; green: open until resolved)",
        fontsize=9,
    )
    return fig


CHART_COLOURS = {"sensitivity": "#4c78a8", "specificity": "#f58518"}


def cusum_figure(review: dict[str, Any]) -> Figure:
    """One panel per model version: each chart's daily value against its threshold, with
    the CUSUM signals raised in the quarter."""
    versions = sorted({c["software_version"] for c in review["cusum"]})
    fig, axes = plt.subplots(max(len(versions), 1), 1, figsize=(8.3, 2.4 * max(len(versions), 1)
                                                                + 0.6),
                             sharex=True, layout="constrained", squeeze=False)
    start = _num(date.fromisoformat(review["period"]["start"]))
    end = _num(date.fromisoformat(review["period"]["end"])) + 1.0
    if not versions:
        axes[0][0].text(0.5, 0.5, "No CUSUM chart was stored for this tool in the quarter",
                        ha="center", va="center", transform=axes[0][0].transAxes)
    for ax, version in zip((a[0] for a in axes), versions, strict=False):
        mine = [c for c in review["cusum"] if c["software_version"] == version]
        for metric in sorted({c["metric"] for c in mine}):
            chart = [c for c in mine if c["metric"] == metric and c["statistic"] is not None]
            colour = CHART_COLOURS.get(metric, "#54a24b")
            ax.plot([_iso(c["at"]) for c in chart], [c["statistic"] for c in chart], "-",
                    color=colour, lw=1.4, label=f"{metric} chart")
            limits = [c for c in chart if c["threshold"] is not None]
            if limits:
                ax.step([_iso(c["at"]) for c in limits], [c["threshold"] for c in limits],
                        where="post", color=colour, ls="--", lw=1, label=f"{metric} threshold")
        for a in review["alerts"]:
            if a["kind"] == "cusum_signal" and a["software_version"] == version:
                ax.axvline(_iso(a["raised_at"]), color="#e45756", lw=1.5)
                ax.annotate(f"signal: {a['metric']}", (_iso(a["raised_at"]), 0.0),
                            fontsize=7, color="#e45756", rotation=90, va="bottom")
        ax.set_ylabel("log-likelihood ratio", fontsize=8)
        ax.set_title(f"version {version}", fontsize=9)
        ax.set_ylim(bottom=0.0)
        ax.legend(loc="upper left", fontsize=7, ncols=2)
    axes[-1][0].set_xlim(start, end)
    _date_axis(axes[-1][0])
    fig.suptitle("CUSUM charts per model version (dashed: decision threshold; red: signal)",
                 fontsize=9)
    return fig


def figures(review: dict[str, Any]) -> dict[str, Figure]:
    """Every figure of the review, by name, in report order."""
    return {
        "trend": trend_figure(review),
        "subgroups": subgroup_figure(review),
        "cusum": cusum_figure(review),
        "drift": drift_figure(review),
    }
