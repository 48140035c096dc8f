"""The monitor's per-case path against the path it replaced (`tests.monitor_old_path`, the
update code of main b49acee kept as an oracle): on random case streams (those of
`test_monitor_counting`: time going backwards and other time zones, bursts, odd names,
re-runs by new versions, corrections in and out of the matrix, stale replays) with daily
evaluations in between, both return the same alerts and snapshots and end holding the same
windows (every key, every calendar window and the last N, late and memory counts), charts,
verdicts and episodes. The new monitor is fed as the engine feeds it (with the ledger's
stored record of each revision); short reference and settling periods so that charts are
designed, fed and signal within a stream.
"""

from __future__ import annotations

from datetime import UTC, datetime

from hypothesis import given, settings
from hypothesis import strategies as st

from surveillance.clinical.ledger import CaseRecord, record_of
from surveillance.clinical.monitor import PerformanceMonitor
from surveillance.contracts import AdjudicatedCase
from tests.monitor_old_path import OldMonitor, old_path
from tests.test_monitor_counting import REGISTRY, feed, operations

SETTINGS = {"last_n": 6, "reference_days": 7, "reference_grace_days": 1, "settle_days": 1}


def _day(case: AdjudicatedCase) -> int:
    return case.inference_date.astimezone(UTC).toordinal()


def _run(monitor: PerformanceMonitor, stream: list[tuple[CaseRecord | None, AdjudicatedCase]],
         every: int, stored: bool) -> list[str]:
    """Feed `stream`, evaluating at the latest day seen after every `every` revisions;
    everything returned, as JSON."""
    out: list[str] = []
    latest = None
    for i, (previous, case) in enumerate(stream):
        record = record_of(case, 0) if stored else None
        out += [a.model_dump_json() for a in monitor.on_case(previous, case, record)]
        latest = max(latest or 0, _day(case))
        if i % every == every - 1:
            alerts, snapshots = monitor.evaluate(datetime.fromordinal(latest).replace(tzinfo=UTC))
            out += [x.model_dump_json() for x in [*alerts, *snapshots]]
    return out


def _held(monitor: PerformanceMonitor) -> list[object]:
    held: list[object] = [sorted(monitor.verdicts().items()), monitor.episodes(),
                          monitor.chart_states()]
    for tool in sorted(monitor.state.windows):
        windows = monitor.tool_windows(tool)
        for key in sorted(monitor.window_keys(tool)):
            held.append((key, windows.window(key, "last_n"), windows.late_ignored(key),
                         windows.memory_cells(key),
                         [windows.window(key, d) for d in monitor.windows_days]))
        for version, record in monitor.state.versions[tool].items():
            held.append((version, record.latest_inferred, record.latest_ts,
                         record.report_lags, record.sites, record.subgroups))
    return held


@settings(max_examples=120, deadline=None, derandomize=True, database=None)
@given(operations, st.integers(min_value=1, max_value=25))
def test_the_per_case_path_gives_what_the_old_path_gave(
    ops: list[tuple[object, ...]], every: int
) -> None:
    # The stream as the ledger hands it over (the previous record of each revision).
    stream = feed(PerformanceMonitor(REGISTRY, **SETTINGS), ops).revisions  # type: ignore[arg-type]
    with old_path():
        old = OldMonitor(REGISTRY, **SETTINGS)  # type: ignore[arg-type]
        expected = _run(old, stream, every, stored=False)
    for stored in (True, False):
        new = PerformanceMonitor(REGISTRY, **SETTINGS)  # type: ignore[arg-type]
        assert _run(new, stream, every, stored) == expected
        assert _held(new) == _held(old)


@settings(max_examples=60, deadline=None, derandomize=True, database=None)
@given(operations, st.integers(min_value=1, max_value=25))
def test_on_cases_of_a_batch_gives_what_on_case_of_each_revision_gave(
    ops: list[tuple[object, ...]], every: int
) -> None:
    """A day's batch (`on_cases`, the evaluation point's call) is its revisions' `on_case`
    in turn: the same alerts in the same order, the same state after each batch."""
    stream = feed(PerformanceMonitor(REGISTRY, **SETTINGS), ops).revisions  # type: ignore[arg-type]
    items = [(previous, case, record_of(case, 0)) for previous, case in stream]
    batched = PerformanceMonitor(REGISTRY, **SETTINGS)  # type: ignore[arg-type]
    single = PerformanceMonitor(REGISTRY, **SETTINGS)  # type: ignore[arg-type]
    for at in range(0, len(items), every):
        batch = items[at:at + every]
        expected = [a.model_dump_json() for item in batch for a in single.on_case(*item)]
        assert [a.model_dump_json() for a in batched.on_cases(batch)] == expected
        assert _held(batched) == _held(single)
