"""`hl7 import` with several parsing processes, at a size where chunks overlap.

12,400 messages in 3 files (chunks of 5,000 are parsed ahead across file boundaries by 3
worker processes while earlier ones are produced): 12,000 distinct reports, 300 resent
later (some in a later file), 100 malformed. Every report is on the topic exactly once,
in file order per accession key, every malformed message dead-lettered once; a re-run
writes nothing; a run resumed from a checkpoint left mid-file writes exactly the rest.
About 20 s.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import random
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from surveillance.embedded import EmbeddedBroker
from surveillance.interop.hl7_header import event_id, header_of
from surveillance.interop.hl7_import import Checkpoint, ImportSummary, import_files
from surveillance.interop.hl7_mapping import Mapping
from surveillance.interop.hl7_sink import ReportSink
from surveillance.stream.topics import REPORTS_FINAL, TopicSpec, create_topics, dlq
from tests.test_mllp_listener import malformed, report

pytestmark = pytest.mark.integration

BASE = 200_000  # control ids no other test writes


def _history() -> tuple[list[list[bytes]], list[bytes]]:
    rng = random.Random(7)
    distinct = [report(BASE + i) for i in range(12_000)]
    # Malformed ones that start with MSH: in a batch file a line that does not is a
    # segment of the message before it (`split_batch`).
    stream = distinct + [malformed(4 * k + 1 + k % 3) for k in range(100)]
    rng.shuffle(stream)
    for _ in range(300):  # a resend of a report comes after its original
        original = rng.randrange(len(stream))
        while b"BAD" in stream[original]:
            original = rng.randrange(len(stream))
        stream.insert(rng.randrange(original + 1, len(stream) + 1), stream[original])
    cuts = [0, 5_500, 9_000, len(stream)]  # chunk and file boundaries do not line up
    return [stream[a:b] for a, b in itertools.pairwise(cuts)], distinct


async def _import(directory: Path, bootstrap: str, workers: int) -> ImportSummary:
    sink = await ReportSink(bootstrap).start()
    try:
        return await import_files(sorted(directory.glob("*.hl7")), sink, Mapping(),
                                  Checkpoint(directory / "ckpt.json"), workers=workers)
    finally:
        await sink.stop()


def _read_all(bootstrap: str, topic: str) -> list[bytes]:
    """Every record, read through a marker written last (the marker left out). Not up to
    the reported end offsets as `read_topic` does: after many back-to-back record batches
    the embedded broker (Tansu 0.6) was seen reporting a latest offset ~100 records short
    of what a fetch returns, which would hide the last batch from this check."""
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all")
    marker = json.dumps({"event_id": f"marker-{uuid.uuid4()}"}).encode()
    try:
        sent = producer.send(topic, marker, partition=0).get(timeout=60)
    finally:
        producer.close()
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, auto_offset_reset="earliest",
                             enable_auto_commit=False)
    partition = TopicPartition(topic, 0)
    consumer.assign([partition])
    values: list[bytes] = []
    deadline = time.monotonic() + 120
    try:
        while consumer.position(partition) <= sent.offset:
            assert time.monotonic() < deadline, f"{topic} was not read to the marker"
            for batch in consumer.poll(timeout_ms=1000).values():
                values += [m.value for m in batch]
    finally:
        consumer.close()
    return [v for v in values if not v.startswith(b'{"event_id": "marker-')]


def _ours(bootstrap: str, ids: set[str]) -> list[str]:
    return [e for v in _read_all(bootstrap, REPORTS_FINAL)
            if (e := json.loads(v)["event_id"]) in ids]


@pytest.fixture
def own_broker() -> Iterator[EmbeddedBroker]:
    """A broker of its own: `_read_all` writes markers no other test expects."""
    with EmbeddedBroker() as broker:
        yield broker


async def test_three_workers_import_exactly_once_and_resume(
        own_broker: EmbeddedBroker, tmp_path: Path) -> None:
    broker = own_broker
    create_topics(broker.bootstrap, [TopicSpec(REPORTS_FINAL, 1), TopicSpec(dlq(REPORTS_FINAL), 1)])
    files, distinct = _history()
    reports = set(distinct)
    for n, messages in enumerate(files):
        (tmp_path / f"{2019 + n}.hl7").write_bytes(b"".join(messages))
    ids = {event_id(header_of(m), 1) for m in distinct}
    letters_before = len(_read_all(broker.bootstrap, dlq(REPORTS_FINAL)))

    summary = await _import(tmp_path, broker.bootstrap, workers=3)
    assert (summary.messages, summary.accepted, summary.duplicates,
            sum(summary.rejected.values())) == (12_400, 12_000, 300, 100)
    written = _ours(broker.bootstrap, ids)
    assert Counter(written) == Counter(dict.fromkeys(ids, 1))  # each once, none missing
    # In file order (one partition: the topic's order is the order of production).
    order = [event_id(header_of(m), 1) for f in files for m in f if m in reports]
    assert written == list(dict.fromkeys(order))
    letters = _read_all(broker.bootstrap, dlq(REPORTS_FINAL))[letters_before:]
    assert len(letters) == 100

    again = await _import(tmp_path, broker.bootstrap, workers=3)
    assert (again.already_imported, again.accepted) == (12_400, 0)
    assert len(_ours(broker.bootstrap, ids)) == 12_000

    # A run killed after the broker confirmed the first 2,000 messages of a file.
    resumed = tmp_path / "resumed"
    resumed.mkdir()
    second = [m.replace(b"ORU^R01|C", b"ORU^R01|R") for m in files[1]]  # new events
    (resumed / "2020.hl7").write_bytes(b"".join(second))
    digest = hashlib.sha256((resumed / "2020.hl7").read_bytes()).hexdigest()
    (resumed / "ckpt.json").write_text(json.dumps({digest: 2_000}))
    rest = {event_id(header_of(m), 1) for m in second[2_000:] if b"BAD" not in m}
    before = {event_id(header_of(m), 1) for m in second if b"BAD" not in m}
    summary = await _import(resumed, broker.bootstrap, workers=2)
    assert summary.already_imported == 2_000
    on_topic = Counter(e for v in _read_all(broker.bootstrap, REPORTS_FINAL)
                       if (e := json.loads(v)["event_id"]) in before)
    assert on_topic == Counter(dict.fromkeys(rest, 1))  # the rest, once; nothing before
