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
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from pydicom.uid import ExplicitVRLittleEndian
from pynetdicom import AE, evt
from pynetdicom.association import Association
from pynetdicom.dimse import DIMSEServiceProvider

from surveillance.interop.dicom_scp import on_connection_open, quiet_associations


def associate(
    host: str,
    port: int,
    calling_ae: str,
    sop_classes: Iterable[str],
    called_ae: str = "SURVEILLANCE",
    dimse_timeout: float = 30.0,
) -> Association:
    """An association proposing `sop_classes` in Explicit VR Little Endian, with the
    reactor kept off the responses. Check `is_established` before sending."""
    quiet_associations()
    ae = AE(ae_title=calling_ae)
    ae.dimse_timeout = dimse_timeout
    for sop_class in sop_classes:
        ae.add_requested_context(sop_class, ExplicitVRLittleEndian)
    assoc = ae.associate(host, port, ae_title=called_ae,
                         evt_handlers=[(evt.EVT_CONN_OPEN, on_connection_open)])
    # Nothing has been sent yet, so nothing can be on the queue for the reactor to take.
    keep_responses_from_reactor(assoc.dimse)
    return assoc


def keep_responses_from_reactor(dimse: DIMSEServiceProvider) -> None:
    """Make the association reactor's non-blocking poll of the DIMSE queue find nothing;
    the blocking reads of the `send_*()` methods get every message."""
    blocking_get = dimse.get_msg

    def get_msg(block: bool = False) -> Any:
        return blocking_get(block=True) if block else (None, None)

    dimse.get_msg = get_msg  # type: ignore[method-assign]
