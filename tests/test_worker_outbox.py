"""The worker's own producer (`stream.outbox`) on the real embedded broker.

What Faust's producer gave the worker, it must give too: a record keyed without a
partition lands where Kafka's default partitioner puts it (kafka-python's, an independent
implementation, is the oracle: the case stage reads `cases.adjudicated` by tool key, and
the store writer and any Kafka client agree on that placement); explicit partitions,
headers and tombstones (a deleted table key) arrive as sent, in order; the offsets it
reports are those of the records on the broker.
"""

from __future__ import annotations

import uuid

import pytest
from kafka.partitioner import murmur2

from surveillance.embedded import EmbeddedBroker
from surveillance.stream.outbox import Outbox, OutboxError, Outgoing
from surveillance.stream.topics import TopicSpec, create_topics
from tests.topic_read import read_records, read_topic

pytestmark = pytest.mark.integration
PARTITIONS = 4


async def test_records_land_where_kafka_places_them_with_their_headers_and_offsets(
    broker: EmbeddedBroker,
) -> None:
    topic = f"outbox-{uuid.uuid4().hex[:8]}"
    create_topics(broker.bootstrap, [TopicSpec(topic, PARTITIONS)])
    keys = [f"tool-{i}".encode() for i in range(12)] + ["ünïcode-Ø".encode(), b"", b"\x00\xff"]
    records = [Outgoing(topic, k, b'{"n": %d}' % i, headers={"src": b"%d" % i})
               for i, k in enumerate(keys)]
    records += [Outgoing(topic, b"pinned", b"x" * 1000, partition=2),
                Outgoing(topic, b'"deleted-key"', None, partition=3)]  # a tombstone
    outbox = await Outbox({"bootstrap_servers": broker.bootstrap}).start()
    try:
        last = await outbox.send(records)
        last_again = await outbox.send(records[:3])
    finally:
        await outbox.stop()

    got = read_records(broker.bootstrap, [topic])
    assert len(got) == len(records) + 3
    first = {(m.key, m.value): m for m in reversed(got)}  # the first copy of each
    for r in records:
        m = first[r.key, r.value]
        # kafka-python's default partitioner for a keyed record (its `DefaultPartitioner`).
        want = r.partition if r.partition is not None else (
            (murmur2(r.key) & 0x7FFFFFFF) % PARTITIONS)
        assert m.partition == want, (r.key, m.partition, want)
        assert dict(m.headers) == dict(r.headers or {})
    per_partition: dict[int, list[int]] = {}
    for m in got:
        per_partition.setdefault(m.partition, []).append(m.offset)
    # The first send's offsets, then the second's: each the highest written by it.
    second = {(topic, p) for p in {first[r.key, r.value].partition for r in records[:3]}}
    assert set(last_again) == second
    for (t, p), offset in last_again.items():
        assert t == topic and offset == max(per_partition[p])
    for (_, p), offset in last.items():
        assert offset == max(per_partition[p]) - sum(
            1 for r in records[:3] if first[r.key, r.value].partition == p)
    # Within a partition the records keep the order they were given in.
    order = {r.value: i for i, r in enumerate(records)}
    for p in per_partition:
        seen = [order[m.value] for m in sorted(got, key=lambda m: m.offset)
                if m.partition == p and m.offset <= last.get((topic, p), -1)]
        assert seen == sorted(seen)


async def test_sending_before_start_is_an_error() -> None:
    with pytest.raises(OutboxError, match="not started"):
        await Outbox({"bootstrap_servers": "127.0.0.1:1"}).send(
            [Outgoing("t", b"k", b"v", partition=0)])


async def test_the_outputs_are_written_only_once_the_state_is_acknowledged(
    broker: EmbeddedBroker,
) -> None:
    """A send whose changelog records fail writes none of its outputs: outputs on the
    broker whose state is not would be re-emitted from older state after a restart."""
    outputs, state = (f"outbox-{name}-{uuid.uuid4().hex[:8]}" for name in ("out", "state"))
    create_topics(broker.bootstrap, [TopicSpec(outputs, PARTITIONS), TopicSpec(state, 1)])
    outbox = await Outbox({"bootstrap_servers": broker.bootstrap}).start()
    try:
        with pytest.raises(AssertionError, match="partition"):  # aiokafka: no such partition
            await outbox.send([Outgoing(state, b'"k"', b'{"done": 1}', partition=3)],
                              then=[Outgoing(outputs, b"k", b"lost", partition=1)])
        last = await outbox.send([Outgoing(state, b'"k"', b'{"done": 2}', partition=0)],
                                 then=[Outgoing(outputs, b"k", b"kept", partition=1)])
    finally:
        await outbox.stop()
    assert read_topic(broker.bootstrap, outputs) == [b"kept"]
    assert read_topic(broker.bootstrap, state) == [b'{"done": 2}']
    assert last == {(outputs, 1): 0, (state, 0): 0}
