"""A bulk runner's start: its tables from the changelogs, the case table rewound to each
tool's snapshot (`engine.rewind`), and the `cases.adjudicated` partitions to read again.

The snapshots are restored first; the case table's changelog is then followed by a
`Rewind` while it is restored. Once the consumer is up, the log start of each owned
`cases.adjudicated` partition says which rewinds can be read again (retention may have
removed the offsets a snapshot points at); those are applied, and each rewound partition
is sought back to the earliest of its tools' snapshot offsets (or left at its committed
offset, if earlier).
"""

from __future__ import annotations

from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition

from surveillance.bulk import changelog
from surveillance.bulk.ownership import Ownership
from surveillance.engine.pipeline import ADVERSE_TABLE, CASE_SNAPSHOTS, CASE_TABLE, JOIN_TABLE
from surveillance.engine.rewind import Rewind
from surveillance.stream import topics


async def restore(client: dict[str, Any], app_id: str, partitions: int, owned: Ownership
                  ) -> tuple[dict[str, dict[str, Any]], Rewind]:
    """The owned partitions of every table from its changelog, and the case table's history
    followed (`Rewind.change`), not yet applied (`reread`)."""
    none: tuple[int, ...] = ()
    snapshots = (await changelog.restore(
        client, app_id, partitions,
        {JOIN_TABLE: none, CASE_TABLE: none, ADVERSE_TABLE: none,
         CASE_SNAPSHOTS: owned.cases}))[CASE_SNAPSHOTS]
    rewind = Rewind(snapshots)
    tables = await changelog.restore(
        client, app_id, partitions,
        {JOIN_TABLE: owned.join, CASE_TABLE: owned.cases, ADVERSE_TABLE: owned.cases,
         CASE_SNAPSHOTS: none}, watch={CASE_TABLE: rewind.change})
    tables[CASE_SNAPSHOTS] = snapshots
    return tables, rewind


async def reread(consumer: AIOKafkaConsumer, owned: Ownership, rewind: Rewind,
                 tables: dict[str, dict[str, Any]]) -> dict[int, tuple[int, int]]:
    """The case table put back as each tool's snapshot saw it, where the offset to read
    again from is still on the log; each rewound partition sought back. Per partition read
    again: (the offset it is read from, its end now), for `CaseSnapshots.reread`."""
    cases = [TopicPartition(topics.CASES_ADJUDICATED, p) for p in owned.cases]
    log_starts = await consumer.beginning_offsets(cases) if cases else {}
    undo, seek = rewind.undo({tp.partition: offset for tp, offset in log_starts.items()})
    table = tables[CASE_TABLE]
    for key, value in undo.items():
        if value is None:
            table.pop(key, None)
        else:
            table[key] = value
    again = [TopicPartition(topics.CASES_ADJUDICATED, p) for p in seek]
    ends = await consumer.end_offsets(again) if again else {}
    out = {}
    for tp in again:
        start = seek[tp.partition]
        committed = await consumer.committed(tp)
        if committed is None or start < committed:
            consumer.seek(tp, start)
        else:
            start = committed
        out[tp.partition] = (start, ends[tp])
    return out
