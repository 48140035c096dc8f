"""`surveillance hl7 listen`: an asyncio MLLP server that answers every message with an ACK.

Framing: 0x0B, the message, 0x1C 0x0D. Per message (see `hl7_ack` for the codes):
- parsed -> reports on `reports.final` -> AA only once the broker acknowledged them;
- already ACKed with AA (same sending facility and MSH-10) -> AA again, nothing written;
- rejected -> dead letter with the reason on `reports.final.dlq`, then AE/AR with the reason;
- broker not confirming in time -> AE (the sender resends; nothing was ACKed, nothing lost).

A connection may pipeline: ACKs go back in the order the messages came, those ready
together in one write. At most `max_in_flight` messages are being handled across all
connections; past that the listener stops reading its sockets (complete frames already
read wait in the connection's buffer), so a slow broker slows the senders (TCP
back-pressure) instead of filling memory; a sender that does not read its ACKs is not
read either. A connection that breaks mid-frame loses only the unfinished, un-ACKed
message. Nothing from a message's content is logged.

Written as an `asyncio.Protocol` with callbacks rather than streams and a task per
message: the stream version spent ~100 us of CPU per message on tasks, queues and
per-ACK writes, more than the parsing. Reports go to the sink's coalesced writes (one
acknowledgement wait for all the messages handled meanwhile).

Duplicates are found by a `DedupStore`: `mllp_dedup.Dedup` in this process, or
`mllp_shared.SharedDedup` when several listener processes share one port
(`mllp_processes`).
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections import Counter, deque
from collections.abc import Callable
from datetime import UTC, date, datetime

from surveillance.interop.errors import DeliveryError
from surveillance.interop.hl7_ack import AckCode, build_ack, build_batch_ack
from surveillance.interop.hl7_batch import split_batch
from surveillance.interop.hl7_header import (
    ERR_DATA_TYPE,
    ERR_INTERNAL,
    ERR_SEGMENT_SEQUENCE,
    Header,
    Rejection,
)
from surveillance.interop.hl7_mapping import Mapping
from surveillance.interop.hl7_parse import parse_message
from surveillance.interop.hl7_sink import ReportSink, dead_letter
from surveillance.interop.mllp_dedup import Dedup, DedupStore

log = logging.getLogger(__name__)

START = b"\x0b"
END = b"\x1c\x0d"
_NOT_CONFIRMED = "the broker did not confirm the write in time; resend"

Reply = Callable[[bytes], None]


class _Oversize:
    def __init__(self, size: int) -> None:
        self.size = size


class _Answer:
    """A message's place in its connection's ACK order."""

    __slots__ = ("ack",)

    def __init__(self) -> None:
        self.ack: bytes | None = None


class _Connection(asyncio.Protocol):
    def __init__(self, listener: MllpListener) -> None:
        self._listener = listener
        self._buffer = bytearray()
        self._skipping = -1  # bytes of an oversized frame skipped so far; -1: none
        self._answers: deque[_Answer] = deque()
        self._transport: asyncio.Transport | None = None
        self._write_paused = False
        self._reading_paused = False
        self._eof = False
        self._closed = False
        self._taking = False
        self._write_scheduled = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport
        self._listener.connections.add(self)
        self.update_reading()

    def connection_lost(self, exc: Exception | None) -> None:
        if exc is not None:
            log.info("MLLP connection dropped: %s", type(exc).__name__)
        self._closed = True
        self._buffer.clear()  # an unfinished frame: never ACKed, never written
        self._listener.connections.discard(self)

    def eof_received(self) -> bool:
        self._eof = True  # the sender is done: answer what it sent, then close
        self._close_when_answered()
        return True

    def pause_writing(self) -> None:
        self._write_paused = True
        self.update_reading()

    def resume_writing(self) -> None:
        self._write_paused = False
        self.update_reading()

    def update_reading(self) -> None:
        if self._transport is None or self._closed:
            return
        pause = self._write_paused or self._listener.saturated
        if pause != self._reading_paused:
            self._reading_paused = pause
            if pause:
                self._transport.pause_reading()
            else:
                self._transport.resume_reading()

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        self.take()

    def take(self) -> None:
        """Hands the complete frames read to the listener while it has room. Bytes
        between frames are ignored; a frame over the size limit is skipped and
        answered AR."""
        if self._taking:
            return  # an ACK answered while handing out frames: the loop below goes on
        self._taking = True
        listener, buffer = self._listener, self._buffer
        limit = listener.max_message_bytes + 16
        pos = 0
        try:
            while not listener.saturated and not self._closed:
                end = buffer.find(END, pos)
                if end < 0:
                    rest = len(buffer) - pos
                    if self._skipping >= 0 or rest > limit:
                        keep = 1 if buffer.endswith(b"\x1c") else 0  # half of an END
                        self._skipping = max(self._skipping, 0) + rest - keep
                        pos = len(buffer) - keep
                    return
                if self._skipping >= 0 or end - pos > limit:
                    size = max(self._skipping, 0) + end + 2 - pos
                    self._skipping = -1
                    pos = end + 2
                    self._handle(_Oversize(size))
                    continue
                start = buffer.rfind(START, pos, end)
                frame = bytes(buffer[(start + 1 if start >= 0 else pos):end])
                pos = end + 2
                self._handle(frame)
        finally:
            del buffer[:pos]
            self._taking = False
            self._close_when_answered()

    def _handle(self, frame: bytes | _Oversize) -> None:
        answer = _Answer()
        self._answers.append(answer)

        def reply(ack: bytes) -> None:
            answer.ack = ack
            self._write_soon()

        self._listener.answer(frame, reply)

    def _write_soon(self) -> None:
        # ACKs settled in the same event-loop turn (one broker acknowledgement settles a
        # whole batch) go out in one write: a write per ACK cost more than the parsing.
        if not self._write_scheduled:
            self._write_scheduled = True
            asyncio.get_running_loop().call_soon(self._write_ready)

    def _write_ready(self) -> None:
        self._write_scheduled = False
        answers, ready = self._answers, []
        while answers and answers[0].ack is not None:
            ready.append(answers.popleft().ack)
        if ready and not self._closed and self._transport is not None:
            # The reports of a peer that left stay written; only its ACKs go nowhere.
            self._transport.write(b"".join(START + a + END for a in ready if a is not None))
        self._close_when_answered()

    def _close_when_answered(self) -> None:
        if (self._eof and not self._closed and not self._answers
                and self._transport is not None and END not in self._buffer):
            self._transport.close()


class MllpListener:
    def __init__(self, sink: ReportSink, mapping: Mapping, max_in_flight: int = 256,
                 max_message_bytes: int = 1024 * 1024, remembered: int = 200_000,
                 dedup: DedupStore | None = None, earliest: date | None = None) -> None:
        self._sink = sink
        self._mapping = mapping
        #: `stream.earliest_event_date`: an older report time is answered AE, as the
        #: worker's ingest would dead-letter it (None: its default).
        self._earliest = earliest
        self._max_in_flight = max_in_flight
        self.max_message_bytes = max_message_bytes
        self._dedup: DedupStore = dedup if dedup is not None else Dedup(remembered)
        self.connections: set[_Connection] = set()
        #: Messages by outcome: accepted, duplicate, rejected, not_delivered, internal.
        self.stats: Counter[str] = Counter()
        #: Messages read and not yet answered, over all connections.
        self.in_flight = 0

    @property
    def saturated(self) -> bool:
        return self.in_flight >= self._max_in_flight

    async def serve(self, host: str, port: int, reuse_port: bool = False) -> asyncio.Server:
        loop = asyncio.get_running_loop()
        return await loop.create_server(lambda: _Connection(self), host, port,
                                        reuse_port=reuse_port or None)

    def answer(self, frame: bytes | _Oversize, reply: Reply) -> None:
        """Handles one frame; `reply` gets its ACK exactly once, when it is due."""
        self.in_flight += 1
        if self.in_flight == self._max_in_flight:
            for connection in list(self.connections):
                connection.update_reading()
        done = False

        def finish(ack: bytes) -> None:
            nonlocal done
            if done:
                return
            done = True
            self.in_flight -= 1
            reply(ack)
            if self.in_flight == self._max_in_flight - 1:
                for connection in list(self.connections):
                    connection.update_reading()
                for connection in list(self.connections):
                    connection.take()

        now = datetime.now(UTC)
        try:
            self._answer(frame, now, finish)
        except Exception:  # hostile input must never stop the listener
            log.exception("MLLP message could not be handled")
            self.stats["internal"] += 1
            finish(_ack(None, "AE", now, ERR_INTERNAL, "internal error; resend later"))

    def _answer(self, frame: bytes | _Oversize, now: datetime, finish: Reply) -> None:
        if isinstance(frame, _Oversize):
            self._reject(b"", Rejection("AR", ERR_DATA_TYPE,
                                        f"message of {frame.size} bytes exceeds the "
                                        f"{self.max_message_bytes}-byte limit (hl7 listen "
                                        "--max-message-bytes)"), now, finish)
            return
        if not frame.strip():
            self._reject(frame, Rejection("AR", ERR_SEGMENT_SEQUENCE, "empty MLLP frame"),
                         now, finish)
            return
        if frame.lstrip()[:3] in (b"FHS", b"BHS"):
            self._answer_batch(frame, now, finish)
            return
        result = parse_message(frame, self._mapping, now, self._earliest)
        if isinstance(result, Rejection):
            self._reject(frame, result, now, finish)
            return
        header, records = result.header, result.records

        def answered(code: AckCode, duplicate: bool) -> None:
            if duplicate:
                self.stats["duplicate"] += 1
            if code == "AA":
                finish(_ack(header, "AA", now))
            else:
                finish(_ack(header, "AE", now, ERR_INTERNAL, _NOT_CONFIRMED))

        def deliver(settle: Callable[[AckCode], None]) -> None:
            written = self._sink.submit(records)

            def confirmed(future: asyncio.Future[None]) -> None:
                exc = future.exception() if not future.cancelled() else DeliveryError(
                    "the write was cancelled")
                if exc is None:
                    self.stats["accepted"] += 1
                    settle("AA")
                    return
                if isinstance(exc, DeliveryError):
                    log.warning("HL7 message not delivered: %s", exc)
                else:
                    log.error("HL7 message not delivered", exc_info=exc)
                self.stats["not_delivered"] += 1
                settle("AE")

            written.add_done_callback(confirmed)

        self._dedup.once(header.dedup_key, deliver, answered)

    def _answer_batch(self, frame: bytes, now: datetime, finish: Reply) -> None:
        """A batch (FHS/BHS ... BTS/FTS) in one frame, as a RIS may send its backlog: each
        message is handled as if it came alone (its own duplicate check, dead letter and
        ACK), and the ACKs go back together as one batch. Before, the whole batch got AR
        ("does not start with MSH") and none of its reports was read."""
        messages = list(split_batch(frame))
        if not messages:
            self._reject(frame, Rejection("AR", ERR_SEGMENT_SEQUENCE,
                                          "the batch holds no message"), now, finish)
            return
        acks: list[bytes] = [b""] * len(messages)
        left = [len(messages)]

        def one(index: int) -> Reply:
            def answered(ack: bytes) -> None:
                acks[index] = ack
                left[0] -= 1
                if left[0] == 0:
                    finish(build_batch_ack(frame, acks, now, uuid.uuid4().hex[:20]))
            return answered

        for index, message in enumerate(messages):
            self._answer(message, now, one(index))

    def _reject(self, raw: bytes, why: Rejection, now: datetime, finish: Reply) -> None:
        self.stats["rejected"] += 1
        key = why.header.dedup_key.encode("utf-8") if why.header is not None else None
        ack = _ack(why.header, why.code, now, why.error, why.reason)
        written = self._sink.submit_dead_letter(
            dead_letter(raw, f"{why.code} {why.error}: {why.reason}", "hl7 listen"), key)
        log.info("HL7 message rejected (%s %s): %s", why.code, why.error, why.reason)

        def letter_written(future: asyncio.Future[None]) -> None:
            exc = None if future.cancelled() else future.exception()
            if exc is not None:
                # The sender still learns why; it keeps the message, since we did not take it.
                log.warning("HL7 dead letter not written: %s", exc)
            finish(ack)

        written.add_done_callback(letter_written)


def _ack(header: Header | None, code: AckCode, now: datetime, error: str | None = None,
         reason: str | None = None) -> bytes:
    return build_ack(header, code, now, uuid.uuid4().hex[:20], error, reason)
