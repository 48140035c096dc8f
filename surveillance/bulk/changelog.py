"""The Faust tables' changelog topics, written and read without Faust.

A Faust table `name` of app `app_id` persists to `<app_id>-<name>-changelog`, one
partition per table partition, key and value JSON-encoded (the table's default codec),
a deletion as a record without value. Writing the same records lets a Faust worker
started later recover exactly the state a bulk run left; reading them lets a restarted
bulk run continue from it. msgspec writes and reads that JSON here (5x faster than the
json module, same values: table values hold no non-finite float, which msgspec would
write as null; `stream.internal` refuses them on input).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Collection, Iterable, Mapping
from typing import Any

import msgspec
from aiokafka import AIOKafkaConsumer, TopicPartition

from surveillance.bulk.batches import BatchSender
from surveillance.engine.pipeline import ADVERSE_TABLE, CASE_SNAPSHOTS, CASE_TABLE, JOIN_TABLE
from surveillance.engine.records import Change

#: In the order `Engine` takes their backings.
TABLES = (JOIN_TABLE, CASE_TABLE, ADVERSE_TABLE, CASE_SNAPSHOTS)
_ENCODE = msgspec.json.Encoder().encode
_DECODE = msgspec.json.Decoder().decode
#: How long a fetch may wait at the broker for records. Short: the embedded broker
#: (Tansu 0.6) answers a fetch only when this runs out, even once records have come (a
#: 500 ms wait, the client's default, delayed every hand-over between the runner
#: processes by up to half a second); Apache Kafka answers as soon as records come, so
#: this costs it only more empty fetches while a runner is idle.
FETCH_MAX_WAIT_MS = 20


def topic(app_id: str, table: str) -> str:
    return f"{app_id}-{table}-changelog"


def encode(key: str, value: Any) -> tuple[bytes, bytes | None]:
    """A table key and value (a dict, or a msgspec struct: the same JSON) as their
    changelog record's key and value."""
    return _ENCODE(key), None if value is None else _ENCODE(value)


#: Told of each change a table's changelog makes, in log order: key, before, after.
Watch = Callable[[str, Any, Any], None]


async def write(sender: BatchSender, app_id: str,
                changes: list[Change]) -> list[asyncio.Future[Any]]:
    """Table changes to their changelogs, the case snapshots only once the rest are
    acknowledged: a snapshot on the log with some of the case-table changes it was taken
    after lost (a kill between the sends) would match no state of the table, and its
    tools would be replayed (`engine.rewind.Rewind` finds the table as a snapshot saw it
    only if that state was on the log). Their acknowledgements, not awaited."""
    rest = [c for c in changes if c.table != CASE_SNAPSHOTS]
    snapshots = [c for c in changes if c.table == CASE_SNAPSHOTS]
    for change in rest:
        await sender.add(topic(app_id, change.table), *encode(change.key, change.value),
                         change.partition)
    sent = await sender.send_all()
    if snapshots:
        await asyncio.gather(*sent)
        for change in snapshots:
            await sender.add(topic(app_id, change.table), *encode(change.key, change.value),
                             change.partition)
        sent += await sender.send_all()
    return sent


def apply(tables: dict[str, dict[str, Any]], table: str,
          records: Iterable[tuple[bytes | None, bytes | None]],
          watch: Watch | None = None) -> None:
    """Fold changelog records (key, value) into `tables[table]`, in log order."""
    state = tables[table]
    for raw_key, raw_value in records:
        if raw_key is None:
            continue
        key = _DECODE(raw_key)
        value = None if raw_value is None else _DECODE(raw_value)
        if watch is not None:
            watch(key, state.get(key), value)
        if value is None:
            state.pop(key, None)
        else:
            state[key] = value


async def restore(consumer_options: dict[str, Any], app_id: str, partitions: int,
                  owned: Mapping[str, Collection[int]] | None = None,
                  watch: Mapping[str, Watch] | None = None) -> dict[str, dict[str, Any]]:
    """Every table's state: its changelog read from the beginning to its end now (only
    the partitions `owned` of each table, when given; `watch`: per table, told of each
    change)."""
    tables: dict[str, dict[str, Any]] = {t: {} for t in TABLES}
    tps = {TopicPartition(topic(app_id, t), p): t for t in TABLES
           for p in (range(partitions) if owned is None else sorted(owned[t]))}
    if not tps:
        return tables
    consumer = AIOKafkaConsumer(enable_auto_commit=False, group_id=None,
                                fetch_max_wait_ms=FETCH_MAX_WAIT_MS, **consumer_options)
    await consumer.start()
    try:
        # The ends before the assignment: once assigned, the consumer's fetches start,
        # and a broker that answers one connection's requests in order (the embedded
        # one) holds the offsets request behind a fetch waiting on an empty partition.
        ends = await consumer.end_offsets(list(tps))
        todo = {tp for tp in tps if ends[tp] > 0}
        consumer.assign(list(tps))
        await consumer.seek_to_beginning(*tps)
        while todo:
            batch = await consumer.getmany(*todo, timeout_ms=1000, max_records=10_000)
            for tp, messages in batch.items():
                apply(tables, tps[tp], ((m.key, m.value) for m in messages),
                      (watch or {}).get(tps[tp]))
            todo = {tp for tp in todo if await consumer.position(tp) < ends[tp]}
    finally:
        await consumer.stop()
    return tables
