"""Faust's table recovery, with this worker's table partitions pre-seeded first.

Faust assigns a worker its partitions in a rebalance; its recovery service then reads,
for each assigned changelog partition, the offset the store keeps and replays the
changelog after it, one `faust.Event` a record (~240 us). `PreseedingRecovery` brings
exactly those partitions (the active ones, then the standbys) up to their changelogs'
ends first with `stream.store_preseed` (a few us a record: read, then put into the
databases by SST file ingestion), through the stores' own handles, and tells Faust's
recovery the offsets they now keep; Faust reads what is left.
A partition this worker is not assigned is never read or written here.

Where: in the steps Faust's recovery runs before it seeks to the kept offsets: the
active partitions when Faust takes their highwaters (before it does, so those are at
least where the pre-seed stopped), then the standbys in `_build_offsets`. Not in the
rebalance callback: the group heartbeat stops while that runs (a 10 s session,
`faust_options`). Faust gives each step `broker_request_timeout` (90 s) and stops the
whole recovery when one passes it, so the pre-seed of a step stops after 80% of it; the
active partitions left go on in the next two steps (`_build_offsets`, active then
standby, up to the highwaters Faust took), and what is still left after those is
Faust's own reading (correct, ~25x slower: a very loaded machine). A rebalance
meanwhile cancels it between two ingestions; an error ends it with a warning. Each leaves
every partition as of its last ingestion, with that ingestion's offset, which is where
Faust's recovery starts: no record is lost or applied out of order. No active partition
is read past the highwater Faust takes (Faust refuses a store keeping an offset past it).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Sequence
from collections.abc import Set as AbstractSet
from typing import Any

from faust.tables import TableManager
from faust.tables.recovery import Recovery
from faust.types import TP

from surveillance.kafka_clients import client_options
from surveillance.settings import get_settings
from surveillance.stream import store_preseed

log = logging.getLogger(__name__)

#: Share of Faust's `broker_request_timeout` the pre-seed of one step may take (a fetch
#: takes well under a second, and writing what is held at the deadline, at most
#: `sst_runs.RUN_BYTES`, a second or two).
TIME_SHARE = 0.8


class PreseedingRecovery(Recovery):
    """Faust's `Recovery`, pre-seeding the assigned RocksDB partitions first."""

    _stores: dict[str, Any] | None = None
    #: Active partitions not yet at their ends: each of the three steps Faust runs
    #: before it seeks them goes on with them.
    _actives_left: Sequence[tuple[str, int]] = ()

    def stores(self) -> dict[str, Any]:
        """changelog topic -> RocksDB store of the tables (none when the setting is off
        or the tables are in memory): read once the tables are all registered."""
        if self._stores is None:
            self._stores = {} if not get_settings().stream.preseed_tables else (
                store_preseed.rocksdb_stores(
                    {t.changelog_topic.get_topic_name(): t for t in self.tables.values()}))
        return self._stores

    def _deadline(self) -> float:
        return time.monotonic() + TIME_SHARE * float(self.app.conf.broker_request_timeout)

    async def _build_highwaters(self, consumer: Any, tps: AbstractSet[TP], destination: Any,
                                title: str) -> None:
        if destination is self.active_highwaters:
            # Before Faust takes the highwaters: to the ends the fetches report, which
            # the highwaters Faust then takes are at least.
            stores = self.stores()
            self._actives_left = sorted((tp.topic, tp.partition) for tp in tps
                                        if tp.topic in stores)
            await self._preseed_actives(capped=False)
        await super()._build_highwaters(consumer, set(tps), destination, title)

    async def _build_offsets(self, consumer: Any, tps: AbstractSet[TP], destination: Any,
                             title: str) -> None:
        deadline = self._deadline()
        await self._preseed_actives(capped=True)  # those an earlier step had no time for
        stores = self.stores()
        standbys = sorted((tp.topic, tp.partition) for tp in tps if tp.topic in stores
                          and destination is self.standby_offsets)
        if standbys and not self._actives_left and time.monotonic() < deadline:
            _tell(await preseed(stores, standbys, None, "standby", deadline), destination)
        await super()._build_offsets(consumer, set(tps), destination, title)

    async def _preseed_actives(self, capped: bool) -> None:
        """Go on with the active partitions left, up to Faust's highwaters if `capped`."""
        if self._actives_left:
            until = ({(tp.topic, tp.partition): offset
                      for tp, offset in self.active_highwaters.items()} if capped else None)
            done = await preseed(self.stores(), self._actives_left, until, "active",
                                 self._deadline())
            _tell(done, self.active_offsets)
            self._actives_left = sorted(done.unfinished)


def _tell(done: store_preseed.Preseeded, offsets: Any) -> None:
    """Faust's recovery starts each partition at the offset its store now keeps."""
    for (topic, partition), offset in done.offsets.items():
        if offset >= 0:
            offsets[TP(topic, partition)] = offset


async def preseed(stores: dict[str, Any], partitions: Sequence[tuple[str, int]],
                  until: dict[tuple[str, int], int] | None, title: str, deadline: float
                  ) -> store_preseed.Preseeded:
    """Pre-seed `partitions`, saying what was read; an error is logged, not raised:
    Faust's recovery reads what the pre-seed did not."""
    settings = get_settings()
    done = store_preseed.Preseeded()
    try:
        await store_preseed.preseed(
            stores, partitions,
            {"bootstrap_servers": settings.kafka.bootstrap, **client_options(settings.kafka)},
            until=until, deadline=deadline, done=done,
            processes=settings.stream.preseed_processes or os.cpu_count() or 1)
    except Exception:  # the broker, the disk: Faust's recovery can still do it all
        log.warning("pre-seeding the table stores failed after %d records; Faust's "
                    "recovery reads the rest", done.total, exc_info=True)
        return done
    log.warning("table stores pre-seeded from their changelogs: %d records in %.1f s "
                "(%s partitions %s); CPU %.1f s; %d process(es), peak RSS of the largest "
                "%d MiB; Faust's recovery starts after them%s",
                done.total, done.seconds, title, " ".join(f"{t}:{p}" for t, p in partitions),
                done.cpu, done.processes, done.process_peak_rss >> 20,
                f"; the time allowed ran out with {len(done.unfinished)} partition(s) unfinished"
                if done.unfinished else "")
    return done


class PreseedingTableManager(TableManager):
    """Faust's table manager with `PreseedingRecovery` (the app's `TableManager`)."""

    @property
    def recovery(self) -> Recovery:
        if self._recovery is None:
            self._recovery = PreseedingRecovery(self.app, self, beacon=self.beacon,
                                                loop=self.loop)
        return self._recovery

    async def on_start(self) -> None:
        """Faust's, without the second it first sleeps: that waits for tables an app
        declares after it starts, and this app declares all of its tables on import
        (`stream.app`). Each worker start (a restart, a new worker) is ready a second
        sooner."""
        if not self.should_stop:
            await self._update_channels()
            await self.recovery.start()
