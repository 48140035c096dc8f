"""The performance monitor: adjudicated cases in, metric snapshots and clinical alerts out.

Pure (no Kafka, no Prometheus): the engine's case stage calls `on_case` once per new
(higher) revision of a case and `evaluate` once per event-time day of a tool; the adapter
`surveillance.observe.publish` turns what it returns into gauges.

What it keeps, per tool (`clinical.monitor_state`):
- agreement windows (`stats.windows`) under (tool, version, site) and (tool, version,
  "all"), each refined by scanner manufacturer, sex and age band: 8 keys per case. A case
  counts under the version that produced it, so a new model version starts its own figures;
- per version: two Bernoulli CUSUM charts (misses among read-positives, false positives
  among read-negatives), started after `reference_days` of report time and designed from
  the weekly volume observed in that reference period, so that the false-alarm budget is
  in calendar time at the tool's own volume (`clinical.version_charts`);
- per version: the label-free early warning (`clinical.label_free`);
- per (version, site, window, metric): the last verdict, and whether it is alarming
  (`clinical.daily_evaluation`).

Every budgeted alert names its detector family and that family's false alarms per year
(`stats.alarm_budget`); subgroups are named only when Holm-corrected Fisher tests support
it (`clinical.subgroup_attribution`); the texts are in `clinical.monitor_alerts`.

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

The per-case path. Each place a case can count at (tool, version, site, scanner, sex, age)
is resolved once to its `Placement`: the version's record and the group of its 8 keys,
which the windows count as one (`stats.windows`: the keys sum their groups when read).
A new case, or a revision that stays in its place, then costs a dict look-up, one bucket
increment (a revision: one decrement and one increment) for all 8 keys, one shared last-N
entry, the label-free count and the charts' update; no keys are built, no datetimes made.
A revision that moves its case (a re-run by a new version, on another day) takes the
general path, which keeps the case where it was first counted.

`rebuild` is approximate in three ways, all documented at the method. Reads of the state
are in `clinical.monitor_reads`, a tool's state taken out and put back in
`clinical.monitor_tools`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta

from surveillance.clinical.baselines import ToolBaseline
from surveillance.clinical.case_placement import (
    CaseView,
    PlaceKey,
    Placement,
    open_version,
    place,
    record_fields,
)
from surveillance.clinical.daily_evaluation import evaluate
from surveillance.clinical.label_free import alpha_for_budget
from surveillance.clinical.ledger import CaseRecord
from surveillance.clinical.monitor_alerts import cusum_alert, version_change_alert
from surveillance.clinical.monitor_reads import MonitorReads
from surveillance.clinical.monitor_state import (
    VERDICT_WINDOWS,
    Episode,
    EpisodeKey,
    MonitorError,
    MonitorState,
    Settings,
    VersionRecord,
)
from surveillance.clinical.monitor_tools import ToolState
from surveillance.clinical.version_charts import Signal
from surveillance.contracts import Alert, CaseOutcome, MetricSnapshot
from surveillance.contracts.wire import AnyAdjudicatedCase
from surveillance.stats.alarm_budget import DEFAULT_BUDGET, AlarmBudget
from surveillance.stats.windows import COLUMN, utc_day

_DAY = timedelta(days=1)
_SECONDS_PER_DAY = 86_400
_EPOCH_DAY = date(1970, 1, 1).toordinal()
#: A stored record's outcome (its value) as the enum, without an enum call per case.
_OUTCOME = {outcome.value: outcome for outcome in CaseOutcome}
#: A stored record's outcome (its value) as its windows' column (`stats.windows.COLUMN`).
_COLUMN = {outcome.value: column for outcome, column in COLUMN.items()}


class PerformanceMonitor(ToolState, MonitorReads):
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
        if reference_grace_days < 0 or settle_days < 0:
            raise MonitorError(
                f"reference_grace_days and settle_days must be >= 0, got "
                f"{reference_grace_days} and {settle_days}"
            )
        self.settings = Settings(
            registry=dict(registry), windows_days=days, last_n=last_n, budget=budget,
            reference_days=reference_days, reference_grace_days=reference_grace_days,
            settle_days=settle_days, alpha=alpha,
            label_free_alpha=alpha_for_budget(budget.per_year("label_free")),
        )
        self.state = MonitorState(self.settings)
        self._placements: dict[PlaceKey, Placement] = {}
        #: Where re-run cases were first counted (see `on_case`); a rebuild counts each
        #: case once, at its record's place, and starts this empty.
        self._homes: dict[str, CaseView] = {}

    @property
    def settle_days(self) -> int:
        return self.settings.settle_days

    @property
    def windows_days(self) -> tuple[int, ...]:
        return self.settings.windows_days

    @property
    def last_n(self) -> int:
        return self.settings.last_n

    # -- cases ---------------------------------------------------------------------------

    def on_case(
        self, previous: CaseRecord | None, case: AnyAdjudicatedCase,
        stored: CaseRecord | None = None,
    ) -> list[Alert]:
        """Fold one new revision of a case in; returns the alerts it raises.

        `previous` is the record stored for the case before this revision (None for its
        first). A revision not higher than the stored one changes nothing. `stored` is the
        ledger's record of this revision (`ledger.record_of`), which the engine has at hand:
        its fields are plain attributes and its AI time a POSIX timestamp, so the per-case
        path reads those rather than the pydantic model (whose attribute reads and
        `timestamp()` cost more than the counting). Without it the same fields are taken
        from `case`.
        """
        now = record_fields(case) if stored is None else stored
        where = (now.tool, now.version, now.site, now.scanner_manufacturer, now.sex, now.age)
        placement = self._placements.get(where)
        ts = now.inference_ts
        day = int(ts // _SECONDS_PER_DAY) + _EPOCH_DAY  # `utc_day`, without a datetime
        case_id = case.case_id
        if previous is None:
            if placement is None:
                return self._apply(None, CaseView.of_case(case), alert=True)
            record = placement.record
            if ts > record.latest_ts:
                record.latest_inferred, record.latest_ts = case.inference_date, ts
            record.label_free.add(day, now.positive_call, now.score)
            before, was_labelled = None, False
            placement.windows.count_new(placement.group, case_id, _COLUMN[now.outcome], day)
        else:
            if now.revision <= previous.revision:
                return []
            if (
                placement is None or case_id in self._homes
                or (previous.inference_ts != ts
                    and int(previous.inference_ts // _SECONDS_PER_DAY) + _EPOCH_DAY != day)
                or where != (previous.tool, previous.version, previous.site,
                             previous.scanner_manufacturer, previous.sex, previous.age)
            ):
                return self._moved(previous, case)
            # The place is unchanged; the record's time (the latest revision's) may be
            # later within the same day.
            record = placement.record
            previous_ts = previous.inference_ts
            if previous_ts > record.latest_ts:
                record.latest_ts = previous_ts
                record.latest_inferred = datetime.fromtimestamp(previous_ts, UTC)
            before = _OUTCOME[previous.outcome]
            placement.windows.count_revision(
                placement.group, case_id, _COLUMN[previous.outcome], _COLUMN[now.outcome], day
            )
            was_labelled = previous.labelled_ts is not None
        # Counted at its place: report lag, charts (the general path's steps).
        labelled = case.labelled_at
        if labelled is not None and not was_labelled:
            lag = (labelled - case.inference_date) / _DAY
            record.report_lags.append(0.0 if lag < 0.0 else lag)
        charts = placement.charts
        if charts is None:
            return []
        if labelled is None:
            signals = charts.update_at(case_id, before, _OUTCOME[now.outcome], ts,
                                       case.inference_date)
        else:
            labelled_ts = now.labelled_ts
            assert labelled_ts is not None
            signals = charts.update_at(case_id, before, _OUTCOME[now.outcome], labelled_ts,
                                       labelled)
        return self._signalled(record, signals, alert=True) if signals else []

    def on_cases(
        self, revisions: Iterable[tuple[CaseRecord | None, AnyAdjudicatedCase, CaseRecord]]
    ) -> list[Alert]:
        """`on_case` of each (previous, case, stored) in turn (a day's revisions at the
        evaluation point, `engine.evaluation`); the alerts they raise, in order."""
        alerts: list[Alert] = []
        on_case = self.on_case
        for previous, case, stored in revisions:
            raised = on_case(previous, case, stored)
            if raised:
                alerts += raised
        return alerts

    def _moved(self, previous: CaseRecord, case: AnyAdjudicatedCase) -> list[Alert]:
        """A revision whose place differs from its record's (or whose case moved before)."""
        view = CaseView.of_case(case)
        before = CaseView.of_record(case.case_id, previous)
        # The record holds the latest revision's place; after a re-run (new version, new
        # time) the case is still counted where it was first, so retract from there.
        home = self._homes.get(case.case_id)
        if home is not None:
            before = replace(home, outcome=before.outcome, revision=before.revision,
                             labelled_at=before.labelled_at)
        elif (before.place, utc_day(before.inferred_at)) != (view.place,
                                                               utc_day(view.inferred_at)):
            self._homes[case.case_id] = before
        return self._apply(before, view, alert=True)

    def _apply(self, before: CaseView | None, view: CaseView, alert: bool) -> list[Alert]:
        """The general path: any revision, at the place its case was first counted."""
        alerts: list[Alert] = []
        versions = self.state.versions
        if view.version not in versions.get(view.tool, {}):
            change = self._open_version(view)
            if change is not None and alert:
                alerts.append(change)
        # A case keeps the place it was first counted in: a re-run of the tool on the same
        # study (new version, new time) must retract from where the earlier revision was.
        home = before or view
        if home.version not in versions[home.tool]:
            open_version(self.state, home)
        placement = place(self.state, self._placements, home.place)
        record = placement.record
        if home.inferred_at > record.latest_inferred:
            record.latest_inferred = home.inferred_at
            record.latest_ts = home.inferred_at.timestamp()
        placement.windows.apply_group(
            placement.group, view.case_id, None if before is None else COLUMN[before.outcome],
            COLUMN[view.outcome], utc_day(home.inferred_at),
        )
        if before is None:
            record.label_free.add(utc_day(view.inferred_at), view.positive_call, view.score)
        if view.labelled_at is not None and (before is None or before.labelled_at is None):
            lag = (view.labelled_at - view.inferred_at) / _DAY
            record.report_lags.append(max(lag, 0.0))
        if record.charts is not None:
            previous = None if before is None else before.outcome
            signals = record.charts.update(view.case_id, previous, view.outcome, view.latest_at)
            alerts += self._signalled(record, signals, alert)
        return alerts

    def _open_version(self, view: CaseView) -> Alert | None:
        known = self.state.versions.get(view.tool, {})
        previous = max(known.values(), key=lambda r: r.first_seen, default=None)
        open_version(self.state, view)
        if previous is None:
            return None
        return version_change_alert(self.state, previous, view.tool, view.version, view.site,
                                    view.inferred_at, view.latest_at)

    def _signalled(self, record: VersionRecord, signals: list[Signal], alert: bool) -> list[Alert]:
        """The alert of each signal whose metric has no open episode (which it opens)."""
        alerts = []
        for signal in signals:
            key: EpisodeKey = (record.tool, record.version, signal.metric)
            if key in self.state.episodes:
                continue
            raised = cusum_alert(self.state, record, signal)
            self.state.episodes[key] = Episode(raised.alert_id, signal.at)
            if alert:
                alerts.append(raised)
        return alerts

    # -- daily evaluation ----------------------------------------------------------------

    def evaluate(
        self, now: datetime, *, tools: Iterable[str] | None = None, snapshots: bool = True
    ) -> tuple[list[Alert], list[MetricSnapshot]]:
        """Snapshots and verdict alerts as of the event-time day of `now`
        (`clinical.daily_evaluation`).

        `tools` restricts the evaluation (default: every tool seen); `snapshots=False`
        skips building snapshots (verdicts and alerts are unchanged).
        """
        if now.tzinfo is None:
            raise MonitorError(
                f"evaluate needs a timezone-aware event time, got {now.isoformat()}"
            )
        return evaluate(self.state, now, tools, snapshots)

    # -- ownership -----------------------------------------------------------------------

    def replay(self, steps: Iterable[tuple[CaseView | None, CaseView]]) -> list[Alert]:
        """Stored records' revisions (before, after) taken in turn, alerting as a new
        revision does: the part of a replayed tool's records in effect after its last
        evaluated day (`engine.evaluation.DailyEvaluation.defer`)."""
        alerts: list[Alert] = []
        for before, view in steps:
            alerts += self._apply(before, view, alert=True)
        return alerts

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
        old = self.state
        held = set(old.versions)
        self.state = MonitorState(
            self.settings,
            verdicts={k: v for k, v in old.verdicts.items() if k[0] in held},
            alarming={k: v for k, v in old.alarming.items() if k[0] in held},
            warnings={k: v for k, v in old.warnings.items() if k[0] in held},
            episodes={k: v for k, v in old.episodes.items() if k[0] in held},
        )
        self._placements, self._homes = {}, {}
        for view in views:
            self._apply(None, view, alert=False)
