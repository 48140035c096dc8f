"""A batch's effects applied by the worker: table writes now, then its changelog records
and its records sent through the worker's own producer (`stream.outbox`), then its metrics.

The metrics come last, once the broker has acknowledged everything the batch sends: a
batch whose sends fail is not acknowledged to Faust, so the restarted worker reads it
again and counts it then; counted before the acknowledgement, it would be counted twice.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine, Mapping
from typing import Any

from faust.types import TP

from surveillance.bulk import changelog
from surveillance.engine.records import MetricCall, Output, Produce
from surveillance.stream import effects
from surveillance.stream.outbox import Outbox, Outgoing
from surveillance.stream.table_stores import write_change


class Staging:
    """`stage(out)` per batch; `await close()` at the end. `stores` are the tables' stores
    by table name, `changelogs` their changelog topics by table name; `outbox` is started
    at the first send."""

    def __init__(self, stores: Mapping[str, Any], changelogs: Mapping[str, str],
                 outbox: Outbox) -> None:
        self._stores = dict(stores)
        self._changelogs = dict(changelogs)
        self._changelog_stores = {changelogs[name]: store for name, store in stores.items()}
        self._outbox = outbox
        self._started = False
        self._starting = asyncio.Lock()

    async def apply(self, out: Output) -> None:
        """`stage` the batch's effects and wait until the broker acknowledged its records."""
        sending = self.stage(out)
        if sending is not None:
            await sending

    def stage(self, out: Output) -> Coroutine[Any, Any, None] | None:
        """Write the batch's table changes now; return the sending of its changelog records
        and then its records through the worker's own producer (None if there are none),
        which ends once the broker acknowledged all of them (acks=all): only then does Faust
        acknowledge the batch's events. The batch's metrics are recorded then too (now if
        there is nothing to send): a batch whose sends fail is read again by the restarted
        worker, and counted once, by it.

        A table change goes into the table's store directly (Faust's `table[key] = value`
        would send its changelog record through Faust's producer, one message at a time) and
        to the changelog partition of the record that caused it, in the format Faust writes
        (`bulk.changelog`), so recovery, standbys and the bulk runner read it unchanged. The
        disk-backed store files the key under the change's partition (`table_stores`). The
        stores are written before the next batch is processed (the engine reads them)."""
        state: list[Outgoing] = []
        for change in out.changes:
            write_change(self._stores[change.table], change.key, change.value,
                         change.partition)
            key, value = changelog.encode(change.key, change.value)
            state.append(Outgoing(self._changelogs[change.table], key, value,
                                  change.partition))
        if not out.produce and not state:
            effects.record(out.metrics)
            return None
        return self._send(state, out.produce, out.metrics)

    async def _send(self, state: list[Outgoing], outputs: list[Produce],
                    calls: list[MetricCall]) -> None:
        # The state first, then the outputs (`stream.outbox` says why).
        last = await (await self._started_outbox()).send(state, then=outputs)
        for (topic, partition), offset in last.items():
            store = self._changelog_stores.get(topic)
            if store is not None:  # a disk-backed store keeps it: recovery resumes after it
                store.set_persisted_offset(TP(topic, partition), offset)
        effects.record(calls)

    async def _started_outbox(self) -> Outbox:
        async with self._starting:  # the agents' first sends wait for one start
            if not self._started:
                await self._outbox.start()
                self._started = True
        return self._outbox

    async def close(self) -> None:
        if self._started:
            await self._outbox.stop()
