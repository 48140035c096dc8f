"""An engine restarted mid-stream against one that was not, in process: the same order of
records, so any difference is the restart's (what a crashed backfill or a worker that
takes over does: a new engine over the tables as persisted, its case stage rebuilt from
the case table).

Counts are the same, and so are the alerts (every field): the restart happens at a batch
end, after the tools' state snapshots were written (`engine.snapshots`), and the new
engine loads them instead of replaying the case records. Replayed, the monitor started
without the verdicts and episodes the old one held and alerted a deviation the
uninterrupted one did not (ich-triage 5.2.1 at site-c, 2026-07-12).
"""

from __future__ import annotations

from collections import Counter

import pytest

from surveillance.clinical.ledger import CaseRecord
from surveillance.contracts import Alert
from surveillance.engine.config import EngineConfig
from surveillance.engine.local import LocalPipeline
from surveillance.engine.pipeline import Engine
from surveillance.simulate import SimEvent
from tests.test_backfill_crashes import stream

#: Per tool the outcome counts, and the alerts by id.
Replay = tuple[dict[str, Counter[str]], dict[str, Alert]]


def replay(events: list[SimEvent], restart_at: int | None) -> Replay:
    path = LocalPipeline(EngineConfig.plain(4), snapshots=True)
    alerts: dict[str, Alert] = {}
    for i, event in enumerate(events):
        if i == restart_at:
            path._apply(path.engine.snapshot())  # a batch end: the tools' snapshots written
            path.engine = Engine(path.config, *path.tables.values())
            path.engine.cases.rebuild([(k, CaseRecord.from_dict(v))
                                       for k, v in path.tables["case_state"].items()])
            assert path.engine.cases.restored == sorted(
                {CaseRecord.from_dict(v).tool for v in path.tables["case_state"].values()})
        for alert in path.feed(event):
            alerts.setdefault(alert.alert_id, alert)
    counts: dict[str, Counter[str]] = {}
    for record in path.records().values():
        counts.setdefault(record.tool, Counter())[record.outcome] += 1
    return counts, alerts


@pytest.fixture(scope="module")
def runs() -> tuple[Replay, Replay]:
    events, _ = stream()
    return replay(events, None), replay(events, len(events) // 2)


def test_a_restart_mid_stream_changes_no_count(runs: tuple[Replay, Replay]) -> None:
    (once, _), (restarted, _) = runs
    assert restarted == once
    assert sum(sum(c.values()) for c in once.values()) > 5000


def test_a_restart_mid_stream_changes_no_alert(runs: tuple[Replay, Replay]) -> None:
    (_, once), (_, restarted) = runs
    assert len(once) >= 3
    print(f"\nonly without the restart: {sorted(once.keys() - restarted.keys())}; "
          f"only with it: {sorted(restarted.keys() - once.keys())}")
    assert restarted == once
