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
    labels = [f"{g['dimension']}: {g['value']}" for g in groups]
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
    ax.set_yticks(range(len(features)), features, fontsize=8)
    _date_axis(ax)
    ax.set_title(
        "Drift timeline (grey: detector snapshots; triangles: drift alerts by "
        "severity; green: open until resolved)",
        fontsize=9,
    )
    return fig


def figures(review: dict[str, Any]) -> dict[str, Figure]:
    """Every figure of the review, by name, in report order."""
    return {
        "trend": trend_figure(review),
        "subgroups": subgroup_figure(review),
        "drift": drift_figure(review),
    }
