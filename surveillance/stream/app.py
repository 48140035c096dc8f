"""The Faust app: topics, tables and agents, read top to bottom.

    ai.results ─┐                                 cases.adjudicated
                ├─ ingest_agent ─► join_state ─► (key: tool) ─► case_agent
 reports.final ─┘   │    │                                      case_state
                    │    └─► cases.join ─► join_agent ─┘            └─► agreement, CUSUM,
                    ▼        (mis-keyed only)                           drift, versions
               <topic>.dlq

Source systems key `ai.results` and `reports.final` by accession number, so an AI result
and its report arrive on the same partition number of both topics, and Faust assigns
those partitions (and the same partition of the join table) to the same worker. The
ingest agent therefore joins in place; an event that is not on its accession's partition
is forwarded to that partition of `cases.join` and joined there by `join_agent`.

The agents are shells around one `engine.Engine` (the whole path as pure batch code, see
`surveillance/engine/`): each batch (`stream.batches`) goes in as records; what comes out is
applied here: table writes (one per changed key per batch, to the changelog partition of
the record that caused it), metrics (one call per label set per batch), and the records
and changelog records, sent through the worker's own producer (`stream.outbox`: one record
batch per partition, acks=all) and acknowledged before the agent hands the batch back to
Faust, which only then may commit its offsets. Processing is at-least-once; every effect
is idempotent by event id or case revision, so N valid events in means N counted, also
after a crash or a rebalance. State that matters lives in the tables (changelog topics
created up front); the engine's in-memory indexes (join clocks, monitor, drift banks) are
rebuilt from the tables whenever partitions are assigned.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time as wall
from collections.abc import Callable, Collection, Coroutine, Iterable, Sequence
from datetime import UTC, datetime
from typing import Any, NoReturn

import faust
from faust.exceptions import ConsumerNotStarted
from faust.stores.base import SerializedStore
from faust.streams import _current_event

from surveillance import kafka_clients
from surveillance.bulk import changelog
from surveillance.clinical.ledger import CaseRecord
from surveillance.clinical.lifecycle import LifecycleStore
from surveillance.engine import collector
from surveillance.engine.config import EngineConfig
from surveillance.engine.horizon import case_records, light_record
from surveillance.engine.pipeline import (
    ADVERSE_TABLE,
    CASE_SNAPSHOTS,
    CASE_TABLE,
    JOIN_TABLE,
    Engine,
)
from surveillance.engine.records import Record
from surveillance.observe import metrics, publish
from surveillance.settings import get_settings
from surveillance.store.case_lookup import lookup_of
from surveillance.stream import case_rewind, faust_consumer, topics
from surveillance.stream.batches import take_batches
from surveillance.stream.calibration_process import CalibrationProcess
from surveillance.stream.consumer_lag import measure as measure_lag
from surveillance.stream.faust_options import TABLE_OPTIONS, WORKER_OPTIONS
from surveillance.stream.input_order import IDLE_SECONDS, InputOrder
from surveillance.stream.outbox import Outbox, OutboxError
from surveillance.stream.preseed_recovery import PreseedingTableManager
from surveillance.stream.staging import Staging
from surveillance.stream.table_stores import raw_items

log = logging.getLogger(__name__)

settings = get_settings()
config = EngineConfig.from_settings(
    settings, lookup_of(settings.database.url.get_secret_value()))  # the case horizon's
if settings.kafka.probe_log_end:
    from surveillance.embedded import log_end

    log_end.install()
BATCH = 1000
collector.for_long_lived_state()  # the worker keeps its state for long
faust_consumer.install(settings.stream.fetch_max_wait_ms)

app = faust.App(
    settings.stream.app_id,
    broker=f"kafka://{settings.kafka.bootstrap}",
    store=settings.stream.store,
    topic_partitions=settings.kafka.partitions,
    web_host=settings.stream.web_host,
    datadir=str(settings.state_dir / "faust"),
    table_standby_replicas=settings.stream.standby_replicas,
    TableManager=PreseedingTableManager,  # its stores pre-seeded (`stream.preseed_recovery`)
    **WORKER_OPTIONS,
    **kafka_clients.faust_options(settings.kafka),  # TLS / SASL
)


def _raw_topic(*names: str) -> Any:
    """Bytes in, bytes out: every value is parsed by its contract in the engine."""
    return app.topic(
        *names, key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw"
    )


inputs_topic = _raw_topic(topics.AI_RESULTS, topics.REPORTS_FINAL)
join_topic = _raw_topic(topics.CASES_JOIN)
cases_topic = _raw_topic(topics.CASES_ADJUDICATED)
adverse_topic = _raw_topic(topics.ADVERSE_EVENTS)
_outputs = {t: _raw_topic(t) for t in (
    topics.CASES_JOIN, topics.CASES_ADJUDICATED, topics.ALERTS, topics.SNAPSHOTS,
    *(topics.dlq(t) for t in topics.DEAD_LETTERED))}

tables = {name: app.Table(name, partitions=settings.kafka.partitions,
                          options=dict(TABLE_OPTIONS))  # a copy: Faust pops from it
          for name in (JOIN_TABLE, CASE_TABLE, ADVERSE_TABLE, CASE_SNAPSHOTS)}
join_table, case_table, adverse_table = (tables[n] for n in (JOIN_TABLE, CASE_TABLE,
                                                             ADVERSE_TABLE))
_changelogs = {name: changelog.topic(settings.stream.app_id, name) for name in tables}
# The engine reads the tables' stores: a Faust table's own `get` adds a layer of Python
# calls and, for a key it lacks, a KeyError raised and caught (about 1 µs a read).
engine = Engine(config, join_table.data, case_table.data, adverse_table.data,
                tables[CASE_SNAPSHOTS].data)
engine.cases.ready = False  # the tables are recovered: rebuild before the first case
engine.join.keep_sent = True  # a batch's cases saved with its state (`engine.join_sent`)
engine.cases.keep_sent = True  # a batch's alerts saved with its state (`engine.case_sent`)
#: The drift calibrations off the event loop (`stream.calibration_process`).
_calibrator = CalibrationProcess() if settings.stream.calibration_process else None
engine.cases.drift.calibrator = _calibrator
publish.register_tools(config.registry, settings.metrics.sites, settings.metrics.max_sites,
                       settings.metrics.max_versions_per_tool)
_lifecycle = LifecycleStore(settings.state_dir)
engine.cases.lifecycle = _lifecycle.states()


def _fatal(agent: str) -> NoReturn:
    """An agent failed on data the engine must take: a bug. Exit so the supervisor
    restarts us. A crashed Faust agent leaves the worker running but deaf (a silent
    failure); exiting instead is safe: processing is at-least-once, effects idempotent.
    """
    log.critical("%s failed; exiting so the worker is restarted", agent, exc_info=True)
    os._exit(70)


def _records(batch: Sequence[Any]) -> list[Record]:
    return [Record(e.message.topic, e.message.partition, e.message.offset, e.message.key,
                   e.value, e.message.headers or ()) for e in batch]


_staging = Staging({name: table.data for name, table in tables.items()}, _changelogs,
                   Outbox({"bootstrap_servers": settings.kafka.bootstrap,
                           **kafka_clients.client_options(settings.kafka)}))
apply, stage = _staging.apply, _staging.stage  # a batch's effects (`stream.staging`)
_rewind = case_rewind.CaseRewind(case_table.data, tables[CASE_SNAPSHOTS].data, engine.cases)


async def _snapshots_at_stop() -> None:
    """Every tool's pending snapshot written, before the worker stops or gives up its
    partitions. Snapshots are throttled (`EngineConfig.snapshot_seconds`), so without this
    a tool changed in the last minute has one older than the case table: the next owner
    refuses it ("the case table has changed since it was written") and replays the tool,
    which raises other alerts than the stopped worker would have (`engine.snapshots`)."""
    if not engine.cases.ready:
        return  # not rebuilt since the last assignment: its state is no newer than the table
    try:
        await apply(engine.snapshot())
    except Exception:  # the tools are then replayed, as after a crash
        log.exception("the case stage's snapshots were not written at the stop")


@app.on_before_shutdown.connect
async def _close_outbox(sender: Any, /, *args: Any, **kwargs: Any) -> None:
    await _snapshots_at_stop()
    await _staging.close()
    if _calibrator is not None:
        _calibrator.close()


#: The input events in event time (`stream.input_order`).
_input_order = InputOrder((topics.AI_RESULTS, topics.REPORTS_FINAL))


async def _serve(stream: Any, name: str, size: int = BATCH, ordered: bool = False) -> None:
    """Hand each batch to the engine, apply what it returns and send its records; the
    next batch is processed while the broker acknowledges them (`stream.batches`
    acknowledges a batch's events only after its records are acknowledged; the outbox
    writes sends in the order they were started). `ordered`: the input records go in
    event time (`stream.input_order`)."""
    idle = IDLE_SECONDS if ordered else None
    async for batch in take_batches(stream, size, idle):
        # No current event while the engine reads: Faust's RocksDB store (0.15) reads a
        # key only in the current event's partition, and a batch holds several
        # partitions' events, so a case or join state of another partition read as
        # absent (with `rocksdb://` a worker counted 261 cases of 259, a 10-day
        # simulation). Without one it looks in every partition's store.
        _current_event.set(None)
        try:
            if name == "case_agent":
                _ensure_monitor()
            records = (_input_order.take(_records(batch), batch, app.consumer,
                                         wall.monotonic()) if ordered else _records(batch))
            if not records:
                continue
            out = engine.process(records, datetime.now(UTC), wall.monotonic())
            sending = stage(out)
        except Exception:
            _fatal(name)
        if sending is not None:
            batch.settled = asyncio.ensure_future(_sent_or_exit(name, sending))


async def _sent_or_exit(name: str, sending: Coroutine[Any, Any, None]) -> None:
    try:
        await sending
    except OutboxError as exc:
        # Not a bug: the broker is away. The batch was not acknowledged, so the worker
        # restarted by the supervisor reads it again.
        log.critical("%s: %s; exiting so the worker is restarted", name, exc)
        os._exit(70)
    except Exception:
        _fatal(name)


@app.agent(inputs_topic)
async def ingest_agent(stream: Any) -> None:
    """Ingest (validate, pseudonymize, label) and join in place, or forward."""
    await _serve(stream, "ingest_agent", ordered=True)


@app.agent(join_topic)
async def join_agent(stream: Any) -> None:
    """Join the inputs forwarded to their accession's partition."""
    await _serve(stream, "join_agent")


@app.agent(cases_topic)
async def case_agent(stream: Any) -> None:
    """Ledger, monitor, drift banks and daily evaluation over the tool-keyed cases."""
    await _serve(stream, "case_agent")


@app.agent(adverse_topic)
async def adverse_agent(stream: Any) -> None:
    """Link each adverse-event report to its tool, version and case; start its clocks."""
    await _serve(stream, "adverse_agent", size=100)


@app.task
async def _root_logger_to_worker_level() -> None:
    """Faust's worker sets the root logger to DEBUG so that its terminal spinner turns on
    every log call, and leaves it there: every debug call of aiokafka and Faust then builds
    a LogRecord that the handlers drop (7% of the worker's CPU, measured with py-spy).
    The handlers keep the worker's level (`--loglevel warn`); the root logger gets it too.
    """
    root = logging.getLogger()
    levels = [h.level for h in root.handlers if h.level > logging.NOTSET]
    root.setLevel(max(levels, default=logging.WARNING))


@app.on_rebalance_complete.connect
async def _hold_streams_until_seeked(sender: Any, /, *args: Any, **kwargs: Any) -> None:
    """Keep fetched stream records out of the agents until Faust has seeked the streams.

    Once the tables are recovered, Faust (0.15) resumes fetching the stream partitions,
    awaits their seek to the committed offsets, then resumes flow control, which empties
    every agent's queue. Records fetched during the seek reached the queues (some were
    processed) and were emptied with them, and the next record of that fetch looked like a
    compacted gap, which Faust commits over (a worker restarted on a backlog lost 19 inputs
    of each of six partitions, one run in ten of a SIGKILL-restart reproducer). This signal
    comes just before: with the flow suspended, a fetched record waits in Faust's conductor
    until the resume, in offset order from the committed offset."""
    global _read_at_seek, _settled
    app.flow_control.suspend()
    try:
        if settings.stream.case_rewind:  # a rewound case partition is moved back first
            _read_at_seek = await _rewind.before_seek(app.consumer,
                                                      lambda: owned_records(light_record))
    except Exception:  # the tools whose snapshots do not match are then replayed
        log.exception("the case table was not rewound to its tools' snapshots")
    _settled = True


#: The owned case records the rewind read, if it left the table as it was: the rebuild's
#: (`_ensure_monitor`, before the case agent's first batch), so a restart reads them once.
_read_at_seek: list[tuple[str, CaseRecord]] | None = None
#: Tables recovered and rewound for this assignment (Faust's `recovery.completed` stays
#: set after the first recovery: the counts page would rebuild from a table mid-recovery).
_settled = False


@app.on_partitions_revoked.connect
async def _revoked(sender: Any, /, *args: Any, signal: Any, **kwargs: Any) -> None:
    global _read_at_seek, _settled
    _read_at_seek, _settled = None, False
    await _snapshots_at_stop()  # the next owner of a tool loads its state
    engine.revoked()  # clocks and monitor rebuilt from the tables when next needed
    _input_order.forget()  # held input events are read again from the committed offsets


def _owned(topic: str) -> set[int]:
    return {tp.partition for tp in app.consumer.assignment() if tp.topic == topic}


def owned_records(decode: Callable[[Any], CaseRecord] = CaseRecord.from_dict,
                  tools: Collection[str] | None = None) -> list[tuple[str, CaseRecord]]:
    """(case id, record) of the `cases.adjudicated` partitions this worker holds now (of
    `tools` only, if given). The table is read as it is iterated, not copied first: with
    the whole of a large table decoded at once a rebuild would need ~5 kB per record."""
    # Without the horizon's summary records (`~horizon:<p>`), which are no cases.
    items: Iterable[tuple[str, Any]] = case_table.items()
    store: Any = case_table.data
    if decode is light_record and isinstance(store, SerializedStore):
        items = raw_items(store)  # `light_record` reads the JSON without the features
    if tools is not None:
        items = ((k, v) for k, v in items if v and v.get("tool") in tools)
    return case_records(items, _owned(topics.CASES_ADJUDICATED), decode)


def _ensure_monitor() -> None:
    """After an assignment, rebuild the monitor, ledger counts and drift banks from the
    case records this worker owns (once; then kept up to date case by case), without
    their drift features: a tool without a usable snapshot reads its own again in full."""
    global _read_at_seek
    if not engine.cases.ready:
        began, cpu = wall.perf_counter(), wall.process_time()
        digests = _rewind.digests if _read_at_seek else None  # over the records it read
        records, _read_at_seek = _read_at_seek or owned_records(light_record), None
        read = wall.perf_counter() - began
        engine.cases.rebuild(records, _owned(topics.CASES_ADJUDICATED),
                             full=lambda tools: owned_records(tools=tools), digests=digests)
        metrics.record_state_rebuilds(_rewind.how_rebuilt())
        log.warning("case stage rebuilt from %d case records in %.1f s (read %.1f s; CPU "
                    "%.1f s); tools loaded from their snapshots: %s", len(records),
                    wall.perf_counter() - began, read, wall.process_time() - cpu,
                    " ".join(engine.cases.restored) or "none")


@app.timer(interval=settings.stream.clock_interval_seconds)
async def regulatory_clocks() -> None:
    """Re-evaluate every open report's clocks (wall clock: deadlines are real days).

    A failure is logged and retried on the next tick: a timer exception would otherwise
    stop the whole worker, counting included.
    """
    try:
        engine.cases.lifecycle = _lifecycle.states()
        await apply(engine.tick(_owned(topics.ADVERSE_EVENTS), datetime.now(UTC)))
    except Exception:
        log.exception("regulatory clock check failed; retrying next tick")


@app.timer(interval=0.25)
async def calibrations_back() -> None:
    """The tools a drift calibration holds, released once their thresholds are back
    (with their queued drift calls replayed: their alerts), also when no case arrives."""
    if _calibrator is None or not engine.cases.drift.held or not engine.cases.ready:
        return
    try:
        await apply(engine.process([], datetime.now(UTC), wall.monotonic()))
    except Exception:
        _fatal("calibrations_back")


@app.timer(interval=5.0)
async def consumer_lag() -> None:
    """Messages behind the end of each stream topic this worker reads."""
    measure_lag(app.consumer)  # a failure is logged and retried at the next tick


@app.page("/surveillance/counts")
async def counts_view(web: Any, request: Any) -> Any:
    """Counts per tool over the cases this worker owns (the ledger, rebuilt from the table
    after every assignment)."""
    faust_tables: Any = app.tables
    ready = _settled and not app.rebalancing and faust_tables.recovery.completed.is_set()
    if ready:
        _ensure_monitor()
    counts = engine.cases.ledger
    try:
        assigned = sorted(f"{tp.topic}:{tp.partition}" for tp in app.consumer.assignment())
    except ConsumerNotStarted:  # the web server can answer before the consumer runs
        return web.json({"ready": False, "assigned": [], "tools": {}, "pid": os.getpid()})
    return web.json(
        {
            "pid": os.getpid(),  # whose counts: `stream.runner` reads only its own worker's
            "ready": ready,
            "assigned": assigned,
            "tools": {tool: dict(c) for tool, c in counts.per_tool().items()},
            # Tools whose drift waits for a calibration (its alerts still to come).
            "calibrating": sorted(engine.cases.drift.held),
        }
    )


@app.page("/metrics")
async def metrics_view(web: Any, request: Any) -> Any:
    body, content_type = metrics.render()
    # aiohttp refuses a charset inside content_type=; Prometheus needs it in the header.
    return web.bytes(body, headers={"Content-Type": content_type})
