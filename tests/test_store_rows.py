"""Pure parts of the store: message decoding, in-batch reduction, migration planning."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import pytest

from surveillance.contracts import AdjudicatedCase, AdverseEvent, SnapshotBatch
from surveillance.store.batch import latest
from surveillance.store.errors import MigrationError
from surveillance.store.migrate import load_migrations, plan
from surveillance.store.rows import CASE_COLUMNS, SNAPSHOT_COLUMNS, Decoder, Reject, Rows
from tests.store_fixtures import (
    corrected,
    make_adverse_events,
    make_alerts,
    make_cases,
    make_snapshots,
)

START = date(2026, 7, 1)


def _decoder() -> Decoder:
    return Decoder("c", "a", "s", "ae")


def test_case_becomes_case_and_ai_result_rows() -> None:
    case = make_cases(1, 1, "ich-triage", START, 92)[0]
    rows = Rows.empty()
    _decoder().add(rows, "c", 0, 7, case.model_dump_json().encode())
    assert len(rows.cases) == 1 and len(rows.ai_results) == 1 and rows.rejects == []
    as_dict = dict(zip(CASE_COLUMNS, rows.cases[0], strict=True))
    assert as_dict["case_id"] == case.case_id
    assert as_dict["outcome"] == case.outcome.value
    assert as_dict["accession"] == case.accession
    assert as_dict["study_date"] == case.study_date


def test_invalid_messages_become_rejects_by_position_only() -> None:
    rows = Rows.empty()
    decoder = _decoder()
    decoder.add(rows, "c", 2, 11, b'{"case_id": "x"}')
    decoder.add(rows, "c", 2, 12, None)
    decoder.add(rows, "other", 0, 1, b"{}")
    assert [(r.topic, r.partition, r.offset) for r in rows.rejects] == [
        ("c", 2, 11),
        ("c", 2, 12),
        ("other", 0, 1),
    ]
    assert rows.rejects[0].reason.startswith("invalid case: revision: Field required")
    assert rows.cases == []


def test_a_days_snapshot_batch_becomes_one_row_per_snapshot_and_single_ones_still_do() -> None:
    snapshots = make_snapshots("ich-triage", START, 3)
    batch = SnapshotBatch(tool_id="ich-triage", at=snapshots[0].at, snapshots=snapshots[:2])
    rows = Rows.empty()
    decoder = _decoder()
    decoder.add(rows, "s", 0, 1, batch.model_dump_json().encode())
    decoder.add(rows, "s", 0, 2, snapshots[2].model_dump_json().encode())  # the shadow's
    ids = [dict(zip(SNAPSHOT_COLUMNS, r, strict=True))["snapshot_id"] for r in rows.snapshots]
    assert ids == [s.snapshot_id for s in snapshots] and rows.rejects == []
    # One bad snapshot rejects its whole record (by position), storing none of it.
    bad = batch.model_dump(mode="json")
    bad["snapshots"][1]["value"] = "high"
    decoder.add(rows, "s", 1, 9, json.dumps(bad).encode())
    decoder.add(rows, "s", 1, 10, b"not json")
    assert len(rows.snapshots) == 3
    assert [(r.partition, r.offset) for r in rows.rejects] == [(1, 9), (1, 10)]
    assert rows.rejects[0].reason.startswith("invalid snapshot: snapshots.1.value")
    assert rows.rejects[1].reason.startswith("invalid snapshot: ")


def test_nul_characters_are_rejected_not_stored() -> None:
    case = make_cases(1, 1, "ich-triage", START, 92)[0]
    bad = AdjudicatedCase.model_validate({**case.model_dump(), "protocol_name": "HEAD\x00ROUTINE"})
    rows = Rows.empty()
    _decoder().add(rows, "c", 0, 3, bad.model_dump_json().encode())
    assert rows.cases == [] and len(rows.rejects) == 1
    assert "NUL" in rows.rejects[0].reason


def test_adverse_event_needs_pseudonymized_identifiers() -> None:
    event = make_adverse_events("ich-triage", START)[0]
    rows = Rows.empty()
    decoder = _decoder()
    decoder.add(rows, "ae", 0, 0, event.model_dump_json().encode())
    raw = AdverseEvent.model_validate({**event.model_dump(), "pseudonymized": False})
    decoder.add(rows, "ae", 0, 1, raw.model_dump_json().encode())
    assert len(rows.adverse_events) == 1
    assert rows.rejects == [Reject("ae", 0, 1, "adverse event identifiers are not pseudonymized")]


def test_adverse_event_row_keeps_no_narrative_or_reporter_identity() -> None:
    event = make_adverse_events("ich-triage", START)[0]
    rows = Rows.empty()
    _decoder().add(rows, "ae", 0, 0, event.model_dump_json().encode())
    stored = rows.adverse_events[0]
    for secret in (event.event.narrative, event.reporter.name, event.reporter.contact):
        assert secret not in stored


def test_resolving_alert_touches_both_alerts() -> None:
    rows = Rows.empty()
    for i, alert in enumerate(make_alerts("ich-triage", START)):
        _decoder().add(rows, "a", 0, i, alert.model_dump_json().encode())
    assert rows.alerts_touched == {"ich-triage-al-1", "ich-triage-al-2", "ich-triage-al-3"}


def test_latest_keeps_highest_revision_and_later_row_on_tie() -> None:
    rows = [("a", 0, "x"), ("b", 2, "y"), ("a", 3, "z"), ("a", 1, "w"), ("b", 2, "v")]
    assert sorted(latest(rows, 0, 1)) == [("a", 3, "z"), ("b", 2, "v")]


def test_corrected_case_flips_outcome() -> None:
    case = next(c for c in make_cases(3, 200, "ich-triage", START, 92) if c.outcome == "TP")
    fixed = corrected(case, 1)
    assert (fixed.revision, fixed.label, fixed.outcome) == (1, "absent", "FP")


def test_migrations_are_numbered_and_timescale_is_optional() -> None:
    migrations = load_migrations()
    assert [m.version for m in migrations] == [1, 2, 3, 4, 5, 6, 7]
    assert [m.requires_extension for m in migrations] == [
        None, None, "timescaledb", None, None, "timescaledb", None
    ]
    plain = plan(migrations, {}, {"plpgsql", "pg_stat_statements"})
    assert [m.name for m in plain] == [
        "0001_core_tables", "0002_views", "0004_acquisition", "0005_event_ids_and_indexes",
        "0007_committee_series",
    ]
    timescale = plan(migrations, {}, {"timescaledb"})
    assert [m.name for m in timescale] == [
        "0001_core_tables", "0002_views", "0003_timescale", "0004_acquisition",
        "0005_event_ids_and_indexes", "0006_timescale_sizing", "0007_committee_series",
    ]


def test_plan_skips_applied_and_refuses_edited_migrations() -> None:
    migrations = load_migrations()
    applied = {1: migrations[0].checksum}
    assert [m.version for m in plan(migrations, applied, set())] == [2, 4, 5, 7]
    with pytest.raises(MigrationError, match="0001_core_tables was edited"):
        plan(migrations, {1: "0" * 64}, set())


def test_migration_files_need_a_unique_number(tmp_path: Path) -> None:
    (tmp_path / "0001_a.sql").write_text("SELECT 1;")
    (tmp_path / "0001_b.sql").write_text("SELECT 1;")
    with pytest.raises(MigrationError, match="share a number"):
        load_migrations(tmp_path)
    (tmp_path / "0001_b.sql").unlink()
    (tmp_path / "x_c.sql").write_text("SELECT 1;")
    with pytest.raises(MigrationError, match="must start with its number"):
        load_migrations(tmp_path)


def test_requires_extension_header_is_read(tmp_path: Path) -> None:
    (tmp_path / "0009_geo.sql").write_text("\n-- requires-extension: postgis\nSELECT 1;")
    (tmp_path / "0010_plain.sql").write_text("-- a comment\nSELECT 1;")
    found = load_migrations(tmp_path)
    assert [(m.version, m.name, m.requires_extension) for m in found] == [
        (9, "0009_geo", "postgis"),
        (10, "0010_plain", None),
    ]
