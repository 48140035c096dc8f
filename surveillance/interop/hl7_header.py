"""HL7 v2 messages, the part every message has: segments, MSH, and why a message is
refused. Pure.

`header_of` reads MSH alone (the ACK and the duplicate check need it even when the
rest cannot be read); `split_segments` splits a decoded message into fields.

Segments are split here rather than by `hl7.parse`: the library builds a container per
field and took ~1 ms per radiology message on the 2-core reference machine, five times
the listener's budget; the tests check this splitter field by field against `hl7.parse`.
Rejection reasons name fields, never their values (they may be identifiers or text).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Literal

from surveillance.interop.hl7_text import Delimiters, ValueProblem, codec

#: HL7 table 0357 message error condition codes used in ERR-3.
ERR_SEGMENT_SEQUENCE = "100"
ERR_REQUIRED_FIELD = "101"
ERR_DATA_TYPE = "102"
ERR_TABLE_VALUE = "103"
ERR_UNSUPPORTED_MESSAGE = "200"
ERR_UNSUPPORTED_VERSION = "203"
ERR_INTERNAL = "207"

#: v2.2 (older RIS still send it) and v2.9 carry the segments and fields read here
#: (MSH, PID, ORC, OBR-2/3/7/22/25, OBX-2/3/5/11/14, NTE) where v2.3-v2.8 do.
SUPPORTED_VERSIONS = ("2.2", "2.3", "2.4", "2.5", "2.6", "2.7", "2.8", "2.9")

#: Orders a RIS sends on the same interface as its results (general, imaging, and
#: general clinical orders): answered AA and not used. AR would put each one, with its
#: patient identifiers, in the dead-letter topic, and some interface engines hold their
#: queue on an AR.
ORDER_TYPES = frozenset({"ORM^O01", "OMI^O23", "OMG^O19"})
#: Messages that carry reports: results, and a transcribed document (`hl7_document`).
DOCUMENT_TYPES = frozenset({"MDM^T02"})
REPORT_TYPES = frozenset({"ORU^R01"}) | DOCUMENT_TYPES


@dataclass(frozen=True)
class Header:
    """What an ACK and the duplicate check need; parseable even when the rest is not."""

    delimiters: Delimiters
    sending_application: str
    sending_facility: str
    receiving_application: str
    receiving_facility: str
    control_id: str
    message_type: str
    version: str
    processing_id: str
    charset: str

    def with_charset(self, charset: str) -> Header:
        # Positional, not `dataclasses.replace`: this runs once per message.
        return Header(self.delimiters, self.sending_application, self.sending_facility,
                      self.receiving_application, self.receiving_facility, self.control_id,
                      self.message_type, self.version, self.processing_id, charset)

    @property
    def dedup_key(self) -> str:
        return f"{self.sending_facility}\x1f{self.control_id}"


@dataclass(frozen=True)
class Rejection:
    """Why a message cannot be accepted. `code` is the ACK code (AR: not a message we
    take at all; AE: a message we take, with an error in its content)."""

    code: Literal["AR", "AE"]
    error: str
    reason: str
    header: Header | None = None


class Reject(Exception):
    """Raised inside the parser; becomes a `Rejection`."""

    def __init__(self, code: Literal["AR", "AE"], error: str, reason: str) -> None:
        super().__init__(reason)
        self.code, self.error, self.reason = code, error, reason


Segment = list[str]


def split_segments(text: str) -> list[Segment]:
    """Segments (split on CR; LF and CRLF too: batch files and relays use them) into
    fields. In MSH, index n is MSH-n (MSH-1 is the field separator itself)."""
    if not text.startswith("MSH") or len(text) < 8:
        raise Reject("AR", ERR_SEGMENT_SEQUENCE, "the message does not start with MSH")
    sep = text[3]
    segments: list[Segment] = []
    if "\n" in text:
        text = text.replace("\r\n", "\r").replace("\n", "\r")
    for line in text.split("\r"):
        if not line.strip():
            continue
        fields = line.split(sep)
        if fields[0] == "MSH":
            fields.insert(1, sep)
        segments.append(fields)
    return segments


def field_at(seg: Segment, n: int) -> str:
    """Field n of a segment, empty when the segment is shorter."""
    return seg[n] if n < len(seg) else ""


def component(value: str, d: Delimiters, n: int) -> str:
    """Component n (1-based) of the first repetition."""
    first = value.split(d.repetition, 1)[0]
    parts = first.split(d.component)
    return parts[n - 1] if n <= len(parts) else ""


def header_of(raw: bytes) -> Header:
    """Read MSH (its bytes are ASCII in every supported character set); `charset` is
    the codec MSH-18 names, empty when it names none. Raises `Reject`."""
    head = raw[:1024].decode("latin-1")
    try:
        delimiters = Delimiters.from_msh(head.lstrip())
    except ValueProblem as exc:
        raise Reject("AR", ERR_SEGMENT_SEQUENCE, str(exc)) from exc
    msh = head.lstrip().split("\r", 1)[0].split("\n", 1)[0].split(delimiters.field)
    msh.insert(1, delimiters.field)
    charset_field = field_at(msh, 18).split(delimiters.repetition, 1)[0]
    try:
        charset = codec(charset_field) if charset_field.strip() else ""
    except ValueProblem as exc:
        raise Reject("AR", ERR_TABLE_VALUE, str(exc)) from exc
    return Header(
        delimiters=delimiters,
        sending_application=component(field_at(msh, 3), delimiters, 1),
        sending_facility=component(field_at(msh, 4), delimiters, 1),
        receiving_application=component(field_at(msh, 5), delimiters, 1),
        receiving_facility=component(field_at(msh, 6), delimiters, 1),
        control_id=field_at(msh, 10).strip(),
        message_type=field_at(msh, 9),
        version=component(field_at(msh, 12), delimiters, 1).strip(),
        processing_id=component(field_at(msh, 11), delimiters, 1),
        charset=charset,
    )


def event_id(header: Header, group: int) -> str:
    """Deterministic: a duplicate (same facility and MSH-10) yields the same ids, which
    the join applies once."""
    digest = hashlib.sha256(header.dedup_key.encode("utf-8")).hexdigest()[:24]
    return f"hl7-{digest}-{group}"


def message_kind(header: Header) -> str:
    """MSH-9's message code and trigger event, e.g. ``ORU^R01``."""
    parts = header.message_type.split(header.delimiters.component)
    return "^".join(p.strip() for p in parts[:2] if p.strip())


def check_header(header: Header) -> str:
    """The message's kind (`message_kind`) when it is one we take; raises `Reject`."""
    if not header.sending_facility.strip():
        raise Reject("AR", ERR_REQUIRED_FIELD, "MSH-4 (sending facility) is empty")
    if not header.control_id:
        raise Reject("AR", ERR_REQUIRED_FIELD, "MSH-10 (message control id) is empty")
    if len(header.control_id) > 199:
        raise Reject("AR", ERR_DATA_TYPE, "MSH-10 (message control id) is over 199 characters")
    kind = message_kind(header)
    if kind not in REPORT_TYPES and kind not in ORDER_TYPES:
        raise Reject("AR", ERR_UNSUPPORTED_MESSAGE,
                      f"MSH-9 message type {kind[:20]!r} is not accepted (only ORU^R01 and "
                      "MDM^T02; orders are answered AA and not used)")
    if not header.version.startswith(SUPPORTED_VERSIONS):
        raise Reject("AR", ERR_UNSUPPORTED_VERSION,
                      f"MSH-12 version {header.version[:12]!r} is not supported (2.2 to 2.9)")
    return kind
