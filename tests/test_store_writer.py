"""The store writer end to end: real broker, real PostgreSQL, a real database outage."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable
from datetime import date
from typing import Any

import psycopg
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from surveillance.embedded import EmbeddedBroker, EmbeddedPostgres
from surveillance.observe.metrics import REGISTRY
from surveillance.store.health import StoreHealth
from surveillance.store.migrate import migrate
from surveillance.store.writer import WriterSettings, WriterTopics, run_writer
from surveillance.stream.topics import TopicSpec, create_topics
from tests.store_fixtures import (
    corrected,
    make_adverse_events,
    make_alerts,
    make_cases,
    make_snapshots,
)

pytestmark = pytest.mark.integration

START = date(2026, 7, 1)
PARTITIONS = 3
TABLES = ("cases", "ai_results", "metric_snapshots", "alerts", "adverse_events")


def _topics(broker: EmbeddedBroker) -> WriterTopics:
    suffix = uuid.uuid4().hex[:8]
    names = WriterTopics(
        cases=f"cases.adjudicated.{suffix}",
        alerts=f"surveillance.alerts.{suffix}",
        snapshots=f"surveillance.snapshots.{suffix}",
        adverse_events=f"adverse.events.{suffix}",
    )
    create_topics(
        broker.bootstrap,
        [
            TopicSpec(n, PARTITIONS)
            for n in (names.cases, names.alerts, names.snapshots, names.adverse_events)
        ],
    )
    return names


def _messages(names: WriterTopics, seed: int, n_cases: int) -> list[tuple[str, str, bytes]]:
    """(topic, key, value) of a quarter for one tool, corrections included."""
    cases = make_cases(seed, n_cases, "ich-triage", START, 92)
    labelled = [c for c in cases if c.label in ("present", "absent")]
    fixes = [corrected(c, 1) for c in labelled[: n_cases // 20]]
    out = [(names.cases, c.case_id, c.model_dump_json().encode()) for c in [*cases, *fixes]]
    out += [
        (names.alerts, a.alert_id, a.model_dump_json().encode())
        for a in make_alerts("ich-triage", START)
    ]
    out += [
        (names.snapshots, s.snapshot_id, s.model_dump_json().encode())
        for s in make_snapshots("ich-triage", START, 40)
    ]
    out += [
        (names.adverse_events, e.event_id, e.model_dump_json().encode())
        for e in make_adverse_events("ich-triage", START)
    ]
    return out


async def _produce(bootstrap: str, messages: list[tuple[str, str, bytes]]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5)
    await producer.start()
    try:
        pending = [await producer.send(t, v, key=k.encode()) for t, k, v in messages]
        await asyncio.gather(*pending)
    finally:
        await producer.stop()


def _counts(url: str) -> dict[str, int]:
    with psycopg.connect(url, connect_timeout=3) as conn:
        return {t: conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in TABLES}  # type: ignore[index]


def _dump(url: str) -> dict[str, list[tuple[Any, ...]]]:
    with psycopg.connect(url) as conn:
        return {t: conn.execute(f"SELECT * FROM {t} ORDER BY 1").fetchall() for t in TABLES}


EXPECTED = {
    "cases": 1200,
    "ai_results": 1200,
    "metric_snapshots": 40,
    "alerts": 3,
    "adverse_events": 3,
}


async def _until(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not check():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.2)


async def _committed(bootstrap: str, group: str, names: WriterTopics) -> dict[str, int]:
    """Committed offsets of `group`, summed per topic."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False
    )
    await consumer.start()
    try:
        out = {}
        for topic in (names.cases, names.alerts, names.snapshots, names.adverse_events):
            tps = [TopicPartition(topic, p) for p in range(PARTITIONS)]
            out[topic] = sum([(await consumer.committed(tp)) or 0 for tp in tps])
        return out
    finally:
        await consumer.stop()


async def _run_until_stored(
    bootstrap: str, url: str, names: WriterTopics, settings: WriterSettings, expected: int
) -> StoreHealth:
    stop = asyncio.Event()
    health = StoreHealth()
    task = asyncio.create_task(
        run_writer(bootstrap, url, stop, settings=settings, topic_names=names, health=health)
    )
    await _until(lambda: health.rows_written + health.rejected >= expected, 60, "the writer")
    stop.set()
    await asyncio.wait_for(task, 30)
    return health


async def test_writer_stores_every_event_once_and_commits_after(
    broker: EmbeddedBroker, fresh_database: str
) -> None:
    migrate(fresh_database)
    names = _topics(broker)
    messages = _messages(names, seed=7, n_cases=1200)
    await _produce(broker.bootstrap, messages)
    settings = WriterSettings(group_id=f"store-{uuid.uuid4().hex[:6]}", batch_size=300)

    health = await _run_until_stored(
        broker.bootstrap, fresh_database, names, settings, len(messages)
    )
    assert _counts(fresh_database) == EXPECTED
    assert (health.rows_written, health.rejected, health.outages) == (len(messages), 0, 0)
    first = _dump(fresh_database)
    # Offsets were committed for exactly what was produced (partitions summed per topic).
    produced: dict[str, int] = {}
    for topic, _, _ in messages:
        produced[topic] = produced.get(topic, 0) + 1
    assert await _committed(broker.bootstrap, settings.group_id, names) == produced

    # At-least-once upstream: the same events published again change nothing.
    await _produce(broker.bootstrap, messages)
    await _run_until_stored(broker.bootstrap, fresh_database, names, settings, len(messages))
    assert _dump(fresh_database) == first
    # A new consumer group re-reading both copies from the start changes nothing either.
    again = settings.model_copy(update={"group_id": f"store-{uuid.uuid4().hex[:6]}"})
    await _run_until_stored(broker.bootstrap, fresh_database, names, again, 2 * len(messages))
    assert _dump(fresh_database) == first


def _gauge(name: str) -> float | None:
    return REGISTRY.get_sample_value(name)


async def test_database_outage_loses_and_duplicates_nothing(
    broker: EmbeddedBroker, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="surveillance.store")
    names = _topics(broker)
    messages = _messages(names, seed=8, n_cases=1200)
    half = len(messages) // 2
    settings = WriterSettings(
        group_id=f"store-{uuid.uuid4().hex[:6]}",
        batch_size=100,
        max_buffer_rows=400,
        backoff_initial_seconds=0.2,
        backoff_max_seconds=2.0,
    )
    with EmbeddedPostgres() as pg:
        migrate(pg.url)
        stop = asyncio.Event()
        health = StoreHealth()
        task = asyncio.create_task(
            run_writer(
                broker.bootstrap, pg.url, stop, settings=settings, topic_names=names, health=health
            )
        )
        await _produce(broker.bootstrap, messages[:half])
        await _until(lambda: health.rows_written > 0, 60, "first rows")

        await asyncio.to_thread(pg.stop)
        await _produce(broker.bootstrap, messages[half:])
        # Mid-outage: exposed, buffered up to the bound, fetching paused, task alive; and
        # still so after a few retries (backoff up to 2 s): no new outage, no more rows.
        bound = settings.max_buffer_rows - settings.batch_size
        await _until(lambda: health.outage and health.paused and health.buffered_rows > bound,
                     120, "the buffer to fill and fetching to pause")
        await asyncio.sleep(6)
        assert health.outage and health.outages == 1
        assert health.paused
        assert settings.max_buffer_rows - settings.batch_size < health.buffered_rows
        assert health.buffered_rows <= settings.max_buffer_rows
        assert _gauge("surveillance_store_outage") == 1.0
        assert _gauge("surveillance_store_buffered_rows") == health.buffered_rows
        assert not task.done()

        await asyncio.to_thread(pg.start)
        await _until(lambda: health.rows_written >= len(messages), 90, "all rows after recovery")
        stop.set()
        await asyncio.wait_for(task, 30)
        assert task.exception() is None
        assert _counts(pg.url) == EXPECTED
        with psycopg.connect(pg.url) as conn:
            revisions = conn.execute(
                "SELECT revision, count(*) FROM cases GROUP BY 1 ORDER BY 1"
            ).fetchall()
        assert revisions == [(0, 1140), (1, 60)]

    assert (health.outage, health.outages, health.buffered_rows) == (False, 1, 0)
    assert _gauge("surveillance_store_outage") == 0.0
    assert _gauge("surveillance_store_buffered_rows") == 0.0
    started = [r for r in caplog.records if r.getMessage().startswith("store outage:")]
    recovered = [r for r in caplog.records if r.getMessage().startswith("store recovered:")]
    assert len(started) == 1 and len(recovered) == 1
    assert "rows were buffered" in recovered[0].getMessage()


def _scrape(url: str) -> dict[str, float]:
    import urllib.error
    import urllib.request

    from prometheus_client.parser import text_string_to_metric_families

    try:
        with urllib.request.urlopen(url + "/metrics", timeout=2) as resp:
            text = resp.read().decode()
    except (urllib.error.URLError, OSError):
        return {}
    return {
        s.name: s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if not s.labels
    }


def _wait(check: Callable[[], bool], timeout: float, what: str) -> None:
    import time

    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.3)


def test_store_writer_process_serves_its_outage_for_prometheus(tmp_path: Any) -> None:
    """`surveillance store-writer` as operators run it: its own process, whose /metrics
    Prometheus scrapes (the StoreOutage alert reads `surveillance_store_outage` from it)."""
    from surveillance.settings import get_settings
    from surveillance.stream.runner import WorkerProcess
    from surveillance.stream.topics import all_topics

    settings = get_settings()
    cases = make_cases(21, 200, "ich-triage", START, 30)
    with EmbeddedBroker(log_dir=tmp_path) as broker, EmbeddedPostgres(tmp_path / "pg") as pg:
        create_topics(
            broker.bootstrap, all_topics(settings.stream.app_id, settings.kafka.partitions)
        )
        migrate(pg.url)
        writer = WorkerProcess(
            broker.bootstrap, tmp_path, env={"SURVEILLANCE_DATABASE__URL": pg.url},
            command="store-writer",
        ).start()

        def send(batch: list[Any]) -> None:
            asyncio.run(_produce(broker.bootstrap, [
                ("cases.adjudicated", c.case_id, c.model_dump_json().encode()) for c in batch
            ]))

        try:
            _wait(lambda: _scrape(writer.url).get("surveillance_store_outage") == 0.0, 60,
                  "the writer's /metrics")
            send(cases[:100])
            _wait(lambda: _counts(pg.url)["cases"] == 100, 60, "the first 100 cases stored")

            pg.stop()
            send(cases[100:])
            _wait(lambda: _scrape(writer.url).get("surveillance_store_outage") == 1.0, 90,
                  "the outage on /metrics")
            during = _scrape(writer.url)
            assert during["surveillance_store_buffered_rows"] > 0

            pg.start()
            _wait(lambda: _scrape(writer.url).get("surveillance_store_outage") == 0.0, 120,
                  "the recovery on /metrics")
            _wait(lambda: _scrape(writer.url).get("surveillance_store_buffered_rows") == 0.0,
                  60, "the buffer drained")
            assert _counts(pg.url)["cases"] == 200
            assert writer.alive()
        finally:
            writer.stop()
    log = writer.log_tail(20_000)
    assert "Traceback" not in log, log[-3000:]
    print(f"\nstore writer: outage seen with {during['surveillance_store_buffered_rows']:.0f} "
          "rows buffered, then recovered; 200/200 cases stored")
