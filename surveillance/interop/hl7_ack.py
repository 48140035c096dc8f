"""HL7 ACKs (original acknowledgment mode), built from the incoming MSH. Pure.

AA: the reports are durably on `reports.final`. AE: the message is one we take but its
content has an error, or the broker did not confirm in time (resend). AR: not a message we
take (not HL7, not ORU^R01 or MDM^T02, unsupported version or character set). AE and AR carry the
reason in MSA-3 (read by v2.3/2.4 engines) and in an ERR segment (ERR-3 code from HL7
table 0357, ERR-4 severity, ERR-8 the text; v2.5 and later).
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from surveillance.interop.hl7_header import Header
from surveillance.interop.hl7_text import Delimiters

AckCode = Literal["AA", "AE", "AR"]

_ERROR_NAMES = {
    "100": "Segment sequence error",
    "101": "Required field missing",
    "102": "Data type error",
    "103": "Table value not found",
    "200": "Unsupported message type",
    "203": "Unsupported version id",
    "207": "Application internal error",
}


def escape(text: str, d: Delimiters) -> str:
    """Text as an HL7 value: delimiters become escape sequences, line breaks \\.br\\."""
    if not d.escape:
        return text
    e = d.escape
    if not any(c in text for c in (e, d.field, d.component, d.repetition, "\r", "\n")) and (
            not d.subcomponent or d.subcomponent not in text):
        return text  # the common case, an id or a plain reason: nothing to escape
    out = text.replace(e, f"{e}E{e}")
    for char, name in ((d.field, "F"), (d.component, "S"), (d.repetition, "R")):
        out = out.replace(char, f"{e}{name}{e}")
    if d.subcomponent:
        out = out.replace(d.subcomponent, f"{e}T{e}")
    return out.replace("\r\n", "\n").replace("\r", "\n").replace("\n", f"{e}.br{e}")


def build_ack(
    header: Header | None, code: AckCode, now: datetime, control_id: str,
    error: str | None = None, reason: str | None = None,
) -> bytes:
    """The ACK to `header`'s message. Without a header (no readable MSH) the ACK uses the
    default delimiters and an empty MSA-2: the sender can still read the reason."""
    d = header.delimiters if header is not None else Delimiters()
    version = header.version if header is not None and header.version else "2.5"
    enc = f"{d.component}{d.repetition}{d.escape}{d.subcomponent}"
    f = d.field

    def h(value: str) -> str:
        return escape(value, d)

    msh = f.join([
        "MSH", enc,
        h(header.receiving_application) if header else "",
        h(header.receiving_facility) if header else "",
        h(header.sending_application) if header else "",
        h(header.sending_facility) if header else "",
        now.strftime("%Y%m%d%H%M%S%z"), "",
        f"ACK{d.component}{_trigger(header, d)}{d.component}ACK", control_id,
        (header.processing_id or "P") if header else "P", version,
    ])
    text = (reason or "")[:200]
    msa = f.join(["MSA", code, h(header.control_id) if header else "", h(text)])
    segments = [msh, msa]
    if code != "AA":
        err_code = error or "207"
        name = _ERROR_NAMES.get(err_code, "Application error")
        c = d.component
        segments.append(f.join([
            "ERR", "", "", f"{err_code}{c}{name}{c}HL70357", "E", "", "", "", h(text),
        ]))
    charset = header.charset if header is not None and header.charset else "utf-8"
    return ("\r".join(segments) + "\r").encode(charset, errors="replace")


def _trigger(header: Header | None, d: Delimiters) -> str:
    """The ACK's trigger event is the acknowledged message's (R01, O01, O23...)."""
    parts = header.message_type.split(d.component) if header is not None else []
    trigger = parts[1].strip() if len(parts) > 1 else ""
    return trigger if trigger.isalnum() and len(trigger) == 3 else "R01"


def build_batch_ack(batch: bytes, acks: list[bytes], now: datetime, control_id: str) -> bytes:
    """The answer to a batch sent in one MLLP frame: its FHS and BHS with sender and
    receiver swapped (FHS-12/BHS-12 naming the original's control id, FHS-11/BHS-11), one
    ACK per message in order, then BTS (the ACK count) and FTS."""
    lines = [line for line in batch.decode("latin-1").replace("\n", "\r").split("\r")
             if line.strip()]
    out: list[str] = []
    for tag in ("FHS", "BHS"):
        seg = next((line.lstrip() for line in lines if line.lstrip().startswith(tag)), None)
        if seg is None or len(seg) < 4:
            continue
        sep = seg[3]
        fields = seg.split(sep)
        fields.insert(1, sep)  # index n is FHS-n / BHS-n, as in MSH

        def at(n: int, fields: list[str] = fields) -> str:
            return fields[n] if n < len(fields) else ""

        out.append(sep.join([tag, at(2), at(5), at(6), at(3), at(4),
                             now.strftime("%Y%m%d%H%M%S%z"), "", "", "", control_id, at(11)]))
    head = "".join(f"{line}\r" for line in out).encode("ascii", errors="replace")
    sep = out[-1][3] if out else "|"
    tail = f"BTS{sep}{len(acks)}\r" + (f"FTS{sep}1\r" if out and out[0].startswith("FHS")
                                        else "")
    return head + b"".join(acks) + tail.encode("ascii")
