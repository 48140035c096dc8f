"""A tool's whole bank of drift detectors over its configured features.

Features and settings: `drift_features`. Per feature: `drift_numeric_feature`,
`drift_categorical_feature`; their episodes: `drift_episode`; thresholds:
`drift_feature_bank` (calibrated through `drift_calibration_cache`); alert text:
`drift_wording` and `drift_verdict`.

Event time. Events arrive out of event-time order (report-first cases, several join
partitions). The bank buffers each event-time day and evaluates it, in event-time
order, once its clock (the latest event time seen, or `advance(now)`) is
`lateness_days` past the day's end. An event for a day already evaluated is counted in
the earliest open day: evaluated days are never reopened. Within the buffer an event id
is counted once (redelivery). `update` only files the event under its day; a day's
events are read into feature columns and counted when the day is evaluated.

Reference period. `DriftBank.for_tool(tool_id, config)` takes the first
`config.reference_days` evaluated days of the tool's events as the reference (the
local-validation period), then calibrates and starts monitoring. Output features are
kept per software version, and each version's reference is its own first
`reference_days` days: a new version's scores are not judged against the previous
version's (version changes are alerted elsewhere).
`DriftBank.from_reference(tool_id, reference_results, config)` takes an explicit
reference instead. See `disabled_features` for features the reference cannot support.

Calibration (seconds of Monte Carlo) happens once per reference. With
`calibrate_inline=False` the clock stops at the first day that needs it
(`calibration_due`) and `calibrate()` does it and evaluates the days the clock has
closed since, so a caller can keep it off its per-event path; the verdicts, and their
order, are the same either way. `references_due` gives what `calibrate` will build on,
for a caller that has the thresholds computed elsewhere first (`engine.drift`).

Context. Each verdict says what moved in the feature's units, and the site where the
shift concentrates when one does (a site whose window differs from its own reference by
at least three times the total variation distance of any other site), and names likely
causes: categories first seen in this or the previous window, and cause features whose
episode opened in the same window.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, time, timedelta
from operator import attrgetter, itemgetter

from surveillance.contracts import AIResult
from surveillance.stats.alarm_budget import DAYS_PER_YEAR
from surveillance.stats.categorical_drift import NewCategory
from surveillance.stats.drift_calibration import DAYS_PER_QUARTER
from surveillance.stats.drift_calibration_cache import Calibrations
from surveillance.stats.drift_episode import VerdictContext
from surveillance.stats.drift_feature_bank import Columns, FeatureBank, Reference
from surveillance.stats.drift_features import CAUSE_FEATURES, DriftBankConfig, FeatureSpec
from surveillance.stats.drift_verdict import DriftVerdict
from surveillance.stats.drift_wording import cause_hint
from surveillance.stats.numeric_drift import DriftParameterError

__all__ = ["DriftBank", "DriftBankConfig", "DriftVerdict"]

#: A day's events: (event time in UTC, the result).
Events = list[tuple[datetime, AIResult]]


@dataclass
class _Phase:
    """Collecting a reference, then monitoring with the bank built from it."""

    specs: tuple[FeatureSpec, ...]
    ctx: VerdictContext
    rows: Columns = field(default_factory=Columns)
    first_day: date | None = None
    bank: FeatureBank | None = None


def _columns(
    specs: Sequence[FeatureSpec], events: Events, results: list[AIResult] | None = None
) -> Columns:
    """The events' columns; `results`: their results, if already taken out."""
    if results is None:
        results = list(map(_result, events))
    return Columns(
        list(map(_time, events)),
        list(map(_site, results)),
        [list(map(spec.extract, results)) for spec in specs],
    )


_site = attrgetter("site")
_event_id, _version = attrgetter("event_id"), attrgetter("software_version")
_time, _result = itemgetter(0), itemgetter(1)


def _midnight(day: date) -> datetime:
    return datetime.combine(day, time(), UTC)


class DriftBank:
    """Input and output drift of one tool; feed it every `AIResult` of the tool."""

    def __init__(
        self,
        tool_id: str,
        config: DriftBankConfig | None = None,
        calibrations: Calibrations | None = None,
        *,
        calibrate_inline: bool = True,
    ) -> None:
        self.tool_id = tool_id
        self.config = config or DriftBankConfig()
        self.calibrations = calibrations if calibrations is not None else Calibrations()
        self.calibrate_inline = calibrate_inline
        specs = self.config.specs
        self._input_specs = tuple(s for s in specs if s.role == "input")
        self._output_specs = tuple(s for s in specs if s.role == "output")
        self._alarms_per_year = self.config.alarms_per_quarter * DAYS_PER_YEAR / DAYS_PER_QUARTER
        self._inputs = _Phase(
            self._input_specs, VerdictContext(tool_id, None, "input", None, self._alarms_per_year)
        )
        self._outputs: dict[str, _Phase] = {}
        self._open: dict[date, Events] = {}
        self._seen: set[str] = set()
        self._clock: datetime | None = None
        #: First day not yet evaluated (None before the first evaluation).
        self._next_day: date | None = None
        self._window_start: datetime | None = None
        self._recent_new: list[tuple[int, NewCategory]] = []
        self._window_index = 0
        self._due: list[_Phase] = []
        self._lateness = timedelta(days=1 + self.config.lateness_days)
        self._event_clock = self.config.event_clock
        #: When the clock reaches this, `_next_day` can be evaluated.
        self._closes_at: datetime | None = None

    @classmethod
    def for_tool(
        cls, tool_id: str, config: DriftBankConfig | None = None,
        calibrations: Calibrations | None = None, *, calibrate_inline: bool = True,
    ) -> DriftBank:
        """A bank that takes its first `reference_days` days of events as the reference."""
        return cls(tool_id, config, calibrations, calibrate_inline=calibrate_inline)

    @classmethod
    def from_reference(
        cls,
        tool_id: str,
        reference: Iterable[AIResult],
        config: DriftBankConfig | None = None,
        calibrations: Calibrations | None = None,
    ) -> DriftBank:
        """A bank calibrated now on an explicit reference (e.g. the local validation)."""
        bank = cls(tool_id, config, calibrations)
        results = [r for r in reference if r.tool_id == tool_id]
        if not results:
            raise DriftParameterError(f"the reference has no results of tool {tool_id!r}")
        events = [(r.inference_date.astimezone(UTC), r) for r in results]
        days = [at.date() for at, _ in events]
        span = (max(days) - min(days)).days + 1
        bank._build(bank._inputs, _columns(bank._input_specs, events), span)
        by_version: dict[str, Events] = {}
        for at, r in events:
            by_version.setdefault(r.software_version, []).append((at, r))
        for version, rows in by_version.items():
            phase = bank._output_phase(version)
            bank._build(phase, _columns(bank._output_specs, rows), span)
        return bank

    @property
    def monitoring(self) -> bool:
        """True once the input reference is established and the detectors calibrated."""
        return self._inputs.bank is not None

    @property
    def calibration_due(self) -> bool:
        """The clock stopped at a day whose reference must be calibrated (`calibrate`)."""
        return bool(self._due)

    @property
    def disabled_features(self) -> list[str]:
        """Input features the reference could not support (too few non-missing values)."""
        return list(self._inputs.bank.disabled) if self._inputs.bank else []

    @property
    def reference_period(self) -> tuple[date, date] | None:
        """First and last day of the input reference, once established."""
        return self._inputs.ctx.reference_period

    def versions_monitored(self) -> list[str]:
        return [v for v, phase in self._outputs.items() if phase.bank is not None]

    def statistics(self) -> list[tuple[str, str, float, bool]]:
        """(feature, detector, last window's statistic, in a drift episode) per feature."""
        phases = [self._inputs, *self._outputs.values()]
        out = []
        for phase in phases:
            if phase.bank is None:
                continue
            for feature in phase.bank.features:
                if feature is not None and feature.last_statistic is not None:
                    detector, value = feature.last_statistic
                    out.append((feature.spec.name, detector, value,
                                feature.episode.since is not None))
        return out

    def update(self, result: AIResult) -> list[DriftVerdict]:
        """Count one AI result; return the verdicts of the days it lets close."""
        at = result.inference_date.astimezone(UTC)
        event_id = result.event_id
        if event_id not in self._seen:
            self._seen.add(event_id)
            day = at.date()
            if self._next_day is not None and day < self._next_day:
                day = self._next_day  # late: evaluated days are never reopened
            events = self._open.get(day)
            if events is None:
                self._open[day] = [(at, result)]
            else:
                events.append((at, result))
        if not self._event_clock:
            return []
        clock, closes_at = self._clock, self._closes_at
        if clock is not None and closes_at is not None and at < closes_at:
            if at > clock:
                self._clock = at
            return []  # the common case: no day to close (`_tick` without the call)
        return self._tick(at)

    def advance(self, now: datetime) -> list[DriftVerdict]:
        """Move the clock to `now` (call from a timer); evaluate the days it closes."""
        return self._tick(now)

    def references_due(self) -> list[Reference]:
        """The references `calibrate` will build detectors on (those with enough events)."""
        return [Reference(tuple(s.name for s in p.specs), p.rows, self.config.reference_days,
                          p.ctx, self.config)
                for p in self._due if len(p.rows) >= self.config.min_reference_events]

    def calibrate(self) -> list[DriftVerdict]:
        """Calibrate the references `calibration_due` waits for; then evaluate the days
        the clock has closed meanwhile and return their verdicts."""
        for phase in self._due:
            self._build(phase, phase.rows, self.config.reference_days)
            if phase.bank is None:
                # Too few events for a reference: start collecting again from that day.
                phase.first_day, phase.rows = None, Columns()
        self._due = []
        return self._tick(None)

    def _tick(self, now: datetime | None) -> list[DriftVerdict]:
        if now is not None and (self._clock is None or now > self._clock):
            self._clock = now
        if self._closes_at is not None and self._clock is not None and (
            self._clock < self._closes_at
        ):
            return []  # the common case, once per event: no day to close
        if self._next_day is None:
            if not self._open:
                return []
            self._next_day = min(self._open)
        if self._due or self._clock is None:
            return []
        verdicts: list[DriftVerdict] = []
        # Every day in turn, empty ones too: weekly windows close on Sundays.
        while _midnight(self._next_day) + self._lateness <= self._clock:
            day = self._next_day
            events = self._open.get(day, [])
            self._due = self._due_on(day, events)
            if self._due:
                if not self.calibrate_inline:
                    break
                verdicts += self.calibrate()  # evaluates this day and the rest
                break
            verdicts += self._evaluate_day(day, self._open.pop(day, []))
            self._next_day = day + timedelta(days=1)
        self._closes_at = _midnight(self._next_day) + self._lateness
        return verdicts

    def _due_on(self, day: date, events: Events) -> list[_Phase]:
        """Phases whose reference is complete before `day`: to be built first."""
        phases = [self._inputs]
        # Only a version still collecting its reference can be due (read the day's
        # versions only then: this runs every day).
        if self._output_specs and any(p.bank is None for p in self._outputs.values()):
            versions = dict.fromkeys(r.software_version for _, r in events)
            phases += [self._outputs[v] for v in versions if v in self._outputs]
        return [
            p for p in phases
            if p.bank is None and p.first_day is not None
            and (day - p.first_day).days >= self.config.reference_days
        ]

    def _output_phase(self, version: str) -> _Phase:
        context = VerdictContext(self.tool_id, version, "output", None, self._alarms_per_year)
        phase = _Phase(self._output_specs, context)
        self._outputs[version] = phase
        return phase

    def _build(self, phase: _Phase, rows: Columns, days: int) -> None:
        if len(rows) < self.config.min_reference_events:
            return
        phase.bank = FeatureBank(phase.specs, rows, days, phase.ctx, self.config,
                                 self.calibrations)
        phase.rows = Columns()

    def _evaluate_day(self, day: date, events: Events) -> list[DriftVerdict]:
        events.sort(key=_time)
        results = list(map(_result, events))
        self._seen.difference_update(map(_event_id, results))
        if self._window_start is None:
            self._window_start = _midnight(day)
        inputs = _columns(self._input_specs, events, results)
        verdicts = self._feed(self._inputs, day, inputs)
        if self._output_specs:
            versions = dict.fromkeys(map(_version, results))
            if len(versions) == 1:  # the usual day: one version, the inputs' times and sites
                outputs = [(next(iter(versions)), replace(
                    inputs, values=[list(map(s.extract, results)) for s in self._output_specs]
                ))]
            else:
                by_version: dict[str, Events] = {}
                for e in events:
                    by_version.setdefault(e[1].software_version, []).append(e)
                outputs = [(version, _columns(self._output_specs, rows))
                           for version, rows in by_version.items()]
            for version, columns in outputs:
                phase = self._outputs.get(version) or self._output_phase(version)
                verdicts += self._feed(phase, day, columns)
        if self.config.window == "daily" or day.weekday() == 6:
            verdicts += self._close(self._window_start)
            self._window_start = _midnight(day) + timedelta(days=1)
        return verdicts

    def _feed(self, phase: _Phase, day: date, rows: Columns) -> list[DriftVerdict]:
        if phase.bank is None:
            if rows and phase.first_day is None:
                phase.first_day = day
            phase.rows.extend(rows)
            return []
        verdicts = phase.bank.add(rows)
        for v in verdicts:
            if v.kind == "new_category" and v.category is not None and v.first_seen:
                self._recent_new.append(
                    (self._window_index, NewCategory(v.feature, v.category, v.first_seen))
                )
        return verdicts

    def _close(self, start: datetime) -> list[DriftVerdict]:
        assert self._clock is not None
        verdicts: list[DriftVerdict] = []
        for phase in (self._inputs, *self._outputs.values()):
            if phase.bank is not None:
                verdicts += phase.bank.close_window(start, self._clock)
        # Hints name features whose episode opened in this window: one in a long-running
        # episode (a protocol change weeks ago) is no news about today's shift.
        opened = {v.feature for v in verdicts}
        verdicts = [self._with_hint(v, opened) for v in verdicts]
        self._window_index += 1
        self._recent_new = [(i, n) for i, n in self._recent_new if i >= self._window_index - 1]
        return verdicts

    def _with_hint(self, verdict: DriftVerdict, opened: set[str]) -> DriftVerdict:
        news = [
            n for _, n in self._recent_new
            if n.feature in CAUSE_FEATURES and n.feature != verdict.feature
        ]
        hint = cause_hint(
            [(n.feature, n.category, n.first_seen) for n in news],
            opened & CAUSE_FEATURES - {verdict.feature},
        )
        if hint is None:
            return verdict
        first = min((n.first_seen for n in news), default=None)
        return replace(verdict, cause_hint=hint, first_seen=first)
