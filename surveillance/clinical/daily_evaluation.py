"""The monitor's once-a-day work: verdicts, episodes, label-free tests and snapshots.

`evaluate` runs at the start of each event-time day of a tool (the worker calls it through
`PerformanceMonitor.evaluate`). Per version with cases in the longest window, per site and
all sites: the verdicts of the verdict windows, a `baseline_deviation` alert when a verdict
ENTERS alarming (below_baseline, and the exact test against the charts' in-control point
rejects at the `baseline_test` share of the budget spread over a year of today's tests),
unless the metric's episode is already open; then the episodes that have recovered close
(their chart restarts); then the label-free tests. Snapshots give every agreement figure
of every window, and each chart's statistic against its threshold.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta
from functools import lru_cache

from surveillance.clinical.alert_fitting import bounded_id
from surveillance.clinical.monitor_alerts import (
    deviation_alert,
    in_control_p,
    label_free_alert,
)
from surveillance.clinical.monitor_state import (
    ALL_SITES,
    CONTEXT_WINDOW,
    VERDICT_WINDOWS,
    ChartState,
    Episode,
    EpisodeKey,
    MonitorState,
    VerdictKey,
    VersionRecord,
    day_start,
    site_key,
)
from surveillance.clinical.verdicts import METRICS, VerdictKind, judge
from surveillance.contracts import Alert, MetricSnapshot
from surveillance.contracts.base import trusted
from surveillance.stats.agreement import Confusion, Estimate
from surveillance.stats.window_counts import WindowCounts
from surveillance.stats.windows import AgreementWindows, Key, utc_day


def evaluate(
    state: MonitorState, now: datetime, tools: Iterable[str] | None, snapshots: bool
) -> tuple[list[Alert], list[MetricSnapshot]]:
    """Alerts and snapshots as of the event-time day of `now` (aware)."""
    alerts: list[Alert] = []
    out: list[MetricSnapshot] = []
    selected = list(state.versions) if tools is None else list(tools)
    for tool in selected:
        for record in list(state.versions.get(tool, {}).values()):
            at = _read_time(record, now)
            read = _Reads(state.windows_of(record.tool), at)
            if not _active(state, record, read):
                continue
            for site in (*sorted(record.sites), ALL_SITES):
                if snapshots:
                    out.extend(_snapshots(state, record, site, at, read))
                alerts.extend(_verdicts_of(state, record, site, at, read))
            _close_episodes(state, record, at)
            if snapshots:
                out.extend(_chart_snapshots(record, at))
            alerts.extend(_label_free(state, record, at))
    return alerts, out


def _read_time(record: VersionRecord, now: datetime) -> datetime:
    """`now`, or the start of the version's latest case day if a case of a later day was
    already applied (possible after a rebuild): the windows cannot be read before their
    latest day, and refusing would stop the worker."""
    latest = day_start(utc_day(record.latest_inferred))
    return now if now >= latest else latest


class _Reads:
    """A version's window reads at one evaluation, each made once: the evaluation reads
    the all-sites 90-day window three times (activity, snapshot, verdict) and each site's
    30- and 90-day windows twice (snapshot, verdict), and nothing counts a case between
    them, so the second read is the first's answer (`WindowCounts` is immutable)."""

    __slots__ = ("_found", "_now", "_windows")

    def __init__(self, windows: AgreementWindows, now: datetime) -> None:
        self._windows = windows
        self._now = now
        self._found: dict[tuple[Key, int | str], WindowCounts] = {}

    def __call__(self, key: Key, window: int | str) -> WindowCounts:
        found = self._found.get((key, window))
        if found is None:
            found = self._found[key, window] = self._windows.window(key, window, self._now)
        return found


def _active(state: MonitorState, record: VersionRecord, read: _Reads) -> bool:
    """A version is evaluated while it has cases in the longest window."""
    counts = read(site_key(record.tool, record.version, ALL_SITES),
                  state.settings.windows_days[-1])
    return counts.confusion.n + counts.pending + counts.unlabelled + counts.indeterminate > 0


def _verdicts_of(
    state: MonitorState, record: VersionRecord, site: str, now: datetime, read: _Reads
) -> list[Alert]:
    baseline = state.settings.registry.get(record.tool)
    if baseline is None:
        return []
    level = _alert_level(state, record)
    alerts = []
    where = site_key(record.tool, record.version, site)
    for window in VERDICT_WINDOWS:
        counts = read(where, window)
        for metric, verdict in judge(counts.confusion, baseline, state.settings.alpha).items():
            key: VerdictKey = (record.tool, record.version, site, window, metric)
            state.verdicts[key] = verdict
            alarming = verdict.kind is VerdictKind.BELOW_BASELINE and (
                in_control_p(baseline, verdict) < level
            )
            entered = alarming and not state.alarming.get(key, False)
            state.alarming[key] = alarming
            episode: EpisodeKey = (record.tool, record.version, metric)
            if entered and episode not in state.episodes:
                alert = deviation_alert(state, baseline, record, site, window, verdict, now,
                                        level)
                state.episodes[episode] = Episode(alert.alert_id, now)
                alerts.append(alert)
    return alerts


def _alert_level(state: MonitorState, record: VersionRecord) -> float:
    """Level of each daily baseline test that may raise an alert: the family's share over
    a year of today's tests (every site and all sites, window and metric)."""
    tests = (len(record.sites) + 1) * len(VERDICT_WINDOWS) * len(METRICS)
    return state.settings.budget.per_test_day("baseline_test", tests)


def _close_episodes(state: MonitorState, record: VersionRecord, now: datetime) -> None:
    """Close each open episode of this version whose metric is back within baseline."""
    for metric in METRICS:
        key: EpisodeKey = (record.tool, record.version, metric)
        episode = state.episodes.get(key)
        if episode is None or now - episode.opened_at < timedelta(days=CONTEXT_WINDOW):
            continue
        verdicts = [
            v for (t, ver, _s, _w, m), v in state.verdicts.items() if (t, ver, m) == key
        ]
        pooled = state.verdicts.get(
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
            del state.episodes[key]
            if record.charts is not None:
                record.charts.close(metric)


def _label_free(state: MonitorState, record: VersionRecord, now: datetime) -> list[Alert]:
    alerts = []
    for test in record.label_free.test(utc_day(now)):
        key = (record.tool, record.version, test.feature)
        was = state.warnings.get(key, False)
        state.warnings[key] = test.rejected
        if test.rejected and not was:
            alerts.append(label_free_alert(state, record, test, now))
    return alerts


def _snapshots(
    state: MonitorState, record: VersionRecord, site: str, now: datetime, read: _Reads
) -> list[MetricSnapshot]:
    tool, version = record.tool, record.version
    key = site_key(tool, version, site)
    day = now.date().isoformat()
    out = []
    last_n = state.settings.last_n
    labelled: list[tuple[int | str, str]] = [(d, f"{d}d") for d in state.settings.windows_days]
    labelled.append(("last_n", f"last{last_n}"))
    for window, label in labelled:
        confusion = read(key, window).confusion
        for metric, value, interval, n in figures(confusion):
            out.append(agreement_snapshot(
                bounded_id("agreement", tool, version, site, label, metric, day), now, tool,
                version, site, label, metric, value, interval, n))
    return out


_AGREEMENT_SET = frozenset({"snapshot_id", "kind", "at", "tool_id", "software_version", "site",
                            "window", "metric", "value", "lower", "upper", "n"})


def agreement_snapshot(
    snapshot_id: str, now: datetime, tool: str, version: str, site: str, window: str,
    metric: str, value: float | None, interval: tuple[float, float] | None, n: int,
) -> MetricSnapshot:
    """One agreement figure's snapshot, as `MetricSnapshot(...)` validates it, without the
    validation (`contracts.base.trusted`): a daily evaluation makes 28 per site and
    version, and validating them was about a third of its snapshots' cost. Every string
    is an identifier validated on input or one of ours, the id is bounded (`bounded_id`),
    the numbers are made the types validation gives (`tests/test_trusted_models.py`)."""
    return trusted(MetricSnapshot, {
        "snapshot_id": snapshot_id, "kind": "agreement", "at": now, "tool_id": tool,
        "software_version": version, "site": site, "window": window, "metric": metric,
        "detector": None, "subgroup": None, "value": None if value is None else float(value),
        "lower": None if interval is None else float(interval[0]),
        "upper": None if interval is None else float(interval[1]), "n": int(n),
    }, set(_AGREEMENT_SET))


def chart_states(record: VersionRecord) -> list[ChartState]:
    if record.charts is None or record.charts.charts is None:
        return []
    return [
        ChartState(record.tool, record.version, metric, chart.cusum.statistic,
                   chart.design.h, chart.cusum.n_cases)
        for metric, chart in record.charts.charts.items()
    ]


def _chart_snapshots(record: VersionRecord, now: datetime) -> list[MetricSnapshot]:
    day = now.date().isoformat()
    return [
        MetricSnapshot(
            snapshot_id=bounded_id("cusum", s.tool, s.version, s.metric, day),
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
        for s in chart_states(record)
    ]


Figure = tuple[str, float | None, tuple[float, float] | None, int]


def figures(confusion: Confusion) -> list[Figure]:
    """The seven agreement metrics of a window: name, value, 95% interval, denominator."""
    return list(_figures(confusion.tp, confusion.fp, confusion.tn, confusion.fn))


@lru_cache(maxsize=4096)
def _figures(tp: int, fp: int, tn: int, fn: int) -> tuple[Figure, ...]:
    """`figures` of the counts, kept for the latest counts asked: a daily evaluation asks
    for 4 windows of each site and of all sites, and a quiet site's or a slow version's
    counts are often those of an earlier day (figures are a function of the four counts;
    `tests/test_daily_evaluation_reads.py` holds the two equal)."""
    return tuple(plain_figures(Confusion(tp=tp, fp=fp, tn=tn, fn=fn)))


def plain_figures(confusion: Confusion) -> list[Figure]:
    """`figures` computed (no cache)."""
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
