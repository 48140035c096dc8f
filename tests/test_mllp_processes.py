"""Several MLLP listener processes on one port: the duplicate check stays exact across them.

First the coordinator alone over its real Unix socket (two listener-side clients, writes
settled by the test), then `ListenerGroup` with 2 real processes on the embedded broker:
16 connections each send the same 150 messages, so every message arrives 16 times,
spread by the kernel over both processes, often while its first copy is being written.
About 15 s.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import tempfile
from collections import Counter
from collections.abc import AsyncIterator, Callable

import pytest

from surveillance.embedded import EmbeddedBroker, free_port
from surveillance.interop.hl7_ack import AckCode
from surveillance.interop.hl7_header import event_id, header_of
from surveillance.interop.hl7_mapping import Mapping
from surveillance.interop.mllp_processes import ListenerGroup
from surveillance.interop.mllp_server import END, START
from surveillance.interop.mllp_shared import DedupCoordinator, SharedDedup
from surveillance.stream.topics import REPORTS_FINAL, TopicSpec, create_topics, dlq
from tests.test_mllp_listener import report
from tests.topic_read import read_topic


class Side:
    """One listener process's view: what it was asked to write and what it answered."""

    def __init__(self, dedup: SharedDedup) -> None:
        self.dedup = dedup
        self.writes: dict[str, Callable[[AckCode], None]] = {}
        self.answers: list[tuple[str, AckCode, bool]] = []

    def send(self, key: str) -> None:
        def deliver(settle: Callable[[AckCode], None]) -> None:
            self.writes[key] = settle

        def answered(code: AckCode, duplicate: bool) -> None:
            self.answers.append((key, code, duplicate))

        self.dedup.once(key, deliver, answered)


@pytest.fixture
async def sides() -> AsyncIterator[tuple[Side, Side]]:
    directory = tempfile.mkdtemp(prefix="dedup-test-")
    path = os.path.join(directory, "s")
    coordinator = await DedupCoordinator().start(path)
    a, b = Side(await SharedDedup.connect(path)), Side(await SharedDedup.connect(path))
    yield a, b
    a.dedup.close()
    b.dedup.close()
    coordinator.close()
    os.remove(path)
    os.rmdir(directory)


async def _turns(n: int = 20) -> None:
    for _ in range(n):
        await asyncio.sleep(0.01)


#: Facility and MSH-10 may hold tabs and any letter (not line breaks: they end segments).
KEY = "FAC\tÉ\x1fC\t1"


async def test_a_duplicate_on_another_process_waits_for_the_first_write(
        sides: tuple[Side, Side]) -> None:
    a, b = sides
    a.send(KEY)
    await _turns()
    assert list(a.writes) == [KEY] and a.answers == []
    b.send(KEY)  # while a is writing it
    await _turns()
    assert b.writes == {} and b.answers == []  # waits: neither written nor answered
    a.writes.pop(KEY)("AA")
    await _turns()
    assert a.answers == [(KEY, "AA", False)]
    assert b.answers == [(KEY, "AA", True)]
    b.send(KEY)  # later resends: AA, nothing written
    a.send(KEY)
    await _turns()
    assert a.writes == {} and b.writes == {}
    assert b.answers[-1] == a.answers[-1] == (KEY, "AA", True)


async def test_a_failed_write_is_written_again_on_resend(sides: tuple[Side, Side]) -> None:
    a, b = sides
    a.send("F\x1f1")
    await _turns()
    b.send("F\x1f1")
    await _turns()
    a.writes.pop("F\x1f1")("AE")  # the broker did not confirm
    await _turns()
    assert a.answers == [("F\x1f1", "AE", False)] and b.answers == [("F\x1f1", "AE", True)]
    b.send("F\x1f1")  # the sender resends: this time b writes it
    await _turns()
    assert list(b.writes) == ["F\x1f1"]


async def test_a_process_that_dies_mid_write_releases_its_messages(
        sides: tuple[Side, Side]) -> None:
    a, b = sides
    a.send("F\x1f2")
    await _turns()
    b.send("F\x1f2")
    await _turns()
    a.dedup.close()  # a's process is gone before the broker confirmed
    await _turns()
    assert b.answers == [("F\x1f2", "AE", True)]  # its sender resends
    b.send("F\x1f2")
    await _turns()
    assert list(b.writes) == ["F\x1f2"]
    a.send("F\x1f3")  # the dead side's own later messages: AE, never AA unwritten
    await _turns()
    assert a.answers[-1] == ("F\x1f3", "AE", False)


N_MESSAGES, CONNECTIONS, WINDOW = 150, 16, 8


async def _send_all(port: int, frames: list[bytes]) -> list[str]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    codes: list[str] = []
    sent = 0
    while len(codes) < len(frames):
        while sent < len(frames) and sent - len(codes) < WINDOW:
            writer.write(START + frames[sent] + END)
            sent += 1
        await writer.drain()
        ack = (await reader.readuntil(END))[1:-2].decode()
        msa = next(line for line in ack.split("\r") if line.startswith("MSA"))
        codes.append(msa.split("|")[1])
    writer.close()
    await writer.wait_closed()
    return codes


@pytest.mark.integration
async def test_two_listener_processes_write_each_message_once(broker: EmbeddedBroker) -> None:
    create_topics(broker.bootstrap, [TopicSpec(REPORTS_FINAL, 1), TopicSpec(dlq(REPORTS_FINAL), 1)])
    frames = [report(50_000 + i) for i in range(N_MESSAGES)]
    group = await ListenerGroup("127.0.0.1", free_port(), 2, broker.bootstrap, Mapping(),
                                max_in_flight=32).start()
    try:
        orders = []
        for c in range(CONNECTIONS):
            order = frames[:]
            random.Random(c).shuffle(order)
            orders.append(order)
        codes = await asyncio.gather(*(_send_all(group.port, order) for order in orders))
    finally:
        counts = await group.stop()
    assert [Counter(c) for c in codes] == [Counter({"AA": N_MESSAGES})] * CONNECTIONS
    expected = {event_id(header_of(f), 1) for f in frames}
    ids = Counter(e for v in read_topic(broker.bootstrap, REPORTS_FINAL)
                  if (e := json.loads(v)["event_id"]) in expected)
    assert ids == Counter(dict.fromkeys(expected, 1))  # each once: no second write
    assert len(counts) == 2
    assert sum(c["accepted"] for c in counts) == N_MESSAGES
    assert sum(c["duplicate"] for c in counts) == N_MESSAGES * (CONNECTIONS - 1)
    # The kernel gave both processes connections (16 of them: 2 x 2**-16 that it did not).
    assert all(c["accepted"] + c["duplicate"] > 0 for c in counts)
