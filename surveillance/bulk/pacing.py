"""The bulk runner's input records taken in one event-time order (`bulk.order`), with the
consumer paced to it: the aiokafka side of `EventTimeMerge`."""

from __future__ import annotations

from aiokafka import AIOKafkaConsumer, TopicPartition

from surveillance.bulk.order import EventTimeMerge
from surveillance.engine.records import Record


class PacedInputs:
    """What a fetch brought, in the merge's order; input partitions a batch's worth ahead
    are paused so the fetches go to those behind in event time."""

    def __init__(self, consumer: AIOKafkaConsumer, inputs: tuple[str, ...],
                 max_records: int) -> None:
        self.consumer = consumer
        self.max_records = max_records
        self.merge = EventTimeMerge(inputs)
        self.inputs = [tp for tp in consumer.assignment() if tp.topic in inputs]
        self.paused: set[TopicPartition] = set()

    def __len__(self) -> int:
        """Input records fetched and held for their turn."""
        return len(self.merge)

    async def take(self, fetched: list[Record]) -> list[Record]:
        """The records that may go now: other topics' at once, inputs in event time."""
        records = self.merge.add(fetched)
        if len(self.merge):
            records += self.merge.release(await self._open())
        self._pace()
        return records

    async def _open(self) -> set[tuple[str, int]]:
        """The input partitions that may hold records not fetched yet: not read to the end
        a fetch reported (or not fetched at all yet)."""
        out = set()
        for tp in self.inputs:
            high = self.consumer.highwater(tp)
            if high is None or await self.consumer.position(tp) < high:
                out.add((tp.topic, tp.partition))
        return out

    def _pace(self) -> None:
        """Pause the input partitions that hold a batch's worth of records waiting for
        their turn (the others are behind in event time: the fetches go to them), resume
        the rest. A paused partition's prefetched records are dropped by the consumer and
        fetched again from its position on resuming."""
        now = {tp for tp in self.inputs
               if self.merge.held((tp.topic, tp.partition)) >= self.max_records}
        if now - self.paused:
            self.consumer.pause(*(now - self.paused))
        if self.paused - now:
            self.consumer.resume(*(self.paused - now))
        self.paused = now
