"""The C-STORE response's command set, encoded directly instead of through pydicom.

pynetdicom builds each response as a pydicom Dataset and encodes it twice (once to measure
the command group length, once to send): the largest part of an SCP association thread's
CPU per SR after the handler itself, in a CPU profile (`time.thread_time`) of `dicom
listen` receiving SRs. A plain response (status, the two UIDs, no error comment or
offending element) is seven elements in Implicit VR Little Endian (PS3.7 6.3.1, 9.3.1.2),
written here with `struct`. Anything else goes through pynetdicom as before: other
messages, a response with optional status elements, a command set that does not fit one
PDU, or an association with EVT_DIMSE_SENT handlers (they expect pynetdicom's message
object). `tests/test_dicom_store_response.py` checks the bytes against pynetdicom's own
encoding.
"""

from __future__ import annotations

import struct
from typing import Any

from pynetdicom import evt
from pynetdicom.association import Association
from pynetdicom.dimse_primitives import C_STORE
from pynetdicom.pdu_primitives import P_DATA

#: (0000,0100) Command Field of a C-STORE-RSP; (0000,0800) "no data set".
_C_STORE_RSP = 0x8001
_NO_DATA_SET = 0x0101
#: Message control header: a command fragment, the last one (PS3.8 E.2).
_LAST_COMMAND_FRAGMENT = b"\x03"
#: What pynetdicom adds to a fragment within the peer's maximum PDU length (PDV item
#: length, context id, message control header).
_PDV_OVERHEAD = 6


def _uid(group_element: int, uid: str) -> bytes:
    value = uid.encode("ascii")
    if len(value) % 2:
        value += b"\0"  # UIDs are padded to even length with NUL (PS3.5 9.1)
    return struct.pack("<HHI", 0, group_element, len(value)) + value


def _us(group_element: int, value: int) -> bytes:
    return struct.pack("<HHIH", 0, group_element, 2, value)


def encode_store_response(
    sop_class: str, message_id: int, status: int, sop_instance: str | None
) -> bytes:
    """The command set of a C-STORE-RSP without optional status elements."""
    body = (_uid(0x0002, sop_class) + _us(0x0100, _C_STORE_RSP) + _us(0x0120, message_id)
            + _us(0x0800, _NO_DATA_SET) + _us(0x0900, status)
            + (_uid(0x1000, sop_instance) if sop_instance else b""))
    return struct.pack("<HHII", 0, 0x0000, 4, len(body)) + body


def _plain(primitive: Any) -> bool:
    return (isinstance(primitive, C_STORE) and primitive.MessageIDBeingRespondedTo is not None
            and primitive.Status is not None and primitive.AffectedSOPClassUID is not None
            and primitive.OffendingElement is None and primitive.ErrorComment is None)


def send_store_responses_directly(assoc: Association) -> None:
    """Encode `assoc`'s plain C-STORE responses with `encode_store_response`."""
    dimse = assoc.dimse
    send_msg = dimse.send_msg

    def send(primitive: Any, context_id: int) -> None:
        if not _plain(primitive) or assoc.get_handlers(evt.EVT_DIMSE_SENT):
            send_msg(primitive, context_id)
            return
        instance = primitive.AffectedSOPInstanceUID
        command = encode_store_response(
            str(primitive.AffectedSOPClassUID), int(primitive.MessageIDBeingRespondedTo),
            int(primitive.Status), str(instance) if instance else None)
        limit = dimse.maximum_pdu_size
        if limit and len(command) + _PDV_OVERHEAD > limit:
            send_msg(primitive, context_id)
            return
        pdata = P_DATA()
        pdata.presentation_data_value_list.append(
            (context_id, _LAST_COMMAND_FRAGMENT + command))
        dimse.dul.send_pdu(pdata)

    dimse.send_msg = send  # type: ignore[method-assign]
