"""MDM^T02 messages as RIS and dictation systems send them, their TXA and OBX segments
built by field NAME with hl7apy's v2.5.1 definitions (an independent reading of chapter 9's
field positions: our parser reads them by number)."""

from __future__ import annotations

from hl7apy.core import Segment


def txa(status: str, *, document: str = "DOC-1", parent: str = "", filler: str = "",
        placer: str = "", signed: str = "20260815140000", dictated: str = "20260815120000",
        availability: str = "AV") -> str:
    seg = Segment("TXA", version="2.5.1")
    seg.set_id_txa = "1"
    seg.document_type = "DI"  # diagnostic imaging (table 0270)
    seg.document_content_presentation = "TX"
    seg.origination_date_time = dictated
    seg.unique_document_number = document
    if parent:
        seg.parent_document_number = parent
    if placer:
        seg.placer_order_number = placer
    if filler:
        seg.filler_order_number = filler
    seg.document_completion_status = status
    seg.document_availability_status = availability
    if signed:
        seg.txa_22.ppn_1 = "RAD1"
        seg.txa_22.ppn_15 = signed
    return str(seg.to_er7())


def obx(n: int, kind: str, value: str, code: str = "RPT^Report", raw: bool = False) -> str:
    """`raw`: `value` is already HL7-encoded (escapes such as \\.br\\ kept as sent)."""
    seg = Segment("OBX", version="2.5.1")
    seg.set_id_obx = str(n)
    seg.value_type = kind
    seg.observation_identifier = code
    seg.obx_5 = "RAW-VALUE" if raw else value
    seg.observation_result_status = "F"
    text = str(seg.to_er7())
    return text.replace("RAW-VALUE", value) if raw else text


def mdm(control: str, *segments: str, facility: str = "NORTH", version: str = "2.5.1",
        event: str = "MDM^T02^MDM_T02") -> bytes:
    head = (f"MSH|^~\\&|DICTATION|{facility}|EMR|HOSP|20260815143000||{event}|{control}|P|"
            f"{version}")
    return "\r".join([head, "EVN|T02|20260815143000", "PID|1||123456^^^MRN^MR", "PV1|1|O",
                      *segments]).encode() + b"\r"
