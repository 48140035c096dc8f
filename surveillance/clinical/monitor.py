"""The performance monitor: adjudicated cases in, metric snapshots and clinical alerts out.

Pure (no Kafka, no Prometheus): the Faust agent on `cases.adjudicated` calls `on_case`
once per new (higher) revision of a case and `evaluate` once per event-time day; the
adapter `surveillance.observe.publish` turns what it returns into gauges.

What it keeps, per tool:
- agreement windows (`stats.windows`) under (tool, version, site) and (tool, version,
  "all"), each refined by scanner manufacturer, sex and age band. A case counts under the
  version that produced it, so a new model version starts its own figures;
- per version: two Bernoulli CUSUM charts (misses among read-positives, false positives
  among read-negatives), started after `reference_days` of report time and designed from
  the weekly volume observed in that reference period, so that the false-alarm budget is
  in calendar time at the tool's own volume (`clinical.version_charts`);
- per version: the label-free early warning (`clinical.label_free`);
- per (version, site, window, metric): the last verdict, and whether it is alarming: a
  `baseline_deviation` alert is raised when a verdict ENTERS alarming, not every day it
  stays there. Alarming = below_baseline (level `alpha` against baseline - tolerance) and
  the exact test against the charts' in-control point baseline - tolerance/2 rejects at
  the `baseline_test` share of the budget spread over a year of today's tests (a union
  bound), so a tool anywhere inside its tolerance stays within the share.

Every budgeted alert names its detector family and that family's false alarms per year
(`stats.alarm_budget`); subgroups are named only when Holm-corrected Fisher tests support
it (`clinical.subgroup_attribution`).

Times are event times, never the wall clock or the arrival order: windows, verdicts and
label-free tests place a case by its AI call (`inference_date`); the CUSUM charts order
and date observations by report time (`labelled_at`), because that is when a miss became
known. A CUSUM signal's context (its 30-day figures) is read from the window ending on the
signal's day, so a signal never shows an empty window. A replay gives the same alerts.

One alert per episode. A deviation of one metric of one version is an episode: it opens
with its first alert (a CUSUM signal, or a verdict entering below_baseline at any site and
window) and closes at the first `evaluate`, at least 30 days after it opened (so that the
30-day window no longer mixes in cases from before the alert), at which no verdict of that
metric is below_baseline and the 30-day all-sites figure is back at or above baseline -
tolerance.
While it is open no further cusum_signal or baseline_deviation alert of that metric is
raised (the signalled chart is frozen; verdicts keep being published as gauges); when it
closes the chart restarts from zero. A drop that persists is one alert, not one per CUSUM
run length or per site and window.

Alert ids are deterministic, so a replay after a crash produces ids downstream already has:
`version_change:{tool}:{version}`, `cusum_signal:{tool}:{version}:{metric}:{k}` (k-th
signal of that chart), `baseline_deviation:{tool}:{version}:{site}:{metric}:{window}:{day}` and
`label_free_warning:{tool}:{version}:{feature}:{day}` (day the verdict entered).

`rebuild` is approximate in three ways, all documented at the method.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from typing import Literal

from surveillance.clinical.baselines import ToolBaseline
from surveillance.clinical.label_free import LabelFreeMonitor, LabelFreeTest, alpha_for_budget
from surveillance.clinical.ledger import CaseRecord
from surveillance.clinical.subgroup_attribution import (
    TEST_NAME,
    SubgroupFinding,
    attribute_subgroup,
)
from surveillance.clinical.verdicts import (
    METRICS,
    Metric,
    MetricVerdict,
    VerdictKind,
    chart_rates,
    judge,
)
from surveillance.clinical.version_charts import Signal, VersionCharts
from surveillance.contracts import (
    AdjudicatedCase,
    Alert,
    AlertSeverity,
    CaseOutcome,
    MetricSnapshot,
)
from surveillance.errors import SurveillanceError
from surveillance.stats.agreement import Confusion, Estimate
from surveillance.stats.alarm_budget import DEFAULT_BUDGET, AlarmBudget, family_details
from surveillance.stats.binomial_test import lower_tail_p_value
from surveillance.stats.cusum import ChartDesign, average_run_length
from surveillance.stats.windows import AgreementWindows, Key, age_band, subgroup_keys, utc_day

ALL_SITES = "all"
SUBGROUP_DIMENSIONS = ("scanner_manufacturer", "sex", "age_band")
#: Windows the verdicts are judged on (a subset of the monitor's calendar windows).
VERDICT_WINDOWS = (30, 90)
#: Window whose figures give a CUSUM signal its clinical context.
CONTEXT_WINDOW = 30
#: Fewest cases in a metric's denominator for a subgroup to be tested as the concentration.
SUBGROUP_MIN_N = 10
#: Family-wise level of the subgroup attribution (`clinical.subgroup_attribution`).
SUBGROUP_ALPHA = 0.05
#: Report lags (AI call to first report) kept per version for the expected delay.
REPORT_LAGS_KEPT = 500
AGREEMENT_METRICS = (
    "sensitivity", "specificity", "ppv", "npv", "prevalence", "accuracy", "kappa",
)
_DIMENSION_NAMES = {
    "site": "site", "scanner_manufacturer": "scanner", "sex": "sex", "age_band": "age band",
}
_FAILURE = {"sensitivity": "missed findings", "specificity": "false alarms"}


class MonitorError(SurveillanceError):
    """A case or time the monitor cannot place (e.g. a naive datetime)."""


@dataclass(frozen=True, slots=True)
class CaseView:
    """The fields of a case the monitor uses, from an `AdjudicatedCase` or a `CaseRecord`."""

    case_id: str
    revision: int
    outcome: CaseOutcome
    tool: str
    version: str
    site: str
    inferred_at: datetime
    labelled_at: datetime | None
    score: float
    positive_call: bool
    scanner_manufacturer: str
    sex: str
    age: int | None

    @classmethod
    def of_case(cls, case: AdjudicatedCase) -> CaseView:
        return cls(
            case.case_id, case.revision, case.outcome, case.tool_id, case.software_version,
            case.site, case.inference_date, case.labelled_at, case.ai_result,
            case.result_indicator, case.scanner_manufacturer, case.sex.value, case.age,
        )

    @classmethod
    def of_record(cls, case_id: str, record: CaseRecord) -> CaseView:
        labelled = record.labelled_ts
        return cls(
            case_id, record.revision, CaseOutcome(record.outcome), record.tool, record.version,
            record.site, datetime.fromtimestamp(record.inference_ts, UTC),
            None if labelled is None else datetime.fromtimestamp(labelled, UTC),
            record.score, record.positive_call, record.scanner_manufacturer, record.sex,
            record.age,
        )

    @property
    def latest_at(self) -> datetime:
        return self.labelled_at or self.inferred_at

    def subgroups(self) -> dict[str, str]:
        return {
            "scanner_manufacturer": self.scanner_manufacturer or "unknown",
            "sex": self.sex,
            "age_band": age_band(self.age),
        }


def _place(view: CaseView) -> tuple[object, ...]:
    """What decides where a case is counted (keys, subgroups, the day of its windows)."""
    return (view.tool, view.version, view.site, utc_day(view.inferred_at),
            view.scanner_manufacturer, view.sex, view.age)


@dataclass(frozen=True, slots=True)
class ChartState:
    """What `publish_charts` exports for one chart."""

    tool: str
    version: str
    metric: Metric
    statistic: float
    threshold: float
    cases: int


@dataclass
class VersionRecord:
    """Everything kept about one model version of one tool."""

    tool: str
    version: str
    first_seen: datetime
    latest_inferred: datetime
    label_free: LabelFreeMonitor
    sites: set[str] = field(default_factory=set)
    subgroups: dict[str, dict[str, set[str]]] = field(default_factory=dict)  # site -> dim
    charts: VersionCharts | None = None  # None when the tool has no clearance baseline
    report_lags: list[float] = field(default_factory=list)  # days, the latest first reports

    def report_lag_days(self) -> float:
        """Median days from AI call to first report over the latest cases (0 before any)."""
        if not self.report_lags:
            return 0.0
        ordered = sorted(self.report_lags)
        mid = len(ordered) // 2
        return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2


@dataclass(frozen=True, slots=True)
class Episode:
    """An open deviation of one metric of one version: the alert that opened it."""

    alert_id: str
    opened_at: datetime


VerdictKey = tuple[str, str, str, int, Metric]  # tool, version, site, window, metric
EpisodeKey = tuple[str, str, Metric]  # tool, version, metric


def _key(tool: str, version: str, site: str) -> Key:
    return (("tool", tool), ("version", version), ("site", site))


def _aware(now: datetime) -> datetime:
    if now.tzinfo is None:
        raise MonitorError(f"evaluate needs a timezone-aware event time, got {now.isoformat()}")
    return now


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}"


def _interval_text(interval: tuple[float, float] | None) -> str:
    return "n/a" if interval is None else f"{interval[0]:.2f}-{interval[1]:.2f}"


def _day_start(day: int) -> datetime:
    d = date.fromordinal(day)
    return datetime(d.year, d.month, d.day, tzinfo=UTC)


def _where(site: str) -> str:
    return "all sites" if site == ALL_SITES else site


MAX_SITES_NAMED = 5  # sites listed in an all-sites alert; more would outgrow its text


class PerformanceMonitor:
    """Agreement, verdicts, CUSUM charts, version changes and label-free warnings.

    Parameters
    ----------
    registry
        Clearance baselines by tool id; tools missing from it get windows, snapshots and
        label-free warnings but no verdicts or charts (there is nothing to compare with).
    windows_days, last_n
        Calendar windows and the last-N-cases window of the agreement figures.
    budget
        The tool's false alarms per year and their split across detector families
        (`stats.alarm_budget`): the two CUSUM charts share the `cusum` share, the two
        label-free tests the `label_free` share, and every site, window and metric of
        the daily baseline tests the `baseline_test` share.
    reference_days
        Days of report time (CUSUM volume) and of AI calls (label-free reference) that open
        each version's monitoring.
    reference_grace_days
        How long after the CUSUM reference period (in report time) late-arriving reports
        still count towards its volume before the charts are designed.
    settle_days
        Report-time days a case waits for corrections before it feeds a CUSUM chart.
    alpha
        Level of the one-sided below-baseline test of the verdicts.
    """

    def __init__(
        self,
        registry: Mapping[str, ToolBaseline],
        *,
        windows_days: Iterable[int] = (7, 30, 90),
        last_n: int = 200,
        budget: AlarmBudget = DEFAULT_BUDGET,
        reference_days: int = 28,
        reference_grace_days: int = 2,
        settle_days: int = 7,
        alpha: float = 0.05,
    ) -> None:
        days = tuple(sorted(set(windows_days)))
        missing = [w for w in VERDICT_WINDOWS if w not in days]
        if missing:
            raise MonitorError(
                f"windows_days {days} must include the verdict windows {VERDICT_WINDOWS}"
            )
        if reference_days < 7:
            raise MonitorError(f"reference_days must be >= 7 (a week), got {reference_days}")
        self.registry = dict(registry)
        self.windows_days = days
        self.last_n = last_n
        self.budget = budget
        if reference_grace_days < 0 or settle_days < 0:
            raise MonitorError(
                f"reference_grace_days and settle_days must be >= 0, got "
                f"{reference_grace_days} and {settle_days}"
            )
        self.reference_days = reference_days
        self.reference_grace_days = reference_grace_days
        self.settle_days = settle_days
        self.alpha = alpha
        self._label_free_alpha = alpha_for_budget(budget.per_year("label_free"))
        self._windows: dict[str, AgreementWindows] = {}
        self._versions: dict[str, dict[str, VersionRecord]] = {}
        self._verdicts: dict[VerdictKey, MetricVerdict] = {}
        self._alarming: dict[VerdictKey, bool] = {}
        self._warnings: dict[tuple[str, str, str], bool] = {}
        self._episodes: dict[EpisodeKey, Episode] = {}
        #: Where re-run cases were first counted (see `on_case`); a rebuild counts each
        #: case once, at its record's place, and starts this empty.
        self._homes: dict[str, CaseView] = {}

    # -- cases ---------------------------------------------------------------------------

    def on_case(self, previous: CaseRecord | None, case: AdjudicatedCase) -> list[Alert]:
        """Fold one new revision of a case in; returns the alerts it raises.

        `previous` is the record stored for the case before this revision (None for its
        first). A revision not higher than the stored one changes nothing.
        """
        if previous is not None and case.revision <= previous.revision:
            return []
        view = CaseView.of_case(case)
        if previous is None:
            return self._apply(None, view, alert=True)
        before = CaseView.of_record(case.case_id, previous)
        # The record holds the latest revision's place; after a re-run (new version, new
        # time) the case is still counted where it was first, so retract from there.
        home = self._homes.get(case.case_id)
        if home is not None:
            before = replace(home, outcome=before.outcome, revision=before.revision,
                             labelled_at=before.labelled_at)
        elif _place(before) != _place(view):
            self._homes[case.case_id] = before
        return self._apply(before, view, alert=True)

    def _apply(self, before: CaseView | None, view: CaseView, alert: bool) -> list[Alert]:
        alerts: list[Alert] = []
        if view.version not in self._versions.get(view.tool, {}):
            change = self._open_version(view)
            if change is not None and alert:
                alerts.append(change)
        # A case keeps the place it was first counted in: a re-run of the tool on the same
        # study (new version, new time) must retract from where the earlier revision was.
        home = before or view
        record = self._versions[home.tool].get(home.version) or self._open_version_silently(home)
        subgroups = home.subgroups()
        record.sites.add(home.site)
        record.latest_inferred = max(record.latest_inferred, home.inferred_at)
        keys: list[Key] = []
        for site in (home.site, ALL_SITES):
            dims = record.subgroups.setdefault(site, {})
            for dim, value in subgroups.items():
                dims.setdefault(dim, set()).add(value)
            keys.extend(subgroup_keys(_key(home.tool, home.version, site), subgroups))
        windows = self._windows_of(home.tool)
        windows.apply(
            keys, view.case_id, None if before is None else before.outcome, view.outcome,
            home.inferred_at,
        )
        if before is None:
            record.label_free.add(utc_day(view.inferred_at), view.positive_call, view.score)
        if view.labelled_at is not None and (before is None or before.labelled_at is None):
            lag = (view.labelled_at - view.inferred_at) / timedelta(days=1)
            record.report_lags.append(max(lag, 0.0))
            del record.report_lags[:-REPORT_LAGS_KEPT]
        if record.charts is not None:
            previous = None if before is None else before.outcome
            signals = record.charts.update(view.case_id, previous, view.outcome, view.latest_at)
            for signal in signals:
                raised = self._on_signal(record, signal, alert)
                if raised is not None:
                    alerts.append(raised)
        return alerts

    def _windows_of(self, tool: str) -> AgreementWindows:
        windows = self._windows.get(tool)
        if windows is None:
            windows = self._windows[tool] = AgreementWindows(self.windows_days, self.last_n)
        return windows

    def _open_version_silently(self, view: CaseView) -> VersionRecord:
        baseline = self.registry.get(view.tool)
        record = VersionRecord(
            tool=view.tool,
            version=view.version,
            first_seen=view.inferred_at,
            label_free=LabelFreeMonitor(self.reference_days, alpha=self._label_free_alpha),
            latest_inferred=view.inferred_at,
            charts=None if baseline is None else VersionCharts(
                baseline, self.reference_days, self.reference_grace_days, self.settle_days,
                self.budget.per_year("cusum"),
            ),
        )
        self._versions.setdefault(view.tool, {})[view.version] = record
        return record

    def _open_version(self, view: CaseView) -> Alert | None:
        known = self._versions.get(view.tool, {})
        previous = max(known.values(), key=lambda r: r.first_seen, default=None)
        self._open_version_silently(view)
        if previous is None:
            return None
        windows = self._windows_of(view.tool)
        counts = windows.window(_key(view.tool, previous.version, ALL_SITES), 90).confusion
        figures: dict[str, object] = {}
        texts = []
        for metric in METRICS:
            est = counts.sensitivity() if metric == "sensitivity" else counts.specificity()
            figures[metric] = {
                "value": est.value, "interval": est.interval, "n": est.denominator,
                "window": "90d",
            }
            texts.append(
                f"{metric} {_fmt(est.value)} (95% CI {_interval_text(est.interval)}, "
                f"n={est.denominator})"
            )
        summary = (
            f"{view.tool}: new model version {view.version} first seen at {view.site} on "
            f"{view.inferred_at.date().isoformat()} (replacing {previous.version}); "
            f"revalidation required. {previous.version} over its last 90 days: "
            + ", ".join(texts) + "."
        )
        return Alert(
            alert_id=f"version_change:{view.tool}:{view.version}",
            kind="version_change",
            severity=AlertSeverity.WARNING,
            raised_at=view.latest_at,
            tool_id=view.tool,
            software_version=view.version,
            site=view.site,
            window="90d",
            since=view.inferred_at,
            summary=summary,
            details={
                "action": "revalidation required",
                "previous_version": previous.version,
                "previous_figures": figures,
            },
        )

    # -- CUSUM and episodes --------------------------------------------------------------

    def _on_signal(self, record: VersionRecord, signal: Signal, alert: bool) -> Alert | None:
        """The alert of a signal, or None when its metric's episode is already open."""
        key: EpisodeKey = (record.tool, record.version, signal.metric)
        if key in self._episodes:
            return None
        raised = self._cusum_alert(record, signal)
        self._episodes[key] = Episode(raised.alert_id, signal.at)
        return raised if alert else None

    def _context_time(self, record: VersionRecord, at: datetime) -> datetime:
        """End of the window giving a signal its context: the signal's day, unless that
        window would reach days the longest window has already dropped."""
        earliest = record.latest_inferred - timedelta(
            days=self.windows_days[-1] - CONTEXT_WINDOW
        )
        return max(at, earliest)

    def _cusum_alert(self, record: VersionRecord, signal: Signal) -> Alert:
        tool, version, metric, chart = record.tool, record.version, signal.metric, signal.chart
        baseline = self.registry[tool]
        context = self._context_time(record, signal.at)
        confusion = self.window(tool, version, ALL_SITES, CONTEXT_WINDOW, context)
        est = confusion.sensitivity() if metric == "sensitivity" else confusion.specificity()
        deviation = self._locate(tool, version, ALL_SITES, CONTEXT_WINDOW, metric, context)
        base_value = getattr(baseline.baseline, metric).value
        tolerance = getattr(baseline.tolerance, metric)
        reference = base_value - tolerance
        design = chart.design
        day = signal.at.date().isoformat()
        lag = record.report_lag_days()
        delay = design.arl1_days + self.settle_days + lag
        # The acceptance limit sits near the chart's reference value, so its delay is long;
        # the drop the chart is tuned for says how fast a real failure shows.
        tuned_level = 1.0 - design.p1
        tuned = (average_run_length(design.p0, design.p1, design.h, design.p1)
                 / (design.weekly_volume / 7.0) + self.settle_days + lag)
        summary = (
            f"{tool} {version} at all sites: more {_FAILURE[metric]} than the clearance rate "
            f"since {signal.since.date().isoformat()} (CUSUM signal on {day}). "
            f"{metric.capitalize()} {_fmt(est.value)} (95% CI {_interval_text(est.interval)}, "
            f"n={est.denominator}, "
            f"30 days to {context.date().isoformat()}) against the clearance baseline "
            f"{base_value:.3g} minus tolerance {tolerance:.2g} = {reference:.3g}"
            f"{self._sites_text(record, metric, CONTEXT_WINDOW, context)}; "
            f"{self._concentration_text(deviation)}. Expected detection delay for a drop to "
            f"{reference:.3g}: {delay:.0f} days (chart {design.arl1_days:.0f}, settling "
            f"{self.settle_days}, report lag {lag:.1f}); for a drop to {tuned_level:.3g}, "
            f"the drop the chart is tuned for: {tuned:.0f} days. No further alert until the "
            f"30-day {metric} is back at or above {reference:.3g}."
        )
        return Alert(
            alert_id=f"cusum_signal:{tool}:{version}:{metric}:{chart.signals}",
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
                "settle_days": self.settle_days,
                "report_lag_days": lag,
                "in_control_rate": design.p0,
                "redesigns": chart.redesigns,
                **family_details(self.budget, "cusum"),
                "tolerance": tolerance,
                "reference": reference,
            },
        )

    def _sites_text(
        self, record: VersionRecord, metric: Metric, window: int, now: datetime
    ) -> str:
        """'; by site: site-a 0.80 (n=60), ...' when the version runs at several sites."""
        if len(record.sites) < 2:
            return ""
        figures = []
        for site in sorted(record.sites):
            c = self.window(record.tool, record.version, site, window, now)
            est = c.sensitivity() if metric == "sensitivity" else c.specificity()
            figures.append((est.value is None, est.value or 0.0, site,
                            f"{site} {_fmt(est.value)} (n={est.denominator})"))
        if len(figures) <= MAX_SITES_NAMED:
            return "; by site: " + ", ".join(f[3] for f in figures)
        # A health system with many sites: the lowest few (an alert's text is bounded).
        lowest = sorted(figures)[:MAX_SITES_NAMED]
        return (f"; by site, the {MAX_SITES_NAMED} lowest of {len(figures)}: "
                + ", ".join(f[3] for f in lowest))

    def _others_text(
        self, record: VersionRecord, site: str, metric: Metric, window: int, now: datetime
    ) -> str:
        """Each site's figure for an all-sites alert; the pooled figure for a site's alert."""
        if site == ALL_SITES:
            return self._sites_text(record, metric, window, now)
        c = self.window(record.tool, record.version, ALL_SITES, window, now)
        est = c.sensitivity() if metric == "sensitivity" else c.specificity()
        return f"; all sites {_fmt(est.value)} (n={est.denominator})"

    def _close_episodes(self, record: VersionRecord, now: datetime) -> None:
        """Close each open episode of this version whose metric is back within baseline."""
        for metric in METRICS:
            key: EpisodeKey = (record.tool, record.version, metric)
            episode = self._episodes.get(key)
            if episode is None or now - episode.opened_at < timedelta(days=CONTEXT_WINDOW):
                continue
            verdicts = [
                v for (t, ver, _s, _w, m), v in self._verdicts.items()
                if (t, ver, m) == key
            ]
            pooled = self._verdicts.get(
                (record.tool, record.version, ALL_SITES, CONTEXT_WINDOW, metric)
            )
            recovered = (
                pooled is not None
                and pooled.kind is VerdictKind.WITHIN_BASELINE
                and pooled.value is not None
                and pooled.value >= pooled.baseline - pooled.tolerance
                and all(v.kind is not VerdictKind.BELOW_BASELINE for v in verdicts)
            )
            if recovered:
                del self._episodes[key]
                if record.charts is not None:
                    record.charts.close(metric)

    def episodes(self) -> dict[EpisodeKey, Episode]:
        """Open episodes per (tool, version, metric)."""
        return dict(self._episodes)

    def chart_design(self, tool: str, version: str, metric: Metric) -> ChartDesign | None:
        """The design of one chart, None before its reference period has ended."""
        record = self._versions.get(tool, {}).get(version)
        if record is None or record.charts is None or record.charts.charts is None:
            return None
        return record.charts.charts[metric].design

    # -- subgroups -----------------------------------------------------------------------

    def _by_dimension(
        self, tool: str, version: str, site: str, window: int | str, now: datetime | None
    ) -> dict[str, dict[str, Confusion]]:
        windows = self._windows_of(tool)
        record = self._versions[tool][version]
        base = _key(tool, version, site)
        out: dict[str, dict[str, Confusion]] = {}
        if site == ALL_SITES:
            out["site"] = {
                s: windows.window(_key(tool, version, s), window, now).confusion
                for s in sorted(record.sites)
            }
        for dim, values in record.subgroups.get(site, {}).items():
            out[dim] = {
                v: windows.window((*base, (dim, v)), window, now).confusion
                for v in sorted(values)
            }
        return out

    def _locate(
        self, tool: str, version: str, site: str, window: int, metric: Metric,
        now: datetime | None,
    ) -> SubgroupFinding | None:
        by_dimension = self._by_dimension(tool, version, site, window, now)
        return attribute_subgroup(by_dimension, metric, SUBGROUP_ALPHA, SUBGROUP_MIN_N)

    @staticmethod
    def _concentration_text(found: SubgroupFinding | None) -> str:
        if found is None:
            return (
                "no site, scanner, sex or age band stands out "
                f"({TEST_NAME}, family-wise level {SUBGROUP_ALPHA:g})"
            )
        return (
            f"concentrated in {_DIMENSION_NAMES[found.dimension]} {found.subgroup} "
            f"({found.metric} {found.value:.2f} (n={found.n}) against {found.rest_value:.2f} "
            f"in the rest; {TEST_NAME}, adjusted p={found.adjusted_p_value:.2g} over "
            f"{found.tests} subgroups)"
        )

    # -- daily evaluation ----------------------------------------------------------------

    def evaluate(
        self, now: datetime, *, tools: Iterable[str] | None = None, snapshots: bool = True
    ) -> tuple[list[Alert], list[MetricSnapshot]]:
        """Snapshots and verdict alerts as of the event-time day of `now`.

        `tools` restricts the evaluation (default: every tool seen); `snapshots=False`
        skips building snapshots (verdicts and alerts are unchanged).
        """
        now = _aware(now)
        alerts: list[Alert] = []
        out: list[MetricSnapshot] = []
        selected = list(self._versions) if tools is None else list(tools)
        for tool in selected:
            for record in list(self._versions.get(tool, {}).values()):
                at = self._read_time(record, now)
                if not self._active(record, at):
                    continue
                for site in (*sorted(record.sites), ALL_SITES):
                    if snapshots:
                        out.extend(self._snapshots(record, site, at))
                    alerts.extend(self._verdicts_of(record, site, at))
                self._close_episodes(record, at)
                if snapshots:
                    out.extend(self._chart_snapshots(record, at))
                alerts.extend(self._label_free(record, at))
        return alerts, out

    @staticmethod
    def _read_time(record: VersionRecord, now: datetime) -> datetime:
        """`now`, or the start of the version's latest case day if a case of a later day
        was already applied (possible after a rebuild): the windows cannot be read before
        their latest day, and refusing would stop the worker."""
        latest = _day_start(utc_day(record.latest_inferred))
        return now if now >= latest else latest

    def _active(self, record: VersionRecord, now: datetime) -> bool:
        """A version is evaluated while it has cases in the longest window."""
        counts = self._windows_of(record.tool).window(
            _key(record.tool, record.version, ALL_SITES), self.windows_days[-1], now
        )
        return counts.confusion.n + counts.pending + counts.unlabelled + counts.indeterminate > 0

    def _snapshots(self, record: VersionRecord, site: str, now: datetime) -> list[MetricSnapshot]:
        tool, version = record.tool, record.version
        windows = self._windows_of(tool)
        day = now.date().isoformat()
        out = []
        labelled: list[tuple[int | str, str]] = [(d, f"{d}d") for d in self.windows_days]
        labelled.append(("last_n", f"last{self.last_n}"))
        for window, label in labelled:
            confusion = windows.window(_key(tool, version, site), window, now).confusion
            for metric, value, interval, n in _figures(confusion):
                out.append(
                    MetricSnapshot(
                        snapshot_id=f"agreement:{tool}:{version}:{site}:{label}:{metric}:{day}",
                        kind="agreement",
                        at=now,
                        tool_id=tool,
                        software_version=version,
                        site=site,
                        window=label,
                        metric=metric,
                        value=value,
                        lower=None if interval is None else interval[0],
                        upper=None if interval is None else interval[1],
                        n=n,
                    )
                )
        return out

    def _chart_snapshots(self, record: VersionRecord, now: datetime) -> list[MetricSnapshot]:
        day = now.date().isoformat()
        return [
            MetricSnapshot(
                snapshot_id=f"cusum:{s.tool}:{s.version}:{s.metric}:{day}",
                kind="cusum",
                at=now,
                tool_id=s.tool,
                software_version=s.version,
                site=ALL_SITES,
                metric=s.metric,
                detector="bernoulli_cusum",
                value=s.statistic,
                # The decision threshold, so a stored chart can be drawn against it.
                upper=s.threshold,
                n=s.cases,
            )
            for s in self._chart_states_of(record)
        ]

    def _verdicts_of(self, record: VersionRecord, site: str, now: datetime) -> list[Alert]:
        baseline = self.registry.get(record.tool)
        if baseline is None:
            return []
        windows = self._windows_of(record.tool)
        level = self._alert_level(record)
        alerts = []
        for window in VERDICT_WINDOWS:
            confusion = windows.window(_key(record.tool, record.version, site), window, now)
            for metric, verdict in judge(confusion.confusion, baseline, self.alpha).items():
                key: VerdictKey = (record.tool, record.version, site, window, metric)
                self._verdicts[key] = verdict
                alarming = verdict.kind is VerdictKind.BELOW_BASELINE and (
                    self._in_control_p(baseline, verdict) < level
                )
                entered = alarming and not self._alarming.get(key, False)
                self._alarming[key] = alarming
                episode: EpisodeKey = (record.tool, record.version, metric)
                if entered and episode not in self._episodes:
                    alert = self._deviation_alert(
                        baseline, record, site, window, verdict, now, level
                    )
                    self._episodes[episode] = Episode(alert.alert_id, now)
                    alerts.append(alert)
        return alerts

    def _alert_level(self, record: VersionRecord) -> float:
        """Level of each daily baseline test that may raise an alert: the family's share
        over a year of today's tests (every site and all sites, window and metric)."""
        tests = (len(record.sites) + 1) * len(VERDICT_WINDOWS) * len(METRICS)
        return self.budget.per_test_day("baseline_test", tests)

    @staticmethod
    def _in_control_p(baseline: ToolBaseline, verdict: MetricVerdict) -> float:
        """One-sided exact p-value against the charts' in-control point (baseline -
        tolerance/2): an alert needs the window to be unlikely for a tool performing
        anywhere inside its tolerance, not only below baseline - tolerance."""
        in_control = 1.0 - chart_rates(baseline, verdict.metric)[0]
        return lower_tail_p_value(verdict.successes, verdict.n, in_control)

    def _deviation_alert(
        self, baseline: ToolBaseline, record: VersionRecord, site: str, window: int,
        verdict: MetricVerdict, now: datetime, level: float,
    ) -> Alert:
        tool, version, metric = record.tool, record.version, verdict.metric
        deviation = self._locate(tool, version, site, window, metric, now)
        since = self._since(record, metric, now, window)
        in_control = 1.0 - chart_rates(baseline, metric)[0]
        summary = (
            f"{tool} {version} at {_where(site)}: {metric} {_fmt(verdict.value)} (95% CI "
            f"{_interval_text(verdict.interval)}, n={verdict.n}, {window} days) is below the "
            f"clearance baseline {verdict.baseline:.3g} minus tolerance "
            f"{verdict.tolerance:.2g} (one-sided exact test p={verdict.p_value:.2g}; "
            f"p={self._in_control_p(baseline, verdict):.2g} against {in_control:.3g}, "
            f"alert level {level:.2g})"
            f"{self._since_text(record, metric)}"
            f"{self._others_text(record, site, metric, window, now)}; "
            f"{self._concentration_text(deviation)}."
        )
        return Alert(
            alert_id=f"baseline_deviation:{tool}:{version}:{site}:{metric}:{window}d:"
            f"{now.date().isoformat()}",
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
                "alpha": self.alpha,
                "in_control": in_control,
                "alert_level": level,
                "successes": verdict.successes,
                **family_details(self.budget, "baseline_test"),
            },
        )

    @staticmethod
    def _excursion_start(record: VersionRecord, metric: Metric) -> datetime | None:
        """Report time at which this metric's CUSUM excursion began, if one is under way."""
        if record.charts is None or record.charts.charts is None:
            return None
        return record.charts.charts[metric].excursion_start

    def _since(self, record: VersionRecord, metric: Metric, now: datetime, window: int) -> datetime:
        """Start of the CUSUM excursion of this metric if one is under way, else the window's."""
        start = self._excursion_start(record, metric)
        return start if start is not None else _day_start(utc_day(now) - window + 1)

    def _since_text(self, record: VersionRecord, metric: Metric) -> str:
        start = self._excursion_start(record, metric)
        if start is None:
            return ""
        return f"; more {_FAILURE[metric]} than the clearance rate since {start.date().isoformat()}"

    # -- label-free early warning --------------------------------------------------------

    def _label_free(self, record: VersionRecord, now: datetime) -> list[Alert]:
        alerts = []
        for test in record.label_free.test(utc_day(now)):
            key = (record.tool, record.version, test.feature)
            was = self._warnings.get(key, False)
            self._warnings[key] = test.rejected
            if test.rejected and not was:
                alerts.append(self._label_free_alert(record, test, now))
        return alerts

    def _label_free_alert(
        self, record: VersionRecord, test: LabelFreeTest, now: datetime
    ) -> Alert:
        tool, version = record.tool, record.version
        reference = (
            f"{date.fromordinal(test.reference_first_day).isoformat()} to "
            f"{date.fromordinal(test.reference_last_day).isoformat()}"
        )
        if test.feature == "positive_rate":
            what = (
                f"positive-call rate {test.recent_value:.3f} over the last "
                f"{record.label_free.recent_days} days (n={test.n_recent}) against "
                f"{test.reference_value:.3f} in its reference period {reference} "
                f"(n={test.n_reference}; Fisher exact p={test.p_value:.2g})"
            )
        else:
            what = (
                f"score distribution shifted over the last {record.label_free.recent_days} "
                f"days (median {test.recent_value:.3f}, n={test.n_recent}) against its "
                f"reference period {reference} (median {test.reference_value:.3f}, "
                f"n={test.n_reference}; Kolmogorov-Smirnov D={test.statistic:.3f}, "
                f"p={test.p_value:.2g})"
            )
        return Alert(
            alert_id=f"label_free_warning:{tool}:{version}:{test.feature}:"
            f"{now.date().isoformat()}",
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
            window=f"{record.label_free.recent_days}d",
            since=_day_start(utc_day(now) - record.label_free.recent_days + 1),
            summary=(
                f"{tool} {version} at all sites (estimate, not confirmed by reports): {what}."
            ),
            details={
                "estimate": "estimate, not confirmed by reports",
                "feature": test.feature,
                "statistic": test.statistic,
                "p_value": test.p_value,
                "alpha": record.label_free.alpha,
                "n_reference": test.n_reference,
                **family_details(self.budget, "label_free"),
            },
        )

    # -- state for the adapter -----------------------------------------------------------

    def verdicts(self) -> dict[VerdictKey, MetricVerdict]:
        """The latest verdict per (tool, version, site, window days, metric)."""
        return dict(self._verdicts)

    def chart_states(self) -> list[ChartState]:
        return [
            state
            for versions in self._versions.values()
            for record in versions.values()
            for state in self._chart_states_of(record)
        ]

    @staticmethod
    def _chart_states_of(record: VersionRecord) -> list[ChartState]:
        if record.charts is None or record.charts.charts is None:
            return []
        return [
            ChartState(record.tool, record.version, metric, chart.cusum.statistic,
                       chart.design.h, chart.cusum.n_cases)
            for metric, chart in record.charts.charts.items()
        ]

    def versions(self, tool: str) -> list[str]:
        """Versions seen for `tool`, in the order first seen."""
        return list(self._versions.get(tool, {}))

    def window(
        self, tool: str, version: str, site: str, window: int | Literal["last_n"],
        now: datetime | None = None, subgroup: tuple[str, str] | None = None,
    ) -> Confusion:
        """Confusion counts of one key (for callers and tests)."""
        key = _key(tool, version, site) + (() if subgroup is None else (subgroup,))
        return self._windows_of(tool).window(key, window, now).confusion

    def window_keys(self, tool: str) -> list[Key]:
        return self._windows_of(tool).keys() if tool in self._windows else []

    # -- ownership -----------------------------------------------------------------------

    def rebuild(self, records: Iterable[CaseRecord | tuple[str, CaseRecord]]) -> None:
        """Rebuild every tool's state from the stored case records, raising no alerts.

        Pass `(case_id, record)` pairs (e.g. `case_table.items()` decoded) so that later
        corrections find their case in the last-N window; bare records get a stand-in id.
        Records are replayed in labelled-time order (pending ones at their AI time).
        Approximate, because a record holds only a case's latest revision:
        - the CUSUM charts see each case's final outcome once, in labelled-time order, not
          the historical sequence (a case corrected after it fed a chart fed it with its
          first outcome); the chart state is therefore close, not identical;
        - the last-N window holds the last N cases by labelled time of their final
          revision, not by the order they first entered;
        - the label-free reference and recent windows use each case's final score.
        Verdict, warning and episode states of tools this monitor held before are kept, so
        an ongoing deviation is not alerted again; for newly assigned tools they start
        empty, and an ongoing deviation is alerted on the next `evaluate` (with that day's
        id) unless a chart signals during the rebuild: that opens its episode silently (the
        previous owner raised it), and the chart stays signalled until the episode closes.
        """
        views = []
        for i, item in enumerate(records):
            case_id, record = item if isinstance(item, tuple) else (f"rebuilt-{i}", item)
            views.append(CaseView.of_record(case_id, record))
        views.sort(key=lambda v: (v.latest_at, v.case_id))
        kept_verdicts = self._verdicts
        kept_warnings = self._warnings
        kept_alarming = self._alarming
        kept_episodes = self._episodes
        held = set(self._versions)
        self._windows, self._versions, self._homes = {}, {}, {}
        self._verdicts = {k: v for k, v in kept_verdicts.items() if k[0] in held}
        self._warnings = {k: v for k, v in kept_warnings.items() if k[0] in held}
        self._alarming = {k: v for k, v in kept_alarming.items() if k[0] in held}
        self._episodes = {k: v for k, v in kept_episodes.items() if k[0] in held}
        for view in views:
            self._apply(None, view, alert=False)

    def forget_tools(self, tools: Iterable[str]) -> None:
        """Drop all state of tools whose partitions this worker no longer owns."""
        gone = set(tools)
        self._homes = {k: v for k, v in self._homes.items() if v.tool not in gone}
        for tool in gone:
            self._windows.pop(tool, None)
            self._versions.pop(tool, None)
            self._verdicts = {k: v for k, v in self._verdicts.items() if k[0] != tool}
            self._warnings = {k: v for k, v in self._warnings.items() if k[0] != tool}
            self._alarming = {k: v for k, v in self._alarming.items() if k[0] != tool}
            self._episodes = {k: v for k, v in self._episodes.items() if k[0] != tool}


def _subgroup(found: SubgroupFinding | None) -> dict[str, str] | None:
    return None if found is None else {found.dimension: found.subgroup}


Figure = tuple[str, float | None, tuple[float, float] | None, int]


def _figures(confusion: Confusion) -> list[Figure]:
    """The seven agreement metrics of a window: name, value, 95% interval, denominator."""
    estimates: list[tuple[str, Estimate]] = [
        ("sensitivity", confusion.sensitivity()),
        ("specificity", confusion.specificity()),
        ("ppv", confusion.ppv()),
        ("npv", confusion.npv()),
        ("prevalence", confusion.prevalence()),
        ("accuracy", confusion.accuracy()),
    ]
    out: list[Figure] = [(name, e.value, e.interval, e.denominator) for name, e in estimates]
    kappa = confusion.kappa()
    out.append(("kappa", kappa.value, kappa.interval, kappa.n))
    return out
