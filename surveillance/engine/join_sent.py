"""A join partition's last cases, saved with its state: a worker killed between a batch's
two writes loses no case revision (pure).

The live worker writes a batch's table changelog records first, its records once those
are acknowledged (`stream.outbox` says why). Killed between the two, the batch's state is
on the log and its cases are not; its inputs were not committed, so the restart reads
them again, finds each in the join state and re-emits its case as it stands. A revision
the batch made and superseded (a case labelled, then relabelled by a correction in the
same batch) never reached the case stage; nor did one the restart supersedes (a newer
input joined first: the restart reads its uncommitted inputs in event time,
`stream.input_order`, not in the order it first read them) before it re-reads the input
that made it.

So every batch writes, per join partition it joined inputs on, one more record to the
join table's changelog (key `sent_key`, after that partition's join state, in
the same write): the cases the batch emitted from that partition as they were sent (key,
value, headers) and the partition's clocks at the batch's end. It replaces the one the
partition had: the changelog is compacted (`topics create`), so it holds one such record
per partition (in parts of at most `PART_BYTES` of cases, under the broker's record
limit), kept as long as the state. A worker assigned the partition (a restart, a
rebalance onto another worker) sends those cases again before anything else of that
partition, then joins on from the state and clocks the record goes with. The case stage
takes a revision only if it is newer than the last it took of the case, so the saved
cases that had reached it are dropped, and the lost ones reach it in the order they were
made, before any revision the restart makes. What the case stage receives is then a
function of the join's saved state, whatever order the uncommitted inputs are read in
again: those the state holds re-emit their cases as they stand (not newer: dropped), the
others join on from that state as an uninterrupted worker would have joined them there.

The record is written only by a worker that sends the state first (`JoinStage.keep_sent`,
the live worker). The bulk runner sends its records first (nothing to save) but sends a
saved one again if it finds one (a backfill taking over from a killed worker), then
deletes it: a clock saved there would be stale once the runner has moved the partition on.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from surveillance.engine.records import Produce
from surveillance.stream.topics import CASES_ADJUDICATED

#: The key prefix of a join partition's saved cases; the join skips such keys.
SENT_KEY_PREFIX = "~sent:"
#: The cases' bytes at most in one changelog record (a broker takes a record of at most
#: 1 MiB by default, `message.max.bytes`; a case is ~0.8 kB): more go in parts.
PART_BYTES = 256 * 1024


def sent_key(partition: int, part: int = 0) -> str:
    return f"{SENT_KEY_PREFIX}{partition}" + (f"/{part}" if part else "")


def records(partition: int, cases: list[Produce], clock: Mapping[str, Any]
            ) -> list[tuple[str, dict[str, Any]]]:
    """The changelog records (key, value) for a partition's cases of one batch and its
    clocks' state: the parts after the first, then the first (with the clocks and the
    number of parts), which replaces the partition's saved cases."""
    parts: list[list[list[Any]]] = [[]]
    size = 0
    for c in cases:
        if size >= PART_BYTES:
            parts.append([])
            size = 0
        parts[-1].append([c.key.decode(), c.value.decode(),
                          {k: v.decode() for k, v in c.headers.items()} if c.headers else {}])
        size += len(c.value) + 200
    out: list[tuple[str, dict[str, Any]]] = [
        (sent_key(partition, i), {"cases": part}) for i, part in enumerate(parts) if i]
    out.append((sent_key(partition), {"clock": clock, "cases": parts[0],
                                      "parts": len(parts)}))
    return out


def saved(backing: Mapping[str, Any], partition: int
          ) -> tuple[list[Produce], Mapping[str, Any], list[str]] | None:
    """The partition's saved cases (to send again, as they were sent), its clocks' state
    and the keys they are kept under; None if there are none."""
    first = backing.get(sent_key(partition))
    if not first:
        return None
    keys = [sent_key(partition, i) for i in range(first["parts"])]
    cases = []
    for key in keys:
        part = first if key == keys[0] else backing.get(key)
        for k, body, headers in (part or {}).get("cases", ()):
            cases.append(Produce(CASES_ADJUDICATED, k.encode(), body.encode(),
                                 headers={h: v.encode() for h, v in headers.items()}))
    return cases, first["clock"], keys
