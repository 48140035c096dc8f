"""The C-STORE SCP (pynetdicom): PACS and AI orchestrators push SRs and images to it.

It accepts every storage SOP class (private and unknown ones too) in the transfer syntax
the sender proposes first at association time, so that an object we cannot use gets a
C-STORE failure status and a dead letter (0x0122 for an unsupported SOP class) instead
of a refused association the sender cannot explain. The handler does the least it can:
hand the encoded data set to the `Receiver` and return its status. An SR is read by
`dicom_sr_read` (the elements the parse needs, from the bytes) unless that reader
declines it; everything else is decoded by pydicom. Handlers run in pynetdicom's
association threads; an exception in one is answered 0xC000 by the receiver and never
stops the server.
"""

from __future__ import annotations

import socket
import socketserver
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from pynetdicom import AE, _config, evt
from pynetdicom.dsutils import decode
from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]
from pynetdicom.transport import ThreadedAssociationServer

from surveillance.interop.dicom_receiver import Receiver
from surveillance.interop.dicom_sr import SR_SOP_CLASSES
from surveillance.interop.dicom_sr_read import NotRead, read_dataset
from surveillance.interop.dicom_store_response import send_store_responses_directly
from surveillance.interop.dicom_wakeup import wake_on_work


def site_of(calling_ae: str, sites: Mapping[str, str], default_site: str) -> str:
    """The site a calling AE title sends for (AE titles are padded to 16 characters)."""
    return sites.get(calling_ae.strip(), default_site)


def quiet_associations() -> None:
    """No pynetdicom log handlers on the associations created from now on (process-wide).
    They format each DIMSE message and PDU for INFO and DEBUG lines that `dicom listen`
    (WARNING) never shows: 5% of an association thread's CPU per SR in a profile."""
    _config.LOG_HANDLER_LEVEL = "none"


def build_ae(ae_title: str, allowed_calling: Sequence[str]) -> AE:
    # Storage contexts are accepted by pynetdicom's unrestricted storage negotiation
    # rather than listed: every association deep-copies the listed contexts, and all
    # storage classes in all transfer syntaxes (7,654 pairs) cost 36 ms of CPU per
    # association. It is a process-wide setting; nothing else here is an SCP.
    _config.UNRESTRICTED_STORAGE_SERVICE = True
    quiet_associations()
    ae = AE(ae_title=ae_title)
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

        sop_class = str(request.AffectedSOPClassUID)

        def decoded() -> Any:
            if (sop_class in SR_SOP_CLASSES and syntax.is_little_endian
                    and not syntax.is_deflated):
                try:
                    return read_dataset(raw, syntax.is_implicit_VR)
                except NotRead:
                    pass  # pydicom reads what the short reader cannot vouch for
            return decode(request.DataSet, syntax.is_implicit_VR, syntax.is_little_endian,
                          syntax.is_deflated)

        calling = event.assoc.requestor.ae_title
        outcome = receiver.receive(decoded, sop_class, raw,
                                   "c-store", site_for(calling),
                                   str(request.AffectedSOPInstanceUID or ""))
        return outcome.status

    return handle_store


def on_connection_open(event: Any) -> None:
    """EVT_CONN_OPEN of either end. TCP_NODELAY on the association's socket: pynetdicom
    writes a C-STORE response in small pieces, and Nagle's algorithm with the peer's
    delayed ACK stalled each exchange by tens of milliseconds (measured: a third of the
    rate without it). The association's threads wait for work instead of polling
    (`dicom_wakeup`), and an SCP writes its C-STORE responses directly
    (`dicom_store_response`)."""
    event.assoc.dul.socket.socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    wake_on_work(event.assoc)
    if event.assoc.is_acceptor:
        send_store_responses_directly(event.assoc)


class SharedPortServer(ThreadedAssociationServer):
    """A server whose port other processes of the same user can listen on too
    (SO_REUSEPORT: the kernel spreads new associations across them)."""

    def server_bind(self) -> None:
        if self.socket is not None:
            self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        super().server_bind()

    def shutdown(self) -> None:
        """Stop serving and close the socket (pynetdicom's own also unregisters the server
        from the AE's list, which `make_server` never added it to)."""
        socketserver.TCPServer.shutdown(self)
        self.server_close()


def start_scp(
    receiver: Receiver,
    host: str,
    port: int,
    ae_title: str,
    allowed_calling: Sequence[str],
    site_for: Callable[[str], str],
    shared_port: bool = False,
) -> Any:
    """Start listening in background threads; returns the server (call `.shutdown()`).
    With `shared_port`, other processes can listen on the same port (`SharedPortServer`)."""
    ae = build_ae(ae_title, allowed_calling)
    handlers: list[Any] = [
        (evt.EVT_C_STORE, store_handler(receiver, site_for)),
        (evt.EVT_CONN_OPEN, on_connection_open),
    ]
    if not shared_port:
        return ae.start_server((host, port), block=False, evt_handlers=handlers)
    server = ae.make_server((host, port), evt_handlers=handlers,
                            server_class=SharedPortServer)
    threading.Thread(target=server.serve_forever, name="dicom-scp", daemon=True).start()
    return server
