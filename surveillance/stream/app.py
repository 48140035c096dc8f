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
ingest agent therefore joins in place: validate, pseudonymize, extract labels, join. An
event that is not on its accession's partition (a producer that keys differently, or not
at all) is forwarded to that partition of `cases.join` and joined there by `join_agent`:
slower by one hop, never wrong.

Agents are thin: they parse, call pure code (`stream.ingest`, `clinical.join`,
`clinical.ledger`) and emit. Processing is at-least-once (Faust flushes the producer
before it commits offsets); every effect is idempotent by event id or case revision, so
N valid events in means N counted, also after a crash or a rebalance. State that
matters lives in the tables (changelog topics created up front); the few in-memory
indexes (event-time watermark and pending deadlines per partition) are rebuilt from the
table whenever partitions are assigned.

Agents take events in batches (`take_events`), which acks a batch only after it is
processed. Faust's tables find the changelog partition through the "current event";
inside a batch we set it per event (`_as_current`), so each table write goes to the
partition of the event that caused it, exactly as in one-at-a-time iteration.
"""

from __future__ import annotations

import heapq
import logging
import os
import time as wall
import weakref
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import faust
from faust.streams import _current_event
from pydantic import ValidationError

from surveillance import kafka_clients
from surveillance.clinical import adverse_redact, join, regulatory_clock
from surveillance.clinical.adverse_link import AdverseLink, alerts_to_raise, link_report
from surveillance.clinical.baselines import load_registry
from surveillance.clinical.coverage import eligible_tools
from surveillance.clinical.ledger import CaseLedger, CaseRecord
from surveillance.clinical.lifecycle import LifecycleStore, ToolState, check_version, version_alert
from surveillance.clinical.monitor import PerformanceMonitor
from surveillance.clinical.regulatory_clock import ObligationStatus
from surveillance.contracts import (
    AdjudicatedCase,
    AdverseEvent,
    Alert,
    CaseOutcome,
    DeadLetter,
    JoinInput,
    ReportStatus,
)
from surveillance.observe import metrics, publish
from surveillance.settings import get_settings
from surveillance.stats.drift_bank import DriftBank
from surveillance.stream import case_features, internal, topics
from surveillance.stream.ahead import AheadCases
from surveillance.stream.case_features import new_bank, record_ai_result
from surveillance.stream.dlq_seal import Sealer
from surveillance.stream.faust_options import WORKER_OPTIONS
from surveillance.stream.ingest import MAX_CLOCK_SKEW, DateRange, Ingest, Rejected, describe
from surveillance.stream.watermark import EventClock, SourceWatermark, source_headers

log = logging.getLogger(__name__)

settings = get_settings()
registry = load_registry(settings.baselines_file)
if settings.kafka.probe_log_end:
    from surveillance.embedded import log_end

    log_end.install()
BATCH = 1000
WITHIN = 0.05

app = faust.App(
    settings.stream.app_id,
    broker=f"kafka://{settings.kafka.bootstrap}",
    store=settings.stream.store,
    topic_partitions=settings.kafka.partitions,
    web_host=settings.stream.web_host,
    datadir=str(settings.state_dir / "faust"),
    **WORKER_OPTIONS,
    **kafka_clients.faust_options(settings.kafka),  # TLS / SASL
)

def _raw_topic(*names: str) -> Any:
    """Bytes in, bytes out: every value is parsed by its pydantic contract, not by Faust."""
    return app.topic(
        *names, key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw"
    )


inputs_topic = _raw_topic(topics.AI_RESULTS, topics.REPORTS_FINAL)
join_topic = _raw_topic(topics.CASES_JOIN)
cases_topic = _raw_topic(topics.CASES_ADJUDICATED)
alerts_topic = _raw_topic(topics.ALERTS)
snapshots_topic = _raw_topic(topics.SNAPSHOTS)
dlq_topics = {t: _raw_topic(topics.dlq(t)) for t in topics.DEAD_LETTERED}
adverse_topic = _raw_topic(topics.ADVERSE_EVENTS)

join_table = app.Table("join_state", partitions=settings.kafka.partitions)
case_table = app.Table("case_state", partitions=settings.kafka.partitions)
adverse_table = app.Table("adverse_state", partitions=settings.kafka.partitions)

DATES = DateRange(settings.stream.earliest_event_date)
ingest = Ingest(
    key=settings.pseudonym_key.get_secret_value().encode(),
    finding_codes=[t.finding_code for t in registry.values()],
    max_bytes=settings.stream.max_event_bytes,
    dates=DATES,
)
PARTITIONS = settings.kafka.partitions
HORIZON = timedelta(hours=settings.stream.unlabelled_horizon_hours)
RETENTION = timedelta(days=settings.stream.join_retention_days)
for _tool in registry.values():
    metrics.register_tool(_tool.tool_id, _tool.modality)
    if _tool.coverage is not None:
        metrics.register_coverage_floor(_tool.tool_id, _tool.coverage.floor)
metrics.bound_labels(settings.metrics.sites, settings.metrics.max_sites,
                     settings.metrics.max_versions_per_tool)


dlq_sealer = Sealer(settings.dlq_encryption_key.get_secret_value())


def _as_current(event: Any) -> None:
    _current_event.set(weakref.ref(event))


def _now() -> datetime:
    return datetime.now(UTC)


def _fatal(agent: str) -> None:
    """An internal agent failed on our own data: a bug. Exit so the supervisor restarts us.

    A crashed Faust agent leaves the worker running but deaf (a silent failure); exiting
    instead is safe because processing is at-least-once and every effect idempotent.
    """
    log.critical("%s failed; exiting so the worker is restarted", agent, exc_info=True)
    os._exit(70)


@app.agent(inputs_topic)
async def ingest_agent(stream: Any) -> None:
    async for batch in stream.take_events(BATCH, within=WITHIN):
        now = _now()
        for event in batch:
            msg = event.message
            metrics.record_processed(metrics.Topic(msg.topic))
            try:
                result = ingest.accept(msg.topic, event.value, now, PARTITIONS)
            except Exception:  # hostile input must never stop the worker: dead-letter it
                log.exception("ingest failed on %s[%d]@%d", msg.topic, msg.partition, msg.offset)
                result = Rejected("internal", "the event could not be processed")
            if isinstance(result, Rejected):
                dead_letter(msg, event.value, result)
                continue
            item, partition = result
            _count_input(item)
            if partition == msg.partition:
                _as_current(event)
                try:
                    join_one(item, partition)
                except Exception:
                    _fatal("ingest_agent (join)")
            else:
                metrics.record_rerouted(metrics.Topic(msg.topic))
                join_topic.send_soon(
                    key=item.accession.encode(),
                    value=item.model_dump_json().encode(),
                    partition=partition,
                )


def _count_input(item: JoinInput) -> None:
    if item.ai is not None:
        ai = item.ai
        metrics.record_ai_result(ai.tool_id, ai.software_version, ai.site, ai.modality)
    elif item.report is not None:
        metrics.record_report(item.report.status)
        if item.report.status is ReportStatus.FINAL:
            metrics.record_eligible(eligible_tools(item.report.exam, registry),
                                    item.report.site)


def dead_letter(msg: Any, value: bytes | None, why: Rejected) -> None:
    original = value or b""
    letter = DeadLetter(
        source_topic=msg.topic,
        source_partition=msg.partition,
        source_offset=msg.offset,
        reason=f"{why.reason}: {why.message}"[:2000],
        received_at=_now(),
        original_b64=dlq_sealer.seal(original[: settings.stream.max_event_bytes]),
        original_size=len(original),
        encryption=dlq_sealer.encryption,
    )
    dlq_topics[msg.topic].send_soon(
        key=f"{msg.partition}:{msg.offset}".encode(), value=letter.model_dump_json().encode()
    )
    metrics.record_dead_letter(metrics.Topic(msg.topic), metrics.DlqReason(why.reason))
    log.warning(
        "dead-lettered %s[%d]@%d: %s", msg.topic, msg.partition, msg.offset, why.reason
    )


class PartitionClock:
    """Event-time watermark and pending deadlines of one join partition (the same partition
    number of the input topics, `cases.join` and the join table).

    `watermark` follows every input event (reports too): it times the `unlabelled` horizon
    and retention. `ai_watermark` follows the AI results alone: the drift banks read AI
    results, and a backlog's `reports.final` partition can be read well ahead of the
    `ai.results` partition with the same number. Neither moves for one event alone
    (`watermark.EventClock`)."""

    def __init__(self, partition: int) -> None:
        self.partition = partition
        self.events = EventClock(MAX_CLOCK_SKEW)
        self.ai_events = EventClock(MAX_CLOCK_SKEW)
        self.deadlines: list[tuple[datetime, str]] = []

    @property
    def watermark(self) -> datetime | None:
        return self.events.at

    @property
    def ai_watermark(self) -> datetime | None:
        return self.ai_events.at

    def advance(self, at: datetime, now: datetime, ai: bool = False) -> None:
        self.events.observe(at, now)
        if ai:
            self.ai_events.observe(at, now)

    def track(self, state: join.JoinState) -> None:
        """Remember when this accession next needs attention: a case turning `unlabelled`,
        and the end of its retention (so join state stays bounded)."""
        for deadline in join.pending_deadlines(state, HORIZON):
            heapq.heappush(self.deadlines, (deadline, state.accession))
        if state.last_event_at is not None:
            heapq.heappush(self.deadlines, (state.last_event_at + RETENTION, state.accession))

    def due(self) -> Iterable[str]:
        watermark = self.watermark
        while self.deadlines and watermark and self.deadlines[0][0] <= watermark:
            yield heapq.heappop(self.deadlines)[1]


_clocks: dict[int, PartitionClock] = {}


@app.on_partitions_revoked.connect
async def _forget_clocks(sender: Any, /, *args: Any, signal: Any, **kwargs: Any) -> None:
    _clocks.clear()  # rebuilt from the table on the next event of each partition


def _clock(partition: int) -> PartitionClock:
    clock = _clocks.get(partition)
    if clock is None:
        clock = _clocks[partition] = PartitionClock(partition)
        last_events: list[datetime] = []
        ai_times: list[datetime] = []
        for raw_state in list(join_table.values()):
            state = join.JoinState.model_validate(raw_state)
            if state.partition != partition:
                continue
            if state.last_event_at is not None:
                last_events.append(state.last_event_at)
            ai_times += (tool.ai.inference_date for tool in state.tools.values())
            clock.track(state)
        now = _now()
        clock.events.restore(last_events, now)
        clock.ai_events.restore(ai_times, now)
    return clock


@app.agent(join_topic)
async def join_agent(stream: Any) -> None:
    try:
        await _join(stream)
    except Exception:
        _fatal("join_agent")


async def _join(stream: Any) -> None:
    async for batch in stream.take_events(BATCH, within=WITHIN):
        now = _now()
        for event in batch:
            item = internal.read_join_input(event.value, now, DATES)
            if isinstance(item, Rejected):
                dead_letter(event.message, event.value, item)
                continue
            _as_current(event)
            join_one(item, event.message.partition)


def join_one(item: JoinInput, partition: int) -> None:
    """Apply one join input to its accession's state; the current event is on `partition`
    (of an input topic or of `cases.join`), so the table write lands there too."""
    clock = _clock(partition)
    stored = join_table.get(item.accession)
    state = join.JoinState.model_validate(stored) if stored else None
    if state is not None and item.event_id in state.seen:
        metrics.record_duplicate(
            metrics.Topic.AI_RESULTS if item.ai else metrics.Topic.REPORTS_FINAL
        )
    state, cases = join.apply(state, item, partition, HORIZON, clock.watermark)
    clock.advance(join.event_time(item), _now(), ai=item.ai is not None)
    join_table[item.accession] = state.model_dump(mode="json")
    clock.track(state)
    emit(cases, clock)
    expire_due(clock)


def expire_due(clock: PartitionClock) -> None:
    watermark = clock.watermark
    if watermark is None:  # not enough events yet to support a clock
        return
    for accession in clock.due():
        stored = join_table.get(accession)
        if not stored:
            continue
        state = join.JoinState.model_validate(stored)
        if join.is_stale(state, RETENTION, watermark):
            del join_table[accession]
            continue
        cases = join.expire(state, HORIZON, watermark)
        if cases:
            join_table[accession] = state.model_dump(mode="json")
            emit(cases, clock)


def emit(cases: list[AdjudicatedCase], clock: PartitionClock) -> None:
    if not cases:
        return
    reached = clock.ai_watermark or clock.watermark  # every case has an AI result
    for case in cases:  # before the clocks move, a case has reached its own AI time
        headers = source_headers(clock.partition, reached or case.inference_date)
        cases_topic.send_soon(key=case.tool_id.encode(), value=case.model_dump_json().encode(),
                              headers=headers)


ledger = CaseLedger()
monitor = PerformanceMonitor(registry)
publish.publish_baselines(registry)
drift_banks: dict[str, DriftBank] = {}
#: The drift clock of each `cases.adjudicated` partition (a tool's bank sees only its
#: own partition, and the consumer reads these partitions days apart in a backlog too):
#: the low watermark of the join partitions its cases come from. A join partition
#: silent this long (caught up, or no traffic) stops holding it back; partitions read
#: from a backlog take turns within seconds.
SOURCE_IDLE_SECONDS = 30.0
sources: dict[int, SourceWatermark] = {}
#: New cases far ahead of their join partition's clock, per `cases.adjudicated` partition,
#: held from the monitor and the drift banks until the clock comes near (`stream.ahead`).
_ahead: dict[int, AheadCases] = {}
_evaluated_day: dict[str, date] = {}
_monitor_ready = False


@app.on_partitions_revoked.connect
async def _forget_monitor(sender: Any, /, *args: Any, signal: Any, **kwargs: Any) -> None:
    global _monitor_ready
    _monitor_ready = False  # rebuilt from case_state before the next case is applied


def _ensure_monitor() -> None:
    """After an assignment, rebuild the monitor and the ledger's counts from the case
    records this worker owns (once; both are then kept up to date case by case)."""
    global monitor, ledger, _monitor_ready
    if _monitor_ready:
        return
    records = owned_records()
    monitor = PerformanceMonitor(registry)
    monitor.rebuild(records)
    ledger = CaseLedger()
    for _case_id, record in records:
        ledger.add_existing(record)
    rebuild_drift_banks(records)
    sources.clear()  # wait for every join partition again: the first read must not lead
    _ahead.clear()  # the held cases are stored, and rebuilt above with the rest
    _monitor_ready = True


def rebuild_drift_banks(records: list[tuple[str, CaseRecord]]) -> None:
    """Drift banks of the owned tools, rebuilt from their stored cases (not restarted)."""
    rebuilt = case_features.rebuild_drift_banks((r for _, r in records), new_bank)
    drift_banks.clear()
    drift_banks.update(rebuilt)
    if rebuilt:
        log.info("drift banks rebuilt from %d stored cases: %s", len(records),
                 ", ".join(f"{t} (monitoring: {b.monitoring})" for t, b in sorted(rebuilt.items())))


@app.agent(cases_topic)
async def case_agent(stream: Any) -> None:
    try:
        await _count(stream)
    except Exception:
        _fatal("case_agent")


async def _count(stream: Any) -> None:
    async for batch in stream.take_events(BATCH, within=WITHIN):
        _ensure_monitor()
        arrived = _now()
        for event in batch:
            read = internal.read_case(
                event.value, event.message.headers, PARTITIONS, arrived, DATES)
            if isinstance(read, Rejected):
                dead_letter(event.message, event.value, read)
                continue
            _as_current(event)
            case, source, reached = read
            watermark, now = _sources(event.message.partition), wall.monotonic()
            watermark.observe(source, reached, now)
            stored = case_table.get(case.case_id)
            previous = CaseRecord.from_dict(stored) if stored else None
            record = ledger.apply(previous, case, event.message.partition, source)
            if record is None:
                continue
            case_table[case.case_id] = record.as_dict()
            metrics.record_case(case.tool_id, case.software_version, case.site, case.outcome)
            ahead = _ahead.setdefault(event.message.partition, AheadCases())
            held = ahead.hold(case, previous is None, reached)
            alerts = [] if held else _monitor_case(previous, case, record)
            clock = watermark.low(now)
            if clock is not None:
                for released in ahead.release(clock):
                    record = CaseRecord.from_dict(case_table[released.case_id])
                    alerts += _monitor_case(None, released, record)
                alerts += [v.to_alert() for v in _bank(case.tool_id).advance(clock)]
                alerts += _maybe_evaluate(case.tool_id, clock)
            send_alerts(alerts)


def _monitor_case(previous: CaseRecord | None, case: AdjudicatedCase,
                  record: CaseRecord) -> list[Alert]:
    """The monitor and the drift bank take one case revision (`record`: as stored now)."""
    alerts = monitor.on_case(previous, case)
    if previous is None:
        alerts += _version_check(case)
        drift_input = record_ai_result(record)
        assert drift_input is not None  # record_of always stores the features
        _bank(case.tool_id).update(drift_input)
    return alerts


def _sources(partition: int) -> SourceWatermark:
    found = sources.get(partition)
    if found is None:
        found = sources[partition] = SourceWatermark(
            SOURCE_IDLE_SECONDS, range(PARTITIONS), wall.monotonic())
    return found


def _bank(tool: str) -> DriftBank:
    bank = drift_banks.get(tool)
    if bank is None:
        bank = drift_banks[tool] = new_bank(tool)
    return bank


def _maybe_evaluate(tool: str, at: datetime) -> list[Alert]:
    """Once per event-time day per tool: verdicts, snapshots, drift windows, gauges."""
    day = at.date()
    last = _evaluated_day.get(tool)
    if last is None:
        _evaluated_day[tool] = day
        return []
    if day <= last:
        return []
    _evaluated_day[tool] = day
    now = datetime.combine(day, time.min, tzinfo=UTC)
    alerts, snapshots = monitor.evaluate(now, tools=[tool])
    for snapshot in snapshots:
        snapshots_topic.send_soon(
            key=tool.encode(), value=snapshot.model_dump_json().encode()
        )
    publish.publish(snapshots)
    publish.publish_drift(tool, _bank(tool).statistics())
    publish.publish_verdicts(monitor.verdicts())
    publish.publish_charts(monitor.chart_states())
    return alerts


def send_alerts(alerts: list[Alert]) -> None:
    for alert in alerts:
        alerts_topic.send_soon(key=alert.tool_id.encode(), value=alert.model_dump_json().encode())


_lifecycle = LifecycleStore(settings.state_dir)
_states: dict[tuple[str, str], ToolState] = _lifecycle.states()


def _version_check(case: AdjudicatedCase) -> list[Alert]:
    """A result from a version that is not live, for a tool under lifecycle management."""
    if not any(tool == case.tool_id for tool, _ in _states):
        return []  # this site does not manage the tool's versions through the lifecycle
    verdict = check_version(_states, case.tool_id, case.software_version)
    if not verdict.alert:
        return []
    metrics.record_unvalidated_case(case.tool_id, case.software_version)
    alert = version_alert(verdict, case.inference_date)
    return [alert] if alert is not None else []


@app.agent(adverse_topic)
async def adverse_agent(stream: Any) -> None:
    """Link each adverse-event report to its tool, version and case; start its clocks.

    `adverse.events` is keyed by tool id like `cases.adjudicated`, and co-partitioned
    with it, so the case a report is about is in this worker's `case_state`.
    """
    async for batch in stream.take_events(100, within=WITHIN):
        for event in batch:
            _as_current(event)
            msg = event.message
            metrics.record_processed(metrics.Topic.ADVERSE_EVENTS)
            try:
                report = AdverseEvent.model_validate_json(event.value or b"")
            except ValidationError as exc:
                dead_letter(msg, event.value, Rejected("schema", describe(exc)))
                continue
            if not report.pseudonymized:
                dead_letter(msg, event.value, Rejected(
                    "schema", "pseudonymized: adverse events must come through intake"))
                continue
            if report.event_id in adverse_table:
                metrics.record_duplicate(metrics.Topic.ADVERSE_EVENTS)
                continue
            link = link_report(report, registry, _cases_of_accession)
            adverse_table[report.event_id] = {
                "event": adverse_redact.for_table(report),  # no narrative, no reporter
                "link": {"case_id": link.case_id, "consistent": link.consistent,
                         "case_outcome": link.case_outcome.value if link.case_outcome else None},
                "partition": msg.partition,
            }
            metrics.record_adverse_event(report.device.tool_id, report.event.outcome)
            send_alerts([_with_link(a, link) for a in _clock_alerts(report, _now())])


@dataclass(frozen=True)
class _StoredCase:
    case_id: str
    tool_id: str
    software_version: str
    revision: int
    outcome: CaseOutcome


def _cases_of_accession(accession: str | None) -> list[_StoredCase]:
    if not accession:
        return []
    found = []
    for tool in registry:
        stored = case_table.get(f"{accession}:{tool}")
        if stored:
            r = CaseRecord.from_dict(stored)
            found.append(_StoredCase(f"{accession}:{tool}", r.tool, r.version, r.revision,
                                     CaseOutcome(r.outcome)))
    return found


def _with_link(alert: Alert, link: AdverseLink) -> Alert:
    """Say on the received alert what the report was linked to, so on-call need not look."""
    if alert.kind != "adverse_event":
        return alert
    if link.case_id is None:
        context = "no adjudicated case found for the accession"
    else:
        agrees = {True: "agrees with the report", False: "does NOT agree with the report",
                  None: "cannot confirm the report"}[link.consistent]
        outcome = link.case_outcome.value if link.case_outcome else "unknown"
        context = f"linked case outcome {outcome} ({agrees})"
    if link.clearance_matches is False:
        context += f"; clearance number differs from the registry ({link.registry_clearance})"
    return alert.model_copy(update={
        "summary": f"{alert.summary}; {context}"[:1000],
        "details": {**alert.details, "case_outcome": link.case_outcome, "consistent":
                    link.consistent},
    })


_raised_clock_alerts: set[str] = set()


def _clock_alerts(report: AdverseEvent, now: datetime) -> list[Alert]:
    """Received / due-soon / overdue alerts not raised yet (ids are deterministic)."""
    obligations = regulatory_clock.obligations(report.event.outcome, report.aware_date)
    alerts = alerts_to_raise(report, obligations, now.astimezone(), _raised_clock_alerts)
    _raised_clock_alerts.update(a.alert_id for a in alerts)
    return alerts


@app.timer(interval=settings.stream.clock_interval_seconds)
async def regulatory_clocks() -> None:
    """Re-evaluate every open report's clocks (wall clock: deadlines are real days).

    A failure is logged and retried on the next tick: a timer exception would otherwise
    stop the whole worker, counting included.
    """
    try:
        _check_clocks()
    except Exception:
        log.exception("regulatory clock check failed; retrying next tick")


def _check_clocks() -> None:
    global _states
    _states = _lifecycle.states()
    owned = {tp.partition for tp in app.consumer.assignment()
             if tp.topic == topics.ADVERSE_EVENTS}
    now = _now()
    per_tool: dict[str, list[int]] = {}
    for value in list(adverse_table.values()):
        if value["partition"] not in owned:
            continue
        report = AdverseEvent.model_validate(value["event"])
        send_alerts(_clock_alerts(report, now))
        obligations = regulatory_clock.obligations(report.event.outcome, report.aware_date)
        states = [regulatory_clock.status(o, now.astimezone().date()) for o in obligations]
        counts = per_tool.setdefault(report.device.tool_id, [0, 0, 0])
        counts[0] += 1
        counts[1] += any(s is ObligationStatus.DUE_SOON for s in states)
        counts[2] += any(s is ObligationStatus.OVERDUE for s in states)
    for tool, (open_, soon, overdue) in per_tool.items():
        metrics.set_regulatory_clock(tool, open_, min(soon, open_ - overdue), overdue)


@app.timer(interval=5.0)
async def consumer_lag() -> None:
    """Messages behind the end of each stream topic this worker reads."""
    try:
        _measure_lag()
    except Exception:
        log.exception("consumer lag measurement failed; retrying next tick")


def _measure_lag() -> None:
    lag: dict[str, int] = {}
    consumer: Any = app.consumer
    read = consumer._read_offset  # Faust keeps the last offset it read per partition
    for tp in app.consumer.assignment():
        if tp.topic not in _LAG_TOPICS:
            continue
        position, high = read.get(tp), app.consumer.highwater(tp)
        if high is None:  # not fetched yet since assignment: unknown, not zero
            continue
        behind = high - (position + 1 if position is not None else 0)
        lag[tp.topic] = lag.get(tp.topic, 0) + max(behind, 0)
    for topic, n in lag.items():
        metrics.set_consumer_lag(metrics.Topic(topic), n)


_LAG_TOPICS = {t.value for t in metrics.Topic}


def owned_records() -> list[tuple[str, CaseRecord]]:
    """(case id, record) of the `cases.adjudicated` partitions this worker holds now."""
    owned = {
        tp.partition
        for tp in app.consumer.assignment()
        if tp.topic == topics.CASES_ADJUDICATED
    }
    pairs = ((k, CaseRecord.from_dict(v)) for k, v in list(case_table.items()))
    return [(k, r) for k, r in pairs if r.partition in owned]


@app.page("/surveillance/counts")
async def counts_view(web: Any, request: Any) -> Any:
    """Counts per tool over the cases this worker owns (the ledger, rebuilt from the table
    after every assignment)."""
    tables: Any = app.tables
    ready = not app.rebalancing and tables.recovery.completed.is_set()
    if ready:
        _ensure_monitor()
    counts = ledger
    assigned = sorted(f"{tp.topic}:{tp.partition}" for tp in app.consumer.assignment())
    return web.json(
        {
            "ready": ready,
            "assigned": assigned,
            "tools": {tool: dict(c) for tool, c in counts.per_tool().items()},
        }
    )


@app.page("/metrics")
async def metrics_view(web: Any, request: Any) -> Any:
    body, content_type = metrics.render()
    # aiohttp refuses a charset inside content_type=; Prometheus needs it in the header.
    return web.bytes(body, headers={"Content-Type": content_type})
