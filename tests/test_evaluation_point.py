"""The daily evaluation point: what a tool-day's evaluation holds depends on the cases (their
event times and content), not on the order or the batches they are read in.

The case revisions of a simulated 21-day stream (a sensitivity drop, a model update, a new
scanner software, an outage, corrections) go through the engine's `DailyEvaluation` into a
`PerformanceMonitor`, once in event-time order one revision at a time, then in orders
hypothesis draws: each revision read up to the grace after its effect time (a case's
revisions in their own order, as the ledger gives them), in batches of any size, each
batch ending with the clock at its last read. Every run must give the same alerts (every
field), snapshot records, verdicts, chart states and episodes. A revision read later than
the grace is counted from the next evaluation on; the last test shows what that means.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from surveillance.clinical.evaluation_order import effect_ts
from surveillance.clinical.ledger import CaseRecord, record_of
from surveillance.clinical.monitor import PerformanceMonitor
from surveillance.contracts import AdjudicatedCase, CaseOutcome, SnapshotBatch
from surveillance.engine.config import EngineConfig
from surveillance.engine.evaluation import DailyEvaluation
from surveillance.engine.local import revisions
from surveillance.engine.records import Output
from surveillance.simulate import Faults, Scenario, simulate
from surveillance.stream import topics

GRACE = timedelta(days=1)
CONFIG = EngineConfig.plain(4)


@dataclass(frozen=True)
class Revision:
    previous: CaseRecord | None
    case: AdjudicatedCase
    record: CaseRecord
    effect: float  # POSIX seconds: as the queue defines it (never before the previous's)


@dataclass
class Outcome:
    alerts: list[dict[str, Any]]
    snapshots: list[str]
    verdicts: dict[Any, Any]
    charts: list[Any]
    episodes: dict[Any, Any]


@pytest.fixture(scope="module")
def stream() -> list[Revision]:
    events, _truth = simulate(
        days=21, seed=5,
        scenario=Scenario(model_update_day=8, sensitivity_drop_day=2, drop_tool="ich-triage",
                          drop_to=0.5, new_scanner_software_day=10, outage_day=5),
        faults=Faults(duplicate_rate=0.02, invalid_rate=0.01, correction_rate=0.01),
    )
    after = CONFIG.horizon.total_seconds()
    out, last = [], {}
    for (source, _reached), previous, case in revisions(CONFIG, events):
        record = record_of(case, 0, source)
        own = effect_ts(record.outcome, record.inference_ts, record.labelled_ts, after)
        effect = max(own, last.get(case.case_id, own))
        last[case.case_id] = effect
        out.append(Revision(previous, case, record, effect))
    return out


def run(stream: Sequence[Revision], order: Sequence[int], clocks: Sequence[float],
        cuts: Sequence[int]) -> Outcome:
    """Feed `stream[order[i]]` in turn; after the batch ending at position `cut` (each of
    `cuts`), evaluate the tools read in it at clock `clocks[cut]`; then every tool at a
    clock past the last day plus the grace."""
    # A week's reference (the shortest allowed), so that 21 days run the CUSUM charts and
    # the label-free tests too.
    monitor = PerformanceMonitor(CONFIG.registry, last_n=CONFIG.last_n, reference_days=7,
                                 reference_grace_days=1, settle_days=2)
    evaluation = DailyEvaluation(True, GRACE, CONFIG.horizon)
    out = Output()
    alerts = []
    start = 0
    for cut in cuts:
        tools = {}
        for i in order[start:cut + 1]:
            r = stream[i]
            evaluation.take(r.previous, r.case, r.record)
            tools[r.case.tool_id] = None
        clock = datetime.fromtimestamp(clocks[cut], UTC)
        for tool in tools:
            alerts += evaluation.maybe(tool, clock, monitor, out)
        start = cut + 1
    end = datetime.fromtimestamp(max(r.effect for r in stream), UTC) + GRACE + 2 * GRACE
    for tool in sorted({r.case.tool_id for r in stream}):
        alerts += evaluation.maybe(tool, end, monitor, out)
    snapshots = sorted(p.value.decode() for p in out.produce if p.topic == topics.SNAPSHOTS)
    return Outcome(sorted((a.model_dump(mode="json") for a in alerts),
                          key=lambda a: a["alert_id"]),
                   snapshots, monitor.verdicts(), sorted(map(repr, monitor.chart_states())),
                   monitor.episodes())


def in_event_time(stream: Sequence[Revision]) -> Outcome:
    """Each revision read at its effect time, alone in its batch."""
    order = sorted(range(len(stream)), key=lambda i: stream[i].effect)
    clocks = [stream[i].effect for i in order]
    return run(stream, order, [clocks[k] for k in range(len(order))],
               list(range(len(order))))


@pytest.fixture(scope="module")
def reference(stream: list[Revision]) -> Outcome:
    outcome = in_event_time(stream)
    kinds = sorted({a["alert_id"].split(":")[0] for a in outcome.alerts})
    print(f"\n{len(stream)} revisions; {len(outcome.alerts)} alerts ({', '.join(kinds)}); "
          f"{len(outcome.snapshots)} snapshot records; charts "
          f"{outcome.charts}"
          f"; episodes {sorted(outcome.episodes)}")
    return outcome


def scrambled(stream: Sequence[Revision], seed: int, spread: float, batch: int
              ) -> tuple[list[int], list[float], list[int]]:
    """An arrival order: each revision read up to `spread` x the grace after its effect
    time (not before the case's previous revision), in batches of 1 to `batch` reads."""
    rng = np.random.default_rng(seed)
    grace = GRACE.total_seconds()
    read: dict[int, float] = {}
    last: dict[str, float] = {}
    for i, r in enumerate(stream):  # revisions of a case come in revision order here
        at = r.effect + rng.uniform(0.0, spread) * grace
        # After the case's previous revision (1 ms: never tied with it), as the ledger
        # gives a case's revisions in order.
        read[i] = at = max(at, last.get(r.case.case_id, at - 1.0) + 0.001)
        last[r.case.case_id] = at
    ties = rng.permutation(len(stream))
    order = sorted(range(len(stream)), key=lambda i: (read[i], ties[i]))
    clocks = [read[i] for i in order]
    cuts, at = [], -1
    while at < len(order) - 1:
        at = min(at + int(rng.integers(1, batch + 1)), len(order) - 1)
        cuts.append(at)
    return order, clocks, cuts


def assert_same(ours: Outcome, reference: Outcome) -> None:
    assert [a["alert_id"] for a in ours.alerts] == [a["alert_id"] for a in reference.alerts]
    assert ours.alerts == reference.alerts
    assert ours.snapshots == reference.snapshots
    assert ours.verdicts == reference.verdicts
    assert ours.charts == reference.charts
    assert ours.episodes == reference.episodes


def test_the_stream_exercises_every_input_the_evaluation_reads(
    stream: list[Revision], reference: Outcome,
) -> None:
    """Otherwise the equalities below would prove little: alerts of the monitor's kinds,
    snapshots, charts, open episodes; revisions read late relative to each other (a
    report-first case, corrections), stand-ins (labelled later than the day's end)."""
    kinds = {a["alert_id"].split(":")[0] for a in reference.alerts}
    assert {"baseline_deviation", "version_change"} <= kinds, kinds
    assert len(reference.snapshots) >= 21 * 2 and reference.charts and reference.verdicts
    outcomes = {r.case.outcome for r in stream}
    assert {CaseOutcome.PENDING, CaseOutcome.TP, CaseOutcome.FN} <= outcomes
    corrected = sum(1 for r in stream if r.previous is not None
                    and r.previous.labelled_ts is not None)
    assert corrected > 0


# No shrinking: an example is a whole stream's order, and a failure's seed is the story.
@settings(max_examples=8, deadline=None, phases=[Phase.explicit, Phase.reuse, Phase.generate],
          suppress_health_check=[HealthCheck.function_scoped_fixture,
                                 HealthCheck.too_slow])
@given(seed=st.integers(0, 2**32 - 1), spread=st.sampled_from([0.0, 0.5, 0.999]),
       batch=st.sampled_from([1, 37, 500, 20_000]))
def test_any_order_and_batching_within_the_grace_gives_the_same_evaluations(
    stream: list[Revision], reference: Outcome, seed: int, spread: float, batch: int,
) -> None:
    order, clocks, cuts = scrambled(stream, seed, spread, batch)
    assert_same(run(stream, order, clocks, cuts), reference)


def test_a_revision_later_than_the_grace_counts_from_the_next_evaluation(
    stream: list[Revision], reference: Outcome,
) -> None:
    """One labelled case of a mid-stream day read only after that day was evaluated: the
    day's snapshot lacks it, the next day's counts it; nothing raises, nothing is lost."""
    order = sorted(range(len(stream)), key=lambda i: stream[i].effect)
    chosen = next(i for i in order[len(order) // 2:]
                  if stream[i].previous is None and stream[i].case.outcome is CaseOutcome.TP
                  and stream[i].case.case_id not in
                  {r.case.case_id for r in stream if r.previous is not None})
    late = stream[chosen]
    read = late.effect + 2 * GRACE.total_seconds() + 3600  # a day past its day's evaluation
    reordered = [i for i in order if i != chosen]
    at = next((k for k, i in enumerate(reordered) if stream[i].effect > read),
              len(reordered))
    reordered.insert(at, chosen)
    clocks = [max(stream[i].effect, read) if i == chosen else stream[i].effect
              for i in reordered]
    clocks = list(np.maximum.accumulate(clocks))
    ours = run(stream, reordered, clocks, list(range(len(reordered))))
    tool, version, site = late.case.tool_id, late.case.software_version, late.case.site
    day = datetime.fromtimestamp(late.effect, UTC).date()

    def tp(outcome: Outcome, on: date) -> int:
        for raw in outcome.snapshots:
            batch = SnapshotBatch.model_validate_json(raw)
            if (batch.tool_id, batch.at.date()) != (tool, on):
                continue
            for s in batch.snapshots:
                if (s.software_version, s.site, s.window, s.metric) == (
                        version, site, "7d", "sensitivity"):
                    return s.n
        raise AssertionError(f"no 7-day sensitivity snapshot of {tool} on {on}")

    evaluated = day + timedelta(days=1)  # the evaluation of `day` is dated at its end
    assert tp(ours, evaluated) == tp(reference, evaluated) - 1
    later = evaluated + timedelta(days=1)
    assert tp(ours, later) == tp(reference, later)
