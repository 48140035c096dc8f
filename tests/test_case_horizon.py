"""The case horizon (`engine.horizon`): case records leave the live state, counts do not.

- A record past the horizon is gone from the case table and from what its changelog
  restores (a tombstone); counts, alerts and every monitor window are those of an engine
  that keeps everything, live and after a rebuild from the restored tables.
- The cutoff never moves back (a clock going backwards, a new worker whose clock starts
  behind), and a revision of a possibly evicted case is never guessed: resolved against
  the store's revision, counted as new when the store has no row, dead-lettered (reason
  `horizon`, counted) when there is no store or the store disagrees with the counts.
- With real PostgreSQL (the store writer's own rows), a correction months later moves
  the evicted case to its new outcome exactly once, and an adverse event links to it.
- Property: on streams with no event beyond the horizon, eviction changes nothing a
  reader sees (alerts, counts, windows, also after a rebuild).
"""

from __future__ import annotations

import asyncio
import dataclasses
import random
from collections import Counter
from datetime import timedelta

import psycopg
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from surveillance.clinical.ledger import CaseRecord, CountKey
from surveillance.contracts import AdjudicatedCase, AdverseEvent, DeadLetter
from surveillance.engine.config import EngineConfig
from surveillance.engine.horizon import MIN_HORIZON_DAYS, CaseHorizon, StoredCase, is_summary
from surveillance.engine.records import Record
from surveillance.engine.tables import Table
from surveillance.store.batch import write_batch
from surveillance.store.case_lookup import StoreCaseLookup
from surveillance.store.migrate import migrate
from surveillance.store.rows import Decoder, Rows
from surveillance.stream import topics
from tests.horizon_streams import T0, Feed, flipped, make_case, windows
from tests.store_fixtures import make_adverse_events

HORIZON = timedelta(days=MIN_HORIZON_DAYS)  # the shortest allowed: short streams evict
BASE = EngineConfig.plain(4, snapshots=False)
OUTCOMES = ("TP", "FP", "TN", "FN")
WEIGHTS = (8, 3, 85, 4)


def config(horizon: timedelta | None = HORIZON, lookup: object = None) -> EngineConfig:
    return dataclasses.replace(BASE, case_horizon=horizon, case_lookup=lookup)


def stream(seed: int, days: int, per_day: int, sites: int = 3, version_day: int | None = None,
           corrections: float = 0.02, max_delay_days: int = 20) -> list[AdjudicatedCase]:
    """Cases of ich-triage in arrival order: originals at their AI call (up to a day late),
    corrections at their report time."""
    rng = random.Random(seed)
    timed: list[tuple[float, int, AdjudicatedCase]] = []
    n = 0
    for day in range(days):
        for _ in range(rng.randint(max(per_day - 2, 0), per_day + 2)):
            n += 1
            at = T0 + timedelta(days=day, minutes=rng.randrange(1440))
            version = "1.1" if version_day is not None and day >= version_day else "1.0"
            case = make_case(n, "ich-triage", at, rng.choices(OUTCOMES, WEIGHTS)[0],
                             site=f"site-{rng.randrange(sites)}", version=version)
            timed.append(((at - T0).total_seconds() + rng.random() * 86_400, n, case))
            if rng.random() < corrections:
                fixed = at + timedelta(days=rng.uniform(1, max_delay_days))
                timed.append(((fixed - T0).total_seconds(), n, flipped(case, 1, fixed)))
    timed.sort(key=lambda t: (t[0], t[1]))
    return [case for _, _, case in timed]


def counts(feed: Feed) -> Counter[CountKey]:
    return +feed.engine.cases.ledger.counts


@pytest.fixture(scope="module")
def year() -> tuple[list[AdjudicatedCase], Feed, Feed]:
    """260 days at ~5 cases a day at one site, a new version on day 130: evicting and
    keeping."""
    cases = stream(seed=3, days=260, per_day=5, sites=1, version_day=130)
    evicting, keeping = Feed(config()), Feed(config(None))
    evicting.feed(cases)
    keeping.feed(cases)
    return cases, evicting, keeping


def test_a_record_past_the_horizon_leaves_the_table_and_its_changelog_and_counts_stay(
    year: tuple[list[AdjudicatedCase], Feed, Feed],
) -> None:
    cases, evicting, keeping = year
    kept, everything = evicting.records(), keeping.records()
    gone = evicting.tombstoned()
    print(f"\n{len(everything)} cases; {len(kept)} in the table; {len(gone)} evicted")
    assert len(gone) > len(everything) // 8
    assert gone == set(everything) - set(kept)  # each evicted case has its tombstone
    assert all(everything[k] == r for k, r in kept.items())
    clock = max(c.inference_date for c in cases)
    cutoff = (clock - HORIZON).timestamp()
    for case_id in gone:
        record = everything[case_id]
        assert max(record.inference_ts, record.labelled_ts or 0) < cutoff + 86_400, case_id
    # The live version's reference period stays (its charts' and drift's references);
    # version 1.0, without a case since day 130, is no longer evaluated: all of it leaves.
    first = min(r.inference_ts for r in everything.values() if r.version == "1.1")
    reference = {k for k, r in everything.items()
                 if r.version == "1.1" and r.inference_ts < first + 28 * 86_400}
    assert reference <= set(kept)
    assert not [r for r in kept.values() if r.version == "1.0"]
    assert counts(evicting) == counts(keeping)
    assert evicting.alerts == keeping.alerts
    assert windows(evicting.engine) == windows(keeping.engine)
    # The restore (the changelog folded in order) forgets them; a rebuild from it counts
    # and windows the same as a rebuild of the engine that kept everything.
    restored, whole = evicting.restored(), keeping.restored()
    assert set(restored.records()) == set(kept)
    assert counts(restored) == counts(whole) == counts(keeping)
    assert windows(restored.engine) == windows(whole.engine)
    evicted = [m for m in evicting.metrics if m[0] == "horizon_evicted"]
    assert sum(n for _, (n,) in evicted) == len(gone)


def test_the_cutoff_never_moves_back_and_a_late_revision_without_a_store_is_dead_lettered(
    year: tuple[list[AdjudicatedCase], Feed, Feed],
) -> None:
    cases, evicting, _ = year
    worker = evicting.restored()  # a new worker: its clock has not started
    horizon = worker.engine.cases.horizon
    cutoff = horizon._parts[0].cutoff_day
    assert cutoff is not None
    gone = sorted(evicting.tombstoned())
    original = next(c for c in cases if c.case_id == gone[0] and c.revision == 0)
    before = counts(worker)
    # Time going backwards: a case dated 30 days before the clock, then the clock itself
    # pushed back; nothing comes back, nothing more leaves, the cutoff stays.
    clock = max(c.inference_date for c in cases)
    worker.feed([make_case(10**6, "ich-triage", clock - timedelta(days=30), "TN")])
    assert horizon.advance(0, clock - timedelta(days=200)) == 0
    assert horizon._parts[0].cutoff_day == cutoff
    # A correction of an evicted case, read by the new worker before its clock moved:
    worker.feed([flipped(original, 1, clock)])
    assert len(worker.dead_letters) == 1
    letter = DeadLetter.model_validate_json(worker.dead_letters[0].value)
    assert letter.reason.startswith("horizon: case revision 1 of ich-triage: its AI call is "
                                    "before the case horizon")
    assert "no store is configured" in letter.reason
    assert worker.dead_letters[0].topic == topics.dlq(topics.CASES_ADJUDICATED)
    assert ("horizon_late", ("ich-triage", "dead_lettered")) in worker.metrics
    after = counts(worker)
    after[("ich-triage", "1.0", "site-a", "TN")] -= 1  # the in-horizon case fed above
    assert +after == before  # nothing counted twice, nothing lost silently
    assert original.case_id not in worker.records()


def test_a_late_revision_is_counted_against_the_stores_revision_exactly_once(
    year: tuple[list[AdjudicatedCase], Feed, Feed],
) -> None:
    """The lookup here is a dict standing in for the store (pure path); the real store is
    the next test's."""
    cases, evicting, keeping = year
    store = {c.case_id: StoredCase(c.revision, c.outcome.value, c.tool_id,
                                   c.software_version, c.site) for c in cases}
    worker = dataclasses.replace(evicting.restored(), config=config(lookup=store.get))
    worker.engine = type(worker.engine)(worker.config, *worker.tables.values())
    worker.engine.cases.rebuild(sorted(worker.records().items()), {0})
    before = counts(worker)
    gone = sorted(evicting.tombstoned())
    old = store[gone[1]]
    original = next(c for c in cases if c.case_id == gone[1] and c.revision == old.revision)
    clock = max(c.inference_date for c in cases)
    fix = flipped(original, old.revision + 1, clock)
    worker.feed([fix, fix])  # the second is a replay
    moved = before.copy()
    moved[("ich-triage", old.version, old.site, old.outcome)] -= 1
    moved[("ich-triage", fix.software_version, fix.site, fix.outcome.value)] += 1
    assert counts(worker) == +moved
    assert worker.records()[fix.case_id].revision == fix.revision
    assert [m for m in worker.metrics if m[0] == "horizon_late"] == [
        ("horizon_late", ("ich-triage", "resolved"))]
    # A first revision is a new case, however old; a correction of an old case the store
    # has never seen is new too: each counted once, replays included.
    new = make_case(10**7, "ich-triage", T0 + timedelta(days=3), "FN")
    unseen = flipped(make_case(10**7 + 1, "ich-triage", T0 + timedelta(days=4), "TN"), 1,
                     clock)
    worker.feed([new, new, unseen, unseen])
    moved[("ich-triage", "1.0", "site-a", "FN")] += 2
    assert counts(worker) == +moved
    assert [m for m in worker.metrics if m[0] == "horizon_late"][1:] == [
        ("horizon_late", ("ich-triage", "new"))]  # the replays found them in the table
    # The store's revision is not among the evicted counts (the store disagrees with the
    # table): dead-lettered, not moved.
    store[gone[2]] = dataclasses.replace(store[gone[2]], outcome="indeterminate")
    stray = next(c for c in cases if c.case_id == gone[2])
    worker.feed([flipped(stray, 5, clock)])
    assert counts(worker) == +moved
    assert "is not among the cases evicted" in DeadLetter.model_validate_json(
        worker.dead_letters[-1].value).reason
    assert counts(keeping)  # the reference run counted


@pytest.mark.integration
def test_a_correction_months_later_is_resolved_from_real_postgresql(
    fresh_database: str,
) -> None:
    migrate(fresh_database)
    cases = stream(seed=11, days=170, per_day=4, sites=1, corrections=0.0)
    asyncio.run(_store(fresh_database, cases))  # what the store writer wrote meanwhile
    lookup = StoreCaseLookup(fresh_database)
    try:
        worker = Feed(config(lookup=lookup))
        worker.feed(cases)
        keeping = Feed(config(None))
        keeping.feed(cases)
        gone = sorted(worker.tombstoned())
        assert gone
        clock = max(c.inference_date for c in cases)
        original = next(c for c in cases if c.case_id == gone[0])
        fix = flipped(original, 1, clock)
        worker.feed([fix])
        keeping.feed([fix])
        assert counts(worker) == counts(keeping)  # moved, not added
        asyncio.run(_store(fresh_database, [fix]))
        later = worker.restored()  # evicted again later, or replayed after a restart
        later.engine = type(later.engine)(config(lookup=lookup), *later.tables.values())
        later.engine.cases.rebuild(sorted(later.records().items()), {0})
        later.feed([fix])
        assert counts(later) == counts(keeping)
        # An adverse-event report about another evicted case links to it via the store.
        other = next(c for c in cases if c.case_id == gone[1])
        report = _adverse_report(other)
        out = later.engine.process([_adverse_record(report)], clock + timedelta(days=1), 0.0)
        stored = next(c.value for c in out.changes if c.key == report.event_id)
        assert stored is not None
        assert stored["link"]["case_id"] == other.case_id
        assert stored["link"]["case_outcome"] == other.outcome.value
        assert out.alerts and "linked case outcome" in out.alerts[0].summary
    finally:
        lookup.close()
    with psycopg.connect(fresh_database) as conn:
        row = conn.execute("SELECT revision, outcome FROM cases WHERE case_id = %s",
                           (fix.case_id,)).fetchone()
    assert row == (1, fix.outcome.value)


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.too_slow])
# Evicts 236 of 1,183 case revisions (one site, version 1.1 from day 30): the last-N and
# reference rules both matter here.
@example(seed=1, days=220, per_day=5, sites=1, version_day=30, corrections=0.05,
         restart_at=0.8)
@given(seed=st.integers(0, 2**31), days=st.integers(100, 200), per_day=st.integers(1, 5),
       sites=st.integers(1, 3), version_day=st.integers(20, 100),
       corrections=st.floats(0, 0.1), restart_at=st.floats(0.3, 1.0))
def test_eviction_changes_nothing_a_reader_sees_when_no_event_is_beyond_the_horizon(
    seed: int, days: int, per_day: int, sites: int, version_day: int,
    corrections: float, restart_at: float,
) -> None:
    """Corrections come at most 60 days after the AI call and arrival is at most a day
    late, so no event is beyond the horizon: alerts, counts and windows are those of the
    engine that keeps everything, live and after a rebuild at a random point."""
    cases = stream(seed, days, per_day, sites, version_day, corrections, max_delay_days=60)
    cut = int(len(cases) * restart_at)
    # A last-N window of 20 cases, so that each site keeps few records past the horizon.
    short = dataclasses.replace(BASE, last_n=20)
    evicting = Feed(dataclasses.replace(short, case_horizon=HORIZON))
    keeping = Feed(dataclasses.replace(short, case_horizon=None))
    for feed in (evicting, keeping):
        feed.feed(cases[:cut])
    assert counts(evicting) == counts(keeping)
    assert windows(evicting.engine) == windows(keeping.engine)
    evicting, keeping = evicting.restored(), keeping.restored()
    assert counts(evicting) == counts(keeping)
    assert windows(evicting.engine) == windows(keeping.engine)
    for feed in (evicting, keeping):
        feed.feed(cases[cut:])
    assert not evicting.dead_letters
    assert evicting.alerts == keeping.alerts
    assert counts(evicting) == counts(keeping)
    assert windows(evicting.engine) == windows(keeping.engine)
    assert not any(is_summary(k) for k in evicting.records())


async def _store(url: str, cases: list[AdjudicatedCase]) -> None:
    decoder = Decoder("c", "a", "s", "ae")
    rows = Rows.empty()
    for offset, case in enumerate(cases):
        decoder.add(rows, "c", 0, offset, case.model_dump_json().encode())
    async with await psycopg.AsyncConnection.connect(url) as conn:
        assert not await write_batch(conn, rows)


def _adverse_report(case: AdjudicatedCase) -> AdverseEvent:
    template = make_adverse_events(case.tool_id, case.study_date)[0]
    return template.model_copy(update={
        "accession_number": case.accession, "pseudonymized": True,
        "device": template.device.model_copy(update={
            "tool_id": case.tool_id, "software_version": case.software_version})})


def _adverse_record(report: AdverseEvent) -> Record:
    return Record(topics.ADVERSE_EVENTS, 0, 0, report.device.tool_id.encode(),
                  report.model_dump_json().encode())


def test_a_horizon_shorter_than_the_longest_window_and_settling_is_refused() -> None:
    from pydantic import ValidationError

    from surveillance.engine.pipeline import Engine
    from surveillance.settings import StreamSettings

    with pytest.raises(ValidationError, match="greater than or equal to 98"):
        StreamSettings(case_horizon_days=97)
    assert StreamSettings().case_horizon_days == 180
    with pytest.raises(ValueError, match="at least 98 days"):
        Engine(config(timedelta(days=97)), {}, {}, {})


def _index_of(horizon: CaseHorizon) -> tuple[object, ...]:
    return (dict(horizon._live), {p: part.by_day for p, part in horizon._parts.items()},
            horizon._first, horizon._last)


_stamps = st.one_of(st.floats(-62_135_596_800.0, 253_402_300_799.0),  # years 1-9999
                    st.sampled_from([0.0, -0.0, 86_399.999, 86_400.0, -86_400.0]))


@settings(max_examples=60, deadline=None)
# Before 1970 on both sides: a version's first last day is held at 0 ("pe" 1.0); a
# later record's report moves the first report day; versions and partitions apart.
@example([("a", "ich", "1.0", "site-a", 1, -900_000.0, -800_000.0),
          ("b", "ich", "1.0", "site-a", 1, -1_000_000.0, None),
          ("c", "ich", "1.0", "站点", 2, 5.0, -2_000_000.0),
          ("d", "pe", "5.2.1 build 7", "site-a", 6, 90_000.0, 10.0),
          ("e", "pe", "1.0", "site-a", 3, -900_000.0, -800_000.0)], {1, 3})
@given(st.lists(st.tuples(
    st.text(max_size=3), st.sampled_from(["ich", "pe", "Main Campus"]),
    st.sampled_from(["1.0", "5.2.1 build 7"]), st.sampled_from(["site-a", "站点"]),
    st.integers(0, 5), _stamps, st.none() | _stamps), max_size=60),
    st.sets(st.integers(0, 7), max_size=4))
def test_a_rebuild_indexes_the_records_as_tracking_them_one_by_one_does(
    rows: list[tuple[str, str, str, str, int, float, float | None]], owned: set[int],
) -> None:
    """`CaseHorizon.rebuild`'s own loop (`_index`) against `track(new=True)` per record,
    the path every live record takes: the same live counts, day index (ids in order),
    first and last days, for odd values (year-1 and year-9999 stamps, -0.0, a report
    before its AI call, a partition not owned)."""
    records = [(case_id, CaseRecord(revision=1, outcome="TP", tool=tool, version=version,
                                    site=site, partition=partition, inference_ts=ai,
                                    labelled_ts=report))
               for case_id, tool, version, site, partition, ai, report in rows]
    empty = Table("s", {}, lambda v: v, lambda v: v)
    rebuilt = CaseHorizon(HORIZON, Table("c", {}, lambda v: v, lambda v: v), empty)
    rebuilt.rebuild(records, owned)
    tracked = CaseHorizon(HORIZON, Table("c", {}, lambda v: v, lambda v: v), empty)
    tracked._parts = {p: tracked._restored(p) for p in owned}
    for case_id, record in records:
        tracked.track(case_id, record, new=True)
    assert _index_of(rebuilt) == _index_of(tracked)
    assert list(rebuilt._live) == list(tracked._live)
