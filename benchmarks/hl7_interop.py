"""HL7 v2 in: MLLP listener and `hl7 import` messages/s, beside the raw produce rate.

All on one embedded broker in one run:
- ceiling: the same reports, already serialized, produced by a bare aiokafka producer
  (acks=all, every send awaited at the end), i.e. what the broker takes from Python;
- parse: `parse_message` alone, per message (where the adapters' CPU goes);
- MLLP: the listener (ACK AA only after the broker acknowledged) in this process, fed by
  a client process with 4 pipelining connections (16 frames in flight each), timed from
  the first frame sent to the last ACK read;
- import: `import_files` on batch files of the same messages (checkpoint included),
  parsing in one process per core.
CPU time per message is printed beside each rate: on a shared machine the rates fall
with the load, the CPU time much less.
Targets (2 cores): listener >= 2,000 messages/s, import >= 10,000 messages/s.

    .venv/bin/python benchmarks/hl7_interop.py [n_messages]
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import platform
import resource
import socket
import sys
import tempfile
import time
from pathlib import Path

from surveillance.embedded import EmbeddedBroker
from surveillance.interop.hl7_import import Checkpoint, import_files
from surveillance.interop.hl7_mapping import Mapping
from surveillance.interop.hl7_parse import Parsed, parse_message
from surveillance.interop.hl7_sink import ReportSink
from surveillance.interop.mllp_server import END, START, MllpListener
from surveillance.stream.topics import REPORTS_FINAL, TopicSpec, create_topics, dlq

TEXT = [
    "EXAM: CT head without contrast.",
    "CLINICAL HISTORY: Fall, headache.",
    "FINDINGS: No acute intracranial hemorrhage. No mass effect or midline shift.",
    "The ventricles and sulci are normal for age. No extra-axial collection.",
    "",
    "IMPRESSION: No acute intracranial abnormality.",
]


def message(i: int, tag: str) -> bytes:
    segments = [
        f"MSH|^~\\&|PowerScribe360|FAC{i % 5}|RIS|SURV|20240301120000||ORU^R01|{tag}{i}|P|2.3",
        f"PID|1||{1000000 + i}^^^H^MR||DOE^JANE||19600101|F",
        "PV1|1|E",
        f"ORC|RE|ORD{i}|ACC{tag}{i}",
        "|".join(["OBR", "1", f"ORD{i}", f"ACC{tag}{i}", "CTHEAD^CT HEAD", "", "",
                  "20240301110000", *[""] * 14, "20240301115900", "", "", "F"]),
        *(f"OBX|{n}|TX|&GDT^REPORT||{line}||||||F" for n, line in enumerate(TEXT, start=1)),
    ]
    return ("\r".join(segments) + "\r").encode()


def client(port: int, frames: list[bytes], connections: int, window: int,
           out: multiprocessing.Queue) -> None:  # type: ignore[type-arg]
    """Runs in its own process: a sending interface engine."""
    async def one(chunk: list[bytes]) -> int:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        sent = acked = aa = 0
        while acked < len(chunk):
            while sent < len(chunk) and sent - acked < window:
                writer.write(START + chunk[sent] + END)
                sent += 1
            await writer.drain()
            ack = await reader.readuntil(END)
            acked += 1
            aa += b"MSA|AA|" in ack
        writer.close()
        return aa

    async def main() -> None:
        t0 = time.perf_counter()
        aa = await asyncio.gather(*(one(frames[c::connections]) for c in range(connections)))
        out.put((time.perf_counter() - t0, sum(aa)))

    asyncio.run(main())


async def raw_produce(bootstrap: str, values: list[tuple[bytes, bytes]]
                      ) -> tuple[float, float]:
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=2,
                                max_batch_size=256 * 1024)
    await producer.start()
    t0, c0 = time.perf_counter(), time.process_time()
    futures = [await producer.send(REPORTS_FINAL, v, key=k) for k, v in values]
    await asyncio.gather(*futures)
    elapsed, cpu = time.perf_counter() - t0, time.process_time() - c0
    await producer.stop()
    return len(values) / elapsed, cpu / len(values) * 1e6


async def mllp_rate(bootstrap: str, frames: list[bytes]) -> tuple[float, int, float]:
    sink = await ReportSink(bootstrap).start()
    listener = MllpListener(sink, Mapping(), max_in_flight=256)
    server = await listener.serve("127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    out: multiprocessing.Queue = multiprocessing.Queue()  # type: ignore[type-arg]
    proc = multiprocessing.Process(target=client, args=(port, frames, 4, 16, out))
    c0 = time.process_time()
    proc.start()
    while out.empty():
        await asyncio.sleep(0.05)
    cpu = time.process_time() - c0
    elapsed, aa = out.get()
    proc.join()
    server.close()
    await sink.stop()
    return len(frames) / elapsed, aa, cpu / len(frames) * 1e6


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


async def import_rate(bootstrap: str, directory: Path, n: int) -> tuple[float, float, float]:
    """Messages/s, and CPU us/message in this process (producing, serial) and in the
    parsing worker processes (parallel; reaped at the end, so counted as children)."""
    sink = await ReportSink(bootstrap, linger_ms=20).start()
    t0, c0, w0 = time.perf_counter(), time.process_time(), _children_cpu()
    files = sorted(directory.glob("*.hl7"))
    summary = await import_files(files, sink, Mapping(), Checkpoint(directory / "ckpt.json"))
    elapsed, cpu = time.perf_counter() - t0, time.process_time() - c0
    workers = _children_cpu() - w0
    await sink.stop()
    assert summary.accepted == n, summary.lines()
    return n / elapsed, cpu / n * 1e6, workers / n * 1e6


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 20_000
    mapping = Mapping()
    frames = [message(i, "L") for i in range(n)]
    batch = [message(i, "I") for i in range(n)]
    t0 = time.process_time()
    parsed = [parse_message(m, mapping) for m in frames]
    parse_us = (time.process_time() - t0) / n * 1e6
    values = [(r.accession_number.encode(), r.model_dump_json(exclude_none=True).encode())
              for p in parsed if isinstance(p, Parsed) for r in p.reports]
    print(f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"Python {platform.python_version()}; {n} messages of {len(frames[0])} bytes")
    with EmbeddedBroker() as broker, tempfile.TemporaryDirectory() as tmp:
        create_topics(broker.bootstrap, [TopicSpec(REPORTS_FINAL, 4),
                                         TopicSpec(dlq(REPORTS_FINAL), 1)])
        raw, raw_cpu = asyncio.run(raw_produce(broker.bootstrap, values))
        mllp, aa, mllp_cpu = asyncio.run(mllp_rate(broker.bootstrap, frames))
        directory = Path(tmp)
        per_file = 10_000
        for k in range(0, n, per_file):
            (directory / f"{k:08d}.hl7").write_bytes(b"".join(batch[k:k + per_file]))
        imported, main_cpu, worker_cpu = asyncio.run(
            import_rate(broker.bootstrap, directory, n))
    assert aa == n, f"{aa} of {n} ACKed AA"
    # CPU time per message is what a dedicated core would spend: on a shared machine
    # the wall-clock rates fall with the load, the CPU time much less.
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    print(f"parse_message alone:          {parse_us:7.1f} us CPU/message")
    print(f"ceiling, raw aiokafka produce: {raw:7,.0f} reports/s  ({raw_cpu:5.1f} us CPU/report)")
    print(f"MLLP listener, ACK after durable: {mllp:4,.0f} messages/s ({mllp_cpu:5.1f} us CPU/"
          f"message in the listener; {1e6 / mllp_cpu:,.0f}/s on a free core; target >= 2,000)")
    cores = os.cpu_count() or 1
    free = 1e6 / (main_cpu + worker_cpu / cores)  # parse (parallel), then produce (serial)
    print(f"hl7 import:                    {imported:7,.0f} messages/s ({main_cpu:5.1f} us CPU/"
          f"message producing + {worker_cpu:5.1f} parsing in {cores} processes; "
          f"{free:,.0f}/s on free cores; target >= 10,000)")


if __name__ == "__main__":
    socket.setdefaulttimeout(60)
    main()
