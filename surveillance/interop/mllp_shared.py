"""One duplicate check for several `hl7 listen` processes sharing a port (SO_REUSEPORT).

The kernel spreads connections over the processes, and a sender resending after a
reconnect may land on another one, so the (sending facility, MSH-10) check cannot live in
each process: it lives in one coordinator (in the parent process), which the listeners
ask over a Unix socket. The coordinator holds a `Dedup`: a claim for a key already ACKed
AA is answered AA (nothing written); a claim for a key some listener is writing waits for
that write and gets its outcome; otherwise the claimer owns the key, writes, and reports
the outcome. So a duplicate has no second effect whichever process gets it. A listener
whose connection to the coordinator ends (it died) releases the keys it was writing with
AE: their senders resend, and a report it had already written is then written again,
which the join applies once (same event id), as after a producer retry.

Messages are lines of tab-separated fields, the key last (a key never holds a line
break: messages are split into segments at CR and LF; it may hold a tab): "C id key"
claim -> "R id new|AA|AE"; "S code key" settle. Lines are batched per event-loop turn
(one write each way for all the messages handled meanwhile).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import cast

from surveillance.interop.hl7_ack import AckCode
from surveillance.interop.mllp_dedup import Answered, Dedup, Deliver

log = logging.getLogger(__name__)


class _Lines(asyncio.Protocol):
    """Lines of 3 tab-separated fields both ways, writes batched per event-loop turn."""

    def __init__(self, on_message: Callable[[_Lines, list[str]], None],
                 on_lost: Callable[[_Lines], None]) -> None:
        self._on_message = on_message
        self._on_lost = on_lost
        self._buffer = b""
        self._out: list[bytes] = []
        self._transport: asyncio.Transport | None = None
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport

    def data_received(self, data: bytes) -> None:
        *lines, self._buffer = (self._buffer + data).split(b"\n")
        for line in lines:
            self._on_message(self, line.decode("utf-8", "surrogatepass").split("\t", 2))

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._on_lost(self)

    def send(self, kind: str, first: str, last: str) -> None:
        if self.closed:
            return
        if not self._out:
            asyncio.get_running_loop().call_soon(self._flush)
        self._out.append(f"{kind}\t{first}\t{last}".encode("utf-8", "surrogatepass"))

    def _flush(self) -> None:
        out, self._out = self._out, []
        if self._transport is not None and not self.closed:
            self._transport.write(b"\n".join(out) + b"\n")

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()


class DedupCoordinator:
    """Serves claims on a Unix socket; `await start(path)`, `close()`."""

    def __init__(self, remembered: int = 200_000) -> None:
        self._dedup = Dedup(remembered)
        self._owned: dict[_Lines, set[str]] = {}
        self._server: asyncio.Server | None = None

    async def start(self, path: str) -> DedupCoordinator:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_unix_server(
            lambda: _Lines(self._message, self._lost), path)
        return self

    def close(self) -> None:
        if self._server is not None:
            self._server.close()

    def _message(self, peer: _Lines, message: list[str]) -> None:
        owned = self._owned.setdefault(peer, set())
        kind, first, key = message
        if kind == "C":
            waiting = self._dedup.writing(key)
            if waiting is not None:
                waiting.append(lambda code: peer.send("R", first, code))
                return
            if self._dedup.claim(key) == "AA":
                peer.send("R", first, "AA")
                return
            owned.add(key)
            peer.send("R", first, "new")
        elif kind == "S" and key in owned:
            owned.discard(key)
            self._settle(key, cast(AckCode, first))

    def _settle(self, key: str, code: AckCode) -> None:
        for waiter in self._dedup.settle(key, code):
            waiter(code)

    def _lost(self, peer: _Lines) -> None:
        for key in self._owned.pop(peer, set()):
            log.warning("an MLLP listener process left while writing; its senders resend")
            self._settle(key, "AE")


class SharedDedup:
    """A listener process's side: `await SharedDedup.connect(path)`. If the coordinator
    goes away, every open and later claim is answered AE (resend) and `lost` is set."""

    def __init__(self) -> None:
        self._lines: _Lines | None = None
        self._claims: dict[int, tuple[str, Deliver, Answered]] = {}
        self._next = 0
        self._closing = False
        self.lost = asyncio.Event()

    @classmethod
    async def connect(cls, path: str) -> SharedDedup:
        self = cls()
        loop = asyncio.get_running_loop()
        _transport, lines = await loop.create_unix_connection(
            lambda: _Lines(self._message, self._lost), path)
        self._lines = lines
        return self

    def close(self) -> None:
        self._closing = True
        if self._lines is not None:
            self._lines.close()

    def once(self, key: str, deliver: Deliver, answered: Answered) -> None:
        if self._lines is None or self._lines.closed:
            answered("AE", False)
            return
        self._next += 1
        self._claims[self._next] = (key, deliver, answered)
        self._lines.send("C", str(self._next), key)

    def _message(self, lines: _Lines, message: list[str]) -> None:
        _kind, claim, state = message
        key, deliver, answered = self._claims.pop(int(claim))
        if state != "new":
            answered(cast(AckCode, state), True)
            return

        def settle(code: AckCode) -> None:
            lines.send("S", code, key)
            answered(code, False)

        try:
            deliver(settle)
        except Exception:  # not in the listener's call any more: answer it here
            log.exception("MLLP message could not be handled")
            settle("AE")

    def _lost(self, _lines: _Lines) -> None:
        if not self.lost.is_set() and not self._closing:
            log.error("the MLLP duplicate coordinator is gone; answering AE until restarted")
        self.lost.set()
        claims, self._claims = self._claims, {}
        for _key, _deliver, answered in claims.values():
            answered("AE", False)
