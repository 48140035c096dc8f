"""The receiver's spool: what was acknowledged survives a restart and is published once."""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable
from datetime import UTC, date, datetime
from pathlib import Path

from surveillance.contracts import AIResult, Scanner
from surveillance.interop.dicom_header import ImageHeader
from surveillance.interop.dicom_spool import Spool, SpoolError


def result(event_id: str, study: str = "1.2.3") -> AIResult:
    return AIResult(
        event_id=event_id, tool_id="ich-triage", manufacturer="RapidAI", model="Rapid",
        software_version="4.2.1", finding_code="intracranial_hemorrhage", ai_result=0.7,
        operating_threshold=0.5, result_indicator=True, patient_id="MRN1",
        accession_number="ACC1", study_instance_uid=study, study_date=date(2026, 8, 1),
        site="site-a", modality="CT", body_part_examined="HEAD",
        scanner=Scanner(manufacturer="", model="", software_version=""),
        inference_date=datetime(2026, 8, 1, 10, tzinfo=UTC),
    )


def header(series: str, model: str, study: str = "1.2.3") -> ImageHeader:
    return ImageHeader(study, series, "CT", "HEAD", "GE", model, "1", 120.0, 5.0, 0.5,
                       "ROUTINE HEAD", False, 70, "F")


def test_pending_results_survive_a_restart_and_a_resend_after_publishing_is_ignored(
    tmp_path: Path,
) -> None:
    path = tmp_path / "spool.sqlite"
    spool = Spool(path)
    assert spool.add_results([result("e1"), result("e2")], "1.2.3", [], now=100.0) == 2
    assert spool.add_results([result("e1")], "1.2.3", [], now=101.0) == 0  # resent, pending
    spool.close()

    spool = Spool(path)  # the process restarted
    assert spool.due(now=150.0, wait_seconds=600) == []  # no image yet, still waiting
    due = spool.due(now=700.0, wait_seconds=600)
    assert [(d.result.event_id, d.header) for d in due] == [("e1", None), ("e2", None)]
    spool.mark_published(["e1", "e2"], now=701.0)
    assert spool.pending_count() == 0
    assert spool.add_results([result("e1")], "1.2.3", [], now=800.0) == 0  # resent later
    assert spool.due(now=10_000.0, wait_seconds=600) == []


def test_a_result_takes_the_series_its_sr_names_else_the_first_image_of_the_study(
    tmp_path: Path,
) -> None:
    spool = Spool(tmp_path / "spool.sqlite")
    spool.add_header(header("scout", "Scout"), now=1.0)
    spool.add_header(header("axial", "Axial"), now=2.0)
    assert not spool.add_header(header("axial", "Other"), now=3.0)  # first one wins
    spool.add_results([result("named")], "1.2.3", ["axial"], now=4.0)
    spool.add_results([result("unnamed")], "1.2.3", [], now=5.0)
    due = {d.result.event_id: d.header for d in spool.due(now=6.0, wait_seconds=600)}
    assert due["named"] is not None and due["named"].model == "Axial"
    assert due["unnamed"] is not None and due["unnamed"].model == "Scout"
    other_study = Spool(tmp_path / "other.sqlite")
    other_study.add_header(header("s", "X", study="9.9"), now=1.0)
    other_study.add_results([result("lonely")], "1.2.3", [], now=2.0)
    assert other_study.due(now=3.0, wait_seconds=600) == []


def test_the_spool_and_its_journal_are_readable_by_their_owner_only(tmp_path: Path) -> None:
    import os
    import stat

    old = os.umask(0o022)
    try:
        spool = Spool(tmp_path / "spool.sqlite")
        spool.close()
    finally:
        os.umask(old)
    files = sorted(tmp_path.glob("spool.sqlite*"))
    assert files, "the spool file was not created"
    assert {f.name: stat.S_IMODE(f.stat().st_mode) for f in files} == {f.name: 0o600 for f in files}


def test_writers_queued_during_a_commit_share_the_next_one_and_get_their_own_answer(
    tmp_path: Path,
) -> None:
    """Group commit: 12 writers (6 headers, 1 duplicate of them, 5 result sets) queued
    while another commit holds the spool go through in one transaction, each told exactly
    what it added; a fresh connection (a restart) sees everything they were told."""
    path = tmp_path / "spool.sqlite"
    spool = Spool(path)
    statements: list[str] = []
    spool._db.set_trace_callback(statements.append)
    answers: dict[str, object] = {}

    def write(name: str, call: Callable[[], object]) -> None:
        answers[name] = call()

    jobs = [(f"h{i}", lambda i=i: spool.add_header(header(f"1.2.3.{i}", "m"), 1.0))
            for i in range(6)]
    jobs.append(("h0-again", lambda: spool.add_header(header("1.2.3.0", "other"), 2.0)))
    jobs += [(f"r{i}", lambda i=i: spool.add_results([result(f"e{i}"), result("shared")],
                                                   "1.2.3", [], 3.0)) for i in range(5)]
    with spool._lock:  # a commit in progress
        threads = [threading.Thread(target=write, args=job) for job in jobs]
        for t in threads:
            t.start()
        while len(spool._queue) < len(jobs):
            time.sleep(0.001)
    for t in threads:
        t.join()
    assert statements.count("COMMIT") == 1
    assert sum(answers[f"h{i}"] is True for i in range(6)) + (answers["h0-again"] is True) == 6
    assert sorted(answers[f"r{i}"] for i in range(5)) == [1, 1, 1, 1, 2]  # "shared" once
    spool.close()
    again = Spool(path)
    assert again.pending_count() == 6
    assert len(again.due(now=10.0, wait_seconds=600)) == 6  # study 1.2.3 has images


def test_a_change_that_fails_fails_alone_and_its_writer_is_told(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool.sqlite")

    def broken(db: sqlite3.Connection) -> int:
        db.execute("INSERT INTO published VALUES ('x', 1.0)")
        return db.execute("INSERT INTO no_such_table VALUES (1)").rowcount

    failures: list[Exception] = []

    def write_broken() -> None:
        try:
            spool._write(broken)
        except SpoolError as exc:
            failures.append(exc)

    with spool._lock:
        threads = [threading.Thread(target=write_broken),
                   threading.Thread(target=spool.add_results,
                                    args=([result("e1")], "1.2.3", [], 1.0))]
        for t in threads:
            t.start()
        while len(spool._queue) < 2:
            time.sleep(0.001)
    for t in threads:
        t.join()
    assert len(failures) == 1 and "no_such_table" in str(failures[0])
    assert spool.pending_count() == 1
    # The failed change's first insert was rolled back with it.
    assert spool._db.execute("SELECT count(*) FROM published").fetchone() == (0,)
