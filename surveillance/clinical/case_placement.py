"""Where the monitor counts a case: its place, resolved once to the windows of its keys.

A place is (tool, version, site, scanner manufacturer, sex, age): everything apart from
the day that decides which window keys a case counts under. `place` resolves it to a
`Placement` (the version's record, the tool's windows and the group of the place's 8 keys:
(site, all sites) x (itself, scanner, sex, age band)) the first time a case comes there;
every later case at that place reuses it, so the per-case path builds no keys.
`CaseView` is what the monitor's general path reads of a case or of its stored record.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from surveillance.clinical.label_free import LabelFreeMonitor
from surveillance.clinical.ledger import CaseRecord
from surveillance.clinical.monitor_state import (
    ALL_SITES,
    MonitorState,
    VersionRecord,
    site_key,
)
from surveillance.clinical.version_charts import VersionCharts
from surveillance.contracts import CaseOutcome
from surveillance.contracts.wire import AnyAdjudicatedCase
from surveillance.stats.windows import AgreementWindows, Key, KeyGroup, age_band, subgroup_keys


@dataclass(frozen=True, slots=True)
class CaseView:
    """The fields of a case the general path uses, from an `AdjudicatedCase` or a
    `CaseRecord`."""

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
    def of_case(cls, case: AnyAdjudicatedCase) -> CaseView:
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

    @property
    def place(self) -> PlaceKey:
        return (self.tool, self.version, self.site, self.scanner_manufacturer, self.sex,
                self.age)


#: Where a case counts, apart from its day: tool, version, site, scanner, sex, age.
PlaceKey = tuple[str, str, str, str, str, int | None]


class Placement:
    """A place resolved: the version's record and the windows of the place's 8 keys."""

    __slots__ = ("charts", "group", "record", "windows")

    def __init__(self, record: VersionRecord, windows: AgreementWindows, group: KeyGroup):
        self.record = record
        self.windows = windows
        self.group = group
        self.charts = record.charts


def place(state: MonitorState, placements: dict[PlaceKey, Placement], key: PlaceKey
          ) -> Placement:
    """The placement of `key` (its version must be open), made on first use."""
    found = placements.get(key)
    if found is not None:
        return found
    tool, version, site, scanner, sex, age = key
    record = state.versions[tool][version]
    subgroups = {
        "scanner_manufacturer": scanner or "unknown", "sex": str(sex),
        "age_band": age_band(age),
    }
    record.sites.add(site)
    keys: list[Key] = []
    bases: list[Key] = []
    for where in (site, ALL_SITES):
        dims = record.subgroups.setdefault(where, {})
        for dim, value in subgroups.items():
            dims.setdefault(dim, set()).add(value)
        bases.append(site_key(tool, version, where))
        keys.extend(subgroup_keys(bases[-1], subgroups))
    windows = state.windows_of(tool)
    # The site keys keep their own last N (the daily evaluation reads it for each); the
    # subgroup keys' is read from the groups' (only on request).
    group = windows.group(keys, kept=bases)
    found = placements[key] = Placement(record, windows, group)
    return found


def open_version(state: MonitorState, view: CaseView) -> VersionRecord:
    """A new record for the version of `view`, first seen now."""
    s = state.settings
    baseline = s.registry.get(view.tool)
    record = VersionRecord(
        tool=view.tool,
        version=view.version,
        first_seen=view.inferred_at,
        label_free=LabelFreeMonitor(s.reference_days, alpha=s.label_free_alpha),
        latest_inferred=view.inferred_at,
        latest_ts=view.inferred_at.timestamp(),
        charts=None if baseline is None else VersionCharts(
            baseline, s.reference_days, s.reference_grace_days, s.settle_days,
            s.budget.per_year("cusum"),
        ),
    )
    state.versions.setdefault(view.tool, {})[view.version] = record
    return record


def record_fields(case: AnyAdjudicatedCase) -> CaseRecord:
    """The record the ledger would store for `case`, without the drift features (which the
    monitor does not read)."""
    return CaseRecord(
        revision=case.revision, outcome=case.outcome.value, tool=case.tool_id,
        version=case.software_version, site=case.site, partition=0,
        inference_ts=case.inference_date.timestamp(),
        labelled_ts=None if case.labelled_at is None else case.labelled_at.timestamp(),
        score=case.ai_result,
        positive_call=case.result_indicator, scanner_manufacturer=case.scanner_manufacturer,
        sex=case.sex.value, age=case.age,
    )
