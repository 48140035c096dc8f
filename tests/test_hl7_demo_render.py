"""The demo's interop leg renders simulated reports as ORU^R01 and FHIR; parsing them back
must give the same report (the leg's "counts unchanged" relies on it). Pure."""

from __future__ import annotations

import json

from surveillance.contracts import ReportFinal
from surveillance.interop.fhir_parse import parse_resource
from surveillance.interop.hl7_demo import render_fhir, render_oru
from surveillance.interop.hl7_mapping import Mapping
from surveillance.interop.hl7_parse import Parsed, parse_message
from surveillance.simulate import scenario_by_name, simulate
from surveillance.stream.topics import REPORTS_FINAL

SAME = ("accession_number", "patient_id", "site", "finalized_at", "status", "findings")


def _reports() -> list[ReportFinal]:
    events, _truth = simulate(days=3, seed=11, scenario=scenario_by_name("all"))
    return [ReportFinal.model_validate_json(e.value) for e in events
            if e.valid and e.topic == REPORTS_FINAL]


def _text(report: ReportFinal) -> str | None:
    if report.report_text is None:
        return None
    lines = [line.rstrip() for line in report.report_text.split("\n")]
    return "\n".join(lines).strip("\n") or None


def test_simulated_reports_survive_hl7_and_fhir() -> None:
    reports = _reports()
    assert len(reports) > 100
    assert any(r.findings for r in reports) and any(r.report_text for r in reports)
    for n, report in enumerate(reports):
        parsed = parse_message(render_oru(report, f"T{n}"), Mapping())
        assert isinstance(parsed, Parsed), parsed
        (back,) = parsed.reports
        assert back.model_dump(include=set(SAME)) == report.model_dump(include=set(SAME))
        assert back.report_text == _text(report)
        (fhir,) = parse_resource(json.dumps(render_fhir(report)).encode())
        assert isinstance(fhir, ReportFinal), fhir
        assert fhir.model_dump(include=set(SAME)) == report.model_dump(include=set(SAME))
