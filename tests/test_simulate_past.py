"""A simulated stream fed to the service on the wall clock must lie in the past.

The worker and the bulk runner date-check every event against their wall clock (an event
dated more than `MAX_CLOCK_SKEW` ahead is dead-lettered, reason `schema`, "in the
future"). `benchmarks/throughput.py --days 365` simulated from the fixed 2026-07-01 and
ran on 2026-12-01: the 200-odd days past that date were dead-lettered, so the service
counted 12,998 of the truth's 31,049 ich-triage cases and the benchmark printed
"counts INCOMPLETE". The service was right; the stream had to start earlier
(`simulate.past_start`).
"""

from __future__ import annotations

from collections import Counter
from datetime import UTC, date, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from surveillance.engine.config import EngineConfig
from surveillance.simulate import SimEvent, past_start, simulate
from surveillance.simulate.generator import DEFAULT_START
from surveillance.stream.ingest import MAX_CLOCK_SKEW, Rejected

#: The wall clock of the run that showed it.
NOW = datetime(2026, 12, 1, 23, 0, tzinfo=UTC)
DAYS = 365


def rejections(events: list[SimEvent], now: datetime) -> list[tuple[SimEvent, Rejected]]:
    ingest = EngineConfig.plain(4, snapshots=False).ingest
    out = []
    for event in events:
        taken = ingest.accept(event.topic, event.value, now, 4)
        if isinstance(taken, Rejected):
            out.append((event, taken))
    return out


def test_a_stream_reaching_past_the_wall_clock_has_its_future_part_dead_lettered() -> None:
    events, _ = simulate(days=DAYS, seed=7, volume_scale=0.05)  # from 2026-07-01
    rejected = rejections(events, NOW)
    # The service refuses exactly the events dated after its clock (and nothing else):
    # those are lost to the counts, so a truth over the whole stream cannot be met.
    assert Counter(r.reason for _, r in rejected) == Counter({"schema": len(rejected)})
    assert all("in the future" in r.message for _, r in rejected)
    latest = NOW + MAX_CLOCK_SKEW
    assert {id(e) for e, _ in rejected} == {id(e) for e in events if e.arrival > latest}
    assert len(rejected) > len(events) / 3  # 214 of the 365 days are after the clock


def test_a_stream_from_past_start_is_accepted_whole() -> None:
    start = past_start(DAYS, NOW.date())
    events, truth = simulate(days=DAYS, seed=7, start=start, volume_scale=0.05)
    assert rejections(events, NOW) == []
    assert sum(t.cases for t in truth.values()) > 0
    assert start == NOW.date() - timedelta(days=DAYS)


@given(days=st.integers(1, 5 * 366),
       today=st.dates(date(2020, 1, 1), date(2040, 12, 31)),
       usual=st.dates(date(2020, 1, 1), date(2040, 12, 31)))
def test_past_start_ends_the_stream_by_today_and_keeps_the_usual_start_when_it_can(
        days: int, today: date, usual: date) -> None:
    start = past_start(days, today, usual)
    # Every arrival is before start + days (the simulator's end): at today's midnight at
    # the latest, before any wall clock of that day.
    assert start + timedelta(days=days) <= today
    assert start <= usual
    if usual + timedelta(days=days) <= today:
        assert start == usual
    else:
        assert start + timedelta(days=days) == today


def test_the_usual_start_is_the_simulators_default() -> None:
    assert past_start(1, date(2100, 1, 1)) == DEFAULT_START
