"""A helper process's CPU up to the runners' last batch (`bulk.processes.cpu_at`): the
backfill's wall time ends there, and a calibration process may still be working after it,
so its CPU to its last job over-states what it spent in that interval."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from surveillance.bulk.processes import cpu_at

READINGS = [(10.0, 0.5), (10.1, 0.58), (10.2, 0.68), (10.3, 0.78)]


def test_between_two_readings_the_cpu_is_interpolated() -> None:
    # Half-way between (10.1, 0.58) and (10.2, 0.68).
    assert abs(cpu_at(READINGS, 10.15, total=2.0, ended=11.0) - 0.63) < 1e-12  # type: ignore[operator]
    assert cpu_at(READINGS, 10.1, total=2.0, ended=11.0) == 0.58


def test_a_helper_done_before_the_last_batch_counts_whole() -> None:
    # Its work ended at 10.25: afterwards it only waited on its queue.
    assert cpu_at(READINGS, 10.28, total=0.75, ended=10.25) == 0.75


def test_no_reading_around_the_time_gives_none() -> None:
    assert cpu_at(READINGS, 10.4, total=2.0, ended=11.0) is None
    assert cpu_at(READINGS, 9.9, total=2.0, ended=11.0) is None
    assert cpu_at([], 10.0, total=2.0, ended=11.0) is None


@given(st.lists(st.floats(0.0, 1.0), min_size=2, max_size=20), st.floats(0.0, 1.0))
def test_the_cpu_at_a_time_lies_between_the_readings_around_it(
        steps: list[float], where: float) -> None:
    readings, cpu = [], 0.0
    for i, step in enumerate(steps):
        cpu += step
        readings.append((float(i), cpu))
    at = where * (len(steps) - 1)
    got = cpu_at(readings, at, total=cpu, ended=len(steps) + 1.0)
    if at >= len(steps) - 1:
        assert got is None
        return
    assert got is not None
    low = max(c for t, c in readings if t <= at)
    high = min(c for t, c in readings if t > at)
    assert low - 1e-12 <= got <= high + 1e-12
