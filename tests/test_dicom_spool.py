"""The receiver's spool: what was acknowledged survives a restart and is published once."""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path

from surveillance.contracts import AIResult, Scanner
from surveillance.interop.dicom_header import ImageHeader
from surveillance.interop.dicom_spool import Spool


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
