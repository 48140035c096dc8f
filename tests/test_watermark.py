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
        active = [t for t, heard in history.values() if now - heard <= 30]
        expected = min(active) if active else max(t for t, _ in history.values())
        assert low == max(expected, previous) if previous is not None else low == expected
        assert low <= max(t for t, _ in history.values())
        previous = low


def test_source_headers_round_trip_as_kafka_clients_deliver_them() -> None:
    from surveillance.stream.watermark import read_source, source_headers

    headers = source_headers(3, at(2.5))
    assert read_source(list(headers.items()), at(0)) == (3, at(2.5))  # aiokafka: pairs
    assert read_source(tuple(headers.items()), at(0)) == (3, at(2.5))


@pytest.mark.parametrize("headers", [
    None,
    [],
    [("join-partition", b"2")],
    [("join-partition", b"two"), ("join-ai-watermark", b"2026-08-01T00:00:00+00:00")],
    [("join-partition", b"2"), ("join-ai-watermark", b"yesterday")],
    [("join-partition", b"2"), ("join-ai-watermark", b"2026-08-01T00:00:00")],  # naive
    [("join-partition", b"-5"), ("join-ai-watermark", b"2026-08-01T00:00:00+00:00")],
    [("join-partition", b"2"), ("join-ai-watermark", b"\xff\xfe")],
    [("join-partition", None), ("join-ai-watermark", None)],
])
def test_missing_or_unreadable_source_headers_make_the_case_its_own_source(
    headers: object,
) -> None:
    from surveillance.stream.watermark import UNKNOWN_SOURCE, read_source

    assert read_source(headers, at(4)) == (UNKNOWN_SOURCE, at(4))
