"""The case table's changelog read for a rewind (`stream.case_rewind`) in bounded memory.

`engine.rewind.Rewind` follows each tool's digest through the changelog, and needs of a
case record only its tool, partition and revision; the values it puts back are the few
the crashed batches changed. Folding the changelog into a table of decoded records (the
bulk runner's `bulk.changelog.restore`, whose tables are in memory anyway) would hold
every owned record in full: ~5.3 kB each, ~11 GiB for a 2M-exam/yr system's 2.2 million.
Here a record is read as a `Held` (its three fields and its offset, ~200 bytes with its
key), and the values to put back are then read again at their offsets (`values`). The
horizon's summary records (one per partition, a few kB) are kept whole: `Rewind` reads
their evicted counts.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any

import msgspec
from aiokafka import AIOKafkaConsumer, TopicPartition

from surveillance.bulk import changelog
from surveillance.engine.horizon import is_summary
from surveillance.engine.pipeline import CASE_TABLE

_KEY = msgspec.json.Decoder(str).decode
_VALUE = msgspec.json.Decoder().decode


class _Fields(msgspec.Struct):
    """The fields of a case record `Rewind` reads (the rest, its features, skipped)."""

    tool: str
    partition: int
    revision: int


_FIELDS = msgspec.json.Decoder(_Fields).decode


class Held:
    """A case record as `Rewind` sees it (`held["tool"]`...), and the offset of the
    changelog record that wrote it, where its whole value is read again (`values`)."""

    __slots__ = ("offset", "partition", "revision", "tool")

    def __init__(self, tool: str, partition: int, revision: int, offset: int) -> None:
        self.tool = tool
        self.partition = partition
        self.revision = revision
        self.offset = offset

    def __getitem__(self, name: str) -> Any:
        return getattr(self, name)


class Follower:
    """The changelog's records in log order (`take`), each change told to `watch` with
    `Held` values (summaries whole); holds one `Held` per live key."""

    def __init__(self, watch: changelog.Watch) -> None:
        self.watch = watch
        self.state: dict[str, Any] = {}
        self._tools: dict[str, str] = {}  # one string per tool name, shared

    def take(self, offset: int, raw_key: bytes | None, raw_value: bytes | None) -> None:
        if raw_key is None:
            return
        key = _KEY(raw_key)
        after: Any
        if raw_value is None:
            after = None
        elif is_summary(key):
            after = _VALUE(raw_value)
        else:
            fields = _FIELDS(raw_value)
            tool = self._tools.setdefault(fields.tool, fields.tool)
            after = Held(tool, fields.partition, fields.revision, offset)
        self.watch(key, self.state.get(key), after)
        if after is None:
            self.state.pop(key, None)
        else:
            self.state[key] = after


def _tps(app_id: str, partitions: Collection[int]) -> dict[TopicPartition, int]:
    name = changelog.topic(app_id, CASE_TABLE)
    return {TopicPartition(name, p): p for p in sorted(partitions)}


def _consumer(options: Mapping[str, Any]) -> AIOKafkaConsumer:
    return AIOKafkaConsumer(enable_auto_commit=False, group_id=None,
                            fetch_max_wait_ms=changelog.FETCH_MAX_WAIT_MS, **options)


async def follow(options: Mapping[str, Any], app_id: str, partitions: Collection[int],
                 watch: changelog.Watch) -> None:
    """The case table's changelog `partitions` read from their start to their end now,
    each change told to `watch` in log order (per partition)."""
    tps = _tps(app_id, partitions)
    if not tps:
        return
    consumer = _consumer(options)
    await consumer.start()
    try:
        # The ends before the assignment (`bulk.changelog.restore` says why).
        ends = await consumer.end_offsets(list(tps))
        todo = {tp for tp in tps if ends[tp] > 0}
        consumer.assign(list(tps))
        await consumer.seek_to_beginning(*tps)
        follower = Follower(watch)
        while todo:
            batch = await consumer.getmany(*todo, timeout_ms=1000, max_records=10_000)
            for messages in batch.values():
                for m in messages:
                    follower.take(m.offset, m.key, m.value)
            todo = {tp for tp in todo if await consumer.position(tp) < ends[tp]}
    finally:
        await consumer.stop()


async def values(options: Mapping[str, Any], app_id: str,
                 wanted: Mapping[int, Collection[int]]) -> dict[tuple[int, int], Any]:
    """(partition, offset) -> the case-table value the changelog record there wrote, for
    the `wanted` offsets of each partition (each read from its smallest wanted offset to
    its largest)."""
    found: dict[tuple[int, int], Any] = {}
    tps = {tp: p for tp, p in _tps(app_id, wanted).items() if wanted[p]}
    if not tps:
        return found
    consumer = _consumer(options)
    await consumer.start()
    try:
        consumer.assign(list(tps))
        last = {tp: max(wanted[p]) for tp, p in tps.items()}
        for tp, p in tps.items():
            consumer.seek(tp, min(wanted[p]))
        todo = set(tps)
        while todo:
            batch = await consumer.getmany(*todo, timeout_ms=1000, max_records=10_000)
            for tp, messages in batch.items():
                p = tps[tp]
                for m in messages:
                    if m.offset in wanted[p] and m.value is not None:
                        found[p, m.offset] = _VALUE(m.value)
            todo = {tp for tp in todo if await consumer.position(tp) <= last[tp]}
    finally:
        await consumer.stop()
    return found
