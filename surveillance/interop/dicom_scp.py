"""The C-STORE SCP (pynetdicom): PACS and AI orchestrators push SRs and images to it.

It accepts every storage SOP class and every transfer syntax at association time, so
that an object we cannot use gets a C-STORE failure status and a dead letter (0x0122 for
an unsupported SOP class) instead of a refused association the sender cannot explain.
The handler does the least it can: hand the encoded data set to the `Receiver` and
return its status. Handlers run in pynetdicom's association threads; an exception in one
is answered 0xC000 by the receiver and never stops the server.
"""

from __future__ import annotations

import socket
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from pynetdicom import AE, ALL_TRANSFER_SYNTAXES, AllStoragePresentationContexts, evt
from pynetdicom.dsutils import decode
from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]

from surveillance.interop.dicom_receiver import Receiver


def site_of(calling_ae: str, sites: Mapping[str, str], default_site: str) -> str:
    """The site a calling AE title sends for (AE titles are padded to 16 characters)."""
    return sites.get(calling_ae.strip(), default_site)


def build_ae(ae_title: str, allowed_calling: Sequence[str]) -> AE:
    ae = AE(ae_title=ae_title)
    for context in AllStoragePresentationContexts:
        if context.abstract_syntax is not None:
            ae.add_supported_context(context.abstract_syntax, ALL_TRANSFER_SYNTAXES)
    ae.add_supported_context(Verification)
    # An empty list lets any calling AE associate (pynetdicom's own convention).
    ae.require_calling_aet = [a.strip() for a in allowed_calling]
    ae.maximum_pdu_size = 0  # no limit: whatever the SCU sends
    return ae


def store_handler(
    receiver: Receiver, site_for: Callable[[str], str]
) -> Callable[[Any], int]:
    def handle_store(event: Any) -> int:
        request = event.request
        context = event.context
        raw = request.DataSet.getvalue()
        syntax = context.transfer_syntax

        def decoded() -> Any:
            return decode(request.DataSet, syntax.is_implicit_VR, syntax.is_little_endian,
                          syntax.is_deflated)

        calling = event.assoc.requestor.ae_title
        outcome = receiver.receive(decoded, str(request.AffectedSOPClassUID), raw,
                                   "c-store", site_for(calling),
                                   str(request.AffectedSOPInstanceUID or ""))
        return outcome.status

    return handle_store


def no_delay(event: Any) -> None:
    """TCP_NODELAY on the association's socket: pynetdicom writes a C-STORE response in
    small pieces, and Nagle's algorithm with the peer's delayed ACK stalled each exchange
    by tens of milliseconds (measured: a third of the rate without it)."""
    event.assoc.dul.socket.socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def start_scp(
    receiver: Receiver,
    host: str,
    port: int,
    ae_title: str,
    allowed_calling: Sequence[str],
    site_for: Callable[[str], str],
) -> Any:
    """Start listening in background threads; returns the server (call `.shutdown()`)."""
    ae = build_ae(ae_title, allowed_calling)
    handlers: list[Any] = [
        (evt.EVT_C_STORE, store_handler(receiver, site_for)),
        (evt.EVT_CONN_OPEN, no_delay),
    ]
    return ae.start_server((host, port), block=False, evt_handlers=handlers)
