"""A batch's records sent as one record batch per partition, every one acknowledged.

aiokafka's `send` costs about 9-10 µs of CPU per record (a future, a partition lookup
and an accumulator append each); building each partition's record batch here and handing
it over with `send_batch` cost 1.6-1.8 µs (40,000 records of 300 bytes on the embedded
broker, acks=all, two runs each; the wall time fell from 2.7-3.1 s to 0.6-0.7 s). A record
without a partition goes where the producer's default partitioner would put it (Kafka's:
murmur2 of the key, over the topic's partitions): `cases.adjudicated` is keyed by tool,
and a Faust worker producing afterwards must put a tool's cases on the same partition.
"""

from __future__ import annotations

import asyncio
from collections.abc import Collection, Sequence
from functools import lru_cache
from typing import Any

from aiokafka import AIOKafkaProducer

from surveillance.stream.ingest import murmur2

Headers = Sequence[tuple[str, bytes]]


@lru_cache(maxsize=4096)
def default_partition(key: bytes, partitions: int) -> int:
    """Kafka's default partitioner for a keyed record (aiokafka's and the Java client's).
    Kept per key: the records placed by key are keyed by tool (`cases.adjudicated`,
    alerts, snapshots), a few keys for every case (murmur2 in Python is 3-5 µs)."""
    return (murmur2(key) & 0x7FFFFFFF) % partitions


class BatchSender:
    def __init__(self, producer: AIOKafkaProducer) -> None:
        self.producer = producer
        self._partitions: dict[str, int] = {}
        self._open: dict[tuple[str, int], Any] = {}
        self._sent: list[asyncio.Future[Any]] = []

    async def add(self, topic: str, key: bytes | None, value: bytes | None,
                  partition: int | None = None, headers: Headers = ()) -> None:
        if partition is None:
            if key is None:
                raise ValueError(f"a record for {topic} has neither key nor partition")
            partition = default_partition(key, await self._count(topic))
        tp = (topic, partition)
        batch = self._open.get(tp)
        if batch is None:
            batch = self._open[tp] = self.producer.create_batch()
        listed = list(headers)  # the batch builder takes a list only
        if batch.append(key=key, value=value, timestamp=None, headers=listed) is not None:
            return
        await self._send(tp, batch)  # full: send it and start the next
        batch = self._open[tp] = self.producer.create_batch()
        if batch.append(key=key, value=value, timestamp=None, headers=listed) is None:
            # Larger than a whole batch: the producer's own path sends it (or refuses it).
            del self._open[tp]
            self._sent.append(await self.producer.send(topic, value, key=key,
                                                       partition=partition,
                                                       headers=listed or None))

    async def send_open(self, topics: Collection[str] | None = None) -> None:
        """Send the open batches (of `topics` only, when given) now; the next record added
        to one of their partitions starts a new batch."""
        for tp, batch in list(self._open.items()):
            if topics is None or tp[0] in topics:
                await self._send(tp, batch)
                del self._open[tp]

    async def send_all(self) -> list[asyncio.Future[Any]]:
        """Send the open batches; the acknowledgements of every record added since the
        last `send_all` or `flush`, not awaited."""
        await self.send_open()
        sent, self._sent = self._sent, []
        return sent

    async def flush(self) -> None:
        """Send the open batches; return once every record added is acknowledged."""
        await asyncio.gather(*await self.send_all())

    async def _send(self, tp: tuple[str, int], batch: Any) -> None:
        batch.close()
        self._sent.append(await self.producer.send_batch(batch, tp[0], partition=tp[1]))

    async def _count(self, topic: str) -> int:
        count = self._partitions.get(topic)
        if count is None:
            found = await self.producer.partitions_for(topic)
            count = self._partitions[topic] = len(found)
        return count
