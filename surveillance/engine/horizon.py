"""The case horizon: case records leave the live state once their event time is far behind.

Without it every case record stays in the case table forever, and every rebalance
rebuilds the monitor from all of them. The monitor's windows (at most 90 days of AI
time, plus the charts' `settle_days` of report time) and the usual correction delay need
far less, so a record whose latest event time (AI call or report) is older than the
horizon (`EngineConfig.case_horizon`, default 180 days) behind its partition's case
clock is deleted from the table, with a changelog tombstone, so a restore forgets it too.

Kept past the horizon, for each version still live (with a record inside the horizon; a
version that is not is no longer evaluated, and its records all leave):
- each version's reference period: the records of its first `REFERENCE_DAYS_KEPT` days of
  AI time and of report time. The CUSUM chart design, the label-free reference and the
  drift bank's reference are their version's first weeks, and a rebuild re-derives them
  from these records (a few weeks per version, not history);
- the last `last_n` records of each (tool, version, site): the monitor's last-N window
  of a quiet site reaches further back than the horizon;
- the counts: a partition that has evicted records has a summary record in the case
  table (`summary_key`) with the ledger counts of its evicted cases and its cutoff, so
  counts after a rebuild equal counts before, and the cutoff never moves back (a clock
  that goes backwards, a new worker whose clock has not started yet).

A first revision (0) not in the table is a new case, whatever its age. A later revision
whose AI call is before the cutoff and whose case is not in the table may be a correction
of an evicted case (an addendum months later), or of a case never seen. The store
(PostgreSQL `cases`, the latest revision of every case) says which: a stored revision is
the previous one (the evicted counts move to the new outcome; the case re-enters the
table until it ages out again), no stored row makes it a new case.
Without a store the revision is dead-lettered with reason `horizon`, never guessed:
counting it as new could count a case twice. Such cases are outside every monitor window
and past their charts' settling, so they change counts, not windows or charts.

One ambiguity is left: a correction whose case the store has at the same revision is
taken as a replay of one already counted (`surveillance_horizon_late_cases_total{status=
"replayed"}`), which it is unless the worker never saw the case (its first revision was
dead-lettered) and the store writer read the correction first.
"""

from __future__ import annotations

import sys
from collections import Counter
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec

from surveillance.clinical.ledger import CaseRecord, CountKey
from surveillance.contracts.wire import AnyAdjudicatedCase
from surveillance.engine.tables import Table

#: Days of AI time and of report time from a version's first case that are kept: the
#: references (charts 28 + 2 days of report time, label-free 28 and drift 30 days of AI
#: time) with room for a tool that is idle on some of its first days.
REFERENCE_DAYS_KEPT = 45
#: The shortest horizon accepted: the longest monitor window (90 days) and the charts'
#: settling (7 days) must lie inside it, or a rebuild would not restore them.
MIN_HORIZON_DAYS = 98
_SUMMARY_PREFIX = "~horizon:"
_DAY = 86_400


def summary_key(partition: int) -> str:
    """The case-table key of a partition's summary (no case id starts with `~`)."""
    return f"{_SUMMARY_PREFIX}{partition}"


def is_summary(key: str) -> bool:
    return key.startswith(_SUMMARY_PREFIX)


def case_records(items: Iterable[tuple[str, Any]], partitions: Collection[int],
                 decode: Callable[[Any], CaseRecord] = CaseRecord.from_dict
                 ) -> list[tuple[str, CaseRecord]]:
    """(case id, record) of the case table's items on `partitions`, summaries left out."""
    pairs = ((k, decode(v)) for k, v in items if v and not is_summary(k))
    return [(k, r) for k, r in pairs if r.partition in partitions]


class _Light(msgspec.Struct):
    """A stored case record's fields but its drift features (decoding skips them).

    `CaseRecord`'s fields in its order, written out rather than derived so that decoding
    stays typed and `light_record` builds the record positionally (~1.3 us a record);
    `test_engine_snapshots` holds the two field lists equal."""

    revision: int
    outcome: str
    tool: str
    version: str
    site: str
    partition: int
    inference_ts: float
    labelled_ts: float | None = None
    score: float = 0.0
    positive_call: bool = False
    scanner_manufacturer: str = ""
    sex: str = "U"
    age: int | None = None
    source: int | None = None


_LIGHT = msgspec.json.Decoder(_Light)
_intern = sys.intern


def light_record(raw: bytes | dict[str, Any]) -> CaseRecord:
    """A stored case record (its JSON as a disk-backed store holds it, or the decoded
    dict) without its drift features and with its few distinct strings shared: what a
    rebuild keeps of each owned record (ledger counts, this index, the snapshots'
    digests). The features are most of a record's size decoded (~5 kB of ~5.3 kB
    measured), so a worker holding a 2M-exam/yr system's ~2.2M records would need
    ~11 GiB to keep them all; only the drift replay of a tool without a usable snapshot
    reads them, from the table again (`CaseStage.rebuild`'s `full`). From JSON, the
    features are skipped unread: ~1.3 us a record against ~20 for Faust's decoding of
    the whole value and a copy without them."""
    r = _LIGHT.decode(raw) if isinstance(raw, bytes) else msgspec.convert(raw, _Light)
    return CaseRecord(r.revision, _intern(r.outcome), _intern(r.tool), _intern(r.version),
                      _intern(r.site), r.partition, r.inference_ts, r.labelled_ts, r.score,
                      r.positive_call, _intern(r.scanner_manufacturer), _intern(r.sex),
                      r.age, None, r.source)


@dataclass(frozen=True)
class StoredCase:
    """The store's latest revision of a case: what a late correction is resolved against."""

    revision: int
    outcome: str
    tool: str
    version: str
    site: str


#: Case id -> the store's latest revision of it, None if the store has no such case.
CaseLookup = Callable[[str], StoredCase | None]


@dataclass(frozen=True)
class Late:
    """A revision of a case that may have been evicted, and what the store said."""

    previous: CaseRecord | None  # the store's revision as a record; None: a new case
    #: Why the revision cannot be counted (it is dead-lettered); "" when it can.
    unresolved: str = ""


def _latest_ts(record: CaseRecord | None) -> float:
    return 0.0 if record is None else max(record.inference_ts, record.labelled_ts or 0.0)


def _latest_day(record: CaseRecord) -> int:
    return int(_latest_ts(record) // _DAY)


class _Partition:
    def __init__(self) -> None:
        self.by_day: dict[int, list[str]] = {}
        self.cutoff_day: int | None = None
        #: The case clock `advance` last worked out the cutoff of: it is called once per
        #: case record, and the clock moves far less often.
        self.clock: datetime | None = None
        self.evicted: Counter[CountKey] = Counter()
        #: Records past the cutoff kept for their live version (references, last N), by
        #: version: they leave once the version is no longer live.
        self.held: dict[tuple[str, str], list[str]] = {}
        #: A record was ever evicted from the partition (its summary exists): before that,
        #: a case not in the table is new, whatever its age.
        self.saved = False


class CaseHorizon:
    """Evicts a partition's old case records as its case clock advances (pure: the table
    writes are the engine's changes; the store is asked through `lookup`)."""

    def __init__(self, horizon: timedelta | None, cases: Table[CaseRecord],
                 summaries: Table[dict[str, Any]], lookup: CaseLookup | None = None,
                 last_n: int = 200) -> None:
        if horizon is not None and horizon < timedelta(days=MIN_HORIZON_DAYS):
            raise ValueError(f"the case horizon must be at least {MIN_HORIZON_DAYS} days "
                             f"(longest monitor window and settling), got {horizon}")
        self.days = None if horizon is None else horizon / timedelta(days=1)
        self.cases = cases
        self.summaries = summaries
        self.lookup = lookup
        self.last_n = last_n
        #: Records in the table per (tool, version, site): the last `last_n` are kept; and
        #: how many of them are references already passed over (older than any evicted).
        self._live: Counter[tuple[str, str, str]] = Counter()
        self._references: Counter[tuple[str, str, str]] = Counter()
        self._parts: dict[int, _Partition] = {}
        # (tool, version) -> first AI day, first report day (None: no report yet)
        self._first: dict[tuple[str, str], tuple[int, int | None]] = {}
        self._last: dict[tuple[str, str], int] = {}  # (tool, version) -> latest event day
        #: Told of each record deleted from the table (the case stage's snapshot digests).
        self.evicted: Callable[[str, CaseRecord], None] = lambda case_id, record: None

    def rebuild(self, records: Iterable[tuple[str, CaseRecord]], partitions: Collection[int]
                ) -> Counter[CountKey]:
        """Index the owned records and restore each owned partition's summary; returns
        the evicted counts of those partitions (the ledger adds them to its own)."""
        self._parts = {p: self._restored(p) for p in partitions}
        self._first = {}
        self._last = {}
        self._live = Counter()
        self._references = Counter()
        if self.days is not None:
            self._index(records)
        total: Counter[CountKey] = Counter()
        for part in self._parts.values():
            total.update(part.evicted)
        return total

    def track(self, case_id: str, record: CaseRecord, new: bool) -> None:
        """A record stored (`new` to the table, or revised): index it under its latest
        event day. (`_index` does this for a rebuild's records: keep the two alike.)"""
        if self.days is None:
            return
        if new:
            self._live[record.tool, record.version, record.site] += 1
        part = self._part(record.partition)
        latest_day = _latest_day(record)
        part.by_day.setdefault(latest_day, []).append(case_id)
        version = (record.tool, record.version)
        last = self._last.get(version)
        if last is None or latest_day > last:
            self._last[version] = latest_day if last is not None else max(0, latest_day)
        ai_day = int(record.inference_ts // _DAY)
        report_day = None if record.labelled_ts is None else int(record.labelled_ts // _DAY)
        first = self._first.get(version)
        if first is None:
            self._first[version] = (ai_day, report_day)
            return
        # The earliest of each, written only when one moves (once per case record: most
        # records move neither).
        first_ai, first_report = first
        if report_day is not None and (first_report is None or report_day < first_report):
            first_report = report_day
        if ai_day < first_ai or first_report != first[1]:
            self._first[version] = (min(first_ai, ai_day), first_report)

    def _index(self, records: Iterable[tuple[str, CaseRecord]]) -> None:
        """`track(case_id, record, new=True)` of each record, in one loop: the same
        index (~2.2M records at full scale) without two calls and the lookups per record."""
        live: dict[tuple[str, str, str], int] = {}
        day_index: dict[int, dict[int, list[str]]] = {}  # partition -> its `by_day`
        first, last = self._first, self._last
        for case_id, record in records:
            tool, version, ai_ts, labelled = (record.tool, record.version,
                                              record.inference_ts, record.labelled_ts)
            key = tool, version, record.site
            live[key] = live.get(key, 0) + 1
            by_day = day_index.get(record.partition)
            if by_day is None:
                by_day = day_index[record.partition] = self._part(record.partition).by_day
            latest_day = int(max(ai_ts, labelled or 0.0) // _DAY)  # `_latest_day`
            held = by_day.get(latest_day)
            if held is None:
                by_day[latest_day] = [case_id]
            else:
                held.append(case_id)
            pair = tool, version
            seen = last.get(pair)
            if seen is None:
                last[pair] = max(0, latest_day)
            elif latest_day > seen:
                last[pair] = latest_day
            ai_day = int(ai_ts // _DAY)
            report_day = None if labelled is None else int(labelled // _DAY)
            earliest = first.get(pair)
            if earliest is None:
                first[pair] = (ai_day, report_day)
                continue
            first_ai, first_report = earliest
            if report_day is not None and (first_report is None or report_day < first_report):
                first_report = report_day
            if ai_day < first_ai or first_report != earliest[1]:
                first[pair] = (min(first_ai, ai_day), first_report)
        self._live.update(live)

    def advance(self, partition: int, clock: datetime) -> int:
        """The partition's case clock reached `clock`: evict what is now past the horizon;
        returns how many records were evicted."""
        if self.days is None:
            return 0
        part = self._part(partition)
        if clock == part.clock:
            return 0  # the same cutoff as last time: nothing more is past it
        part.clock = clock
        cutoff_day = int((clock - timedelta(days=self.days)).timestamp() // _DAY)
        if part.cutoff_day is not None and cutoff_day <= part.cutoff_day:
            return 0  # same day, or the clock went back: the cutoff never moves back
        part.cutoff_day = cutoff_day
        evicted = 0
        for day in sorted(d for d in part.by_day if d < cutoff_day):
            # Oldest first, as the monitor's rebuild orders them, so that the records kept
            # as their site's last N are the ones its last-N window holds.
            found = [(case_id, self.cases.get(case_id))
                     for case_id in dict.fromkeys(part.by_day.pop(day))]
            found.sort(key=lambda item: (_latest_ts(item[1]), item[0]))
            for case_id, record in found:
                evicted += self._evict(part, partition, case_id, record, cutoff_day)
        for version in [v for v in part.held if self._last[v] < cutoff_day]:
            for case_id in part.held.pop(version):
                evicted += self._evict(part, partition, case_id, self.cases.get(case_id),
                                       cutoff_day)
        if evicted:
            self._save(part, partition)
        return evicted

    def late(self, case: AnyAdjudicatedCase, partition: int) -> Late | None:
        """For a case not in the table: None if it is simply new (a first revision, or its
        AI call is not before the cutoff), else what the store says about it."""
        part = self._parts.get(partition)
        if case.revision == 0 or part is None or not part.saved or part.cutoff_day is None:
            return None
        if case.inference_date.timestamp() // _DAY >= part.cutoff_day:
            return None
        cutoff = f"{datetime.fromtimestamp(part.cutoff_day * _DAY, UTC):%Y-%m-%d}"
        if self.lookup is None:
            return Late(None, unresolved=(
                f"its AI call is before the case horizon ({cutoff}), so an earlier revision "
                "may have left the live state, and no store is configured to look it up "
                "(set SURVEILLANCE_DATABASE__URL)"))
        stored = self.lookup(case.case_id)
        if stored is None:
            return Late(None)
        previous = CaseRecord(revision=stored.revision, outcome=stored.outcome,
                              tool=stored.tool, version=stored.version, site=stored.site,
                              partition=partition, inference_ts=case.inference_date.timestamp())
        if stored.revision < case.revision and part.evicted[previous.key] <= 0:
            return Late(None, unresolved=(
                f"the store's revision {stored.revision} ({stored.outcome}) is not among the "
                f"cases evicted at the horizon ({cutoff}) of partition {partition}: moving it "
                "could count the case twice; re-run the store writer, then replay this record"))
        return Late(previous)

    def readmit(self, previous: CaseRecord, partition: int) -> None:
        """A stored case re-enters the table (its correction is applied): it leaves the
        evicted counts, where its previous revision was counted (`late` checked that)."""
        part = self._part(partition)
        part.evicted[previous.key] -= 1
        part.evicted += Counter()  # drop zero counts
        self._save(part, partition)

    def _evict(self, part: _Partition, partition: int, case_id: str,
               record: CaseRecord | None, cutoff_day: int) -> int:
        if record is None or record.partition != partition:
            return 0  # already gone, or moved (a revision re-indexed it on its new day)
        if _latest_day(record) >= cutoff_day:
            return 0  # revised since: indexed again under its new day
        site = (record.tool, record.version, record.site)
        live = self._last[(record.tool, record.version)] >= cutoff_day
        if live and self._reference(record):
            self._references[site] += 1
            part.held.setdefault(site[:2], []).append(case_id)
            return 0
        if live and self._live[site] - self._references[site] <= self.last_n:
            part.held.setdefault(site[:2], []).append(case_id)
            return 0  # among its site's last N (records are evicted oldest first)
        self.cases.delete(case_id, partition)
        self.evicted(case_id, record)
        self._live[site] -= 1
        part.evicted[record.key] += 1
        return 1

    def _reference(self, record: CaseRecord) -> bool:
        first_ai, first_report = self._first[(record.tool, record.version)]
        if record.inference_ts // _DAY < first_ai + REFERENCE_DAYS_KEPT:
            return True
        return (first_report is not None and record.labelled_ts is not None
                and record.labelled_ts // _DAY < first_report + REFERENCE_DAYS_KEPT)

    def _part(self, partition: int) -> _Partition:
        part = self._parts.get(partition)
        if part is None:
            part = self._parts[partition] = self._restored(partition)
        return part

    def _restored(self, partition: int) -> _Partition:
        part = _Partition()
        saved = self.summaries.get(summary_key(partition))
        if saved:
            part.saved = True
            part.cutoff_day = saved["cutoff_day"]
            part.evicted = Counter({(t, v, s, o): n for t, v, s, o, n in saved["evicted"]})
        return part

    def _save(self, part: _Partition, partition: int) -> None:
        part.saved = True
        self.summaries.put(summary_key(partition), {
            "cutoff_day": part.cutoff_day,
            "evicted": [[*key, n] for key, n in sorted(part.evicted.items())],
        }, partition)
