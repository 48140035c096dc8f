"""FHIR R4 DiagnosticReport (alone or in a batch/transaction Bundle) -> `ReportFinal`. Pure.

Validated with `fhir.resources` (its R4B models: DiagnosticReport, Bundle and
ServiceRequest are unchanged from R4). Mapping:
- status: final -> final; amended, corrected -> corrected; appended -> addendum;
  cancelled, entered-in-error -> cancelled (withdraws the label); registered, partial,
  preliminary -> skipped (counted, not used); anything else is refused;
- accession: the identifier whose type is v2-0203 ACSN, else that of the ServiceRequest
  in `basedOn` (contained, or an entry of the same Bundle);
- finalized_at: `issued` (an instant with its offset);
- text: text/plain `presentedForm` attachments, then `conclusion`; without either, the
  `valueString` of the `result` Observations (contained, or in the same Bundle);
- findings: `conclusionCode` codings known to `CONCLUSION_CODES`, or in our own system
  ``urn:imaging-ai-surveillance:finding`` as ``<finding>`` (present) or
  ``<finding>:<present|absent|indeterminate>``;
- site: the identifier of the first performer that has one, else the posting system's
  name; patient: `subject.identifier`, else the subject reference.
The event id is a hash of the resource's canonical JSON: a resource posted twice is one
event (no second effect). Reasons name elements, never their values.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, Literal

from pydantic import ValidationError

from surveillance.contracts import (
    MAX_EVENT_BYTES,
    Label,
    ReportFinal,
    ReportStatus,
    StructuredFinding,
)
from surveillance.interop.ingest_edge import identifier_problem, time_problem

OWN_SYSTEM = "urn:imaging-ai-surveillance:finding"
SNOMED = "http://snomed.info/sct"
ACSN_SYSTEM = "http://terminology.hl7.org/CodeSystem/v2-0203"

#: conclusionCode (system, code) -> (finding code, label). A SNOMED CT finding in the
#: conclusion states that the finding is present.
CONCLUSION_CODES: dict[tuple[str, str], tuple[str, Label]] = {
    (SNOMED, "36118008"): ("pneumothorax", Label.PRESENT),
    (SNOMED, "274100004"): ("intracranial_hemorrhage", Label.PRESENT),
    (SNOMED, "1386000"): ("intracranial_hemorrhage", Label.PRESENT),
}

STATUSES: dict[str, ReportStatus | Literal["skip"]] = {
    "final": ReportStatus.FINAL,
    "amended": ReportStatus.CORRECTED,
    "corrected": ReportStatus.CORRECTED,
    "appended": ReportStatus.ADDENDUM,
    "cancelled": ReportStatus.CANCELLED,
    "entered-in-error": ReportStatus.CANCELLED,
    "registered": "skip",
    "partial": "skip",
    "preliminary": "skip",
}


@dataclass(frozen=True)
class FhirRejection:
    reason: str
    #: OperationOutcome issue code (FHIR value set issue-type).
    code: Literal["invalid", "required", "structure", "not-supported", "value"] = "invalid"
    #: The whole body is refused (not one entry of a batch).
    whole: bool = False


@dataclass(frozen=True)
class FhirSkipped:
    reason: str


FhirResult = ReportFinal | FhirRejection | FhirSkipped
#: The receiver's clock and `stream.earliest_event_date` (None: its default), or None:
#: no date-range check (the pure mapping alone).
Clock = tuple[datetime, date | None] | None


def parse_resource(raw: bytes, system: str = "fhir", now: datetime | None = None,
                   earliest: date | None = None) -> list[FhirResult]:
    """A DiagnosticReport -> one result; a Bundle -> one per entry, in order. A body
    that is neither (or not JSON) -> one rejection. With `now` (the receiver's clock), an
    `issued` the worker's ingest would refuse (before `earliest`,
    `stream.earliest_event_date`, or over an hour after `now`) is refused here."""
    clock = None if now is None else (now, earliest)
    try:
        data = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        return [FhirRejection(f"the body is not JSON ({type(exc).__name__})", "structure",
                              whole=True)]
    if not isinstance(data, dict):
        return [FhirRejection("the body must be a JSON object (a FHIR resource)", "structure",
                              whole=True)]
    kind = data.get("resourceType")
    if kind == "DiagnosticReport":
        return [parse_report(data, system, {}, clock)]
    if kind == "Bundle":
        return parse_bundle(data, system, clock)
    return [FhirRejection(f"resourceType must be DiagnosticReport or Bundle, not "
                          f"{str(kind)[:40]!r}", "not-supported", whole=True)]


def bundle_type(data: dict[str, Any]) -> str:
    return str(data.get("type", ""))


def parse_bundle(data: dict[str, Any], system: str, clock: Clock = None) -> list[FhirResult]:
    from fhir.resources.R4B.bundle import Bundle

    try:
        Bundle.model_validate(data)
    except ValidationError as exc:
        return [FhirRejection(f"Bundle: {_describe(exc)}", "structure", whole=True)]
    if bundle_type(data) not in ("batch", "transaction"):
        return [FhirRejection("Bundle.type must be batch or transaction", "not-supported",
                              whole=True)]
    entries = data.get("entry") or []
    requests: dict[str, dict[str, Any]] = {}
    for entry in entries:
        resource = entry.get("resource") or {}
        if resource.get("resourceType") in ("ServiceRequest", "Observation"):
            for name in _names(entry, resource):
                requests[name] = resource
    out: list[FhirResult] = []
    for n, entry in enumerate(entries):
        resource = entry.get("resource") or {}
        kind = resource.get("resourceType")
        if kind == "ServiceRequest":
            out.append(FhirSkipped("ServiceRequest entry (read for the accession)"))
        elif kind == "DiagnosticReport":
            result = parse_report(resource, system, requests, clock)
            if isinstance(result, FhirRejection):
                result = FhirRejection(f"entry[{n}]: {result.reason}", result.code)
            out.append(result)
        elif isinstance(kind, str) and kind:
            # A report system sends a report with what it refers to (its Observations,
            # Patient, ImagingStudy...): context, not reports. Refusing them refused the
            # whole of such a transaction.
            out.append(FhirSkipped(f"entry[{n}]: {kind[:40]} entry (only DiagnosticReport "
                                   "entries are reports)"))
        else:
            out.append(FhirRejection(f"entry[{n}]: the entry has no resource with a "
                                     "resourceType", "structure"))
    return out


def _names(entry: dict[str, Any], resource: dict[str, Any]) -> list[str]:
    names = []
    if entry.get("fullUrl"):
        names.append(str(entry["fullUrl"]))
    if resource.get("id"):
        names.append(f"{resource['resourceType']}/{resource['id']}")
    return names


def parse_report(data: dict[str, Any], system: str,
                 requests: dict[str, dict[str, Any]], clock: Clock = None) -> FhirResult:
    from fhir.resources.R4B.diagnosticreport import DiagnosticReport

    try:
        report = DiagnosticReport.model_validate(data)
    except ValidationError as exc:
        return FhirRejection(f"DiagnosticReport: {_describe(exc)}", "structure")
    use = STATUSES.get(str(report.status))
    if use is None:
        return FhirRejection("DiagnosticReport.status is not a FHIR R4 report status", "value")
    if use == "skip":
        return FhirSkipped(f"status {report.status} not used")
    accession = _accession(data, requests)
    if not accession:
        return FhirRejection("no accession: add an identifier with type ACSN (v2-0203), or "
                             "basedOn a ServiceRequest that has one", "required")
    if report.issued is None:
        return FhirRejection("DiagnosticReport.issued (the report time) is required",
                             "required")
    if report.issued.tzinfo is None:
        return FhirRejection("DiagnosticReport.issued must carry a UTC offset", "value")
    if clock is not None:
        why = time_problem("issued", report.issued, clock[0], clock[1])
        if why is not None:  # a 201 here would be a dead letter at the worker's ingest
            return FhirRejection(f"DiagnosticReport.{why}", "value")
    status = ReportStatus(use)
    text = None
    findings: list[StructuredFinding] | None = []
    if status is not ReportStatus.CANCELLED:
        texts = _presented_text(data)
        if isinstance(texts, FhirRejection):
            return texts
        if data.get("conclusion"):
            texts.append(str(data["conclusion"]))
        if not any(t.strip() for t in texts):
            texts = _observation_texts(data, requests)
        # CRLF and a lone CR (Windows and old Mac text files) are line breaks: the label
        # reader finds headings (IMPRESSION:) at the start of a line, after a LF only.
        texts = [t.replace("\r\n", "\n").replace("\r", "\n") for t in texts]
        text = "\n".join(t.strip("\n") for t in texts if t.strip()) or None
        found = _findings(data)
        if isinstance(found, FhirRejection):
            return found
        findings = found or None
        if findings is None and text is None:
            return FhirRejection("no report text (conclusion, text/plain presentedForm, "
                                 "valueString of result Observations) and no known "
                                 "conclusionCode", "required")
    canonical = json.dumps(data, sort_keys=True, separators=(",", ":"))
    try:
        event = ReportFinal(
            event_id="fhir-" + hashlib.sha256(canonical.encode()).hexdigest()[:32],
            accession_number=accession,
            patient_id=_patient(data),
            site=_site(data) or system,
            finalized_at=report.issued,
            status=status,
            findings=findings,
            report_text=text,
        )
    except ValidationError as exc:
        return FhirRejection(f"DiagnosticReport: {_describe(exc)}", "value")
    problem = identifier_problem(event)
    if problem is not None:
        return FhirRejection(f"DiagnosticReport: {problem}", "value")
    size = len(event.model_dump_json(exclude_none=True).encode("utf-8"))
    if size > MAX_EVENT_BYTES:  # ingest would dead-letter it after our 201
        return FhirRejection(f"the report is {size} bytes as an event, over the "
                             f"{MAX_EVENT_BYTES}-byte limit", "value")
    return event


def _is_acsn(identifier: dict[str, Any]) -> bool:
    codings = ((identifier.get("type") or {}).get("coding")) or []
    return any(c.get("code") == "ACSN" and c.get("system", ACSN_SYSTEM) == ACSN_SYSTEM
               for c in codings)


def _acsn(resource: dict[str, Any]) -> str | None:
    for identifier in resource.get("identifier") or []:
        if _is_acsn(identifier) and str(identifier.get("value", "")).strip():
            return str(identifier["value"]).strip()
    return None


def _accession(data: dict[str, Any], requests: dict[str, dict[str, Any]]) -> str | None:
    own = _acsn(data)
    if own:
        return own
    contained = {f"#{c.get('id')}": c for c in data.get("contained") or []
                 if c.get("resourceType") == "ServiceRequest"}
    for based in data.get("basedOn") or []:
        ref = str(based.get("reference", ""))
        target = contained.get(ref) or requests.get(ref)
        if target is not None and (value := _acsn(target)):
            return value
        if _is_acsn(based.get("identifier") or {}):
            value = str(based["identifier"].get("value", "")).strip()
            if value:
                return value
    return None


def _presented_text(data: dict[str, Any]) -> list[str] | FhirRejection:
    texts = []
    for n, form in enumerate(data.get("presentedForm") or []):
        kind = str(form.get("contentType", ""))
        if not kind.lower().startswith("text/plain") or "data" not in form:
            continue
        charset = "utf-8"
        for param in kind.split(";")[1:]:
            name, _, value = param.strip().partition("=")
            if name.lower() == "charset" and value:
                charset = value.strip('"')
        try:
            texts.append(base64.b64decode(form["data"], validate=True).decode(charset))
        except (binascii.Error, UnicodeDecodeError, LookupError):
            return FhirRejection(f"presentedForm[{n}].data is not base64 text in {charset}",
                                 "value")
    return texts


def _observation_texts(data: dict[str, Any], bundled: dict[str, dict[str, Any]]
                       ) -> list[str]:
    """The `valueString` of the report's `result` Observations (contained, or entries of
    the same Bundle), in order: the text of a report sent as Observations only."""
    contained = {f"#{c.get('id')}": c for c in data.get("contained") or []
                 if c.get("resourceType") == "Observation"}
    texts = []
    for ref in data.get("result") or []:
        target = contained.get(str(ref.get("reference", ""))) or bundled.get(
            str(ref.get("reference", "")))
        if target is not None and target.get("resourceType") == "Observation" and isinstance(
                target.get("valueString"), str):
            texts.append(target["valueString"])
    return texts


def _findings(data: dict[str, Any]) -> list[StructuredFinding] | FhirRejection:
    found: dict[str, Label] = {}
    for concept in data.get("conclusionCode") or []:
        for coding in concept.get("coding") or []:
            system, code = str(coding.get("system", "")), str(coding.get("code", ""))
            if system == OWN_SYSTEM:
                finding, _, label = code.partition(":")
                try:
                    found[finding] = Label(label or Label.PRESENT)
                except ValueError:
                    return FhirRejection("conclusionCode in our finding system must be "
                                         "<finding>[:present|absent|indeterminate]", "value")
            elif (system, code) in CONCLUSION_CODES:
                finding, value = CONCLUSION_CODES[(system, code)]
                found[finding] = value
    return [StructuredFinding(finding_code=k, label=v) for k, v in found.items()]


def _patient(data: dict[str, Any]) -> str | None:
    subject = data.get("subject") or {}
    value = (subject.get("identifier") or {}).get("value") or subject.get("reference")
    return str(value).strip()[:128] or None if value else None


def _site(data: dict[str, Any]) -> str | None:
    for performer in data.get("performer") or []:
        value = (performer.get("identifier") or {}).get("value")
        if value and str(value).strip():
            return str(value).strip()[:128]
    return None


def _describe(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors(include_url=False, include_input=False, include_context=False)[:3]:
        where = ".".join(str(p) for p in err["loc"]) or "(resource)"
        parts.append(f"{where}: {err['msg']}")
    more = exc.error_count() - len(parts)
    return "; ".join(parts) + (f"; and {more} more" if more > 0 else "")
