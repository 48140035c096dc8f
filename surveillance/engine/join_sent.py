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
join table's changelog (key `engine.join.sent_key`, after that partition's join state, in
the same write): the cases the batch emitted from that partition as they were sent (key,
value, headers) and the partition's clocks at the batch's end. It replaces the one the
partition had: the changelog is compacted (`topics create`), so it holds one such record
per partition, kept as long as the state. A worker assigned the partition (a restart, a
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


def encode(cases: list[Produce], clock: Mapping[str, Any]) -> dict[str, Any]:
    """The changelog value for a partition's cases of one batch and its clocks' state."""
    return {"clock": clock, "cases": [
        [c.key.decode(), c.value.decode(),
         {k: v.decode() for k, v in c.headers.items()} if c.headers else {}]
        for c in cases]}


def decode(value: Mapping[str, Any]) -> tuple[list[Produce], Mapping[str, Any]]:
    """The cases (to send again, as they were sent) and the clocks' state of `value`."""
    cases = [Produce(CASES_ADJUDICATED, key.encode(), body.encode(),
                     headers={k: v.encode() for k, v in headers.items()})
             for key, body, headers in value["cases"]]
    return cases, value["clock"]
