"""A case partition's last alerts, saved with its state: a worker killed between a batch's
two writes loses no alert (pure).

The live worker's case agent writes a batch's table changes first (case records, horizon
summaries, the tools' snapshots), its records (alerts, `snapshots.published`) once those
are acknowledged (`stream.outbox`). Killed between the two, the batch's state is on the
log and its records are not; the restart reads the batch's cases again, finds each in the
case table at its revision (not newer: dropped) and its tools in their snapshots as the
batch left them, so nothing raises the batch's alerts or publishes its evaluated days
again (`tests/test_worker_case_crash.py`).

So, as the join does for its cases (`engine.join_sent`), a batch that raised alerts or
published days of a `cases.adjudicated` partition writes one more record, to the changelog
partition of that partition's snapshot table (key `sent_key`, after the snapshots, in the
same write): those records as they were sent. The next batch that takes a record of the
partition deletes it (its first write comes after this batch's records were acknowledged:
the outbox writes sends one at a time, in order), so the changelog (compacted) holds at
most one batch's records per partition (in parts of at most `PART_BYTES`). The next owner
of the partition (`CaseStage.rebuild`, a restart or a rebalance) sends them again before
anything else, and keeps them saved (`keep_sent`) until a write of its own replaces them.

Sending them again is idempotent: an alert's id is a hash of what it says (tool, version,
kind, day...), a published day's id likewise, and the store writer inserts both with
`ON CONFLICT DO NOTHING` (`store.batch`), so one that had reached the broker is stored
once; Alertmanager is fed by Prometheus rules over the worker's metrics, not by these
records. The dead letters a batch makes are not saved: the re-read makes them again.

A tool's key is never `~...`, so these keys are not snapshots (`CaseSnapshots.load` reads
a tool's key). The bulk runner (which sends its records first) sends a saved one again if
it finds one (a backfill taking over from a killed worker), then deletes it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from surveillance.engine.records import Produce
from surveillance.stream.topics import ALERTS, SNAPSHOTS

#: The key prefix of a case partition's saved records in the snapshot table.
SENT_KEY_PREFIX = "~sent:"
#: The records' bytes at most in one changelog record (a broker takes a record of at most
#: 1 MiB by default, `message.max.bytes`): more go in parts.
PART_BYTES = 256 * 1024
#: The topics of the case stage's records that a re-read cannot make again.
SAVED_TOPICS = frozenset((ALERTS, SNAPSHOTS))


def sent_key(partition: int, part: int = 0) -> str:
    return f"{SENT_KEY_PREFIX}{partition}" + (f"/{part}" if part else "")


def is_sent_key(key: str) -> bool:
    return key.startswith(SENT_KEY_PREFIX)


def records(partition: int, sent: list[Produce]) -> list[tuple[str, dict[str, Any]]]:
    """The snapshot-table records (key, value) of a partition's saved records: the parts
    after the first, then the first (with the number of parts)."""
    parts: list[list[list[Any]]] = [[]]
    size = 0
    for r in sent:
        if size >= PART_BYTES:
            parts.append([])
            size = 0
        parts[-1].append([r.topic, r.key.decode(), r.value.decode()])
        size += len(r.value) + len(r.key) + 40
    out: list[tuple[str, dict[str, Any]]] = [
        (sent_key(partition, i), {"sent": part}) for i, part in enumerate(parts) if i]
    out.append((sent_key(partition), {"sent": parts[0], "parts": len(parts)}))
    return out


def keys(backing: Mapping[str, Any], partition: int) -> list[str]:
    """The keys a partition's saved records are kept under (none: none saved)."""
    first = backing.get(sent_key(partition))
    if not first:
        return []
    return [sent_key(partition, i) for i in range(int(first.get("parts", 1)))]


def saved(backing: Mapping[str, Any], partition: int) -> list[Produce]:
    """The partition's saved records, to send again as they were sent (a part missing:
    the others)."""
    out = []
    for key in keys(backing, partition):
        for topic, k, value in (backing.get(key) or {}).get("sent", ()):
            out.append(Produce(topic, k.encode(), value.encode()))
    return out
