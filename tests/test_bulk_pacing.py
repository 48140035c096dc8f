"""The bulk runner's fetches while its event-time merge waits (`bulk.pacing.PacedInputs`),
on a real broker.

The merge releases nothing until every input partition that may still hold records holds
one (`bulk.order`). A consumer hands over what it fetched a partition at a time, up to
`max_records`: taken as it comes, the first partitions' whole fetches (up to 1 MiB each)
were decoded and held before the last partition's first record came, and the case stage
waited for all of them (at the start of the 365-day benchmark backlog, ~42,000 records).
The waiting partitions' records are fetched first, an even share each, so the first
release comes within two batches.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from surveillance.bulk import order
from surveillance.bulk.pacing import PacedInputs
from surveillance.bulk.runner import INPUTS, PARTITION_FETCH_BYTES
from surveillance.embedded import EmbeddedBroker
from surveillance.engine.records import Record
from surveillance.simulate import Scenario, simulate
from surveillance.stream.produce import produce
from surveillance.stream.topics import TopicSpec, create_topics

pytestmark = pytest.mark.integration

PARTITIONS = 4
MAX_RECORDS = 1_000


async def _until_first_release(bootstrap: str) -> tuple[int, list[Record], dict[int, int],
                                                        list[int]]:
    """Records fetched until the merge released any; the released ones; the fetched
    records by partition index (topic rank * PARTITIONS + partition); each partition's
    log end."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                                auto_offset_reset="earliest",
                                max_partition_fetch_bytes=PARTITION_FETCH_BYTES)
    await consumer.start()
    try:
        consumer.assign([TopicPartition(t, p) for t in INPUTS for p in range(PARTITIONS)])
        paced = PacedInputs(consumer, INPUTS, MAX_RECORDS)
        fetched, by_partition = 0, dict.fromkeys(range(len(INPUTS) * PARTITIONS), 0)
        for _ in range(200):
            batch = await paced.fetch(500)
            records = [Record(m.topic, m.partition, m.offset, m.key, m.value, (),
                              order.decoded(m.topic, m.value))
                       for messages in batch.values() for m in messages]
            fetched += len(records)
            for r in records:
                by_partition[INPUTS.index(r.topic) * PARTITIONS + r.partition] += 1
            released = await paced.take(records)
            if released:
                ends = [consumer.highwater(tp) or 0 for tp in paced.inputs]
                return fetched, released, by_partition, ends
        raise AssertionError(f"nothing released after {fetched} records")
    finally:
        await consumer.stop()


def test_the_first_release_comes_within_two_batches_not_after_every_partitions_fetch(
        tmp_path: Path) -> None:
    events, _ = simulate(days=20, seed=5, scenario=Scenario())
    inputs = [(e.topic, e.key, e.value) for e in events if e.topic in INPUTS]
    with EmbeddedBroker(log_dir=tmp_path) as broker:
        create_topics(broker.bootstrap, [TopicSpec(t, PARTITIONS) for t in INPUTS])
        produce(broker.bootstrap, inputs)
        fetched, released, by_partition, ends = asyncio.run(
            _until_first_release(broker.bootstrap))
    # Not vacuous: taken as they come (each partition's fetch whole, one after another),
    # every partition but the last one taken goes before that one's first record: at
    # least all of them but the largest.
    assert len(ends) == len(INPUTS) * PARTITIONS and sum(ends) == len(inputs)
    assert sum(ends) - max(ends) > 4 * MAX_RECORDS, ends
    assert fetched <= MAX_RECORDS, by_partition
    assert all(n > 0 for n in by_partition.values()), by_partition
    # What went is each partition's first records, in offset order.
    offsets: dict[tuple[str, int], list[int]] = {}
    for r in released:
        offsets.setdefault((r.topic, r.partition), []).append(r.offset)
    assert all(o == list(range(len(o))) for o in offsets.values()), offsets
    assert 0 < len(released) <= fetched
