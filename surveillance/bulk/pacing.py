"""The bulk runner's input records taken in one event-time order (`bulk.order`), with the
consumer paced to it: the aiokafka side of `EventTimeMerge`."""

from __future__ import annotations

from typing import Any

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

    async def fetch(self, timeout_ms: int) -> dict[TopicPartition, list[Any]]:
        """The next fetch. While the merge waits on input partitions that hold nothing
        (and may hold records not fetched yet), their records first, an even share each,
        waiting up to `timeout_ms` for them if none is here yet: a consumer hands over what
        it fetched a partition at a time, so the partitions fetched first would otherwise
        fill the batches (and the merge) until the last one came, the release waiting (at
        the start of the 365-day benchmark backlog the join decoded ~42,000 records before
        its first release, the case stage idle). The share is a batch's per input
        partition: what the merge can release is bounded by the partition it holds least
        of, so more of one would only wait."""
        open_ = await self._open()
        waiting = [tp for tp in self.inputs if tp not in self.paused
                   and (tp.topic, tp.partition) in open_
                   and not self.merge.held((tp.topic, tp.partition))]
        if waiting:
            share = max(self.max_records // len(self.inputs), 1)
            out: dict[TopicPartition, list[Any]] = {}
            for tp in waiting:
                out.update(await self.consumer.getmany(tp, timeout_ms=0, max_records=share))
            if not out:
                out = await self.consumer.getmany(*waiting, timeout_ms=timeout_ms,
                                                  max_records=share)
            if out:
                return out
        fetched: dict[TopicPartition, list[Any]] = await self.consumer.getmany(
            timeout_ms=timeout_ms, max_records=self.max_records)
        return fetched

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
