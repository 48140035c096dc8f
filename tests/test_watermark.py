"""The case agent's drift clock: a low watermark over the join partitions (pure code)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from surveillance.stream.watermark import SourceWatermark

T0 = datetime(2026, 8, 1, tzinfo=UTC)


def at(days: float) -> datetime:
    return T0 + timedelta(days=days)


def test_the_clock_is_where_every_active_source_has_got_to() -> None:
    w = SourceWatermark(idle_seconds=30)
    assert w.low(0.0) is None
    w.observe(0, at(8), now=0.0)  # partition 0 read a week ahead
    assert w.low(0.0) == at(8)
    w.observe(1, at(1), now=1.0)
    w.observe(2, at(2), now=2.0)
    assert w.low(2.0) == at(8)  # never backwards: days already closed stay closed
    w.observe(0, at(9), now=3.0)
    w.observe(1, at(10), now=4.0)
    w.observe(2, at(11), now=5.0)
    assert w.low(5.0) == at(9)


def test_a_lagging_source_holds_the_clock_until_it_catches_up() -> None:
    w = SourceWatermark(idle_seconds=30)
    w.observe(0, at(1), now=0.0)
    w.observe(1, at(1), now=0.0)
    for second in range(1, 20):  # partition 0 races ahead, partition 1 still reporting
        w.observe(0, at(1 + second), now=float(second))
        if second % 5 == 0:
            w.observe(1, at(1 + second / 10), now=float(second))
    assert w.low(19.0) == at(2.5)


def test_a_quiet_source_stops_holding_the_clock_after_the_idle_time() -> None:
    w = SourceWatermark(idle_seconds=30)
    w.observe(0, at(1), now=0.0)  # caught up long ago, nothing since
    w.observe(1, at(5), now=10.0)
    assert w.low(10.0) == at(1)
    assert w.low(30.0) == at(1)
    assert w.low(30.5) == at(5)
    w.observe(0, at(6), now=40.0)  # back: holds the clock again, from where it is
    w.observe(1, at(7), now=40.0)
    assert w.low(40.0) == at(6)


def test_a_quiet_source_within_a_day_of_the_latest_holds_the_clock() -> None:
    """The end of a stream: the partitions end hours apart, one is read a minute after the
    others; the clock stays where all of them are, whatever the timing (it used to jump
    to the others' after `idle_seconds`, closing a day before the late one's cases)."""
    w = SourceWatermark(idle_seconds=30)
    w.observe(0, at(20.8), now=0.0)
    w.observe(1, at(21), now=60.0)
    assert w.low(60.0) == at(20.8)
    assert w.low(10_000.0) == at(20.8)
    w.observe(1, at(21.8), now=10_001.0)  # a day ahead of the quiet one: it lets go
    assert w.low(10_001.0) == at(21.8)


def test_when_every_source_is_quiet_the_clock_is_the_latest_event_time_seen() -> None:
    """Sparse live traffic: as the banks' own clock was before."""
    w = SourceWatermark(idle_seconds=30)
    w.observe(0, at(1), now=0.0)
    w.observe(1, at(2), now=0.0)
    assert w.low(100.0) == at(2)


def test_an_old_event_does_not_move_a_source_back() -> None:
    w = SourceWatermark(idle_seconds=30)
    w.observe(0, at(5), now=0.0)
    w.observe(0, at(1), now=1.0)  # a redelivered or late case from the same partition
    w.observe(1, at(6), now=1.0)
    assert w.low(1.0) == at(5)


def test_expected_sources_hold_the_clock_until_they_report_or_the_idle_time_passes() -> None:
    """After an assignment: the first partition read must not run the clock past the
    others, which may be days behind in the backlog."""
    w = SourceWatermark(idle_seconds=30, expected=range(3), now=100.0)
    w.observe(0, at(9), now=101.0)
    assert w.low(101.0) is None
    w.observe(1, at(2), now=102.0)
    assert w.low(102.0) is None
    w.observe(2, at(4), now=103.0)
    assert w.low(103.0) == at(2)
    late = SourceWatermark(idle_seconds=30, expected=range(3), now=100.0)
    late.observe(0, at(9), now=101.0)
    assert late.low(130.0) is None
    assert late.low(130.5) == at(9)  # partitions 1 and 2 never said anything


def test_idle_time_must_be_positive() -> None:
    with pytest.raises(ValueError, match="idle_seconds"):
        SourceWatermark(idle_seconds=0)


@given(st.lists(st.tuples(st.integers(0, 3), st.floats(0, 60), st.floats(0, 5)),
                min_size=1, max_size=200))
def test_the_clock_is_monotone_and_never_ahead_of_the_latest_event(
    steps: list[tuple[int, float, float]],
) -> None:
    """Oracle: the definition, recomputed from the full history at every step."""
    w = SourceWatermark(idle_seconds=30)
    now, previous = 0.0, None
    history: dict[int, tuple[datetime, float]] = {}
    for source, days, dt in steps:
        now += dt
        w.observe(source, at(days), now)
        best = history.get(source, (at(days), now))[0]
        history[source] = (max(best, at(days)), now)
        low = w.low(now)
        assert low is not None
        top = max(t for t, _ in history.values())
        active = [t for t, heard in history.values()
                  if now - heard <= 30 or top - t < timedelta(days=1)]
        expected = min(active) if active else max(t for t, _ in history.values())
        assert low == max(expected, previous) if previous is not None else low == expected
        assert low <= max(t for t, _ in history.values())
        previous = low



@given(st.lists(st.tuples(st.booleans(), st.integers(0, 3), st.integers(0, 4),
                          st.sampled_from([0.0, 0.0, 1.0, 40.0])), min_size=1, max_size=200))
def test_the_clock_asked_again_with_nothing_new_gives_the_recomputed_answer(
    steps: list[tuple[bool, int, int, float]],
) -> None:
    """`low` answers again from its last result while no source changed and `now` did
    not move: with sources expected from the start, the same event times observed again,
    the same `now` asked twice, it gives what the definition gives over the history."""
    w = SourceWatermark(idle_seconds=30, expected=range(3), now=0.0)
    now, previous = 0.0, None
    history: dict[int, tuple[datetime, float]] = {}
    pending = dict.fromkeys(range(3), 0.0)
    for observe, source, days, dt in steps:
        now += dt
        if observe:
            w.observe(source, at(days), now)
            pending.pop(source, None)
            best = history.get(source, (at(days), now))[0]
            history[source] = (max(best, at(days)), now)
        for _ in range(2):
            pending = {s: t for s, t in pending.items() if now - t <= 30}
            if pending or not history:
                expected = previous
            else:
                top = max(t for t, _ in history.values())
                active = [t for t, heard in history.values()
                          if now - heard <= 30 or top - t < timedelta(days=1)]
                candidate = min(active) if active else top
                expected = candidate if previous is None else max(candidate, previous)
            assert w.low(now) == expected
            previous = expected


NOW = datetime(2026, 12, 1, tzinfo=UTC)  # the worker's wall clock when the case arrives


def test_source_headers_round_trip_as_kafka_clients_deliver_them() -> None:
    from surveillance.stream.ingest import DateRange
    from surveillance.stream.internal import read_source
    from surveillance.stream.watermark import source_headers

    headers = source_headers(3, at(2.5))
    pairs = list(headers.items())
    assert read_source(pairs, at(0), 4, NOW, DateRange()) == (3, at(2.5))  # aiokafka
    assert read_source(tuple(pairs), at(0), 4, NOW, DateRange()) == (3, at(2.5))


@pytest.mark.parametrize("headers", [None, [], [("traceparent", b"00-ab-cd-01")]])
def test_a_case_without_source_headers_is_its_own_source(headers: object) -> None:
    """A producer other than our join (a replay tool, a test) sends none: not an attack."""
    from surveillance.stream.ingest import DateRange
    from surveillance.stream.internal import read_source
    from surveillance.stream.watermark import UNKNOWN_SOURCE

    assert read_source(headers, at(4), 4, NOW, DateRange()) == (UNKNOWN_SOURCE, at(4))


@pytest.mark.parametrize("headers", [
    [("join-partition", b"2")],
    [("join-partition", b"two"), ("join-ai-watermark", b"2026-08-01T00:00:00+00:00")],
    [("join-partition", b"2"), ("join-ai-watermark", b"yesterday")],
    [("join-partition", b"2"), ("join-ai-watermark", b"2026-08-01T00:00:00")],  # naive
    [("join-partition", b"-5"), ("join-ai-watermark", b"2026-08-01T00:00:00+00:00")],
    [("join-partition", b"4"), ("join-ai-watermark", b"2026-08-01T00:00:00+00:00")],
    [("join-partition", b"2"), ("join-ai-watermark", b"\xff\xfe")],
    [("join-partition", None), ("join-ai-watermark", None)],
    # Forged clocks: the first overflowed the drift bank, the second closed 3 million days.
    [("join-partition", b"1"), ("join-ai-watermark", b"9999-12-31T00:00:00+00:00")],
    [("join-partition", b"1"), ("join-ai-watermark", b"9999-12-30T00:00:00+00:00")],
    [("join-partition", b"1"), ("join-ai-watermark", b"2026-12-01T01:00:01+00:00")],
    [("join-partition", b"1"), ("join-ai-watermark", b"0001-01-01T00:00:00+00:00")],
    [("join-partition", b"1"), ("join-ai-watermark", b"1979-12-31T23:59:59+00:00")],
])
def test_unreadable_or_implausible_source_headers_are_refused_with_a_reason(
    headers: object,
) -> None:
    from surveillance.stream.ingest import DateRange, Rejected
    from surveillance.stream.internal import read_source

    refused = read_source(headers, at(4), 4, NOW, DateRange())
    assert isinstance(refused, Rejected) and refused.reason == "header", refused
    assert "9999" not in refused.message  # the reason names the header, not the value


def test_the_latest_plausible_header_is_the_arrival_clock_plus_the_skew() -> None:
    from surveillance.stream.ingest import DateRange
    from surveillance.stream.internal import read_source

    edge = [("join-partition", b"0"), ("join-ai-watermark", b"2026-12-01T01:00:00+00:00")]
    assert read_source(edge, at(0), 4, NOW, DateRange()) == (0, NOW + timedelta(hours=1))


# -- one join partition's clock ------------------------------------------------------------


def test_one_event_cannot_move_a_partition_clock() -> None:
    from surveillance.stream.watermark import EventClock

    clock = EventClock(timedelta(hours=1), support=4)
    now = T0 + timedelta(days=120)
    for day in range(4):
        clock.observe(at(day), now)
    assert clock.at == at(0)
    clock.observe(now, now)  # a live event in the middle of a backfill
    assert clock.at == at(1)  # the backfill's own events moved it one step, nothing more
    for day in range(4, 7):
        clock.observe(at(day), now)
    assert clock.at == at(4)
    for _ in range(4):  # the backfill is over: live events alone are the last four
        clock.observe(now, now)
    assert clock.at == now


def test_a_partition_clock_waits_for_support_and_never_goes_back() -> None:
    from surveillance.stream.watermark import EventClock

    clock = EventClock(timedelta(hours=1), support=3)
    clock.observe(at(5), NOW)
    clock.observe(at(6), NOW)
    assert clock.at is None
    clock.observe(at(7), NOW)
    assert clock.at == at(5)
    for _ in range(3):  # a late trickle of old events
        clock.observe(at(1), NOW)
    assert clock.at == at(5)


def test_a_partition_clock_is_capped_at_the_arrival_clock() -> None:
    from surveillance.stream.watermark import EventClock

    clock = EventClock(timedelta(hours=1), support=2)
    clock.observe(at(30), at(10))
    clock.observe(at(31), at(10))
    assert clock.at == at(10) + timedelta(hours=1)


def test_a_restored_clock_is_the_support_th_latest_stored_time() -> None:
    from surveillance.stream.watermark import EventClock

    clock = EventClock(timedelta(hours=1), support=3)
    clock.restore([at(1), NOW, at(3), at(2), at(0)], NOW)  # one live accession stored
    assert clock.at == at(2)
    short = EventClock(timedelta(hours=1), support=3)
    short.restore([at(1), NOW], NOW)
    assert short.at is None
    with pytest.raises(ValueError):
        EventClock(timedelta(hours=1), support=0)


@given(st.lists(st.tuples(st.floats(0, 200), st.floats(0, 200)), max_size=60),
       st.integers(1, 8))
def test_a_partition_clock_needs_support_events_at_or_after_it(
    steps: list[tuple[float, float]], support: int
) -> None:
    """Theory: the clock is never later than `support` consecutive (capped) events agree,
    and never goes back."""
    from surveillance.stream.watermark import EventClock

    clock = EventClock(timedelta(hours=1), support=support)
    capped: list[datetime] = []
    previous = None
    for event_day, arrival_day in steps:
        arrival = at(arrival_day)
        clock.observe(at(event_day), arrival)
        capped.append(min(at(event_day), arrival + timedelta(hours=1)))
        if clock.at is None:
            assert len(capped) < support
            continue
        windows = [min(capped[i:i + support]) for i in range(len(capped) - support + 1)]
        assert clock.at == max(windows)
        assert previous is None or clock.at >= previous
        previous = clock.at


def test_a_case_re_emitted_for_an_event_read_again_says_no_more_than_its_own_time() -> None:
    """After a restart the join partition's AI clock is restored from a join table that
    already holds the batch being read again; the first case re-emitted then carried that
    clock, the case clock jumped to the batch's end, and days were evaluated before the
    batch's other cases (lost in the crash) were re-emitted. A re-emitted case says its
    partition has reached its own AI time, no more."""
    from surveillance.engine.config import EngineConfig
    from surveillance.engine.local import JoinFeed
    from surveillance.simulate import simulate
    from surveillance.stream.topics import AI_RESULTS

    config = EngineConfig.plain(1)
    events, _ = simulate(days=3, seed=1)
    results = [e for e in events if e.topic == AI_RESULTS and e.valid][:200]
    first = JoinFeed(config)
    for e in results:
        first.feed(e)
    restarted = JoinFeed(config)
    restarted.join_state.update(first.join_state)
    [(_, reached, case)] = restarted.feed(results[0])  # read again: a replay
    restored = restarted.engine.join.clocks[0].ai_watermark
    assert restored is not None and case.inference_date < restored
    assert reached == case.inference_date


@given(st.integers(1, 6),
       st.lists(st.tuples(st.integers(0, 40), st.integers(0, 40)), max_size=80))
def test_a_partition_clock_is_the_least_of_its_last_support_events_at_its_highest(
        support: int, events: list[tuple[int, int]]) -> None:
    """The clock kept as events come equals the rule computed from scratch after each
    event: the highest so far of the least of the last `support` capped event times
    (ties and repeated values included: hours from a small range)."""
    from surveillance.stream.watermark import EventClock

    skew = timedelta(hours=3)
    clock = EventClock(skew, support=support)
    capped: list[datetime] = []
    expected: datetime | None = None
    for at_hour, now_hour in events:
        at, now = T0 + timedelta(hours=at_hour), T0 + timedelta(hours=now_hour)
        clock.observe(at, now)
        capped.append(min(at, now + skew))
        if len(capped) >= support:
            least = min(capped[-support:])
            expected = least if expected is None else max(expected, least)
        assert clock.at == expected
