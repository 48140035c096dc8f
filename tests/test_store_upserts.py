"""Migrations and the batch writer against the real embedded PostgreSQL."""

from __future__ import annotations

import random
from datetime import date
from typing import Any

import psycopg
import pytest

from surveillance.contracts import AdjudicatedCase
from surveillance.store.batch import write_batch
from surveillance.store.migrate import migrate
from surveillance.store.rows import Decoder, Rows
from tests.store_fixtures import (
    corrected,
    make_adverse_events,
    make_alerts,
    make_cases,
    make_snapshots,
)

pytestmark = pytest.mark.integration

START = date(2026, 7, 1)
TOPICS = ("c", "a", "s", "ae")


def _events(seed: int) -> tuple[list[tuple[str, bytes]], dict[str, AdjudicatedCase]]:
    """A quarter of events for two tools, corrections included, in shuffled order.

    Returns the (topic, value) messages and the case each case_id must end up as.
    """
    rng = random.Random(seed)
    messages: list[tuple[str, bytes]] = []
    final: dict[str, AdjudicatedCase] = {}
    for i, tool in enumerate(("ich-triage", "ptx-triage")):
        cases = make_cases(seed + i, 1500, tool, START, 92)
        labelled = [c for c in cases if c.label in ("present", "absent")]
        first = rng.sample(labelled, 120)
        second = first[:40]
        revisions = [corrected(c, 1) for c in first] + [
            corrected(corrected(c, 1), 2) for c in second
        ]
        for c in [*cases, *revisions]:
            if c.case_id not in final or c.revision > final[c.case_id].revision:
                final[c.case_id] = c
            messages.append(("c", c.model_dump_json().encode()))
        messages += [("a", a.model_dump_json().encode()) for a in make_alerts(tool, START)]
        messages += [("s", s.model_dump_json().encode()) for s in make_snapshots(tool, START, 30)]
        messages += [("ae", e.model_dump_json().encode()) for e in make_adverse_events(tool, START)]
    rng.shuffle(messages)  # corrections may arrive before the case they correct
    return messages, final


async def _write(url: str, messages: list[tuple[str, bytes]], chunk: int) -> None:
    decoder = Decoder(*TOPICS)
    async with await psycopg.AsyncConnection.connect(url) as conn:
        for start in range(0, len(messages), chunk):
            rows = Rows.empty()
            for offset, (topic, value) in enumerate(messages[start : start + chunk], start):
                decoder.add(rows, topic, 0, offset, value)
            await write_batch(conn, rows)


def _dump(url: str) -> dict[str, list[tuple[Any, ...]]]:
    tables = (
        "cases",
        "ai_results",
        "model_versions",
        "metric_snapshots",
        "alerts",
        "adverse_events",
        "store_rejects",
    )
    with psycopg.connect(url) as conn:
        return {t: conn.execute(f"SELECT * FROM {t} ORDER BY 1, 2").fetchall() for t in tables}


def test_migrate_chooses_the_plain_path_without_timescaledb(fresh_database: str) -> None:
    with psycopg.connect(fresh_database) as conn:
        available = conn.execute(
            "SELECT count(*) FROM pg_available_extensions WHERE name = 'timescaledb'"
        ).fetchone()
    assert available == (0,)
    assert migrate(fresh_database) == [
        "0001_core_tables", "0002_views", "0004_acquisition", "0005_event_ids_and_indexes",
        "0007_committee_series",
    ]
    assert migrate(fresh_database) == []
    with psycopg.connect(fresh_database) as conn:
        assert conn.execute("SELECT version FROM schema_migrations ORDER BY 1").fetchall() == [
            (1,),
            (2,),
            (4,),
            (5,),
            (7,),
        ]
        assert conn.execute(
            "SELECT count(*) FROM pg_extension WHERE extname = 'timescaledb'"
        ).fetchone() == (0,)
        views = conn.execute(
            "SELECT viewname FROM pg_views WHERE schemaname = 'public' ORDER BY 1"
        ).fetchall()
        assert views == [("drift_verdicts",), ("tool_daily",)]


async def test_replayed_quarter_lands_exactly_once(fresh_database: str) -> None:
    migrate(fresh_database)
    messages, final = _events(seed=11)
    await _write(fresh_database, messages, chunk=700)
    first = _dump(fresh_database)

    expected_cases = sorted(final)
    assert [r[0] for r in first["cases"]] == expected_cases
    assert len(first["ai_results"]) == len(final) == 3000
    with psycopg.connect(fresh_database) as conn:
        stored = {
            r[0]: r[1:] for r in conn.execute("SELECT case_id, revision, outcome, label FROM cases")
        }
        versions = conn.execute(
            "SELECT tool_id, software_version, first_seen, last_seen FROM model_versions "
            "ORDER BY 1, 2"
        ).fetchall()
        resolved = conn.execute(
            "SELECT alert_id, resolved_at, resolved_by FROM alerts WHERE resolved_at IS NOT NULL "
            "ORDER BY 1"
        ).fetchall()
    for case_id, case in final.items():
        label = case.label.value if case.label is not None else None
        assert stored[case_id] == (case.revision, case.outcome.value, label)
    assert sum(1 for c in final.values() if c.revision == 2) == 80
    assert sum(1 for c in final.values() if c.revision == 1) == 160

    spans: dict[tuple[str, str], list[Any]] = {}
    for c in final.values():
        spans.setdefault((c.tool_id, c.software_version), []).append(c.inference_date)
    assert versions == [(t, v, min(d), max(d)) for (t, v), d in sorted(spans.items())]

    alerts = {a.alert_id: a for t in ("ich-triage", "ptx-triage") for a in make_alerts(t, START)}
    assert resolved == [
        (f"{t}-al-1", alerts[f"{t}-al-3"].raised_at, f"{t}-al-3")
        for t in ("ich-triage", "ptx-triage")
    ]
    assert len(first["metric_snapshots"]) == 60
    assert len(first["adverse_events"]) == 6
    assert first["store_rejects"] == []

    # The same events again, in other batches and another order: nothing changes at all.
    random.Random(5).shuffle(messages)
    await _write(fresh_database, messages, chunk=333)
    assert _dump(fresh_database) == first


async def test_lower_revision_after_higher_is_ignored(fresh_database: str) -> None:
    migrate(fresh_database)
    case = next(c for c in make_cases(21, 50, "lvo-triage", START, 92) if c.outcome == "TN")
    rev2 = corrected(corrected(case, 1), 2)
    rev1 = corrected(case, 1)
    for sequence in ([case, rev2, rev1], [rev1, case]):
        await _write(fresh_database, [("c", c.model_dump_json().encode()) for c in sequence], 1)
    with psycopg.connect(fresh_database) as conn:
        row = conn.execute("SELECT revision, outcome, label, label_status FROM cases").fetchall()
    assert row == [(2, "TN", "absent", "corrected")]
