"""HL7 v2 ORU^R01 (v2.2 to v2.9) -> one `ReportFinal` per OBR group; MDM^T02 (a
transcribed report as a document, `hl7_document`) -> one per order it names. Pure.

Reads MSH, PID, ORC, OBR, OBX (TX, FT, ST, CE, CWE) and NTE. The report text is the
text OBX values and NTE comments of the group in order, one line per repetition, with
escape sequences decoded; coded OBX results become structured findings when the
facility's mapping knows the OBX-3 code. Result status (OBR-25, else the first OBX-11):
F final, C corrected, A addendum (also F with appended text, see `addendum_markers`),
X cancelled (withdraws the label); any other status (P preliminary...) is counted as
skipped and not used.

A message is accepted or rejected whole: a sender fixing one bad group resends the
message, and a half-applied message would make that resend a partial duplicate.

Segments and MSH are read by `hl7_header`. Rejection reasons name fields, never their
values (they may be identifiers or text).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date, datetime

from pydantic import ValidationError

from surveillance.contracts import (
    MAX_EVENT_BYTES,
    ReportFinal,
    ReportStatus,
)
from surveillance.interop.hl7_document import (
    DOCUMENT_TYPES,
    document_segments,
    document_status,
    has_parent,
    withdrawn,
)
from surveillance.interop.hl7_findings import coded_findings
from surveillance.interop.hl7_header import (
    ERR_DATA_TYPE,
    ERR_REQUIRED_FIELD,
    ERR_SEGMENT_SEQUENCE,
    ORDER_TYPES,
    Header,
    Reject,
    Rejection,
    Segment,
    check_header,
    component,
    event_id,
    field_at,
    header_of,
    split_segments,
)
from surveillance.interop.hl7_mapping import FacilityMapping, Mapping, field_ref
from surveillance.interop.hl7_text import (
    ValueProblem,
    codec,
    parse_timestamp,
    unescape,
)
from surveillance.interop.ingest_edge import identifier_problem, time_problem

_SEGMENT_ID = re.compile(r"^[A-Z][A-Z0-9]{2}$")
_COMMON = frozenset({"PID", "PV1", "ORC", "OBR", "OBX", "NTE", "PD1", "PV2"})
_UID = re.compile(r"^\s*[0-9]+(\.[0-9]+)+\s*$")
TEXT_TYPES = frozenset({"TX", "FT", "ST"})


@dataclass(frozen=True)
class Skipped:
    group: int
    reason: str


@dataclass(frozen=True)
class Parsed:
    header: Header
    reports: list[ReportFinal]
    skipped: list[Skipped] = field(default_factory=list)
    #: The reports as events: (accession key, JSON), serialized once here.
    records: list[tuple[bytes, bytes]] = field(default_factory=list)


def parse_message(raw: bytes, mapping: Mapping, now: datetime | None = None,
                  earliest: date | None = None) -> Parsed | Rejection:
    """One ORU^R01 in bytes (no MLLP framing) -> its reports, or why not.

    With `now` (the receiver's clock), a report time the worker's ingest would refuse
    (before `earliest`, `stream.earliest_event_date`, default 1980-01-01; or over an hour
    after `now`)
    rejects the message here: the sender gets AE with the reason, not an AA for a report
    the worker then dead-letters."""
    header: Header | None = None
    try:
        header = header_of(raw)
        facility = mapping.for_facility(header.sending_facility)
        if not header.charset:
            header = header.with_charset(codec(facility.charset))
        return _parse(raw, header, facility, None if now is None else (now, earliest))
    except Reject as rej:
        return Rejection(rej.code, rej.error, rej.reason, header)


@dataclass
class _Group:
    index: int
    obr: Segment
    orc: Segment | None
    pid: Segment | None
    obx: list[Segment] = field(default_factory=list)
    lines: list[str] = field(default_factory=list)


def _groups(segments: list[Segment], header: Header) -> list[_Group]:
    groups: list[_Group] = []
    pid: Segment | None = None
    orc: Segment | None = None
    for n, seg in enumerate(segments[1:], start=2):
        name = seg[0]
        if name not in _COMMON and not _SEGMENT_ID.match(name := name.strip()):
            raise Reject("AE", ERR_SEGMENT_SEQUENCE, f"segment {n} is not an HL7 segment")
        if name == "PID":
            pid, orc = seg, None
        elif name == "ORC":
            orc = seg
        elif name == "OBR":
            groups.append(_Group(len(groups) + 1, seg, orc, pid))
            orc = None
        elif name in ("OBX", "NTE"):
            if not groups:
                if name == "NTE":
                    continue  # notes on the patient or the order, not report text
                raise Reject("AE", ERR_SEGMENT_SEQUENCE, "OBX before any OBR")
            group = groups[-1]
            if name == "OBX":
                group.obx.append(seg)
                group.lines.extend(_obx_lines(seg, header))
            else:
                group.lines.extend(_text_lines(field_at(seg, 3), header))
    if not groups:
        raise Reject("AE", ERR_SEGMENT_SEQUENCE, "the message has no OBR segment")
    return groups


def _document(segments: list[Segment], header: Header) -> tuple[list[_Group], Segment]:
    """An MDM^T02's groups (one per order, all with the document's OBX and text) and TXA."""
    orders, txa, obx, body = document_segments(segments)
    lines: list[str] = []
    for name, seg in body:
        lines.extend(_obx_lines(seg, header) if name == "OBX"
                     else _text_lines(field_at(seg, 3), header))
    return [_Group(n, obr, orc, pid, obx, lines)
            for n, (pid, orc, obr) in enumerate(orders, start=1)], txa


def _obx_lines(seg: Segment, header: Header) -> list[str]:
    """The report text an OBX carries (TX, FT, ST), none for other value types."""
    kind, value = field_at(seg, 2).strip().upper(), field_at(seg, 5)
    # An ST value that is a DICOM UID (study, series, SR instance) is a reference sent
    # beside the report (IHE RAD-28), not words of it.
    if kind in TEXT_TYPES and not (kind == "ST" and _UID.match(value)):
        return _text_lines(value, header)
    return []


def _text_lines(value: str, header: Header) -> list[str]:
    """Each repetition is a line; escapes decoded after splitting (\\R\\ is a literal ~);
    a hex-escaped CR, CRLF or LF (\\X0D\\, \\X0D0A\\, \\X0A\\) breaks the line too."""
    d = header.delimiters
    if not value:
        return [""]  # an empty text line is a paragraph break, which the label reader uses
    lines: list[str] = []
    for rep in value.split(d.repetition):
        text = unescape(rep, d, header.charset)
        if "\r" in text:  # \X0D\ or \X0D0A\: a line break the label reader must see as one
            text = text.replace("\r\n", "\n").replace("\r", "\n")
        lines.extend(text.split("\n"))
    return lines


def _field(header: Header, segments: dict[str, Segment | None], ref: str,
           obx: list[Segment] | None = None) -> str:
    seg_name, n, comp = field_ref(ref)
    if seg_name == "OBX":  # the first OBX of the group that has the field
        seg = next((o for o in obx or [] if field_at(o, n).strip()), None)
    else:
        seg = segments.get(seg_name)
    if seg is None:
        return ""
    return unescape(component(field_at(seg, n), header.delimiters, comp), header.delimiters,
                    header.charset).strip()


def _patient(pid: Segment | None, header: Header, facility: FacilityMapping) -> str | None:
    if pid is None:
        return None
    seg_name, n, comp = field_ref(facility.patient_id.field)
    if seg_name != "PID":
        return None
    d = header.delimiters
    reps = field_at(pid, n).split(d.repetition)
    wanted = facility.patient_id.type
    for rep in reps:
        parts = rep.split(d.component)
        if wanted is None or (len(parts) > 4 and parts[4] == wanted):
            value = unescape(parts[comp - 1] if comp <= len(parts) else "", d, header.charset)
            return value.strip() or None
    return None


def _status(group: _Group, header: Header) -> str:
    code = component(field_at(group.obr, 25), header.delimiters, 1).strip()
    if not code:
        for obx in group.obx:
            code = field_at(obx, 11).strip()
            if code:
                break
    return code.upper()


def _refs(refs: list[str], segments: dict[str, Segment | None]) -> list[str]:
    """The fields of `refs` this message can have: TXA ones only in a document (an
    ORU's rejection then names only the fields it could have had)."""
    return refs if segments["TXA"] is not None else [r for r in refs if r[:3] != "TXA"]


def _finalized(group: _Group, header: Header, facility: FacilityMapping,
               segments: dict[str, Segment | None]) -> datetime:
    refs = _refs(facility.report_time, segments)
    for ref in refs:
        value = _field(header, segments, ref, group.obx)
        if value:
            try:
                return parse_timestamp(value, facility.zone)
            except ValueProblem as exc:
                raise Reject("AE", ERR_DATA_TYPE, f"{ref} (report time) {exc}") from exc
    raise Reject("AE", ERR_REQUIRED_FIELD,
                  f"OBR group {group.index}: no report time in {', '.join(refs)}")


def _parse(raw: bytes, header: Header, facility: FacilityMapping,
           clock: tuple[datetime, date | None] | None) -> Parsed:
    kind = check_header(header)
    if kind in ORDER_TYPES:
        return Parsed(header, [], [Skipped(0, f"{kind} is an order, not a report: not used")])
    try:
        text = raw.decode(header.charset)
    except UnicodeDecodeError as exc:
        raise Reject("AR", ERR_DATA_TYPE,
                      f"not valid {header.charset} at byte {exc.start} (MSH-18 or the "
                      "facility's charset)") from exc
    segments = split_segments(text.lstrip())
    reports: list[ReportFinal] = []
    records: list[tuple[bytes, bytes]] = []
    skipped: list[Skipped] = []
    groups, txa = (_document(segments, header) if kind in DOCUMENT_TYPES
                   else (_groups(segments, header), None))
    for group in groups:
        segs: dict[str, Segment | None] = {
            "MSH": segments[0], "PID": group.pid, "ORC": group.orc, "OBR": group.obr,
            "TXA": txa,
        }
        if txa is None:
            code = _status(group, header)
            use = facility.statuses.get(code)
            if use is None and not code:
                # OBX-11 is required: an AA here would drop every report of such a feed
                # unseen.
                raise Reject("AE", ERR_REQUIRED_FIELD,
                              f"OBR group {group.index}: no result status in OBR-25 or "
                              "OBX-11 (a feed that never sends one: add \"\": final to the "
                              "facility's statuses, beside F, C, A and X)")
            what = f"result status {code or '(empty)'}"
        else:
            use, named = document_status(txa, header, facility)
            what = f"document completion status (TXA-17) {named}"
        if use is None or use == "skip":
            skipped.append(Skipped(group.index, f"{what} not used"))
            continue
        status = ReportStatus(use)
        if txa is not None and status is not ReportStatus.CANCELLED:
            if withdrawn(txa, header):
                status = ReportStatus.CANCELLED
            elif status is ReportStatus.FINAL and has_parent(txa, header):
                status = ReportStatus.ADDENDUM
        accession_refs = _refs(facility.accession, segs)
        accession = next((v for ref in accession_refs
                          if (v := _field(header, segs, ref))), "")
        if not accession:
            raise Reject("AE", ERR_REQUIRED_FIELD,
                          f"OBR group {group.index}: no accession number in "
                          f"{', '.join(accession_refs)}")
        finalized = _finalized(group, header, facility, segs)
        if clock is not None:
            why = time_problem("report time", finalized, clock[0], clock[1])
            if why is not None:
                raise Reject("AE", ERR_DATA_TYPE, f"OBR group {group.index}: the report time "
                             f"({', '.join(_refs(facility.report_time, segs))}) "
                             f"{why.removeprefix('report time: ')}")
        lines = _trim(group.lines)
        if status is ReportStatus.FINAL and any(
            line.lstrip().upper().startswith(facility.markers) for line in lines
        ):
            status = ReportStatus.ADDENDUM
        findings = [] if status is ReportStatus.CANCELLED else coded_findings(
            group.obx, group.index, header.delimiters, facility)
        text_out = None if status is ReportStatus.CANCELLED else "\n".join(lines) or None
        if status is not ReportStatus.CANCELLED and not findings and not text_out:
            raise Reject("AE", ERR_REQUIRED_FIELD,
                          f"OBR group {group.index}: no report text and no coded result")
        try:
            report = ReportFinal(
                event_id=event_id(header, group.index),
                accession_number=accession,
                patient_id=_patient(group.pid, header, facility),
                site=facility.site or header.sending_facility,
                finalized_at=finalized,
                status=status,
                findings=findings or ([] if status is ReportStatus.CANCELLED else None),
                report_text=text_out,
            )
        except ValidationError as exc:
            first = exc.errors(include_url=False, include_input=False, include_context=False)[0]
            where = ".".join(str(p) for p in first["loc"])
            raise Reject("AE", ERR_DATA_TYPE,
                          f"OBR group {group.index}: {where}: {first['msg']}") from exc
        problem = identifier_problem(report)
        if problem is not None:
            raise Reject("AE", ERR_DATA_TYPE, f"OBR group {group.index}: {problem}")
        value = report.model_dump_json(exclude_none=True).encode("utf-8")
        size = len(value)
        if size > MAX_EVENT_BYTES:  # ingest would dead-letter it after our AA
            raise Reject("AE", ERR_DATA_TYPE, f"OBR group {group.index}: the report is "
                          f"{size} bytes as an event, over the {MAX_EVENT_BYTES}-byte limit")
        reports.append(report)
        records.append((report.accession_number.encode("utf-8"), value))
    return Parsed(header, reports, skipped, records)


def _trim(lines: list[str]) -> list[str]:
    """Trailing white space per line and blank lines at both ends go; inner blank lines
    stay (they separate report sections)."""
    out = [line.rstrip() for line in lines]
    while out and not out[0]:
        out.pop(0)
    while out and not out[-1]:
        out.pop()
    return out
