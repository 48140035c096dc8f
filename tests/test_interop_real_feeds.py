"""What hospitals send, beyond the simulator's messages: hex-escaped line breaks, FHIR
transactions that carry a report's Observations, report times no event can have, results
without a status. Pure (the parsers); the network paths are in `test_mllp_real_feeds.py`.

Expected values are read off the messages by hand; labels are checked through the label
reader itself on the text the parser hands it (a lone CR used to hide the IMPRESSION
heading, so the findings' mention decided).
"""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime
from typing import Any

import pytest

from surveillance.clinical.labels import extract_label
from surveillance.contracts import Label, ReportFinal
from surveillance.interop.fhir_parse import FhirRejection, FhirSkipped, parse_resource
from surveillance.interop.hl7_header import Rejection
from surveillance.interop.hl7_mapping import Mapping
from surveillance.interop.hl7_parse import Parsed, parse_message
from tests.hl7_samples import msg, obr

FINDINGS = "FINDINGS: Small subdural hemorrhage is suspected along the left convexity."
IMPRESSION = "IMPRESSION: No intracranial hemorrhage; the density is a vessel."


def oru(*text_obx: str, f25: str = "F", f22: str = "20260815142900", control: str = "C1",
        ) -> bytes:
    return msg(
        f"MSH|^~\\&|PS360|MAIN|RIS|HOSP|20260815143000||ORU^R01|{control}|P|2.3",
        "PID|1||123456^^^MRN^MR",
        obr(f1="1", f2="ORD1", f3="ACC-RW-1", f4="CTHEAD", f22=f22, f25=f25),
        *(f"OBX|{n}|TX|&GDT^Report||{t}||||||F" for n, t in enumerate(text_obx, 1)),
    )


def report_of(raw: bytes, mapping: Mapping | None = None) -> ReportFinal:
    parsed = parse_message(raw, mapping or Mapping())
    assert isinstance(parsed, Parsed), parsed
    (report,) = parsed.reports
    return report


@pytest.mark.parametrize("escape", ["\\X0D\\", "\\X0D0A\\", "\\X0A\\", "\\.br\\"])
def test_a_hex_escaped_line_break_is_a_line_break(escape: str) -> None:
    report = report_of(oru(f"{FINDINGS}{escape}{IMPRESSION}"))
    assert report.report_text == f"{FINDINGS}\n{IMPRESSION}"
    # The impression decides, as it does when the lines come as two OBX segments.
    assert extract_label(report.report_text, "intracranial_hemorrhage") is Label.ABSENT
    assert report_of(oru(FINDINGS, IMPRESSION, control="C2")).report_text == (
        f"{FINDINGS}\n{IMPRESSION}")


def test_every_delimiter_escape_in_one_text_line() -> None:
    report = report_of(oru("2.1 x 1.8 cm\\F\\ edema\\S\\ shift \\T\\ 3 mm; "
                           "ventricles \\E\\ cisterns \\R\\ patent"))
    assert report.report_text == (
        "2.1 x 1.8 cm| edema^ shift & 3 mm; ventricles \\ cisterns ~ patent")


def dr(**over: Any) -> dict[str, Any]:
    resource: dict[str, Any] = {
        "resourceType": "DiagnosticReport", "status": "final",
        "code": {"text": "CT head"},
        "identifier": [{"type": {"coding": [{
            "system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "ACSN"}]},
            "value": "ACC-FHIR-1"}],
        "issued": "2026-08-15T14:30:00-05:00",
    }
    return {**resource, **over}


def text_form(text: str) -> dict[str, Any]:
    return {"presentedForm": [{"contentType": "text/plain; charset=utf-8",
                               "data": base64.b64encode(text.encode()).decode()}]}


@pytest.mark.parametrize("newline", ["\r", "\r\n"])
def test_fhir_presented_text_with_cr_line_ends(newline: str) -> None:
    (got,) = parse_resource(json.dumps(dr(**text_form(FINDINGS + newline + IMPRESSION)))
                            .encode(), "ris")
    assert isinstance(got, ReportFinal)
    assert got.report_text == f"{FINDINGS}\n{IMPRESSION}"
    assert extract_label(got.report_text, "intracranial_hemorrhage") is Label.ABSENT


def test_a_transaction_with_the_reports_observations_and_patient_is_taken() -> None:
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"fullUrl": "urn:uuid:0f5a3c1e-0000-4000-8000-000000000001",
         "resource": {"resourceType": "Patient", "id": "p1"},
         "request": {"method": "POST", "url": "Patient"}},
        {"fullUrl": "urn:uuid:0f5a3c1e-0000-4000-8000-000000000002",
         "resource": {"resourceType": "Observation", "status": "final",
                      "code": {"text": "Impression"}, "valueString": "No pneumothorax."},
         "request": {"method": "POST", "url": "Observation"}},
        {"fullUrl": "urn:uuid:0f5a3c1e-0000-4000-8000-000000000003",
         "resource": dr(conclusion="No pneumothorax.", result=[
             {"reference": "urn:uuid:0f5a3c1e-0000-4000-8000-000000000002"}]),
         "request": {"method": "POST", "url": "DiagnosticReport"}},
    ]}
    results = parse_resource(json.dumps(bundle).encode(), "ris")
    assert results[:2] == [
        FhirSkipped("entry[0]: Patient entry (only DiagnosticReport entries are reports)"),
        FhirSkipped("entry[1]: Observation entry (only DiagnosticReport entries are reports)"),
    ]
    report = results[2]
    assert isinstance(report, ReportFinal)
    assert (report.accession_number, report.report_text, report.finalized_at) == (
        "ACC-FHIR-1", "No pneumothorax.", datetime(2026, 8, 15, 19, 30, tzinfo=UTC))
    assert not any(isinstance(r, FhirRejection) for r in results)


NOW = datetime(2026, 8, 16, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(("f22", "why"), [
    ("00010101", "is before 1980-01-01 (stream.earliest_event_date)"),
    ("19790630235959", "is before 1980-01-01 (stream.earliest_event_date)"),
    ("20991231", "is in the future"),
])
def test_a_report_time_ingest_would_refuse_is_rejected_at_the_edge(f22: str, why: str) -> None:
    got = parse_message(oru(IMPRESSION, f22=f22), Mapping(), NOW)
    assert isinstance(got, Rejection)
    assert (got.code, got.error, got.reason) == (
        "AE", "102", f"OBR group 1: the report time (OBR-22, OBR-7, OBX-14, MSH-7) {why}")
    # The window's edges are the ingest's: 1980-01-01 and an hour of clock skew are taken.
    for edge in ("19800101", "20260816125959"):
        assert isinstance(parse_message(oru(IMPRESSION, f22=edge), Mapping(), NOW), Parsed)


def test_earliest_event_date_is_the_setting() -> None:
    raw = oru(IMPRESSION, f22="19850101")
    got = parse_message(raw, Mapping(), NOW, earliest=datetime(1990, 1, 1).date())
    assert isinstance(got, Rejection) and got.reason.endswith(
        "is before 1990-01-01 (stream.earliest_event_date)")


def test_no_result_status_at_all_is_an_error_not_a_silent_skip() -> None:
    raw = msg("MSH|^~\\&|RIS|NORTH|||202608151200||ORU^R01|M1|P|2.3",
              "OBR|1||ACC-MIN|XR CHEST|||202608151130",
              "OBX|1|ST|||No pneumothorax.")
    got = parse_message(raw, Mapping())
    assert isinstance(got, Rejection)
    assert (got.code, got.error) == ("AE", "101")
    assert got.reason.startswith("OBR group 1: no result status in OBR-25 or OBX-11")
    # The remedy the reason names works.
    feed = Mapping.model_validate({"defaults": {"statuses": {"": "final", "F": "final"}}})
    assert report_of(raw, feed).report_text == "No pneumothorax."


def test_a_report_whose_text_is_in_its_result_observations() -> None:
    """Contained, and as entries of a batch (by fullUrl and by Observation/id)."""
    impression = {"resourceType": "Observation", "id": "o1", "status": "final",
                  "code": {"text": "Impression"}, "valueString": IMPRESSION}
    findings = {**impression, "id": "o2", "code": {"text": "Findings"},
                "valueString": FINDINGS}
    (alone,) = parse_resource(json.dumps(dr(contained=[impression, findings], result=[
        {"reference": "#o2"}, {"reference": "#o1"}])).encode(), "ris")
    assert isinstance(alone, ReportFinal)
    assert alone.report_text == f"{FINDINGS}\n{IMPRESSION}"
    assert extract_label(alone.report_text, "intracranial_hemorrhage") is Label.ABSENT

    bundle = {"resourceType": "Bundle", "type": "batch", "entry": [
        {"fullUrl": "urn:uuid:0f5a3c1e-0000-4000-8000-0000000000b2", "resource": findings,
         "request": {"method": "POST", "url": "Observation"}},
        {"resource": impression, "request": {"method": "POST", "url": "Observation"}},
        {"resource": dr(result=[
            {"reference": "urn:uuid:0f5a3c1e-0000-4000-8000-0000000000b2"},
            {"reference": "Observation/o1"}]),
         "request": {"method": "POST", "url": "DiagnosticReport"}}]}
    in_bundle = parse_resource(json.dumps(bundle).encode(), "ris")[2]
    assert isinstance(in_bundle, ReportFinal)
    assert in_bundle.report_text == f"{FINDINGS}\n{IMPRESSION}"


def test_a_control_character_in_an_identifier_is_refused_at_the_edge() -> None:
    """A hex-escaped CR in the accession (HL7) or a tab in the patient id (FHIR): ingest
    dead-letters such a report, so the sender hears it now."""
    raw = msg("MSH|^~\\&|PS360|MAIN|RIS|HOSP|20260815143000||ORU^R01|CC1|P|2.3",
              obr(f1="1", f3="ACC\\X0D\\77", f22="20260815142900", f25="F"),
              "OBX|1|TX|&GDT^Report||No hemorrhage.||||||F")
    got = parse_message(raw, Mapping())
    assert isinstance(got, Rejection)
    assert (got.code, got.reason) == (
        "AE", "OBR group 1: accession_number: contains a control character")
    (fhir,) = parse_resource(json.dumps(dr(subject={"identifier": {"value": "MRN\t42"}},
                                           conclusion="No hemorrhage.")).encode(), "ris")
    assert fhir == FhirRejection("DiagnosticReport: patient_id: contains a control character",
                                 "value")


@pytest.mark.parametrize("version", ["2.2", "2.9"])
def test_older_and_newer_v2_versions_are_read(version: str) -> None:
    raw = oru(IMPRESSION).replace(b"|P|2.3\r", f"|P|{version}\r".encode())
    assert report_of(raw).report_text == IMPRESSION
