"""The performance monitor's alerts, worded: version changes, CUSUM signals, baseline
deviations and label-free warnings.

Each alert says what changed, by how much, since when, where it concentrates and against
what. Its text and id must fit the `Alert` contract (summary up to 1,000 characters, ids up
to 128) whatever the names a site gives its tools, versions, sites and scanners: texts
are built through `clinical.alert_fitting`, which cuts names only when the text with them
in full is too long, and bounds ids. The alert's own fields and `subgroup` keep the names
in full; an all-sites alert names the `MAX_SITES_NAMED` lowest sites.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta

from surveillance.clinical.alert_fitting import Names, bounded_id, fitted
from surveillance.clinical.baselines import ToolBaseline
from surveillance.clinical.label_free import LabelFreeTest
from surveillance.clinical.monitor_state import (
    ALL_SITES,
    CONTEXT_WINDOW,
    SUBGROUP_ALPHA,
    MonitorState,
    VersionRecord,
    day_start,
)
from surveillance.clinical.subgroup_attribution import TEST_NAME, SubgroupFinding
from surveillance.clinical.verdicts import METRICS, Metric, MetricVerdict, chart_rates
from surveillance.clinical.version_charts import Signal
from surveillance.contracts import Alert, AlertSeverity
from surveillance.stats.agreement import Confusion, Estimate
from surveillance.stats.alarm_budget import family_details
from surveillance.stats.binomial_test import lower_tail_p_value
from surveillance.stats.cusum import average_run_length
from surveillance.stats.windows import utc_day

MAX_SITES_NAMED = 5  # sites listed in an all-sites alert; more would outgrow its text

_DIMENSION_NAMES = {
    "site": "site", "scanner_manufacturer": "scanner", "sex": "sex", "age_band": "age band",
}
_FAILURE = {"sensitivity": "missed findings", "specificity": "false alarms"}


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}"


def _interval_text(interval: tuple[float, float] | None) -> str:
    return "n/a" if interval is None else f"{interval[0]:.2f}-{interval[1]:.2f}"


def _where(site: str, short: Names) -> str:
    return "all sites" if site == ALL_SITES else short(site)


def _estimate(confusion: Confusion, metric: Metric) -> Estimate:
    return confusion.sensitivity() if metric == "sensitivity" else confusion.specificity()


def _subgroup(found: SubgroupFinding | None) -> dict[str, str] | None:
    return None if found is None else {found.dimension: found.subgroup}


def version_change_alert(
    state: MonitorState, previous: VersionRecord, tool: str, version: str, site: str,
    inferred_at: datetime, raised_at: datetime,
) -> Alert:
    """A new model version of `tool`, with the previous version's last 90 days."""
    counts = state.window(tool, previous.version, ALL_SITES, 90)
    figures: dict[str, object] = {}
    texts = []
    for metric in METRICS:
        est = _estimate(counts, metric)
        figures[metric] = {
            "value": est.value, "interval": est.interval, "n": est.denominator,
            "window": "90d",
        }
        texts.append(
            f"{metric} {_fmt(est.value)} (95% CI {_interval_text(est.interval)}, "
            f"n={est.denominator})"
        )
    summary = fitted(lambda short: (
        f"{short(tool)}: new model version {short(version)} first seen at {short(site)} on "
        f"{inferred_at.date().isoformat()} (replacing {short(previous.version)}); "
        f"revalidation required. {short(previous.version)} over its last 90 days: "
        + ", ".join(texts) + "."
    ))
    return Alert(
        alert_id=bounded_id("version_change", tool, version),
        kind="version_change",
        severity=AlertSeverity.WARNING,
        raised_at=raised_at,
        tool_id=tool,
        software_version=version,
        site=site,
        window="90d",
        since=inferred_at,
        summary=summary,
        details={
            "action": "revalidation required",
            "previous_version": previous.version,
            "previous_figures": figures,
        },
    )


def context_time(state: MonitorState, record: VersionRecord, at: datetime) -> datetime:
    """End of the window giving a signal its context: the signal's day, unless that window
    would reach days the longest window has already dropped."""
    earliest = record.latest_inferred - timedelta(
        days=state.settings.windows_days[-1] - CONTEXT_WINDOW
    )
    return max(at, earliest)


def cusum_alert(state: MonitorState, record: VersionRecord, signal: Signal) -> Alert:
    """A CUSUM chart crossed its threshold: the drop, its context and the expected delay."""
    settings = state.settings
    tool, version, metric, chart = record.tool, record.version, signal.metric, signal.chart
    baseline = settings.registry[tool]
    context = context_time(state, record, signal.at)
    est = _estimate(state.window(tool, version, ALL_SITES, CONTEXT_WINDOW, context), metric)
    deviation = state.locate(tool, version, ALL_SITES, CONTEXT_WINDOW, metric, context)
    base_value = getattr(baseline.baseline, metric).value
    tolerance = getattr(baseline.tolerance, metric)
    reference = base_value - tolerance
    design = chart.design
    day = signal.at.date().isoformat()
    lag = record.report_lag_days()
    settle = settings.settle_days
    delay = design.arl1_days + settle + lag
    # The acceptance limit sits near the chart's reference value, so its delay is long;
    # the drop the chart is tuned for says how fast a real failure shows.
    tuned_level = 1.0 - design.p1
    tuned = (average_run_length(design.p0, design.p1, design.h, design.p1)
             / (design.weekly_volume / 7.0) + settle + lag)
    summary = fitted(lambda short: (
        f"{short(tool)} {short(version)} at all sites: more {_FAILURE[metric]} than the "
        f"clearance rate since {signal.since.date().isoformat()} (CUSUM signal on {day}). "
        f"{metric.capitalize()} {_fmt(est.value)} (95% CI {_interval_text(est.interval)}, "
        f"n={est.denominator}, "
        f"30 days to {context.date().isoformat()}) against the clearance baseline "
        f"{base_value:.3g} minus tolerance {tolerance:.2g} = {reference:.3g}"
        f"{sites_text(state, record, metric, CONTEXT_WINDOW, context, short)}; "
        f"{concentration_text(deviation, short)}. Expected detection delay for a drop to "
        f"{reference:.3g}: {delay:.0f} days (chart {design.arl1_days:.0f}, settling "
        f"{settle}, report lag {lag:.1f}); for a drop to {tuned_level:.3g}, "
        f"the drop the chart is tuned for: {tuned:.0f} days. No further alert until the "
        f"30-day {metric} is back at or above {reference:.3g}."
    ))
    return Alert(
        alert_id=bounded_id("cusum_signal", tool, version, metric, str(chart.signals)),
        kind="cusum_signal",
        severity=AlertSeverity.WARNING,
        raised_at=signal.at,
        tool_id=tool,
        software_version=version,
        site=ALL_SITES,
        metric=metric,
        value=est.value,
        interval=est.interval,
        baseline=base_value,
        n=est.denominator,
        window=f"{CONTEXT_WINDOW}d",
        since=signal.since,
        subgroup=_subgroup(deviation),
        summary=summary,
        details={
            "statistic": chart.cusum.statistic,
            "threshold": design.h,
            "cases_since_restart": chart.cusum.n_cases,
            "p0": design.p0,
            "p1": design.p1,
            "weekly_volume": design.weekly_volume,
            "arl0_days": design.arl0_days,
            "expected_detection_days": delay,
            "chart_delay_days": design.arl1_days,
            "tuned_drop_level": tuned_level,
            "tuned_drop_detection_days": tuned,
            "settle_days": settle,
            "report_lag_days": lag,
            "in_control_rate": design.p0,
            "redesigns": chart.redesigns,
            **family_details(settings.budget, "cusum"),
            "tolerance": tolerance,
            "reference": reference,
        },
    )


def in_control_p(baseline: ToolBaseline, verdict: MetricVerdict) -> float:
    """One-sided exact p-value against the charts' in-control point (baseline -
    tolerance/2): an alert needs the window to be unlikely for a tool performing
    anywhere inside its tolerance, not only below baseline - tolerance."""
    in_control = 1.0 - chart_rates(baseline, verdict.metric)[0]
    return lower_tail_p_value(verdict.successes, verdict.n, in_control)


def deviation_alert(
    state: MonitorState, baseline: ToolBaseline, record: VersionRecord, site: str,
    window: int, verdict: MetricVerdict, now: datetime, level: float,
) -> Alert:
    """A verdict entered below_baseline at `site` (or all sites) over `window` days."""
    settings = state.settings
    tool, version, metric = record.tool, record.version, verdict.metric
    deviation = state.locate(tool, version, site, window, metric, now)
    start = _excursion_start(record, metric)
    since = start if start is not None else day_start(utc_day(now) - window + 1)
    in_control = 1.0 - chart_rates(baseline, metric)[0]
    since_text = (
        "" if start is None else
        f"; more {_FAILURE[metric]} than the clearance rate since {start.date().isoformat()}"
    )
    p_in_control = in_control_p(baseline, verdict)
    summary = fitted(lambda short: (
        f"{short(tool)} {short(version)} at {_where(site, short)}: {metric} "
        f"{_fmt(verdict.value)} "
        f"(95% CI {_interval_text(verdict.interval)}, n={verdict.n}, {window} days) is below "
        f"the clearance baseline {verdict.baseline:.3g} minus tolerance "
        f"{verdict.tolerance:.2g} (one-sided exact test p={verdict.p_value:.2g}; "
        f"p={p_in_control:.2g} against {in_control:.3g}, "
        f"alert level {level:.2g})"
        f"{since_text}"
        f"{_others_text(state, record, site, metric, window, now, short)}; "
        f"{concentration_text(deviation, short)}."
    ))
    return Alert(
        alert_id=bounded_id("baseline_deviation", tool, version, site, metric, f"{window}d",
                            now.date().isoformat()),
        kind="baseline_deviation",
        severity=AlertSeverity.CRITICAL,
        raised_at=now,
        tool_id=tool,
        software_version=version,
        site=site,
        metric=metric,
        value=verdict.value,
        interval=verdict.interval,
        baseline=verdict.baseline,
        n=verdict.n,
        window=f"{window}d",
        since=since,
        subgroup=_subgroup(deviation),
        summary=summary,
        details={
            "tolerance": verdict.tolerance,
            "reference": verdict.reference,
            "p_value": verdict.p_value,
            "alpha": settings.alpha,
            "in_control": in_control,
            "alert_level": level,
            "successes": verdict.successes,
            **family_details(settings.budget, "baseline_test"),
        },
    )


def _excursion_start(record: VersionRecord, metric: Metric) -> datetime | None:
    """Report time at which this metric's CUSUM excursion began, if one is under way."""
    if record.charts is None or record.charts.charts is None:
        return None
    return record.charts.charts[metric].excursion_start


def sites_text(
    state: MonitorState, record: VersionRecord, metric: Metric, window: int, now: datetime,
    short: Names,
) -> str:
    """'; by site: site-a 0.80 (n=60), ...' when the version runs at several sites."""
    if len(record.sites) < 2:
        return ""
    figures = []
    for site in sorted(record.sites):
        est = _estimate(state.window(record.tool, record.version, site, window, now), metric)
        figures.append((est.value is None, est.value or 0.0, site,
                        f"{short(site)} {_fmt(est.value)} "
                        f"(n={est.denominator})"))
    if len(figures) <= MAX_SITES_NAMED:
        return "; by site: " + ", ".join(f[3] for f in figures)
    # A health system with many sites: the lowest few (an alert's text is bounded).
    lowest = sorted(figures)[:MAX_SITES_NAMED]
    return (f"; by site, the {MAX_SITES_NAMED} lowest of {len(figures)}: "
            + ", ".join(f[3] for f in lowest))


def _others_text(
    state: MonitorState, record: VersionRecord, site: str, metric: Metric, window: int,
    now: datetime, short: Names,
) -> str:
    """Each site's figure for an all-sites alert; the pooled figure for a site's alert."""
    if site == ALL_SITES:
        return sites_text(state, record, metric, window, now, short)
    est = _estimate(state.window(record.tool, record.version, ALL_SITES, window, now), metric)
    return f"; all sites {_fmt(est.value)} (n={est.denominator})"


def concentration_text(found: SubgroupFinding | None, short: Names) -> str:
    if found is None:
        return (
            "no site, scanner, sex or age band stands out "
            f"({TEST_NAME}, family-wise level {SUBGROUP_ALPHA:g})"
        )
    return (
        f"concentrated in {_DIMENSION_NAMES[found.dimension]} {short(found.subgroup)} "
        f"({found.metric} {found.value:.2f} (n={found.n}) against {found.rest_value:.2f} "
        f"in the rest; {TEST_NAME}, adjusted p={found.adjusted_p_value:.2g} over "
        f"{found.tests} subgroups)"
    )


def label_free_alert(
    state: MonitorState, record: VersionRecord, test: LabelFreeTest, now: datetime
) -> Alert:
    """The AI output of a version changed against its reference period (an estimate)."""
    tool, version = record.tool, record.version
    recent_days = record.label_free.recent_days
    reference = (
        f"{date.fromordinal(test.reference_first_day).isoformat()} to "
        f"{date.fromordinal(test.reference_last_day).isoformat()}"
    )
    if test.feature == "positive_rate":
        what = (
            f"positive-call rate {test.recent_value:.3f} over the last "
            f"{recent_days} days (n={test.n_recent}) against "
            f"{test.reference_value:.3f} in its reference period {reference} "
            f"(n={test.n_reference}; Fisher exact p={test.p_value:.2g})"
        )
    else:
        what = (
            f"score distribution shifted over the last {recent_days} "
            f"days (median {test.recent_value:.3f}, n={test.n_recent}) against its "
            f"reference period {reference} (median {test.reference_value:.3f}, "
            f"n={test.n_reference}; Kolmogorov-Smirnov D={test.statistic:.3f}, "
            f"p={test.p_value:.2g})"
        )
    return Alert(
        alert_id=bounded_id("label_free_warning", tool, version, test.feature,
                            now.date().isoformat()),
        kind="label_free_warning",
        severity=AlertSeverity.INFO,
        raised_at=now,
        tool_id=tool,
        software_version=version,
        site=ALL_SITES,
        metric=test.feature,
        value=test.recent_value,
        baseline=test.reference_value,
        n=test.n_recent,
        window=f"{recent_days}d",
        since=day_start(utc_day(now) - recent_days + 1),
        summary=fitted(lambda short: (
            f"{short(tool)} {short(version)} at all sites (estimate, not confirmed by "
            f"reports): {what}."
        )),
        details={
            "estimate": "estimate, not confirmed by reports",
            "feature": test.feature,
            "statistic": test.statistic,
            "p_value": test.p_value,
            "alpha": record.label_free.alpha,
            "n_reference": test.n_reference,
            **family_details(state.settings.budget, "label_free"),
        },
    )
