"""The storage SCU the demo, the tests and the benchmark send with (pynetdicom).

Why not pynetdicom's association as it comes: in a requestor, two threads read the
association's DIMSE message queue. `send_c_store()` sends the request and waits for the
response on the queue; the association's own reactor thread polls the same queue for
requests from the peer, and is meant to be paused while a `send_*()` call waits. The pause
is a flag the reactor sets before parking (`_is_paused`), and the flag of the previous
exchange is still set when the next `send_c_store()` checks it if the reactor thread has
not run since it was released. Under CPU load (several senders on 2 busy cores) the reactor
then wakes up during the next exchange, takes the C-STORE response off the queue, logs
"Received unexpected C-STORE service message" and drops it: `send_c_store()` waits for
its DIMSE timeout, the SCP sees an idle association and aborts it after its 60 s network
timeout, and the next `send_c_store()` raises "The association with a peer SCP must be
established". pynetdicom 3.0.4 and its main branch have the race.

A storage SCU's peer only answers, never sends requests, so here the reactor never takes
a message: its non-blocking poll (the only non-blocking reader of that queue) finds none,
and every response stays for the `send_*()` call waiting for it.

A refusal reported as an abort: pynetdicom's requestor (3.0.4) checks that its socket is
still connected right after queuing its A-ASSOCIATE-RQ; if the peer's A-ASSOCIATE-RJ has
arrived and the peer has closed the socket by then (the requesting thread descheduled for a
few ms on a loaded machine), it aborts and reports `is_aborted`, and the refusal's reason
is lost. `associate` keeps every A-ASSOCIATE-RJ the socket received and reports it as
pynetdicom reports a refusal it has read: `is_rejected`, and the reason in
`acceptor.primitive` (`refusal` says it in one line).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from pydicom.uid import ExplicitVRLittleEndian
from pynetdicom import AE, evt
from pynetdicom.association import Association
from pynetdicom.dimse import DIMSEServiceProvider
from pynetdicom.pdu import A_ASSOCIATE_RJ

from surveillance.interop.dicom_scp import on_connection_open, quiet_associations

LOGGER = logging.getLogger(__name__)


def associate(
    host: str,
    port: int,
    calling_ae: str,
    sop_classes: Iterable[str],
    called_ae: str = "SURVEILLANCE",
    dimse_timeout: float = 30.0,
) -> Association:
    """An association proposing `sop_classes` in Explicit VR Little Endian, with the
    reactor kept off the responses. Check `is_established` before sending; a refused
    association has `is_rejected` (never `is_aborted`) and its reason (`refusal`)."""
    quiet_associations()
    ae = AE(ae_title=calling_ae)
    ae.dimse_timeout = dimse_timeout
    for sop_class in sop_classes:
        ae.add_requested_context(sop_class, ExplicitVRLittleEndian)
    refusals: list[A_ASSOCIATE_RJ] = []

    def keep_refusal(event: evt.Event) -> None:
        if isinstance(event.pdu, A_ASSOCIATE_RJ):
            refusals.append(event.pdu)

    assoc = ae.associate(host, port, ae_title=called_ae,
                         evt_handlers=[(evt.EVT_CONN_OPEN, on_connection_open),
                                       (evt.EVT_PDU_RECV, keep_refusal)])
    if refusals and not assoc.is_established:
        # The socket delivers the A-ASSOCIATE-RJ before it reports the peer's close, so a
        # refusal the requestor took for a lost connection is in the list by now.
        assoc.acceptor.primitive = refusals[0].to_primitive()
        assoc.is_aborted, assoc.is_rejected = False, True
    if assoc.is_rejected:
        LOGGER.warning("DICOM association to %s:%s as %s refused: %s", host, port,
                       calling_ae, refusal(assoc))
    # Nothing has been sent yet, so nothing can be on the queue for the reactor to take.
    keep_responses_from_reactor(assoc.dimse)
    return assoc


def refusal(assoc: Association) -> str | None:
    """Why the peer refused the association (pynetdicom's wording), or None."""
    if not assoc.is_rejected or assoc.acceptor.primitive is None:
        return None
    rj = assoc.acceptor.primitive
    return f"{rj.result_str}, by the {rj.source_str}: {rj.reason_str}"


def keep_responses_from_reactor(dimse: DIMSEServiceProvider) -> None:
    """Make the association reactor's non-blocking poll of the DIMSE queue find nothing;
    the blocking reads of the `send_*()` methods get every message."""
    blocking_get = dimse.get_msg

    def get_msg(block: bool = False) -> Any:
        return blocking_get(block=True) if block else (None, None)

    dimse.get_msg = get_msg  # type: ignore[method-assign]
