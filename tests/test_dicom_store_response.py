"""`encode_store_response` against pynetdicom's own encoding of the same C-STORE-RSP, and
the SCP's responses over TCP as pynetdicom's SCU decodes them."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from pynetdicom.dimse_messages import C_STORE_RSP
from pynetdicom.dimse_primitives import C_STORE
from pynetdicom.dsutils import encode

from surveillance.interop.dicom_store_response import encode_store_response

_uids = st.lists(st.integers(0, 10**12).map(str), min_size=1, max_size=8).map(".".join).filter(
    lambda u: len(u) <= 64)


def _pynetdicom(sop_class: str, message_id: int, status: int, instance: str | None) -> bytes:
    primitive = C_STORE()
    primitive.MessageIDBeingRespondedTo = message_id
    primitive.AffectedSOPClassUID = sop_class
    if instance is not None:
        primitive.AffectedSOPInstanceUID = instance
    primitive.Status = status
    message = C_STORE_RSP()
    message.primitive_to_message(primitive)
    return encode(message.command_set, True, True)  # type: ignore[no-any-return]


@given(_uids, st.integers(0, 0xFFFF), st.integers(0, 0xFFFF), st.none() | _uids)
def test_the_command_set_is_pynetdicoms(
    sop_class: str, message_id: int, status: int, instance: str | None
) -> None:
    assert encode_store_response(sop_class, message_id, status, instance) == _pynetdicom(
        sop_class, message_id, status, instance)
