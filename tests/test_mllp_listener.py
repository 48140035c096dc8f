"""The MLLP listener over real TCP, on a real broker whose connections are cut mid-run.

10,000 frames: 9,700 distinct well-formed reports, 200 resends of earlier ones (2%), 100
malformed (1%), from 4 pipelining client connections that behave like an interface
engine (a message answered AE is sent again later). The producer reaches the broker
through a TCP proxy that drops every connection and refuses new ones for 2 s after 3,000
ACKs: a broker "kill" that keeps the broker's data (the embedded broker is in memory).
Then the topics are read back. About 20 s.
"""

from __future__ import annotations

import asyncio
import json
import random
from collections import Counter
from collections.abc import Iterator

import pytest

from surveillance.embedded import EmbeddedBroker, free_port
from surveillance.interop.hl7_header import event_id, header_of
from surveillance.interop.hl7_mapping import Mapping
from surveillance.interop.hl7_sink import ReportSink
from surveillance.interop.mllp_server import END, START, MllpListener
from surveillance.stream.topics import REPORTS_FINAL, TopicSpec, create_topics, dlq
from tests.hl7_samples import obr
from tests.tcp_proxy import TcpProxy
from tests.topic_read import read_topic

pytestmark = pytest.mark.integration

UNIQUE, RESENDS, MALFORMED, CLIENTS, WINDOW = 9_700, 200, 100, 4, 16


def report(i: int) -> bytes:
    return "\r".join([
        f"MSH|^~\\&|PS360|FAC{i % 3}|SURV|SURV|20240301120000||ORU^R01|C{i}|P|2.3",
        f"PID|1||MRN{i}^^^H^MR",
        obr(f1="1", f3=f"ACC-{i}", f4="CTHEAD", f22="20240301115900", f25="F"),
        f"OBX|1|TX|R||Report {i}: no acute intracranial hemorrhage.||||||F",
        "",
    ]).encode()


def malformed(i: int) -> bytes:
    kinds = [
        b"not an HL7 message %d\r" % i,
        f"MSH|^~\\&|PS360|FAC0|S|S|20240301||ADT^A01|BAD{i}|P|2.5\rPID|1\r".encode(),
        f"MSH|^~\\&|PS360|FAC0|S|S|20240301||ORU^R01|BAD{i}|P|2.5\r"
        f"{obr(f1='1', f22='20240301', f25='F')}\rOBX|1|TX|R||x||||||F\r".encode(),
        f"MSH|^~\\&|PS360|FAC0|S|S|20240301||ORU^R01|BAD{i}|P|2.5\r"
        f"{obr(f1='1', f3='A', f22='yesterday', f25='F')}\rOBX|1|TX|R||x||||||F\r".encode(),
    ]
    return kinds[i % len(kinds)]


def plan() -> list[tuple[str, bytes]]:
    rng = random.Random(13)
    frames = [("ok", report(i)) for i in range(UNIQUE)]
    frames += [("dup", report(rng.randrange(UNIQUE))) for _ in range(RESENDS)]
    frames += [("bad", malformed(i)) for i in range(MALFORMED)]
    rng.shuffle(frames)
    # A resend comes after its original (a sender resends what it sent).
    seen: set[bytes] = set()
    ordered = []
    for kind, raw in frames:
        if kind == "dup" and raw not in seen:
            kind = "ok_early"
        seen.add(raw)
        ordered.append((kind, raw))
    return ordered


@pytest.fixture
def proxied_broker() -> Iterator[tuple[EmbeddedBroker, TcpProxy]]:
    broker_port = free_port()
    proxy = TcpProxy(broker_port).start()
    broker = EmbeddedBroker(port=broker_port, advertised_port=proxy.port)
    try:
        broker.start()
        yield broker, proxy
    finally:
        broker.stop()
        proxy.stop()


def _segments(ack: bytes) -> dict[str, list[str]]:
    return {line[:3]: line.split("|") for line in ack.decode().split("\r") if line}


async def _client(frames: list[bytes], port: int, acks: list[tuple[bytes, bytes]],
                  after: asyncio.Event, cut_at: int, total: list[int]) -> None:
    """Send with up to WINDOW frames in flight; a frame answered AE goes back in the queue."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    queue = list(reversed(frames))
    in_flight: list[bytes] = []
    while queue or in_flight:
        while queue and len(in_flight) < WINDOW:
            frame = queue.pop()
            writer.write(START + frame + END)
            in_flight.append(frame)
        await writer.drain()
        ack = (await reader.readuntil(END))[1:-2]
        frame = in_flight.pop(0)
        acks.append((frame, ack))
        total[0] += 1
        if total[0] == cut_at:
            after.set()
        if _segments(ack)["MSA"][1] == "AE" and b"resend" in ack:
            queue.insert(0, frame)
    writer.close()
    await writer.wait_closed()


async def test_ten_thousand_messages_with_duplicates_malformed_and_a_broker_cut(
    proxied_broker: tuple[EmbeddedBroker, TcpProxy],
) -> None:
    _broker, proxy = proxied_broker
    bootstrap = f"127.0.0.1:{proxy.port}"
    create_topics(bootstrap, [TopicSpec(REPORTS_FINAL, 4), TopicSpec(dlq(REPORTS_FINAL), 1)])
    sink = await ReportSink(bootstrap, timeout_seconds=20).start()
    listener = MllpListener(sink, Mapping(), max_in_flight=64)
    server = await listener.serve("127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    frames = plan()
    assert len(frames) == UNIQUE + RESENDS + MALFORMED == 10_000

    # A connection that breaks mid-message: that message is never ACKed nor written.
    _r, w = await asyncio.open_connection("127.0.0.1", port)
    half = report(UNIQUE + 1)
    w.write(START + half[: len(half) // 2])
    await w.drain()
    w.close()

    acks: list[tuple[bytes, bytes]] = []
    cut_now, total = asyncio.Event(), [0]

    async def cutter() -> None:
        await cut_now.wait()
        await asyncio.to_thread(proxy.cut, 2.0)

    cut_task = asyncio.create_task(cutter())
    await asyncio.gather(*(
        _client([raw for _k, raw in frames[c::CLIENTS]], port, acks, cut_now, 3_000, total)
        for c in range(CLIENTS)
    ))
    await cut_task
    server.close()
    await server.wait_closed()
    await sink.stop()
    assert proxy.cuts == 1
    # The producer lost its broker connections and made new ones after the cut.
    assert proxy.accepted > proxy.accepted_at_cut

    final: dict[bytes, list[str]] = {}
    for frame, ack in acks:
        final.setdefault(frame, []).append(_segments(ack)["MSA"][1])
    well_formed = {raw for kind, raw in frames if kind != "bad"}
    bad = [raw for kind, raw in frames if kind == "bad"]
    assert len(well_formed) == UNIQUE
    # Every well-formed message: answered, ending in AA (after AE while the broker was cut).
    assert all(final[raw][-1] == "AA" for raw in well_formed)
    assert all(set(final[raw]) <= {"AA", "AE"} for raw in well_formed)
    # Every malformed one: NAKed with a reason in MSA-3 and an ERR segment.
    for frame, ack in acks:
        if frame in bad:
            seg = _segments(ack)
            assert seg["MSA"][1] in ("AR", "AE") and seg["MSA"][3], ack
            assert seg["ERR"][3].split("^")[2] == "HL70357" and seg["ERR"][8], ack

    records = [json.loads(v) for v in read_topic(bootstrap, REPORTS_FINAL)]
    by_id = Counter(r["event_id"] for r in records)
    expected = {event_id(header_of(raw), 1) for raw in well_formed}
    # Nothing ACKed was lost, nothing else was written, and no resend was written again.
    assert set(by_id) == expected
    # A produce request the cut caught after the broker wrote it is retried by the
    # producer and so written twice (the embedded broker has no idempotent producers).
    # Only requests in flight at the cut can be: at most the listener's in-flight bound.
    # The copy has no second effect: the join applies an event id once (test_join).
    assert sum(by_id.values()) - len(by_id) <= 64
    assert listener.stats["duplicate"] >= RESENDS

    letters = [json.loads(v) for v in read_topic(bootstrap, dlq(REPORTS_FINAL))]
    assert all(letter["reason"].startswith("hl7 listen: A") for letter in letters)
    # Every malformed frame is dead-lettered; a dead letter in flight at the cut can be
    # written twice like any produce (seen once in ~20 runs, under load), never lost.
    distinct = {json.dumps(letter, sort_keys=True) for letter in letters}
    assert MALFORMED <= len(letters) <= MALFORMED + 64
    assert sorted({letter["original_size"] for letter in letters}) == sorted(set(map(len, bad)))
    assert len(distinct) >= len(set(map(len, bad)))


async def test_broker_away_longer_than_the_timeout_answers_ae_then_aa_on_resend(
    proxied_broker: tuple[EmbeddedBroker, TcpProxy],
) -> None:
    _broker, proxy = proxied_broker
    bootstrap = f"127.0.0.1:{proxy.port}"
    create_topics(bootstrap, [TopicSpec(REPORTS_FINAL, 1), TopicSpec(dlq(REPORTS_FINAL), 1)])
    sink = await ReportSink(bootstrap, timeout_seconds=1.5).start()
    listener = MllpListener(sink, Mapping())
    server = await listener.serve("127.0.0.1", 0)
    reader, writer = await asyncio.open_connection(
        "127.0.0.1", server.sockets[0].getsockname()[1])

    async def send(raw: bytes) -> dict[str, list[str]]:
        writer.write(START + raw + END)
        await writer.drain()
        return _segments((await reader.readuntil(END))[1:-2])

    assert (await send(report(1)))["MSA"][1] == "AA"
    await asyncio.to_thread(proxy.cut, 6.0)
    refused = await send(report(2))
    assert refused["MSA"][1] == "AE" and "resend" in refused["MSA"][3]
    assert refused["ERR"][3].startswith("207^")
    # The sender resends after an AE (what the AE asks for) until it gets an AA: once the
    # proxy lets connections through again (6 s) the producer reconnects, which on a
    # loaded machine can outlast one 1.5 s attempt; the deadline bounds a hang only.
    await asyncio.sleep(6.0)
    answers = [(await send(report(2)))["MSA"][1]]
    deadline = asyncio.get_running_loop().time() + 60
    while answers[-1] == "AE" and asyncio.get_running_loop().time() < deadline:
        await asyncio.sleep(1.0)
        answers.append((await send(report(2)))["MSA"][1])
    assert answers[-1] == "AA" and set(answers) <= {"AE", "AA"}, answers
    writer.close()
    server.close()
    await sink.stop()
    ids = [json.loads(v)["event_id"] for v in read_topic(bootstrap, REPORTS_FINAL)]
    assert set(ids) == {event_id(header_of(report(i)), 1) for i in (1, 2)}


async def test_a_slow_broker_holds_the_listener_at_its_in_flight_bound(
    proxied_broker: tuple[EmbeddedBroker, TcpProxy],
) -> None:
    _broker, proxy = proxied_broker
    bootstrap = f"127.0.0.1:{proxy.port}"
    create_topics(bootstrap, [TopicSpec(REPORTS_FINAL, 1), TopicSpec(dlq(REPORTS_FINAL), 1)])
    sink = await ReportSink(bootstrap, timeout_seconds=30).start()
    listener = MllpListener(sink, Mapping(), max_in_flight=4)
    server = await listener.serve("127.0.0.1", 0)
    reader, writer = await asyncio.open_connection(
        "127.0.0.1", server.sockets[0].getsockname()[1])
    await asyncio.to_thread(proxy.cut, 3.0)
    frames = [report(i) for i in range(200)]
    for frame in frames:  # all at once: the sender does not wait for ACKs
        writer.write(START + frame + END)
    seen = []
    for _ in range(20):  # while the broker is away
        await asyncio.sleep(0.1)
        seen.append(listener.in_flight)
    assert max(seen) == 4  # full, and never more: the rest waits in the socket
    acks = [_segments((await reader.readuntil(END))[1:-2]) for _ in frames]
    assert [a["MSA"][1] for a in acks] == ["AA"] * len(frames)
    assert [a["MSA"][2] for a in acks] == [f"C{i}" for i in range(len(frames))]
    writer.close()
    server.close()
    await sink.stop()


async def test_framing_split_writes_junk_oversize_and_a_half_closed_sender(
    broker: EmbeddedBroker,
) -> None:
    """The listener frames the byte stream itself: frames cut across TCP writes (one
    byte at a time), bytes between frames, an empty frame and one over the size limit
    (skipped, AR, the next frame still read), and a sender that half-closes after its
    last frame still gets every ACK, in order, before the listener closes."""
    create_topics(broker.bootstrap, [TopicSpec(REPORTS_FINAL, 1), TopicSpec(dlq(REPORTS_FINAL), 1)])
    sink = await ReportSink(broker.bootstrap, timeout_seconds=20).start()
    listener = MllpListener(sink, Mapping(), max_in_flight=2, max_message_bytes=2_000)
    server = await listener.serve("127.0.0.1", 0)
    reader, writer = await asyncio.open_connection(
        "127.0.0.1", server.sockets[0].getsockname()[1])
    first, last = report(70_001), report(70_002)
    stream = (START + first + END + b"\r\n junk \x1c" + START + b"" + END
              + START + b"OBX|" * 5_000 + END + START + last + END)
    for i in range(0, 400):  # the first frame and more, byte by byte
        writer.write(stream[i:i + 1])
        await writer.drain()
    writer.write(stream[400:])
    await writer.drain()
    writer.write_eof()
    acks = []
    while True:
        try:
            acks.append(_segments((await reader.readuntil(END))[1:-2]))
        except asyncio.IncompleteReadError as end:
            assert end.partial == b""  # closed after the last ACK, nothing half-written
            break
    server.close()
    await sink.stop()
    assert [a["MSA"][1] for a in acks] == ["AA", "AR", "AR", "AA"]
    assert [a["MSA"][2] for a in acks] == ["C70001", "", "", "C70002"]
    assert acks[1]["MSA"][3] == "empty MLLP frame"
    size = int(acks[2]["MSA"][3].split()[2])  # "message of N bytes exceeds ..."
    assert 20_000 <= size <= 20_003 and acks[2]["MSA"][3].endswith(
        "the 2000-byte limit (hl7 listen --max-message-bytes)")
    ids = {json.loads(v)["event_id"] for v in read_topic(broker.bootstrap, REPORTS_FINAL)}
    assert {event_id(header_of(first), 1), event_id(header_of(last), 1)} <= ids
