"""The monitor's per-case counting against a recount from the raw list of revisions fed.

The monitor counts each revision incrementally (`clinical.case_placement`,
`stats.windows.apply_group`); the oracle here keeps nothing incremental: after the stream
it recounts every window of every key from the cases' revisions, by the documented rules:
- a case counts under the 8 keys of the place (tool, version, site, scanner, sex, age band)
  and UTC day of its FIRST revision (a re-run by a new version, at another time or site,
  stays where it was first counted), with its latest outcome;
- the last N of a key: a case is counted iff its outcome is in the confusion matrix and
  its latest entry into the matrix is among the last N entries made under that key;
- a revision not higher than the one held changes nothing;
- a version of a tool seen for the first time after another raises `version_change`.
The verdicts after `evaluate` must be `judge` of the recounted windows. Streams have time
going backwards (and other time zones), same-minute bursts, sites and scanners no registry
knows, empty scanner names, missing ages, re-runs by new versions, corrections in and out
of the matrix, and stale replays.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone

from hypothesis import given, settings
from hypothesis import strategies as st

from surveillance.clinical.baselines import load_registry
from surveillance.clinical.ledger import CaseRecord, record_of
from surveillance.clinical.monitor import PerformanceMonitor
from surveillance.clinical.monitor_state import ALL_SITES
from surveillance.clinical.verdicts import judge
from surveillance.contracts import AdjudicatedCase, CaseOutcome, Label, Sex
from surveillance.stats.agreement import Confusion
from surveillance.stats.windows import Key, WindowCounts, age_band

REGISTRY = load_registry()
TOOL = "ptx-triage"
T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
LAST_N = 6
MATRIX = (CaseOutcome.TP, CaseOutcome.FP, CaseOutcome.TN, CaseOutcome.FN)
_LABEL = {
    CaseOutcome.TP: Label.PRESENT, CaseOutcome.FN: Label.PRESENT,
    CaseOutcome.FP: Label.ABSENT, CaseOutcome.TN: Label.ABSENT,
    CaseOutcome.INDETERMINATE: Label.INDETERMINATE,
}

names = st.text(
    alphabet=st.characters(blacklist_categories=("Cs", "Cc")), min_size=1, max_size=12
).filter(lambda s: s.strip() and s.strip() != ALL_SITES)
# Mostly a few places (so that re-runs land where other cases count), sometimes odd names.
places = st.fixed_dictionaries({
    "tool": st.sampled_from([TOOL, TOOL, "unregistered-tool"]),
    "version": st.sampled_from(["1.0", "1.0", "2.0", "3.0-beta"]),
    "site": st.one_of(*[st.sampled_from(["site-a", "site-b"])] * 4, names),
    "scanner": st.one_of(*[st.sampled_from(["GE", "", "unknown"])] * 4, names),
    "sex": st.sampled_from([Sex.FEMALE, Sex.FEMALE, Sex.MALE, Sex.UNKNOWN]),
    "age": st.one_of(st.none(), st.sampled_from([30, 70]), st.integers(0, 110)),
})
# Minutes from T0: back and forth over ~200 days, and bursts within the same minute.
moments = st.one_of(st.integers(min_value=-40 * 1440, max_value=160 * 1440),
                    st.sampled_from([0, 1, 600, 1440 * 45 + 7]))
zones = st.sampled_from([UTC, timezone(timedelta(hours=5)), timezone(timedelta(hours=-8))])
outcomes = st.sampled_from(list(CaseOutcome))
new_case = st.tuples(st.just("new"), places, moments, zones, outcomes)
# A later revision of an earlier case: same place, or a re-run at a new place and time.
revision = st.tuples(st.just("revise"), st.integers(min_value=0), outcomes,
                     st.one_of(st.none(), st.tuples(places, moments, zones)))
replay = st.tuples(st.just("replay"), st.integers(min_value=0))
operations = st.lists(st.one_of(new_case, new_case, revision, replay), min_size=1,
                      max_size=120)


def make_case(n: int, revision_no: int, outcome: CaseOutcome, place: dict[str, object],
              at: datetime) -> AdjudicatedCase:
    positive = outcome in (CaseOutcome.TP, CaseOutcome.FP) or (
        outcome not in MATRIX and n % 2 == 0)
    labelled = outcome not in (CaseOutcome.PENDING, CaseOutcome.UNLABELLED)
    return AdjudicatedCase.model_validate({
        "case_id": f"acc{n}:{place['tool']}", "revision": revision_no, "outcome": outcome,
        "label": _LABEL.get(outcome), "tool_id": place["tool"],
        "software_version": place["version"], "finding_code": "pneumothorax",
        "site": place["site"], "ai_result": 0.9 if positive else 0.1,
        "operating_threshold": 0.5, "result_indicator": positive, "accession": f"acc{n}",
        "study_date": at.date(), "inference_date": at,
        "labelled_at": at + timedelta(hours=6) if labelled else None, "modality": "DX",
        "scanner_manufacturer": place["scanner"], "scanner_model": "m",
        "scanner_software_version": "s", "age": place["age"], "sex": place["sex"],
        "ai_event_id": f"ai{n}",
    })


@dataclass
class Fed:
    """The raw list of revisions the monitor was given, and what it returned."""

    revisions: list[tuple[CaseRecord | None, AdjudicatedCase]] = field(default_factory=list)
    alerts: list[str] = field(default_factory=list)


def feed(monitor: PerformanceMonitor, ops: list[tuple[object, ...]]) -> Fed:
    table: dict[str, CaseRecord] = {}
    history: dict[str, list[AdjudicatedCase]] = {}
    fed = Fed()
    for op in ops:
        if op[0] == "new":
            _, place, minute, zone, outcome = op
            assert isinstance(place, dict) and isinstance(minute, int)
            assert isinstance(outcome, CaseOutcome) and isinstance(zone, timezone)
            c = make_case(len(history), 0, outcome, place,
                          (T0 + timedelta(minutes=minute)).astimezone(zone))
        elif not history:
            continue
        elif op[0] == "revise":
            _, pick, outcome, moved = op
            assert isinstance(pick, int) and isinstance(outcome, CaseOutcome)
            ids = list(history)
            latest = history[ids[pick % len(ids)]][-1]
            n = int(latest.accession[3:])
            where: dict[str, object] = {
                "tool": latest.tool_id, "version": latest.software_version,
                "site": latest.site, "scanner": latest.scanner_manufacturer,
                "sex": latest.sex, "age": latest.age,
            }
            at = latest.inference_date
            if moved is not None:
                assert isinstance(moved, tuple)
                new_place, minute, zone = moved
                assert isinstance(new_place, dict) and isinstance(minute, int)
                assert isinstance(zone, timezone)
                where = {**new_place, "tool": latest.tool_id}  # same study, same tool
                at = (T0 + timedelta(minutes=minute)).astimezone(zone)
            c = make_case(n, latest.revision + 1, outcome, where, at)
        else:
            _, pick = op
            assert isinstance(pick, int)
            ids = list(history)
            revisions = history[ids[pick % len(ids)]]
            c = revisions[pick % len(revisions)]  # a stale or duplicate delivery
        previous = table.get(c.case_id)
        fed.alerts += [a.alert_id for a in monitor.on_case(previous, c)]
        fed.revisions.append((previous, c))
        if previous is None or c.revision > previous.revision:
            table[c.case_id] = record_of(c, 0)
            history.setdefault(c.case_id, []).append(c)
    return fed


def day_of(moment: datetime) -> int:
    return moment.astimezone(UTC).toordinal()


def keys_of(case: AdjudicatedCase) -> list[Key]:
    subgroups = [("scanner_manufacturer", case.scanner_manufacturer or "unknown"),
                 ("sex", case.sex.value), ("age_band", age_band(case.age))]
    out: list[Key] = []
    for site in (case.site, ALL_SITES):
        base: Key = (("tool", case.tool_id), ("version", case.software_version), ("site", site))
        out += [base, *((*base, sub) for sub in subgroups)]
    return out


@dataclass
class Recount:
    """Windows recounted from the accepted revisions, by the documented rules."""

    home: dict[str, AdjudicatedCase]  # the first revision: place and day
    latest: dict[str, CaseOutcome]
    entries: dict[Key, list[str]]  # cases in order of their entries into the matrix
    version_changes: list[str]

    @classmethod
    def of(cls, fed: Fed) -> Recount:
        home: dict[str, AdjudicatedCase] = {}
        latest: dict[str, CaseOutcome] = {}
        entries: dict[Key, list[str]] = defaultdict(list)
        seen: dict[str, list[str]] = {}
        changes: list[str] = []
        for previous, c in fed.revisions:
            if previous is not None and c.revision <= previous.revision:
                continue
            versions = seen.setdefault(c.tool_id, [])
            if c.software_version not in versions:
                if versions:
                    changes.append(f"version_change:{c.tool_id}:{c.software_version}")
                versions.append(c.software_version)
            first = home.setdefault(c.case_id, c)
            before = latest.get(c.case_id)
            if c.outcome in MATRIX and before not in MATRIX:
                for key in keys_of(first):
                    entries[key].append(c.case_id)
            latest[c.case_id] = c.outcome
        return cls(home, latest, entries, changes)

    def calendar(self, key: Key, days: int, today: int) -> WindowCounts:
        cells = dict.fromkeys(CaseOutcome, 0)
        for case_id, first in self.home.items():
            if key in keys_of(first) and today - days < day_of(first.inference_date) <= today:
                cells[self.latest[case_id]] += 1
        return _counts(cells)

    def last_n(self, key: Key) -> WindowCounts:
        cells = dict.fromkeys(CaseOutcome, 0)
        recent = self.entries.get(key, [])[-LAST_N:]
        for case_id in set(recent):
            last_entry = len(self.entries[key]) - self.entries[key][::-1].index(case_id)
            outcome = self.latest[case_id]
            if outcome in MATRIX and last_entry > len(self.entries[key]) - LAST_N:
                cells[outcome] += 1
        return _counts({o: cells[o] if o in MATRIX else 0 for o in CaseOutcome})


def _counts(cells: dict[CaseOutcome, int]) -> WindowCounts:
    return WindowCounts(
        Confusion(tp=cells[CaseOutcome.TP], fp=cells[CaseOutcome.FP],
                  tn=cells[CaseOutcome.TN], fn=cells[CaseOutcome.FN]),
        cells[CaseOutcome.INDETERMINATE], cells[CaseOutcome.PENDING],
        cells[CaseOutcome.UNLABELLED],
    )


@settings(max_examples=150, deadline=None, derandomize=True, database=None)
@given(operations, st.integers(min_value=0, max_value=20))
def test_windows_verdicts_and_version_changes_equal_a_recount_of_the_raw_cases(
    ops: list[tuple[object, ...]], read_later_by: int
) -> None:
    monitor = PerformanceMonitor(REGISTRY, last_n=LAST_N)
    fed = feed(monitor, ops)
    recount = Recount.of(fed)
    assert [a for a in fed.alerts if a.startswith("version_change:")] == (
        recount.version_changes
    )
    if not recount.home:
        return
    today = max(day_of(c.inference_date) for c in recount.home.values()) + read_later_by
    now = datetime.fromordinal(today).replace(tzinfo=UTC)
    keys = {k for c in recount.home.values() for k in keys_of(c)}
    for tool in {c.tool_id for c in recount.home.values()}:
        assert set(monitor.window_keys(tool)) == {k for k in keys if k[0] == ("tool", tool)}
        windows = monitor.tool_windows(tool)
        for key in monitor.window_keys(tool):
            for days in (7, 30, 90):
                assert windows.window(key, days, now) == recount.calendar(key, days, today)
            assert windows.window(key, "last_n") == recount.last_n(key)
    monitor.evaluate(now)
    for (tool, version, site, days, metric), verdict in monitor.verdicts().items():
        base: Key = (("tool", tool), ("version", version), ("site", site))
        expected = judge(recount.calendar(base, days, today).confusion, REGISTRY[tool])
        assert verdict == expected[metric]
