"""Read a whole topic back in a test, up to its end offsets."""

from __future__ import annotations

import time

from kafka import KafkaConsumer, TopicPartition


def read_topic(bootstrap: str, topic: str, timeout: float = 60) -> list[bytes]:
    """Every record of the topic. Read up to its end offsets: a loaded machine can take
    seconds to hand out the first fetch, so no idle timeout decides when to stop."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, auto_offset_reset="earliest",
                             enable_auto_commit=False)
    try:
        partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic)]
        consumer.assign(partitions)
        end = consumer.end_offsets(partitions)
        values: list[bytes] = []
        deadline = time.monotonic() + timeout
        while any(consumer.position(tp) < end[tp] for tp in partitions):
            assert time.monotonic() < deadline, f"{topic} was not read to its end"
            for batch in consumer.poll(timeout_ms=1000).values():
                values += [m.value for m in batch]
        return values
    finally:
        consumer.close()
