"""Association threads that sleep until there is work instead of polling every millisecond.

pynetdicom (3.0.4) runs two threads per association, on each end:

- the DUL reactor checks its outgoing queue and its socket, and sleeps 1 ms whenever it
  found nothing to do;
- the association reactor sleeps 1 ms, then checks the DIMSE message queue (and the
  queue of release and abort requests), in a loop.

Each wake-up takes the GIL from whichever thread is decoding or committing an object. A
py-spy profile of `dicom listen` receiving SRs from 4 senders put half of the receiver's
busy samples in these two sleeps; 4 idle associations cost 0.19 CPU-seconds per second.

`wake_on_work(assoc)`, called from EVT_CONN_OPEN (before either thread waits in the
data-transfer state), changes where the threads wait, not what they do:

- the DUL reactor, while the association is established (state Sta6) and nothing is
  queued, waits in `select()` on its socket and on a doorbell that every put on its
  outgoing queue rings;
- the association reactor's checkpoint wait (which the reactor passes once per loop, and
  while it is paused) first waits for a message on the DIMSE queue or the DUL's queue to
  the user.

Both waits end after `IDLE_CHECK` seconds at most, so that the checks pynetdicom makes
without a message (ARTIM and idle timers, the kill flag, the DUL thread ending) happen as
before, 20 times a second instead of 1,000.
"""

from __future__ import annotations

import contextlib
import queue
import select
import socket
import ssl
import threading
from typing import Any

from pynetdicom import evt
from pynetdicom.association import Association
from pynetdicom.dul import DULServiceProvider

#: Longest wait without a message before the reactors check their timers and flags.
IDLE_CHECK = 0.05

#: The DUL state "data transfer" (association established, PS3.8 9.2).
_DATA_TRANSFER = "Sta6"


class _Doorbell:
    """A socket pair: `ring()` from any thread ends a `select()` on `fileno()`."""

    def __init__(self) -> None:
        self._read, self._write = socket.socketpair()
        self._read.setblocking(False)
        self._write.setblocking(False)

    def fileno(self) -> int:
        return self._read.fileno()

    def ring(self) -> None:
        # OSError: full (already rung) or closed (the association is over).
        with contextlib.suppress(OSError):
            self._write.send(b"\0")

    def drain(self) -> None:
        try:
            while self._read.recv(4096):
                pass
        except OSError:
            pass  # empty, or closed

    def close(self) -> None:
        self._read.close()
        self._write.close()


class _Checkpoint(threading.Event):
    """The association reactor's checkpoint: its wait first waits for a message."""

    def __init__(self, work: threading.Event, is_set: bool) -> None:
        super().__init__()
        self._work = work
        if is_set:
            self.set()

    def wait(self, timeout: float | None = None) -> bool:
        self._work.wait(IDLE_CHECK)
        # Cleared before the reactor looks at the queues: a message put after this
        # point sets it again, so the next wait cannot miss it.
        self._work.clear()
        return super().wait(timeout)


def _ring_on_put(q: queue.Queue[Any], ring: Any) -> None:
    put = q.put

    def put_and_ring(item: Any, block: bool = True, timeout: float | None = None) -> None:
        put(item, block, timeout)
        ring()

    q.put = put_and_ring  # type: ignore[method-assign]


def _wait_for_socket_or_bell(dul: DULServiceProvider, bell: _Doorbell) -> None:
    """Where the DUL reactor would sleep 1 ms and look again, wait for data or a put."""
    transport = dul.socket
    sock = transport.socket if transport is not None else None
    if (sock is None or dul._kill_thread
            or dul.state_machine.current_state != _DATA_TRANSFER
            or not dul.to_provider_queue.empty() or not dul.event_queue.empty()
            or (isinstance(sock, ssl.SSLSocket) and sock.pending())):
        return
    try:
        select.select([sock.fileno(), bell.fileno()], [], [], IDLE_CHECK)
    except (OSError, ValueError):
        return  # the socket closed meanwhile: the reactor's own checks see it
    bell.drain()


def wake_on_work(assoc: Association) -> None:
    """Make both reactor threads of `assoc` wait for work (see the module docstring)."""
    dul = assoc.dul
    bell = _Doorbell()
    work = threading.Event()
    _ring_on_put(dul.to_provider_queue, bell.ring)
    _ring_on_put(dul.to_user_queue, work.set)
    _ring_on_put(assoc.dimse.msg_queue, work.set)
    process_recv_primitive = dul._process_recv_primitive

    def wait_then_process() -> bool:
        # The DUL loop calls this first in every pass, right after its 1 ms sleep.
        _wait_for_socket_or_bell(dul, bell)
        return process_recv_primitive()

    dul._process_recv_primitive = wait_then_process  # type: ignore[method-assign]
    assoc._reactor_checkpoint = _Checkpoint(work, assoc._reactor_checkpoint.is_set())

    def close_bell(event: Any) -> None:
        bell.close()
        work.set()

    assoc.bind(evt.EVT_CONN_CLOSE, close_bell)
