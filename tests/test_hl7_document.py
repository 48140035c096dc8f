"""MDM^T02, a transcribed report as a document (HL7 v2.5.1 chapter 9), read into the same
`ReportFinal` events as an ORU^R01: TXA-17 (document completion status, table 0271) for
final / not yet final, TXA-13 (parent document) for an addendum, TXA-19 CA for a deleted
one, the text of every TX/FT/ST OBX and NTE after TXA. It was refused (AR 200) before.
The messages' TXA and OBX segments are built by field name with hl7apy."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import hl7
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from surveillance.contracts import ReportStatus
from surveillance.interop.hl7_header import Rejection
from surveillance.interop.hl7_mapping import Mapping
from surveillance.interop.hl7_parse import Parsed, parse_message
from tests.mdm_samples import mdm, obx, txa

NOW = datetime(2026, 12, 1, tzinfo=UTC)
ORDER = ("ORC|RE|ORD1|ACC-77", "OBR|1|ORD1|ACC-77|CTHEAD^CT HEAD")
BODY = (obx(1, "TX", "FINDINGS: Small left pneumothorax."),
        obx(2, "FT", "IMPRESSION:\\.br\\Small pneumothorax, no tension.", raw=True))
TEXT = "FINDINGS: Small left pneumothorax.\nIMPRESSION:\nSmall pneumothorax, no tension."


def parse(raw: bytes) -> Parsed:
    parsed = parse_message(raw, Mapping(), now=NOW)
    assert isinstance(parsed, Parsed), parsed
    return parsed


def rejected(raw: bytes) -> Rejection:
    parsed = parse_message(raw, Mapping(), now=NOW)
    assert isinstance(parsed, Rejection), parsed
    return parsed


@pytest.mark.parametrize("code", ["LA", "AU", "la"])
def test_an_authenticated_document_is_a_final_report(code: str) -> None:
    raw = mdm("D1", *ORDER, txa(code), *BODY)
    [report] = parse(raw).reports
    assert report.status is ReportStatus.FINAL
    assert report.accession_number == "ACC-77"
    assert report.patient_id == "123456"
    assert report.report_text == TEXT
    # The report time is when the document was signed (TXA-22's time stamp), read by
    # python-hl7 too: an independent parse of the same bytes.
    signed = hl7.parse(raw.decode())["TXA"][0][22][0][14][0]
    assert report.finalized_at == datetime.strptime(signed, "%Y%m%d%H%M%S").replace(tzinfo=UTC)


@pytest.mark.parametrize("code", ["PA", "DO", "DI", "IP", "IN", "ZZ"])
def test_a_document_not_yet_authenticated_is_counted_and_not_used(code: str) -> None:
    parsed = parse(mdm("D1", *ORDER, txa(code), *BODY))
    assert parsed.reports == []
    assert [s.reason for s in parsed.skipped] == [
        f"document completion status (TXA-17) {code} not used"]


def test_a_status_that_is_not_a_code_is_not_echoed() -> None:
    parsed = parse(mdm("D1", *ORDER, txa("SIGNED BY DR SMITH"), *BODY))
    assert [s.reason for s in parsed.skipped] == [
        "document completion status (TXA-17) (not a table 0271 code) not used"]


def test_no_completion_status_is_ae_101() -> None:
    rej = rejected(mdm("D1", *ORDER, txa(""), *BODY))
    assert (rej.code, rej.error) == ("AE", "101")
    assert rej.reason.startswith("TXA-17 (document completion status) is empty")


def test_a_final_document_with_a_parent_is_an_addendum() -> None:
    [report] = parse(mdm("D2", *ORDER, txa("LA", document="DOC-2", parent="DOC-1"),
                         obx(1, "TX", "Comparison with prior CT: unchanged."))).reports
    assert report.status is ReportStatus.ADDENDUM


def test_addendum_text_marks_an_addendum_as_in_an_oru() -> None:
    [report] = parse(mdm("D2", *ORDER, txa("LA"),
                         obx(1, "TX", "ADDENDUM: the nodule is new."))).reports
    assert report.status is ReportStatus.ADDENDUM


def test_a_deleted_document_withdraws_the_label() -> None:
    [report] = parse(mdm("D3", *ORDER, txa("LA", availability="CA"), *BODY)).reports
    assert report.status is ReportStatus.CANCELLED
    assert report.report_text is None


def test_every_text_obx_and_note_in_order_and_nothing_else() -> None:
    raw = mdm("D4", *ORDER, txa("AU"),
              obx(1, "ST", "1.2.840.113619.2.55.3.604688119.969.1"),  # the study's UID
              obx(2, "TX", "EXAM: CT head without contrast."),
              "NTE|1||Dictated by the attending.",
              obx(3, "ED", "^application^pdf^Base64^JVBERi0xLjQ="),
              obx(4, "TX", ""),
              obx(5, "FT", "IMPRESSION: No acute hemorrhage.\\X0D\\No mass effect.", raw=True))
    [report] = parse(raw).reports
    assert report.report_text == (
        "EXAM: CT head without contrast.\nDictated by the attending.\n\n"
        "IMPRESSION: No acute hemorrhage.\nNo mass effect.")


def test_one_document_for_two_orders_reports_each_accession() -> None:
    raw = mdm("D5", "ORC|RE|ORD1|ACC-CH", "OBR|1|ORD1|ACC-CH|CTCH^CT CHEST",
              "ORC|RE|ORD2|ACC-AB", "OBR|2|ORD2|ACC-AB|CTAB^CT ABDOMEN", txa("LA"), *BODY)
    reports = parse(raw).reports
    assert [r.accession_number for r in reports] == ["ACC-CH", "ACC-AB"]
    assert {r.report_text for r in reports} == {TEXT}
    assert len({r.event_id for r in reports}) == 2


@pytest.mark.parametrize(("fields", "accession"), [
    ({"filler": "ACC-F", "placer": "ORD-P"}, "ACC-F"),
    ({"placer": "ORD-P"}, "ORD-P"),
])
def test_without_an_order_group_the_document_names_its_study(
        fields: dict[str, str], accession: str) -> None:
    [report] = parse(mdm("D6", txa("LA", **fields), *BODY)).reports
    assert report.accession_number == accession


def test_without_a_signing_time_the_dictation_time_is_the_report_time() -> None:
    [report] = parse(mdm("D7", *ORDER, txa("LA", signed=""), *BODY)).reports
    assert report.finalized_at == datetime(2026, 8, 15, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(("segments", "error", "reason"), [
    (ORDER, "100", "the MDM^T02 has no TXA segment"),
    ((*ORDER, *BODY), "100", "OBX before the TXA segment"),
    ((*ORDER, BODY[0], txa("LA")), "100", "OBX before the TXA segment"),
    ((*ORDER, txa("LA")), "101", "the MDM^T02 has no OBX segment"),
    ((*ORDER, txa("LA"), txa("LA"), *BODY), "100", "a second TXA segment"),
    ((txa("LA"), *BODY), "101", "OBR group 1: no accession number in OBR-3, OBR-2, "
     "TXA-15, TXA-14"),
    ((*ORDER, txa("LA", signed="20991231"), *BODY), "102", "OBR group 1: the report time "
     "(OBR-22, TXA-22.15, TXA-6, OBR-7, OBX-14, MSH-7) is in the future"),
])
def test_a_malformed_document_is_ae_naming_fields_not_values(
        segments: tuple[str, ...], error: str, reason: str) -> None:
    rej = rejected(mdm("D8", *segments))
    assert (rej.code, rej.error) == ("AE", error)
    assert rej.reason.startswith(reason)
    assert "pneumothorax" not in rej.reason and "123456" not in rej.reason


def test_other_mdm_events_are_still_refused() -> None:
    rej = rejected(mdm("D9", *ORDER, txa("LA"), *BODY, event="MDM^T01^MDM_T01"))
    assert (rej.code, rej.error) == ("AR", "200")


def test_hl7_parse_reads_a_file_of_documents_pseudonymized(tmp_path: Path) -> None:
    """`hl7 parse` (and so `hl7 import` and `backfill`, which read files the same way)."""
    from typer.testing import CliRunner

    from surveillance.cli import app
    from surveillance.privacy import pseudonymize
    from surveillance.settings import DEMO_PSEUDONYM_KEY

    path = tmp_path / "documents.hl7"
    path.write_bytes(mdm("D1", *ORDER, txa("LA"), *BODY) + mdm("D2", *ORDER, txa("DI"), *BODY))
    result = CliRunner().invoke(app, ["hl7", "parse", str(path)])
    assert result.exit_code == 0, result.output
    [line] = [json.loads(x) for x in result.stdout.splitlines()]
    assert line["accession_number"] == pseudonymize(DEMO_PSEUDONYM_KEY.encode(), "accession",
                                                    "ACC-77")
    assert line["status"] == "final" and "ACC-77" not in result.stdout
    assert "documents.hl7#2: OBR group 1 skipped: document completion status (TXA-17) DI " \
           "not used" in result.stderr


ORDERS = [ORDER, ("ORC|RE|ORD2|ACC-2", "OBR|2|ORD2|ACC-2"), ("OBR|3||ACC-3",)]
TXAS = [txa("LA"), txa("DO"), txa("LA", parent="DOC-0"), txa("LA", availability="CA"),
        txa(""), txa("AU", filler="ACC-F", signed=""), "TXA|",
        "TXA|1|DI|TX|||||||||DOC|||||\\X0D\\"]
#: Each body segment and the report lines it should give (worked out by hand).
BODIES = {
    BODY[0]: ["FINDINGS: Small left pneumothorax."],
    BODY[1]: ["IMPRESSION:", "Small pneumothorax, no tension."],
    obx(3, "ST", "1.2.3.4"): [],  # a UID: a reference, not text
    obx(4, "CWE", "Y", code="RID5352^pneumothorax"): [],  # coded, not text
    "NTE|1||Note text.": ["Note text."],  # text when it follows an OBX
    "CON|1": [], "ZDS|1.2.3^PACS": [], "OBX|": [],
    "OBX|1|TX|RPT||\\Xzz\\||||||F": ["\ufffd"],  # an undecodable escape
    obx(5, "TX", "~~"): ["~~"],  # sent escaped (R escapes), not as two repetitions
    "txa|lower": [],  # not a segment: the message is refused
}
#: Documents in shape (orders, one TXA, a body), and the same parts in any order.
SHAPED = st.builds(lambda orders, head, body: [s for o in orders for s in o] + [head, *body],
                   st.lists(st.sampled_from(ORDERS), max_size=2), st.sampled_from(TXAS),
                   st.lists(st.sampled_from(list(BODIES)), max_size=5))
ANY = st.lists(st.sampled_from([s for o in ORDERS for s in o] + TXAS + list(BODIES)),
               max_size=9)


@settings(max_examples=300, deadline=None)
@given(st.one_of(SHAPED, ANY))
def test_any_order_of_document_segments_is_read_or_refused_never_crashes(
        segments: list[str]) -> None:
    """A sender's segments in any order, repeated or missing: a reading or a rejection
    that names fields (never a value), or a reading whose text is exactly the body's."""
    raw = mdm("H1", *segments)
    parsed = parse_message(raw, Mapping(), now=NOW)
    if isinstance(parsed, Rejection):
        assert parsed.code in ("AE", "AR")
        assert not any(word in parsed.reason for word in ("pneumothorax", "Note text", "123456"))
        return
    # Read: the segments were in shape (one TXA, the orders before it), and the text is
    # the lines of the OBX after it, and of the NTE after an OBX, in order.
    head = next(n for n, seg in enumerate(segments) if seg.startswith("TXA"))
    lines: list[str] = []
    obx_seen = False
    for seg in segments[head + 1:]:
        obx_seen |= seg.startswith("OBX")
        if seg.startswith("OBX") or (seg.startswith("NTE") and obx_seen):
            lines += BODIES[seg]
    text = "\n".join(lines).strip("\n") or None
    for report in parsed.reports:
        assert report.accession_number in ("ACC-77", "ACC-2", "ACC-3", "ACC-F")
        if report.status is not ReportStatus.CANCELLED:
            assert report.report_text == text
