"""The CUSUM pair on POSIX timestamps gives what main ef02b71's pair on datetimes gave
(`tests.monitor_old_path.MainVersionCharts`, kept as the oracle): on hypothesis streams of
report times on whole hours (so that observations fall exactly on the settling horizon,
the reference period's end, the design time and the volume periods' bounds), in three
time zones, arriving out of order, with corrections in and out of the matrix and episodes
closed, both return the same signals (metric, time and zone, excursion start, signal
number) and hold the same chart states after every update.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

from hypothesis import given, settings
from hypothesis import strategies as st

from surveillance.clinical.baselines import load_registry
from surveillance.clinical.version_charts import Signal, VersionCharts
from surveillance.contracts import CaseOutcome
from tests.monitor_old_path import MainVersionCharts

PTX = load_registry()["ptx-triage"]
T0 = datetime(2026, 3, 2, tzinfo=UTC)
ZONES = (UTC, timezone(timedelta(hours=5)), timezone(timedelta(hours=-8)))
# One update: a case (of 200), its outcome, its report time in hours from T0 (back and
# forth over a month), the zone it comes in; or the close of a metric's episode.
updates = st.lists(
    st.one_of(
        st.tuples(st.integers(0, 199), st.sampled_from(list(CaseOutcome)),
                  st.integers(-24, 30 * 24), st.sampled_from(ZONES)),
        st.sampled_from(["sensitivity", "specificity"]),
    ),
    min_size=100, max_size=500,
)


def _signals(signals: list[Signal]) -> list[tuple[object, ...]]:
    return [(s.metric, s.at.isoformat(), s.since.isoformat(), s.chart.signals)
            for s in signals]


def _held(c: VersionCharts | MainVersionCharts) -> list[object]:
    charts = c.charts or {}
    return [c.reference_counts, c.period_counts, len(c._settling),
            None if c.clock is None else c.clock.isoformat(),
            [(m, ch.cusum.n_cases, ch.cusum.statistic, ch.design, ch.redesigns,
              None if ch.excursion_start is None else ch.excursion_start.isoformat(),
              None if ch.signalled_at is None else ch.signalled_at.isoformat())
             for m, ch in charts.items()]]


@settings(max_examples=150, deadline=None, derandomize=True, database=None)
@given(updates, st.integers(0, 2), st.integers(0, 2))
def test_charts_on_timestamps_equal_charts_on_datetimes(
    ops: list[object], settle: int, grace: int
) -> None:
    new = VersionCharts(PTX, 7, grace, settle, 4.0)
    old = MainVersionCharts(PTX, 7, grace, settle, 4.0)
    latest: dict[int, CaseOutcome] = {}
    for op in ops:
        if isinstance(op, str):
            new.close(op)  # type: ignore[arg-type]
            old.close(op)  # type: ignore[arg-type]
        else:
            assert isinstance(op, tuple)
            case, outcome, hours, zone = op
            at = (T0 + timedelta(hours=hours)).astimezone(zone)
            previous = latest.get(case)
            latest[case] = outcome
            got = new.update(f"c{case}", previous, outcome, at)
            assert _signals(got) == _signals(old.update(f"c{case}", previous, outcome, at))
        assert _held(new) == _held(old)
