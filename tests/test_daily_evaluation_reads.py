"""The daily evaluation's shortcuts against the plain computation.

- The agreement figures kept per window counts (`daily_evaluation.figures`) equal the
  figures computed afresh (`plain_figures`), whatever counts were asked before.
- The window reads one evaluation shares between its activity check, snapshots and
  verdicts (`daily_evaluation._Reads`) give the alerts, snapshots, verdicts, alarms,
  episodes and warnings that reading every window afresh gives, on the random case
  streams of `test_monitor_counting` evaluated at random points; and each agreement
  snapshot and each verdict made is its window read again after the evaluation.
"""

from __future__ import annotations

from datetime import UTC, datetime
from unittest.mock import patch

from hypothesis import given, settings
from hypothesis import strategies as st

from surveillance.clinical import daily_evaluation
from surveillance.clinical.daily_evaluation import figures, plain_figures
from surveillance.clinical.ledger import CaseRecord, record_of
from surveillance.clinical.monitor import PerformanceMonitor
from surveillance.clinical.monitor_state import day_start, site_key
from surveillance.clinical.verdicts import judge
from surveillance.contracts import AdjudicatedCase
from surveillance.stats.agreement import Confusion
from surveillance.stats.window_counts import WindowCounts
from surveillance.stats.windows import Key, utc_day
from tests.test_monitor_counting import REGISTRY, feed, operations

SETTINGS = {"last_n": 6, "reference_days": 7, "reference_grace_days": 1, "settle_days": 1}

counts = st.integers(min_value=0, max_value=60)


@settings(max_examples=300, deadline=None, derandomize=True, database=None)
@given(st.lists(st.tuples(counts, counts, counts, counts), min_size=1, max_size=12))
def test_the_kept_figures_are_the_figures_computed_afresh(
    asked: list[tuple[int, int, int, int]]
) -> None:
    # Asked in turn (repeats among them): each answer equals a fresh computation.
    for tp, fp, tn, fn in [*asked, *reversed(asked)]:
        confusion = Confusion(tp=tp, fp=fp, tn=tn, fn=fn)
        assert figures(confusion) == plain_figures(confusion)


class _FreshReads(daily_evaluation._Reads):
    """Every read made afresh (the plain computation)."""

    def __call__(self, key: Key, window: int | str) -> WindowCounts:
        return self._windows.window(key, window, self._now)


def _check_against_fresh_reads(monitor: PerformanceMonitor, now: datetime,
                               before: dict[object, object], snapshots: list[object]) -> None:
    """Each agreement snapshot of the evaluation at `now` holds the figures of its window
    read again; each verdict it made is the verdict of its window read again."""
    for s in snapshots:
        if getattr(s, "kind", None) != "agreement":
            continue
        label = s.window  # type: ignore[attr-defined]
        window: int | str = "last_n" if label.startswith("last") else int(label[:-1])
        fresh = monitor.tool_windows(s.tool_id).window(  # type: ignore[attr-defined]
            site_key(s.tool_id, s.software_version, s.site), window, s.at)  # type: ignore[attr-defined]
        value, interval, n = {name: rest for name, *rest in
                              plain_figures(fresh.confusion)}[s.metric]  # type: ignore[attr-defined]
        assert (s.value, s.lower, s.upper, s.n) == (  # type: ignore[attr-defined]
            value, *(interval or (None, None)), n)
    for verdict_key, verdict in monitor.state.verdicts.items():
        if before.get(verdict_key) is verdict:
            continue  # not made now (its version is no longer evaluated)
        tool, version, site, days, metric = verdict_key
        latest = day_start(utc_day(monitor.state.versions[tool][version].latest_inferred))
        at = now if now >= latest else latest  # `_read_time`
        fresh = monitor.tool_windows(tool).window(site_key(tool, version, site), days, at)
        assert judge(fresh.confusion, monitor.settings.registry[tool],
                     monitor.settings.alpha)[metric] == verdict


def _evaluated(stream: list[tuple[CaseRecord | None, AdjudicatedCase]], every: int
               ) -> tuple[list[str], list[object]]:
    """Feed `stream`, evaluating at the latest day seen after every `every` revisions:
    everything returned (as JSON), and the verdicts, alarms, episodes and warnings held
    at the end."""
    monitor = PerformanceMonitor(REGISTRY, **SETTINGS)  # type: ignore[arg-type]
    out: list[str] = []
    latest = 0
    for i, (previous, case) in enumerate(stream):
        out += [a.model_dump_json()
                for a in monitor.on_case(previous, case, record_of(case, 0))]
        latest = max(latest, case.inference_date.astimezone(UTC).toordinal())
        if i % every != every - 1:
            continue
        now = datetime.fromordinal(latest).replace(tzinfo=UTC)
        before: dict[object, object] = dict(monitor.state.verdicts)
        alerts, snapshots = monitor.evaluate(now)
        out += [x.model_dump_json() for x in [*alerts, *snapshots]]
        _check_against_fresh_reads(monitor, now, before, list(snapshots))
    state = monitor.state
    return out, [sorted(state.verdicts.items()), sorted(state.alarming.items()),
                 sorted(state.episodes.items()), sorted(state.warnings.items())]


@settings(max_examples=80, deadline=None, derandomize=True, database=None)
@given(operations, st.integers(min_value=1, max_value=25))
def test_the_shared_reads_give_what_fresh_reads_give(
    ops: list[tuple[object, ...]], every: int
) -> None:
    stream = feed(PerformanceMonitor(REGISTRY, **SETTINGS), ops).revisions  # type: ignore[arg-type]
    shared = _evaluated(stream, every)
    with patch.object(daily_evaluation, "_Reads", _FreshReads):
        fresh = _evaluated(stream, every)
    assert shared == fresh
