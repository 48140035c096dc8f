"""A backfill with one live event in the middle: the worker's engine, counted exactly.

A health system backfills six weeks of history (42 simulated days, about 12,000 cases)
while live traffic is already flowing: one AI result dated now is read in the middle of
the backlog. Before the join partition clocks needed the support of their partition's
other events (`stream.watermark.EventClock`), that one event moved its partition's clock
to now: every backlogged case there with no report yet was expired as `unlabelled`, its
join state purged (so its report, read later, found nothing to join), and the rebuilt
evaluation raised a false CUSUM alert (the live case had also moved the monitor's own
clocks: now it is held until the backlog reaches it, `stream.ahead`). The control run is
the same backlog without the live event; both go through the worker's engine
(`engine.local.LocalPipeline`: ingest, join on 4 partitions with its expiry, the case stage
with its ledger, monitor, drift banks and daily evaluation on the low watermark), in the
order a bulk consumer reads a backlog (`test_monitor_alerting.kafka_order`).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import replace
from datetime import UTC, date, datetime
from typing import Any

import pytest

from surveillance.contracts import AIResult, Alert, Scanner
from surveillance.engine.config import EngineConfig
from surveillance.engine.local import LocalPipeline
from surveillance.simulate import SimEvent, ToolTruth, simulate
from surveillance.stream.topics import AI_RESULTS
from tests.test_monitor_alerting import PARTITIONS, kafka_order

#: The wall clock of the backfill: months after the backlog's last event.
NOW = datetime(2026, 12, 1, 9, 30, tzinfo=UTC)
LIVE_ID = "live-ai-1"


def live_event() -> SimEvent:
    result = AIResult(
        event_id=LIVE_ID, tool_id="ich-triage", manufacturer="RapidAI", model="Rapid NCCT",
        software_version="5.2.1", finding_code="intracranial_hemorrhage", ai_result=0.93,
        operating_threshold=0.5, result_indicator=True, patient_id="MRN-LIVE",
        accession_number="ACC-LIVE-1", study_instance_uid="1.2.840.99.1",
        study_date=date(2026, 12, 1), site="site-a", modality="CT",
        body_part_examined="HEAD", scanner=Scanner(manufacturer="GE", model="Revolution",
                                                   software_version="r1"),
        inference_date=NOW,
    )
    return SimEvent(AI_RESULTS, b"ACC-LIVE-1", result.model_dump_json().encode(), NOW, True,
                    LIVE_ID)


def replay(events: list[SimEvent]) -> tuple[dict[str, Counter[str]], list[Alert]]:
    """Per tool, the outcome of each case's last revision; and the alerts raised."""
    path = LocalPipeline(EngineConfig.plain(PARTITIONS, snapshots=False))
    alerts = [alert for event in events for alert in path.feed(event)]
    counts: dict[str, Counter[str]] = {}
    for record in path.records().values():
        counts.setdefault(record.tool, Counter())[record.outcome] += 1
    return counts, alerts


def flags(alerts: list[Alert]) -> list[str]:
    return sorted(a.alert_id for a in alerts if a.kind in ("cusum_signal",
                                                           "baseline_deviation"))


@pytest.fixture(scope="module")
def backlog() -> tuple[list[SimEvent], dict[str, ToolTruth]]:
    events, truth = simulate(days=42, seed=11)
    # Backfilled now: every event arrives at today's wall clock, in a bulk reader's order.
    return kafka_order([replace(e, arrival=NOW) for e in events]), truth


def test_one_live_event_in_a_backfill_changes_no_count_and_raises_no_alert(
    backlog: tuple[list[SimEvent], dict[str, ToolTruth]],
) -> None:
    ordered, truth = backlog
    middle = len(ordered) // 2
    with_live = [*ordered[:middle], live_event(), *ordered[middle:]]
    cases = sum(t.cases for t in truth.values())
    print(f"\n{len(ordered)} backfilled events, {cases} cases; live event at #{middle}")
    assert cases >= 12_000

    (control, control_alerts), (live, live_alerts) = replay(ordered), replay(with_live)
    for tool, t in truth.items():
        for outcome in ("TP", "FP", "TN", "FN", "indeterminate"):
            assert live[tool][outcome] == control[tool][outcome] == t.final_outcomes[outcome], (
                tool, outcome)
        # Cases without a report in the stream: unlabelled once 14 days of the backlog
        # have passed them, pending in its last 14 days; never more than that.
        unreported = live[tool]["unlabelled"] + live[tool]["pending"]
        assert unreported == t.final_outcomes["no_report"] + (tool == "ich-triage"), tool
        assert live[tool]["unlabelled"] == control[tool]["unlabelled"], tool
    assert live["ich-triage"]["pending"] == control["ich-triage"]["pending"] + 1  # the live one
    print(f"performance flags: control {flags(control_alerts)}, with live {flags(live_alerts)}")
    assert flags(live_alerts) == flags(control_alerts) == []
    # The rest of the evaluation went on as without the live case: the same alerts.
    assert sorted(a.alert_id for a in live_alerts) == sorted(a.alert_id for a in control_alerts)


def test_a_case_far_ahead_of_its_partition_clock_waits_with_its_revisions() -> None:
    from datetime import timedelta

    from surveillance.stream.ahead import AheadCases
    from tests.factories import ai_result

    def case(revision: int, at: datetime, case_id: str) -> Any:
        from surveillance.contracts import AdjudicatedCase, CaseOutcome

        a = ai_result(at=at)
        return AdjudicatedCase(
            case_id=case_id, revision=revision, outcome=CaseOutcome.PENDING, label=None,
            tool_id=a.tool_id, software_version=a.software_version,
            finding_code=a.finding_code, site=a.site, ai_result=a.ai_result,
            operating_threshold=a.operating_threshold, result_indicator=a.result_indicator,
            accession="a_x", study_date=a.study_date, inference_date=at, modality="CT",
            scanner_manufacturer="GE", scanner_model="m", scanner_software_version="1",
            ai_event_id=f"ai-{case_id}")

    backlog = datetime(2026, 7, 10, tzinfo=UTC)
    ahead = AheadCases(timedelta(days=2))
    assert not ahead.hold(case(0, backlog + timedelta(days=1), "near"), True, backlog)
    assert ahead.hold(case(0, NOW, "live"), True, backlog)
    assert ahead.hold(case(1, NOW, "live"), False, backlog)  # its report: held with it
    assert not ahead.hold(case(1, NOW, "other"), False, backlog)  # applied before: not held
    assert ahead.release(backlog + timedelta(days=30)) == []
    released = ahead.release(NOW - timedelta(days=2))
    assert [(c.case_id, c.revision) for c in released] == [("live", 1)]
    assert len(ahead) == 0
