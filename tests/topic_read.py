"""Read whole topics back in a test, up to their log ends.

Neither an idle timeout nor the broker's reported end offsets decide when to stop:
- a loaded machine can take seconds to hand out the first fetch, so `consumer_timeout_ms`
  ended reads early (none, or some of the partitions);
- the embedded broker (Tansu 0.6) answers ListOffsets(latest) with the base offset of a
  partition's last record batch plus one (`surveillance.embedded.log_end`): a partition
  holding one batch of 1,200 records reports 1, and a read that stops there returns the
  first poll's 500.
What ends the read is each partition's high watermark, which every fetch response carries:
the read goes on until every partition has answered a fetch and is read up to it. The
`timeout` only bounds a hang.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

from kafka import KafkaConsumer, TopicPartition
from kafka.consumer.fetcher import ConsumerRecord


def read_records(bootstrap: str, topics: Iterable[str], timeout: float = 120,
                 **client_options: Any) -> list[ConsumerRecord]:
    """Every record of `topics` (a topic that does not exist has none), in offset order
    within each partition."""
    names = sorted(set(topics))
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                             **client_options)
    try:
        partitions = [TopicPartition(topic, p) for topic in names
                      for p in sorted(consumer.partitions_for_topic(topic) or ())]
        if not partitions:
            return []
        consumer.assign(partitions)
        consumer.seek_to_beginning(*partitions)
        records: list[ConsumerRecord] = []
        deadline = time.monotonic() + timeout
        while any((high := consumer.highwater(tp)) is None or consumer.position(tp) < high
                  for tp in partitions):
            assert time.monotonic() < deadline, f"{names} not read to the end"
            for batch in consumer.poll(timeout_ms=1000).values():
                records += batch
        return records
    finally:
        consumer.close()


def read_topic(bootstrap: str, topic: str, timeout: float = 120,
               **client_options: Any) -> list[bytes]:
    """Every record value of the topic."""
    return [r.value for r in read_records(bootstrap, [topic], timeout, **client_options)]
