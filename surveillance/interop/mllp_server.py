"""`surveillance hl7 listen`: an asyncio MLLP server that answers every message with an ACK.

Framing: 0x0B, the message, 0x1C 0x0D. Per message (see `hl7_ack` for the codes):
- parsed -> reports on `reports.final` -> AA only once the broker acknowledged them;
- already ACKed with AA (same sending facility and MSH-10) -> AA again, nothing written;
- rejected -> dead letter with the reason on `reports.final.dlq`, then AE/AR with the reason;
- broker not confirming in time -> AE (the sender resends; nothing was ACKed, nothing lost).

A connection may pipeline: ACKs go back in the order the messages came. At most
`max_in_flight` messages are being handled across all connections; past that the
listener stops reading its sockets, so a slow broker slows the senders (TCP back-pressure)
instead of filling memory. A connection that breaks mid-frame loses only the unfinished,
un-ACKed message. Nothing from a message's content is logged.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections import Counter, OrderedDict
from collections.abc import AsyncIterator
from datetime import UTC, datetime

from surveillance.contracts import ReportFinal
from surveillance.interop.errors import DeliveryError
from surveillance.interop.hl7_ack import AckCode, build_ack
from surveillance.interop.hl7_mapping import Mapping
from surveillance.interop.hl7_parse import (
    ERR_DATA_TYPE,
    ERR_INTERNAL,
    ERR_SEGMENT_SEQUENCE,
    Header,
    Rejection,
    parse_message,
)
from surveillance.interop.hl7_sink import ReportSink, dead_letter

log = logging.getLogger(__name__)

START = b"\x0b"
END = b"\x1c\x0d"


class _Oversize:
    def __init__(self, size: int) -> None:
        self.size = size


async def frames(reader: asyncio.StreamReader, max_bytes: int
                 ) -> AsyncIterator[bytes | _Oversize]:
    """Each complete MLLP frame's content; bytes between frames are ignored. Ends at EOF
    (an unfinished frame is dropped: it was never ACKed)."""
    while True:
        try:
            block = await reader.readuntil(END)
        except asyncio.IncompleteReadError:
            return
        except asyncio.LimitOverrunError:
            size = 0
            while True:  # skip to the end of the oversized frame
                try:
                    size += len(await reader.readuntil(END))
                    break
                except asyncio.LimitOverrunError as exc:
                    size += exc.consumed
                    await reader.readexactly(exc.consumed)
                except asyncio.IncompleteReadError:
                    return
            yield _Oversize(size)
            continue
        start = block.rfind(START)
        yield block[start + 1:-2] if start >= 0 else block[:-2]


class MllpListener:
    def __init__(self, sink: ReportSink, mapping: Mapping, max_in_flight: int = 256,
                 max_message_bytes: int = 1024 * 1024, remembered: int = 200_000) -> None:
        self._sink = sink
        self._mapping = mapping
        self._slots = asyncio.Semaphore(max_in_flight)
        self._max_bytes = max_message_bytes
        self._remembered = remembered
        self._done: OrderedDict[str, None] = OrderedDict()
        self._inflight: dict[str, asyncio.Future[AckCode]] = {}
        #: Messages by outcome: accepted, duplicate, rejected, not_delivered, internal.
        self.stats: Counter[str] = Counter()
        #: Messages read and not yet answered, over all connections.
        self.in_flight = 0

    async def serve(self, host: str, port: int) -> asyncio.Server:
        return await asyncio.start_server(
            self._connection, host, port, limit=self._max_bytes + 16
        )

    async def _connection(self, reader: asyncio.StreamReader,
                          writer: asyncio.StreamWriter) -> None:
        pending: asyncio.Queue[asyncio.Task[bytes] | None] = asyncio.Queue()
        replier = asyncio.create_task(self._reply(pending, writer))
        try:
            async for frame in frames(reader, self._max_bytes):
                await self._slots.acquire()
                self.in_flight += 1
                task = asyncio.create_task(self._answer(frame))
                task.add_done_callback(self._release)
                await pending.put(task)
        except (ConnectionError, OSError) as exc:
            log.info("MLLP connection dropped: %s", type(exc).__name__)
        finally:
            await pending.put(None)
            await replier
            writer.close()
            with contextlib.suppress(ConnectionError, OSError):
                await writer.wait_closed()

    def _release(self, _task: asyncio.Task[bytes]) -> None:
        self.in_flight -= 1
        self._slots.release()

    async def _reply(self, pending: asyncio.Queue[asyncio.Task[bytes] | None],
                     writer: asyncio.StreamWriter) -> None:
        broken = False
        while (task := await pending.get()) is not None:
            ack = await task  # handled even if the peer left: its reports stay written
            if broken:
                continue
            try:
                writer.write(START + ack + END)
                await writer.drain()
            except (ConnectionError, OSError):
                broken = True

    async def _answer(self, frame: bytes | _Oversize) -> bytes:
        now = datetime.now(UTC)
        try:
            if isinstance(frame, _Oversize):
                return await self._reject(
                    b"", Rejection("AR", ERR_DATA_TYPE,
                                   f"message of {frame.size} bytes exceeds the "
                                   f"{self._max_bytes}-byte limit"), now)
            if not frame.strip():
                return await self._reject(
                    frame, Rejection("AR", ERR_SEGMENT_SEQUENCE, "empty MLLP frame"), now)
            result = parse_message(frame, self._mapping)
            if isinstance(result, Rejection):
                return await self._reject(frame, result, now)
            header = result.header
            code = await self._once(header.dedup_key, result.reports)
            if code != "AA":
                return _ack(header, "AE", now, ERR_INTERNAL,
                            "the broker did not confirm the write in time; resend")
            return _ack(header, "AA", now)
        except Exception:  # hostile input must never stop the listener
            log.exception("MLLP message could not be handled")
            self.stats["internal"] += 1
            return _ack(None, "AE", now, ERR_INTERNAL, "internal error; resend later")

    async def _once(self, key: str, reports: list[ReportFinal]) -> AckCode:
        """Deliver once per sending facility + MSH-10; a duplicate waits for the first."""
        if key in self._done:
            self._done.move_to_end(key)
            self.stats["duplicate"] += 1
            return "AA"
        if key in self._inflight:
            self.stats["duplicate"] += 1
            return await asyncio.shield(self._inflight[key])
        future: asyncio.Future[AckCode] = asyncio.get_running_loop().create_future()
        self._inflight[key] = future
        code: AckCode = "AE"
        try:
            await self._sink.deliver(reports)
            code = "AA"
            self.stats["accepted"] += 1
            self._done[key] = None
            if len(self._done) > self._remembered:
                self._done.popitem(last=False)
        except DeliveryError as exc:
            log.warning("HL7 message not delivered: %s", exc)
            self.stats["not_delivered"] += 1
        finally:
            del self._inflight[key]
            future.set_result(code)
        return code

    async def _reject(self, raw: bytes, why: Rejection, now: datetime) -> bytes:
        self.stats["rejected"] += 1
        key = why.header.dedup_key.encode("utf-8") if why.header is not None else None
        try:
            await self._sink.dead_letter(
                dead_letter(raw, f"{why.code} {why.error}: {why.reason}", "hl7 listen"), key)
        except DeliveryError as exc:
            # The sender still learns why; it keeps the message, since we did not take it.
            log.warning("HL7 dead letter not written: %s", exc)
        log.info("HL7 message rejected (%s %s): %s", why.code, why.error, why.reason)
        return _ack(why.header, why.code, now, why.error, why.reason)


def _ack(header: Header | None, code: AckCode, now: datetime, error: str | None = None,
         reason: str | None = None) -> bytes:
    return build_ack(header, code, now, uuid.uuid4().hex[:20], error, reason)
