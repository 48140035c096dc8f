"""The worker records a batch's metrics only once the broker acknowledged the batch's
records (`stream.staging`): a batch whose sends are not acknowledged is read again by the
restarted worker, so counting it before the acknowledgement would count it twice.

A real broker of the test's own (it is paused: the suite's shared one must not be) and the
worker's real producer (`stream.outbox`). The broker is stopped with SIGSTOP, so a send
stays unacknowledged for as long as the test wants, then fails on the outbox's timeout.
"""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Iterator

import pytest

from surveillance.embedded import EmbeddedBroker
from surveillance.engine.records import Output, Produce
from surveillance.observe import metrics
from surveillance.stream.outbox import Outbox, OutboxError
from surveillance.stream.staging import Staging
from surveillance.stream.topics import TopicSpec, create_topics

pytestmark = pytest.mark.integration

TOPIC = "test.metrics-after-ack"
COUNTED = "reports.final"  # the topic label the batches' "processed" calls carry


@pytest.fixture
def own_broker() -> Iterator[EmbeddedBroker]:
    with EmbeddedBroker() as broker:
        create_topics(broker.bootstrap, [TopicSpec(TOPIC, 1)])
        yield broker


def _processed() -> float:
    value = metrics.REGISTRY.get_sample_value(
        "surveillance_events_processed_total", {"topic": COUNTED})
    return value or 0.0


def _batch(events: int) -> Output:
    """A batch of `events` processed events with one output record each."""
    out = Output()
    for i in range(events):
        out.produce.append(Produce(TOPIC, f"k{i}".encode(), b"{}", partition=0))
        out.metric("processed", COUNTED)
    return out


async def test_a_batch_is_counted_only_once_its_records_are_acknowledged(
        own_broker: EmbeddedBroker) -> None:
    assert own_broker.pid is not None
    staging = Staging({}, {}, Outbox({"bootstrap_servers": own_broker.bootstrap},
                                     timeout_seconds=3.0))
    try:
        await staging.apply(Output(produce=[Produce(TOPIC, b"k", b"{}", partition=0)]))
        start = _processed()  # the producer started and the topic known: no count yet

        os.kill(own_broker.pid, signal.SIGSTOP)
        try:
            sending = staging.stage(_batch(7))
            assert sending is not None
            pending = asyncio.ensure_future(sending)
            await asyncio.sleep(1.0)  # the records are on their way, unacknowledged
            assert not pending.done()
            assert _processed() == start, "counted before the broker acknowledged"
            with pytest.raises(OutboxError, match="did not acknowledge"):
                await pending
            assert _processed() == start, "counted although the send failed"
        finally:
            os.kill(own_broker.pid, signal.SIGCONT)

        # What the restarted worker does: the same batch read again, now acknowledged.
        await staging.apply(_batch(7))
        assert _processed() == start + 7
        await staging.apply(_batch(2))
        assert _processed() == start + 9
    finally:
        await staging.close()


async def test_a_batch_with_nothing_to_send_is_counted_at_once() -> None:
    """No records, no acknowledgement to wait for (and no producer started)."""
    staging = Staging({}, {}, Outbox({"bootstrap_servers": "127.0.0.1:9"}))
    start = _processed()
    out = Output()
    out.metric("processed", COUNTED)
    assert staging.stage(out) is None
    assert _processed() == start + 1
    await staging.close()
