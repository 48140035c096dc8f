"""A TCP proxy on its own thread whose connections a test can cut (a broker "kill" that
keeps the broker's data: the embedded broker stores in memory and a restart loses it)."""

from __future__ import annotations

import asyncio
import contextlib
import threading


class TcpProxy:
    def __init__(self, upstream_port: int) -> None:
        #: Set by `start` (bound to port 0 there: no other process can take it first).
        self.port = 0
        self.upstream_port = upstream_port
        self.cuts = 0
        #: Connections accepted, and refused while cut.
        self.accepted = 0
        self.refused = 0
        self.accepted_at_cut = 0
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._writers: set[asyncio.StreamWriter] = set()
        self._refusing = False
        self._server: asyncio.Server | None = None

    def start(self) -> TcpProxy:
        self._thread.start()
        self._server = asyncio.run_coroutine_threadsafe(
            asyncio.start_server(self._accept, "127.0.0.1", 0), self._loop
        ).result(10)
        self.port = int(self._server.sockets[0].getsockname()[1])
        return self

    def cut(self, seconds: float) -> None:
        """Close every open connection now and refuse new ones for `seconds`."""
        asyncio.run_coroutine_threadsafe(self._cut(seconds), self._loop).result(10)

    async def _cut(self, seconds: float) -> None:
        self.cuts += 1
        self.accepted_at_cut = self.accepted
        self._refusing = True
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()
        self._loop.call_later(seconds, setattr, self, "_refusing", False)

    def stop(self) -> None:
        async def close() -> None:
            for writer in list(self._writers):
                writer.transport.abort()
            if self._server is not None:
                self._server.close()

        asyncio.run_coroutine_threadsafe(close(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._refusing:
            self.refused += 1
            writer.transport.abort()
            return
        self.accepted += 1
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        except OSError:
            writer.transport.abort()
            return
        self._writers |= {writer, up_writer}
        await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer))

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError, ConnectionError):
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        writer.transport.abort()
        self._writers.discard(writer)
