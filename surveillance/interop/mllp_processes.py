"""`hl7 listen --processes N`: N listener processes on one port, one duplicate check.

Each process binds the port with SO_REUSEPORT (the kernel spreads connections over them),
has its own producer and parses on its own core; AA still goes out only after that
process's producer was acknowledged. The duplicate check (sending facility + MSH-10)
lives in this, the parent process (`mllp_shared.DedupCoordinator`), so a resend that
lands on another process than its original has no second effect either.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import queue
import shutil
import signal
import tempfile
from collections import Counter
from datetime import date
from typing import Any

from surveillance.interop.errors import DeliveryError, InteropError
from surveillance.interop.hl7_mapping import Mapping
from surveillance.interop.mllp_shared import DedupCoordinator

_START_SECONDS = 60.0


class ListenerGroup:
    """`await start()`, then `await stop()` (returns the processes' counts, one each)."""

    def __init__(self, host: str, port: int, processes: int, bootstrap: str,
                 mapping: Mapping, max_in_flight: int = 256,
                 timeout_seconds: float = 30.0, earliest: date | None = None,
                 max_message_bytes: int = 1024 * 1024) -> None:
        if port == 0:
            raise InteropError("several listener processes need a fixed port, not 0")
        self.host, self.port, self.processes = host, port, processes
        self._args = (bootstrap, mapping, max_in_flight, timeout_seconds, earliest,
                      max_message_bytes)
        self._dir = ""
        self._coordinator: DedupCoordinator | None = None
        self._children: list[Any] = []
        self._queue: Any = None

    async def start(self) -> ListenerGroup:
        self._dir = tempfile.mkdtemp(prefix="mllp-dedup-")
        path = os.path.join(self._dir, "dedup.sock")
        self._coordinator = await DedupCoordinator().start(path)
        # spawn: a forked child would share this event loop's selector and sockets.
        context = multiprocessing.get_context("spawn")
        self._queue = context.Queue()
        self._children = [
            context.Process(target=_listener_process, daemon=True,
                            args=(self.host, self.port, path, *self._args, self._queue))
            for _ in range(self.processes)
        ]
        for child in self._children:
            child.start()
        for _ in self._children:
            kind, detail = await asyncio.to_thread(self._get, _START_SECONDS)
            if kind != "ready":
                await self.stop()
                raise InteropError(str(detail))
        return self

    def alive(self) -> bool:
        return all(child.is_alive() for child in self._children)

    async def stop(self) -> list[Counter[str]]:
        for child in self._children:
            if child.is_alive() and child.pid is not None:
                os.kill(child.pid, signal.SIGTERM)
        counts: list[Counter[str]] = []
        for child in self._children:
            await asyncio.to_thread(child.join, 30)
            if child.is_alive():
                child.kill()
        while True:  # what the children left on the queue: counts (and start errors)
            try:
                kind, detail = self._get(0.5)
            except InteropError:
                break
            if kind == "stats":
                counts.append(Counter(detail))
        if self._coordinator is not None:
            self._coordinator.close()
        shutil.rmtree(self._dir, ignore_errors=True)
        return counts

    def _get(self, seconds: float) -> tuple[str, Any]:
        try:
            item: tuple[str, Any] = self._queue.get(timeout=seconds)
        except queue.Empty as exc:
            raise InteropError("an MLLP listener process did not start in time") from exc
        return item


def _listener_process(host: str, port: int, path: str, bootstrap: str, mapping: Mapping,
                      max_in_flight: int, timeout_seconds: float, earliest: date | None,
                      max_message_bytes: int, out: Any) -> None:
    asyncio.run(_listen(host, port, path, bootstrap, mapping, max_in_flight,
                        timeout_seconds, earliest, max_message_bytes, out))


async def _listen(host: str, port: int, path: str, bootstrap: str, mapping: Mapping,
                  max_in_flight: int, timeout_seconds: float, earliest: date | None,
                  max_message_bytes: int, out: Any) -> None:
    from surveillance.interop.hl7_sink import ReportSink
    from surveillance.interop.mllp_server import MllpListener
    from surveillance.interop.mllp_shared import SharedDedup

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        sink = await ReportSink(bootstrap, timeout_seconds=timeout_seconds).start()
    except DeliveryError as exc:
        out.put(("error", str(exc)))
        return
    dedup = await SharedDedup.connect(path)
    listener = MllpListener(sink, mapping, max_in_flight=max_in_flight, dedup=dedup,
                            earliest=earliest, max_message_bytes=max_message_bytes)
    try:
        server = await listener.serve(host, port, reuse_port=True)
    except OSError as exc:
        out.put(("error", f"cannot listen on {host}:{port}: {exc.strerror}"))
        await sink.stop()
        return
    out.put(("ready", os.getpid()))
    lost = asyncio.create_task(dedup.lost.wait())
    stopping = asyncio.create_task(stop.wait())
    await asyncio.wait([lost, stopping], return_when=asyncio.FIRST_COMPLETED)
    server.close()
    for _ in range(int(timeout_seconds * 10)):  # answer what was read (its senders wait)
        if not listener.in_flight:
            break
        await asyncio.sleep(0.1)
    await sink.stop()
    dedup.close()
    lost.cancel()
    stopping.cancel()
    out.put(("stats", dict(listener.stats)))
