"""The embedded broker's log-end quirk, and the probe that corrects it for Faust recovery."""

from __future__ import annotations

import asyncio

from aiokafka import AIOKafkaConsumer, TopicPartition
from kafka import KafkaProducer

from surveillance.embedded import EmbeddedBroker
from surveillance.embedded.log_end import _original, probe_log_end
from surveillance.stream.topics import TopicSpec, create_topics


def test_probe_finds_the_true_log_end_where_list_offsets_undercounts(
    broker: EmbeddedBroker,
) -> None:
    create_topics(broker.bootstrap, [TopicSpec("log-end-probe", 3)])
    # A long linger: records leave only on flush(), so each flush is exactly one batch.
    producer = KafkaProducer(bootstrap_servers=broker.bootstrap, linger_ms=60_000)
    for _ in range(5):  # partition 0: five batches of one record
        producer.send("log-end-probe", partition=0, value=b"x")
        producer.flush()
    for _ in range(2):  # partition 1: two batches of three records
        for _ in range(3):
            producer.send("log-end-probe", partition=1, value=b"y")
        producer.flush()
    producer.close()
    tps = [TopicPartition("log-end-probe", p) for p in range(3)]

    async def ends() -> tuple[dict[TopicPartition, int], dict[TopicPartition, int]]:
        consumer = AIOKafkaConsumer(bootstrap_servers=broker.bootstrap)
        await consumer.start()
        try:
            reported = await _original(consumer, tps)
        finally:
            await consumer.stop()
        return reported, await probe_log_end(broker.bootstrap, reported)

    reported, probed = asyncio.run(ends())
    # What the broker says: last batch's base offset + 1 (the quirk this module exists for).
    assert [reported[tp] for tp in tps] == [5, 4, 0]
    assert [probed[tp] for tp in tps] == [5, 6, 0]
