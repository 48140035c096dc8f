"""HL7 v2 MDM^T02 (original document notification and content, chapter 9): a transcribed
report as a document. Pure; `hl7_parse` turns what this reads into `ReportFinal` events
exactly as it does an ORU^R01's OBR groups.

MDM_T02 is MSH, EVN, PID, PV1, [{ORC, OBR, [{NTE}]}], TXA, [{CON}], {OBX, [{NTE}]}. The
document is one: its text is the TX/FT (and ST, not a UID) OBX values after TXA with
their NTE comments, in order; coded OBX results are read as an ORU's. It covers each
study its order group names (one report per OBR: a combined CT chest and abdomen report
carries both accession numbers), or, with no order group, the one TXA-15 (filler order
number, else TXA-14 placer) names.

The document's status is TXA-17, its completion status (table 0271), through the
facility's `document_statuses`: authenticated (AU, LA) is a final report; dictated,
in progress, documented or pre-authenticated ones are counted as skipped and not used,
as an ORU's preliminary results are. A final document naming a parent document (TXA-13)
is an addendum to it. A used document whose TXA-19 (availability) is CA, deleted,
withdraws the report's label, as an ORU's X does.
"""

from __future__ import annotations

import re

from surveillance.interop.hl7_header import (
    DOCUMENT_TYPES,
    ERR_REQUIRED_FIELD,
    ERR_SEGMENT_SEQUENCE,
    Header,
    Reject,
    Segment,
    component,
    field_at,
)
from surveillance.interop.hl7_mapping import FacilityMapping, StatusUse

__all__ = ["DOCUMENT_TYPES", "document_segments", "document_status", "has_parent",
           "withdrawn"]

#: TXA-19 (document availability status, table 0273): deleted. (OB, obsolete, is left:
#: its replacement comes as a document of its own.)
WITHDRAWN = frozenset({"CA"})
_SEGMENT_ID = re.compile(r"^[A-Z][A-Z0-9]{2}$")
_CODE = re.compile(r"^[A-Z0-9]{1,8}$")
#: An order group with no OBR (or none at all) reads OBR fields as empty.
NO_OBR: Segment = ["OBR"]


def document_segments(segments: list[Segment]) -> tuple[
        list[tuple[Segment | None, Segment | None, Segment]], Segment, list[Segment],
        list[tuple[str, Segment]]]:
    """(PID, ORC, OBR) per order group, the TXA, its OBX segments, and the OBX and NTE
    segments after TXA in order (the document's body). Raises `Reject` on a message
    that is not an MDM_T02 in shape."""
    pid: Segment | None = None
    orc: Segment | None = None
    orders: list[tuple[Segment | None, Segment | None, Segment]] = []
    txa: Segment | None = None
    obx: list[Segment] = []
    body: list[tuple[str, Segment]] = []
    for n, seg in enumerate(segments[1:], start=2):
        name = seg[0].strip()
        if not _SEGMENT_ID.match(name):
            raise Reject("AE", ERR_SEGMENT_SEQUENCE, f"segment {n} is not an HL7 segment")
        if name == "PID":
            pid = seg
        elif name == "ORC" and txa is None:
            orc = seg
        elif name == "OBR" and txa is None:
            orders.append((pid, orc, seg))
            orc = None
        elif name == "TXA":
            if txa is not None:
                raise Reject("AE", ERR_SEGMENT_SEQUENCE, "a second TXA segment: an MDM^T02 "
                             "carries one document")
            txa = seg
        elif name == "OBX":
            if txa is None:
                raise Reject("AE", ERR_SEGMENT_SEQUENCE, "OBX before the TXA segment")
            obx.append(seg)
            body.append((name, seg))
        elif name == "NTE" and obx:
            body.append((name, seg))  # a comment on the document's text, part of it
        elif name in ("ORC", "OBR"):
            raise Reject("AE", ERR_SEGMENT_SEQUENCE, f"{name} after the TXA segment")
    if txa is None:
        raise Reject("AE", ERR_SEGMENT_SEQUENCE, "the MDM^T02 has no TXA segment")
    if not obx:
        raise Reject("AE", ERR_REQUIRED_FIELD, "the MDM^T02 has no OBX segment (the "
                     "document's content)")
    if not orders:
        orders.append((pid, None, NO_OBR))
    return orders, txa, obx, body


def document_status(txa: Segment, header: Header, facility: FacilityMapping,
                    ) -> tuple[StatusUse | None, str]:
    """What TXA-17 means for this facility (None: not listed), and the code as it may be
    named in a skip reason (a status code, never free text)."""
    code = component(field_at(txa, 17), header.delimiters, 1).strip().upper()
    if not code:
        raise Reject("AE", ERR_REQUIRED_FIELD,
                     "TXA-17 (document completion status) is empty: it is required")
    named = code if _CODE.match(code) else "(not a table 0271 code)"
    return facility.document_statuses.get(code), named


def withdrawn(txa: Segment, header: Header) -> bool:
    return component(field_at(txa, 19), header.delimiters, 1).strip().upper() in WITHDRAWN


def has_parent(txa: Segment, header: Header) -> bool:
    """TXA-13 (parent document number) names the document this one adds to."""
    return bool(component(field_at(txa, 13), header.delimiters, 1).strip())
