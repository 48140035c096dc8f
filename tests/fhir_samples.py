"""The project's own FHIR R4 resources, modelled on the published DiagnosticReport examples
(the CT brain and chest imaging reports): identifiers, codes and text written here."""

from __future__ import annotations

import base64
import copy
from typing import Any

ACSN = {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203",
                    "code": "ACSN"}]}


def report(**changes: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "resourceType": "DiagnosticReport",
        "identifier": [
            {"system": "urn:oid:1.2.3.4.5", "value": "ORDER-77"},
            {"type": ACSN, "system": "urn:oid:1.2.3.4.6", "value": "ACC-F100"},
        ],
        "status": "final",
        "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0074",
                                  "code": "RAD"}]}],
        "code": {"coding": [{"system": "http://loinc.org", "code": "24627-2",
                             "display": "CT Chest"}]},
        "subject": {"reference": "Patient/p1",
                    "identifier": {"system": "urn:oid:1.2.3", "value": "MRN-F1"}},
        "effectiveDateTime": "2024-05-02T09:10:00+02:00",
        "issued": "2024-05-02T10:30:00+02:00",
        "performer": [{"reference": "Organization/o1",
                       "identifier": {"system": "urn:oid:1.2.9", "value": "site-north"}}],
        "conclusion": "Large right pneumothorax.",
    }
    base.update(changes)
    return base


def text_form(text: str, charset: str = "utf-8") -> dict[str, Any]:
    return {"contentType": f"text/plain; charset={charset}",
            "data": base64.b64encode(text.encode(charset)).decode()}


CODED = report(
    conclusion=None,
    conclusionCode=[{"coding": [{"system": "http://snomed.info/sct", "code": "36118008",
                                 "display": "Pneumothorax"}]}],
    presentedForm=[text_form("FINDINGS: Large right pneumothorax.\nIMPRESSION: Pneumothorax.")],
)
CODED.pop("conclusion")

BASED_ON = report(
    identifier=[{"system": "urn:oid:1.2.3.4.5", "value": "ORDER-78"}],
    contained=[{"resourceType": "ServiceRequest", "id": "sr", "status": "completed",
                "intent": "order", "subject": {"reference": "Patient/p1"},
                "identifier": [{"type": ACSN, "value": "ACC-F200"}]}],
    basedOn=[{"reference": "#sr"}],
    conclusion="No pneumothorax.",
)


def bundle(kind: str, entries: list[dict[str, Any]]) -> dict[str, Any]:
    return {"resourceType": "Bundle", "type": kind, "entry": copy.deepcopy(entries)}


SERVICE_REQUEST_ENTRY = {
    "fullUrl": "urn:uuid:6f1b8a52-4d0e-4c1e-9d42-1b2f7c3b8e01",
    "resource": {"resourceType": "ServiceRequest", "status": "completed", "intent": "order",
                 "subject": {"reference": "Patient/p1"},
                 "identifier": [{"type": ACSN, "value": "ACC-F300"}]},
    "request": {"method": "POST", "url": "ServiceRequest"},
}
REPORT_ENTRY = {
    "resource": report(identifier=[], basedOn=[
        {"reference": "urn:uuid:6f1b8a52-4d0e-4c1e-9d42-1b2f7c3b8e01"}],
        conclusion="Small left pneumothorax."),
    "request": {"method": "POST", "url": "DiagnosticReport"},
}
BAD_ENTRY = {"resource": report(identifier=[]), "request": {"method": "POST",
                                                            "url": "DiagnosticReport"}}
