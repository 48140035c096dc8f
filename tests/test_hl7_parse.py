"""HL7 v2 ORU^R01 -> ReportFinal: the project's own messages, exact values out (pure).

The expected values are read off the messages by hand (field positions, the facility's
time zone, the escape table of HL7 v2.8 section 2.7); the segment splitter is checked
field by field against the `hl7` package's parser, an independent implementation.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import hl7
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from surveillance.contracts import Label, ReportFinal, ReportStatus, StructuredFinding
from surveillance.interop.errors import MappingError
from surveillance.interop.hl7_ack import build_ack, escape
from surveillance.interop.hl7_batch import split_batch
from surveillance.interop.hl7_header import Rejection, header_of, split_segments
from surveillance.interop.hl7_mapping import Mapping, load_mapping
from surveillance.interop.hl7_parse import Parsed, Skipped, parse_message
from surveillance.interop.hl7_text import Delimiters, parse_timestamp, unescape
from tests import hl7_samples as s


@pytest.fixture(scope="module")
def mapping(tmp_path_factory: pytest.TempPathFactory) -> Mapping:
    return load_mapping(s.write_mapping(tmp_path_factory.mktemp("map")))


def eid(facility: str, control: str, group: int) -> str:
    digest = hashlib.sha256((facility + "\x1f" + control).encode()).hexdigest()
    return f"hl7-{digest[:24]}-{group}"


def ok(raw: bytes, mapping: Mapping) -> Parsed:
    result = parse_message(raw, mapping)
    assert isinstance(result, Parsed), result
    return result


def test_powerscribe_style_final_report(mapping: Mapping) -> None:
    parsed = ok(s.POWERSCRIBE_FINAL, mapping)
    # 01:14 local in Chicago on the morning DST starts (02:00): still CST, UTC-6.
    assert parsed.reports == [ReportFinal(
        event_id=eid("MERCY_PS", "PS-000123", 1),
        accession_number="ACC-1001",
        patient_id="4455667",
        site="mercy-main",
        finalized_at=datetime(2024, 3, 10, 7, 14, tzinfo=UTC),
        status=ReportStatus.FINAL,
        report_text="EXAM: CT head without contrast.\n"
                    "FINDINGS: Acute left subdural hematoma measuring 8 mm.\n"
                    "\n"
                    "IMPRESSION: Acute subdural hemorrhage. No pneumothorax.",
    )]
    assert parsed.reports[0].finalized_at.utcoffset() == timedelta(hours=-6)
    assert parsed.skipped == []


def test_epic_style_two_exams_coded_results_and_addendum(mapping: Mapping) -> None:
    parsed = ok(s.EPIC_TWO_EXAMS, mapping)
    edt = timezone(timedelta(hours=-4))
    assert parsed.reports == [
        ReportFinal(
            event_id=eid("STLUKE_EPIC", "E9000011", 1),
            accession_number="ACC-2001",
            patient_id="MRN-5566",
            site="st-luke",
            finalized_at=datetime(2024, 7, 5, 14, 25, tzinfo=edt),
            status=ReportStatus.FINAL,
            findings=[StructuredFinding(finding_code="pneumothorax", label=Label.PRESENT)],
            report_text="IMPRESSION:\nSmall right apical pneumothorax.\nNo pulmonary embolism.",
        ),
        ReportFinal(
            event_id=eid("STLUKE_EPIC", "E9000011", 2),
            accession_number="ACC-2002",
            patient_id="MRN-5566",
            site="st-luke",
            finalized_at=datetime(2024, 7, 5, 14, 26, tzinfo=edt),
            status=ReportStatus.ADDENDUM,
            findings=[StructuredFinding(finding_code="intracranial_hemorrhage",
                                        label=Label.ABSENT)],
            report_text="ADDENDUM: On review, no intracranial hemorrhage.",
        ),
    ]


def test_mirth_relayed_latin1_lf_and_every_escape(mapping: Mapping) -> None:
    parsed = ok(s.MIRTH_RELAYED, mapping)
    assert parsed.header.charset == "iso8859-1"
    assert parsed.reports == [ReportFinal(
        event_id=eid("RELAY", "M-42", 1),
        accession_number="ACC-3001",
        patient_id="P-77",
        site="county",
        # Zone-less, Berlin in winter: UTC+1.
        finalized_at=datetime(2024, 1, 1, 7, 59, 59, tzinfo=UTC),
        status=ReportStatus.CORRECTED,
        report_text="CORRECTED REPORT. Pleural effusion r\u00e9sorb\u00e9e. a|b c^d e&f g~h "
                    "i\\j No pneumothorax.\nSecond line.\nThird line.",
    )]


def test_preliminary_is_skipped_with_its_status(mapping: Mapping) -> None:
    parsed = ok(s.STATUS_MESSAGES["P"], mapping)
    assert parsed.reports == []
    assert parsed.skipped == [Skipped(1, "result status P not used")]


def test_cancelled_carries_no_labels_and_no_text(mapping: Mapping) -> None:
    (report,) = ok(s.STATUS_MESSAGES["X"], mapping).reports
    assert report == ReportFinal(
        event_id=eid("MERCY_PS", "PS-X1", 1), accession_number="ACC-1001", site="mercy-main",
        finalized_at=datetime(2024, 3, 10, 8, 30, tzinfo=UTC),  # CDT after 02:00
        status=ReportStatus.CANCELLED, findings=[],
    )


def test_final_with_appended_text_is_an_addendum(mapping: Mapping) -> None:
    (report,) = ok(s.STATUS_MESSAGES["F+ADDENDUM"], mapping).reports
    assert report.status is ReportStatus.ADDENDUM
    assert report.report_text == ("Acute subdural hemorrhage.\n\n"
                                  "Addendum: also a small pneumothorax.")


@pytest.mark.parametrize("name", sorted(s.REJECTED))
def test_rejections_say_why_without_quoting_content(name: str, mapping: Mapping) -> None:
    raw, code, error = s.REJECTED[name]
    result = parse_message(raw, mapping)
    assert isinstance(result, Rejection)
    assert (result.code, result.error) == (code, error), result.reason
    for secret in ("caf", "MAYBE", "2024-03-10T10", "A1"):
        assert secret not in result.reason


def test_patient_notes_and_study_uids_are_not_report_text_obx14_times_a_report() -> None:
    raw = s.msg(
        "MSH|^~\\&|RPT|XYZ|R|R|||ORU^R01|N-1|P|2.3.1",
        "PID|||P1",
        "NTE|||Patient has a pacemaker.",
        s.obr(f1="1", f3="ACC-9", f25="F"),
        "OBX|1|ST|113014^DICOM Study^DCM||1.2.840.113619.2.55.3||||||F",
        "OBX|1|TX|R||No pneumothorax.||||||F|||202602100825",
    )
    (report,) = ok(raw, Mapping()).reports
    assert report.report_text == "No pneumothorax."
    assert report.finalized_at == datetime(2026, 2, 10, 8, 25, tzinfo=UTC)


def test_defaults_without_a_mapping_file() -> None:
    (report,) = ok(s.POWERSCRIBE_FINAL, Mapping()).reports
    assert report.site == "MERCY_PS"
    assert report.finalized_at == datetime(2024, 3, 10, 1, 14, tzinfo=UTC)


def test_mapping_errors_are_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "m.yaml"
    bad.write_text("facilities:\n  X:\n    timezone: Mars/Olympus\n")
    with pytest.raises(MappingError, match=r"facilities\.X\.timezone"):
        load_mapping(bad)
    bad.write_text("facilities:\n  X:\n    accession: [ZZZ-5]\n")
    with pytest.raises(MappingError, match="accession"):
        load_mapping(bad)
    with pytest.raises(MappingError, match="cannot read"):
        load_mapping(tmp_path / "missing.yaml")


def test_batch_file_with_headers_trailers_and_frames() -> None:
    body = s.POWERSCRIBE_FINAL + s.EPIC_TWO_EXAMS.replace(b"\r", b"\n")
    batch = (b"FHS|^~\\&|PS|MERCY_PS\rBHS|^~\\&\r" + b"\x0b" + body + b"\x1c\r"
             + b"BTS|2\rFTS|1\r")
    messages = list(split_batch(batch))
    assert len(messages) == 2
    assert messages[0] == s.POWERSCRIBE_FINAL
    assert messages[1] == s.EPIC_TWO_EXAMS
    assert list(split_batch(b"junk before\rMSH|^~\\&|A\r")) == [b"junk before\r",
                                                                 b"MSH|^~\\&|A\r"]


def test_ack_answers_the_incoming_msh() -> None:
    header = header_of(s.EPIC_TWO_EXAMS)
    now = datetime(2024, 7, 5, 18, 30, tzinfo=UTC)
    ack = build_ack(header, "AE", now, "ACK1", "101", "OBR group 1: no accession | in OBR-3")
    segments = ack.decode().split("\r")
    assert segments[0] == ("MSH|^~\\&|SURV|SURV|EPIC|STLUKE_EPIC|20240705183000+0000||"
                           "ACK^R01^ACK|ACK1|P|2.5.1")
    assert segments[1] == "MSA|AE|E9000011|OBR group 1: no accession \\F\\ in OBR-3"
    assert segments[2] == ("ERR|||101^Required field missing^HL70357|E||||"
                           "OBR group 1: no accession \\F\\ in OBR-3")


@pytest.mark.parametrize(("value", "expected"), [
    ("20240310", datetime(2024, 3, 10, tzinfo=UTC)),
    ("202403101415", datetime(2024, 3, 10, 14, 15, tzinfo=UTC)),
    ("20240310141516.1234+0530",
     datetime(2024, 3, 10, 14, 15, 16, 123400, tzinfo=timezone(timedelta(hours=5, minutes=30)))),
    ("20241231235959-1000", datetime(2025, 1, 1, 9, 59, 59, tzinfo=UTC)),
])
def test_timestamps(value: str, expected: datetime) -> None:
    assert parse_timestamp(value, UTC) == expected


@pytest.mark.parametrize("value", ["2024", "202413011200", "20240230", "2024031012+2500", "x"])
def test_impossible_timestamps_are_refused(value: str) -> None:
    with pytest.raises(ValueError):
        parse_timestamp(value, UTC)


@given(st.datetimes(min_value=datetime(1900, 1, 1), max_value=datetime(2100, 1, 1)))
def test_timestamp_matches_strptime(moment: datetime) -> None:
    text = moment.strftime("%Y%m%d%H%M%S")
    assert parse_timestamp(text, UTC) == moment.replace(microsecond=0, tzinfo=UTC)


text_chars = st.characters(blacklist_categories=["Cs", "Cc"], blacklist_characters="\r\n")


@given(st.text(text_chars, max_size=80))
def test_escape_then_unescape_is_identity(text: str) -> None:
    d = Delimiters()
    assert unescape(escape(text, d), d, "utf-8") == text


field_text = st.text(st.sampled_from("ab^&~\\xyz 09.-"), max_size=12)


@settings(max_examples=200)
@given(st.lists(st.lists(field_text, min_size=1, max_size=8), min_size=1, max_size=6))
def test_segment_splitter_agrees_with_the_hl7_package(segments: list[list[str]]) -> None:
    msh = "MSH|^~\\&|APP|FAC|R|R|20240101||ORU^R01|1|P|2.5"
    lines = [msh] + ["|".join(["OBX", *fields]) for fields in segments]
    # The package strips white space at the end of a segment; a field is ours verbatim.
    assume(not any(line.endswith(" ") for line in lines))
    text = "\r".join(lines)
    ours = split_segments(text)
    theirs = hl7.parse(text)
    assert len(ours) == len(theirs)
    for mine, segment in zip(ours, theirs, strict=True):
        for n in range(1, len(mine)):
            assert mine[n] == str(segment[n]), (n, mine, str(segment))


def test_the_readme_mapping_example_reads_the_powerscribe_and_epic_samples(
        tmp_path: Path) -> None:
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    section = readme.split("### The per-facility mapping", 1)[1]
    example = section.split("```yaml\n", 1)[1].split("```", 1)[0]
    path = tmp_path / "readme.yaml"
    path.write_text(example)
    rules = load_mapping(path)
    (ps,) = ok(s.POWERSCRIBE_FINAL, rules).reports
    epic = ok(s.EPIC_TWO_EXAMS, rules).reports
    assert (ps.site, ps.accession_number) == ("mercy-main", "ACC-1001")
    assert [(r.site, r.accession_number, r.patient_id) for r in epic] == [
        ("st-luke", "ACC-2001", "MRN-5566"), ("st-luke", "ACC-2002", "MRN-5566")]
    assert [[f.finding_code for f in r.findings or []] for r in epic] == [
        ["pneumothorax"], ["intracranial_hemorrhage"]]
