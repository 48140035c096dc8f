"""DICOM ingest rate: C-STORE (SRs, header-only images) and STOW-RS into the embedded broker.

Starts the embedded broker and `surveillance dicom listen` (its own process, spool with
synchronous=FULL), builds a corpus from the simulator (one header-only image and one TID
1500 SR per study, `tests/dicom_corpus.py`), then measures, each until the last object is
acknowledged (for C-STORE/STOW) and the last result is on the topic:

- C-STORE objects/s, images only and SRs only, from `--senders` SCU processes at once
  (one association each, as a PACS router's parallel queues);
- STOW-RS objects/s, `--parts` instances per request, from the same number of clients;
- ceilings in the same run: the raw produce rate of the same results' JSON into the same
  broker (kafka-python, acks=all), and the parse rate of the SRs in one process without
  network or broker (the receiver's CPU work per SR).

Target: >= 300 objects/s over C-STORE on 2 cores.

    .venv/bin/python benchmarks/dicom_ingest.py [--studies 600] [--senders 2] [--parts 50]
        [--processes 1]

Each line also gives the CPU time per object of the listener (its process tree, from
/proc) and of the clients, and the load average: on a shared machine the wall-clock rate
is a fraction of what the CPU time says free cores would do.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import sys
import tempfile
import threading
import time
from io import BytesIO
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import httpx
from pydicom import dcmread
from pynetdicom.dsutils import split_dataset

from surveillance.clinical.baselines import load_registry
from surveillance.embedded import EmbeddedBroker, free_port
from surveillance.interop.dicom_receiver import Receiver
from surveillance.interop.dicom_spool import Spool
from surveillance.interop.dicom_sr import parse_sr
from surveillance.interop.dicom_sr_read import read_dataset
from surveillance.stream.runner import WorkerProcess
from surveillance.stream.topics import TopicSpec, create_topics, dlq
from tests.dicom_corpus import build
from tests.test_dicom_network import IMAGE_CLASSES, read_topic


def _send_files(args: tuple[int, str, list[str]]) -> tuple[int, float, float, float]:
    """Send over one association: (stored, CPU seconds, start, end); the times are
    `perf_counter` (CLOCK_MONOTONIC, one clock for all processes), so the rate does not
    include the pool's workers starting up (importing this module) under load."""
    from pynetdicom import _config

    from surveillance.interop.dicom_scu import associate

    port, sender, paths = args
    start = time.perf_counter()
    _config.STORE_SEND_CHUNKED_DATASET = True
    assoc = associate("127.0.0.1", port, sender, IMAGE_CLASSES, dimse_timeout=300)
    ok = 0
    c0 = time.process_time()
    for path in paths:
        ok += int(assoc.send_c_store(path).get("Status", -1) == 0)
    assoc.release()
    return ok, time.process_time() - c0, start, time.perf_counter()


def _post_files(args: tuple[str, list[str], int]) -> tuple[int, float, float, float]:
    url, paths, parts = args
    began = time.perf_counter()
    ok = 0
    c0 = time.process_time()
    with httpx.Client(base_url=url, timeout=300) as client:
        for start in range(0, len(paths), parts):
            chunk = paths[start : start + parts]
            body = b"".join(b"--bnd\r\nContent-Type: application/dicom\r\n\r\n"
                            + Path(p).read_bytes() + b"\r\n" for p in chunk) + b"--bnd--\r\n"
            answer = client.post("/studies", content=body, headers={
                "Content-Type": 'multipart/related; type="application/dicom"; boundary=bnd'})
            ok += len(answer.json().get("00081199", {}).get("Value", []))
    return ok, time.process_time() - c0, began, time.perf_counter()


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process and its child processes (all threads), from
    /proc: `dicom listen` with several C-STORE processes is one tree."""
    total = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # the process ended meanwhile
        if stat.parent.name == str(pid) or fields[1] == str(pid):
            total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


#: Images sent before timing starts (the listener's warm-up).
WARM_UP = 20


class _TopicWatch(threading.Thread):
    """Counts the records of a topic as they arrive (one consumer, polling from before
    the first object is sent), and notes when the `n`th arrived: re-reading the topic
    until the count is reached measured the re-reading too (half a second or more)."""

    def __init__(self, bootstrap: str, topic: str, n: int) -> None:
        super().__init__(daemon=True)
        from kafka import KafkaConsumer

        self._consumer = KafkaConsumer(topic, bootstrap_servers=bootstrap,
                                       auto_offset_reset="earliest",
                                       enable_auto_commit=False, fetch_max_wait_ms=20)
        self._n = n
        self.reached: float | None = None
        self._halt = threading.Event()

    def run(self) -> None:
        seen = 0
        while not self._halt.is_set() and self.reached is None:
            for records in self._consumer.poll(timeout_ms=100).values():
                seen += len(records)
            if seen >= self._n:
                self.reached = time.perf_counter()
        self._consumer.close()

    def wait(self, timeout: float = 600) -> float:
        self.join(timeout)
        self._halt.set()
        if self.reached is None:
            raise SystemExit(f"only part of the {self._n} results reached the topic")
        return self.reached


def _split(paths: list[str], k: int) -> list[list[str]]:
    return [paths[i::k] for i in range(k)]


class _NoDeadLetters:
    def publish(self, key: bytes, value: bytes) -> None:
        raise AssertionError("the benchmark corpus has no bad objects")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--studies", type=int, default=600)
    parser.add_argument("--senders", type=int, default=2)
    parser.add_argument("--parts", type=int, default=50)
    parser.add_argument("--processes", type=int, default=1,
                        help="C-STORE processes of `dicom listen` on the port")
    a = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="dicom-bench-"))
    registry = load_registry()
    with EmbeddedBroker() as broker:
        for label, seed, channel in (("C-STORE", 5, "cstore"), ("STOW-RS", 9, "stow")):
            topic = f"ai.results.bench-{channel}"
            create_topics(broker.bootstrap, [TopicSpec(topic, 2), TopicSpec(dlq(topic), 1)])
            (work / channel).mkdir()
            corpus = build(a.studies, {"PACS": "site-a"}, work / channel, seed=seed)
            images = [str(i.path) for i in corpus.items if i.kind == "image"]
            srs = [str(i.path) for i in corpus.items if i.kind == "sr"]
            port = free_port()
            listener = WorkerProcess(broker.bootstrap, work / f"state-{channel}",
                                     command="dicom", args=("listen",), env={
                                         "SURVEILLANCE_DICOM__HOST": "127.0.0.1",
                                         "SURVEILLANCE_DICOM__PORT": str(port),
                                         "SURVEILLANCE_DICOM__TOPIC": topic,
                                         "SURVEILLANCE_DICOM__PROCESSES": str(a.processes),
                                     })
            listener._env["SURVEILLANCE_DICOM__STOW_PORT"] = str(listener.web_port)
            listener.start()
            try:
                for _ in range(200):
                    try:
                        httpx.get(f"{listener.url}/healthz", timeout=1)
                        break
                    except httpx.HTTPError:
                        time.sleep(0.3)
                with multiprocessing.get_context("spawn").Pool(a.senders) as pool:
                    assert listener.proc is not None
                    # Warm-up, untimed: the listener's first objects pay its lazy imports
                    # and first connections (seconds under load); they are not sent again.
                    warm, images = images[:WARM_UP], images[WARM_UP:]
                    if label == "C-STORE":
                        pool.map(_send_files, [(port, "PACS", warm)])
                    else:
                        pool.map(_post_files, [(listener.url, warm, a.parts)])
                    for kind, paths in (("images", images), ("SRs", srs)):
                        watch = (_TopicWatch(broker.bootstrap, topic, len(corpus.expected))
                                 if kind == "SRs" else None)
                        if watch is not None:
                            watch.start()
                        load = os.getloadavg()[0]
                        l0 = _cpu_seconds(listener.proc.pid)
                        if label == "C-STORE":
                            sent = pool.map(_send_files, [(port, "PACS", p)
                                                          for p in _split(paths, a.senders)])
                        else:
                            sent = pool.map(_post_files, [(listener.url, p, a.parts)
                                                          for p in _split(paths, a.senders)])
                        # From the first sender's start to the last acknowledgement.
                        t0, acked = min(x[2] for x in sent), max(x[3] for x in sent)
                        if watch is not None:
                            acked = max(acked, watch.wait())
                        listener_cpu = _cpu_seconds(listener.proc.pid) - l0
                        ok, client_cpu = sum(s[0] for s in sent), sum(s[1] for s in sent)
                        rate = len(paths) / (acked - t0)
                        per = 1000 / len(paths)
                        print(f"{label} {kind}: {len(paths)} objects ({ok} stored) in "
                              f"{acked - t0:.1f}s = {rate:.0f} objects/s"
                              + (" (until every result is on the topic)" if kind == "SRs"
                                 else "")
                              + f"; CPU per object: receiver {listener_cpu * per:.2f} ms, "
                              f"clients {client_cpu * per:.2f} ms (= "
                              f"{len(paths) / (listener_cpu + client_cpu):.0f} objects per "
                              f"CPU-second of both); load average {load:.1f}")
            finally:
                listener.stop()
        values = read_topic(broker.bootstrap, "ai.results.bench-cstore")
        from kafka import KafkaProducer

        create_topics(broker.bootstrap, [TopicSpec("ai.results.bench-raw", 2)])
        producer = KafkaProducer(bootstrap_servers=broker.bootstrap, acks="all", linger_ms=5)
        t0 = time.perf_counter()
        for value in values:
            producer.send("ai.results.bench-raw", value=value)
        producer.flush()
        print(f"ceiling, raw produce of the same {len(values)} results: "
              f"{len(values) / (time.perf_counter() - t0):.0f} results/s")
        producer.close()
    raws = [Path(p).read_bytes() for p in srs[:200]]
    # The data set as C-STORE carries it: the file without its preamble and meta group.
    data_sets = [raw[split_dataset(Path(p))[1]:] for p, raw in zip(srs, raws, strict=False)]
    for how, read in (("pydicom (the fallback)", lambda raw: dcmread(BytesIO(raw))),
                      ("dicom_sr_read", lambda raw: read_dataset(raw, False))):
        blobs = raws if how.startswith("pydicom") else data_sets
        t0, c0 = time.perf_counter(), time.process_time()
        for raw in blobs:
            parse_sr(read(raw), registry, "site-a")
        print(f"ceiling, SR read by {how} and parse alone (one process, no network): "
              f"{len(blobs) / (time.perf_counter() - t0):.0f} SRs/s wall, "
              f"{len(blobs) / (time.process_time() - c0):.0f} per CPU-second")
    for kind, paths in (("images", images), ("SRs", srs)):
        receiver = Receiver(registry, Spool(work / f"alone-{kind}.sqlite"), _NoDeadLetters())
        raws = [Path(p).read_bytes() for p in paths[:300]]
        t0, c0 = time.perf_counter(), time.process_time()
        for raw in raws:
            receiver.receive_file(raw, "bench", "site-a")
        print(f"ceiling, receiver alone on {kind} as STOW-RS files (decode, parse, spool "
              f"commit with synchronous=FULL; no network, no broker): "
              f"{len(raws) / (time.perf_counter() - t0):.0f} objects/s wall, "
              f"{len(raws) / (time.process_time() - c0):.0f} per CPU-second")
    print(f"load average at the end: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    print(json.dumps({"studies": a.studies, "senders": a.senders, "parts": a.parts,
                      "processes": a.processes}))


if __name__ == "__main__":
    main()
