"""`stream.batches.take_batches` on a real Faust agent (Faust's test context: the agent's
own stream and events, no broker): every event once, in order, at most `max_` a batch,
acknowledged only after the agent's body returned for its batch, and a batch handed over
as soon as events are there (no timer to wait out)."""

from __future__ import annotations

import asyncio
from typing import Any

import faust
from hypothesis import given, settings
from hypothesis import strategies as st

from surveillance.stream.batches import take_batches

app = faust.App("take-batches-test", broker="kafka://127.0.0.1:1", store="memory://")
topic = app.topic("take-batches-test", value_type=int)

MAX = 7
#: Per batch: (values, were any of them acked while the body ran, the events).
handed: list[tuple[list[int], bool, list[Any]]] = []


@app.agent(topic)
async def agent(stream: Any) -> None:
    async for batch in take_batches(stream, MAX):
        values = [e.value for e in batch]
        await asyncio.sleep(0)  # the body awaits, as the worker's awaits its outputs
        handed.append((values, any(e.message.acked for e in batch), list(batch)))


async def _turns(n: int) -> None:
    for _ in range(n):
        await asyncio.sleep(0)


async def _run(bursts: list[int]) -> list[tuple[list[int], bool, list[Any]]]:
    handed.clear()
    sent = 0
    async with agent.test_context() as running:
        for size in bursts:
            for _ in range(size):
                await running.put(sent)
                sent += 1
            await _turns(30)
        await _turns(60)
        return list(handed)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(min_value=1, max_value=25), min_size=1, max_size=6))
def test_every_event_once_in_order_at_most_max_acked_after_the_body(bursts: list[int]
                                                                    ) -> None:
    batches = asyncio.run(_run(bursts))
    values = [v for vs, _, _ in batches for v in vs]
    assert values == list(range(sum(bursts)))
    assert all(1 <= len(vs) <= MAX for vs, _, _ in batches)
    assert not any(acked_during for _, acked_during, _ in batches)
    # Each batch is acknowledged once the body returned for it: by the time the next
    # batch is handed (or the agent stops), every earlier event is acked.
    assert all(e.message.acked for _, _, events in batches for e in events)


def test_a_batch_is_handed_over_without_waiting_for_a_timer() -> None:
    """One event, then a few turns of the event loop (no time passes to speak of): it
    is handed over. Faust's `take_events(max_, within)` holds it until `within` ends."""

    async def run() -> list[list[int]]:
        handed.clear()
        async with agent.test_context() as running:
            await running.put(41)
            await _turns(10)
            first = [vs for vs, _, _ in handed]
            await running.put(42)
            await running.put(43)
            await _turns(10)
            return first + [vs for vs, _, _ in handed[len(first):]]

    assert asyncio.run(run()) == [[41], [42, 43]]


piped = app.topic("take-batches-settled", value_type=int)
#: Per batch: its values, and the acked state of the previous batch's events when the
#: body got it; the futures the bodies handed over.
seen_settled: list[tuple[list[int], list[bool]]] = []
settles: list[asyncio.Future[None]] = []
handed_events: list[list[Any]] = []


@app.agent(piped)
async def settled_agent(stream: Any) -> None:
    previous: list[Any] = []
    async for batch in take_batches(stream, 3):
        seen_settled.append(([e.value for e in batch], [e.message.acked for e in previous]))
        previous = list(batch)
        handed_events.append(previous)
        batch.settled = asyncio.get_running_loop().create_future()
        settles.append(batch.settled)


def test_a_settled_batch_is_acked_when_its_future_ends_while_the_next_is_handed() -> None:
    """The worker's pipelining: while batch 1's future is pending (its records on their
    way), its events stay unacknowledged and batch 2 is handed to the agent; batch 3
    waits until batch 1 is settled and acknowledged, and so on, in order."""

    acked: list[list[list[bool]]] = []

    async def run() -> list[list[list[int]]]:
        seen_settled.clear()
        settles.clear()
        handed_events.clear()
        views: list[list[list[int]]] = []
        async with settled_agent.test_context() as running:
            for v in range(6):
                await running.put(v)
            await _turns(30)
            views.append([vs for vs, _ in seen_settled])  # batches 1 and 2 handed
            more = asyncio.ensure_future(_put_all(running, range(6, 9)))
            await _turns(30)
            views.append([vs for vs, _ in seen_settled])  # batch 3 waits for batch 1
            settles[0].set_result(None)
            await _turns(30)
            views.append([vs for vs, _ in seen_settled])  # now batch 3 is handed
            acked.append([[e.message.acked for e in b] for b in handed_events])
            for fut in settles[1:]:
                fut.set_result(None)
            await more
            await _turns(30)
            # The last batch is acked once it settles, though no batch follows it.
            acked.append([[e.message.acked for e in b] for b in handed_events])
        return views

    views = asyncio.run(run())
    assert views == [[[0, 1, 2], [3, 4, 5]], [[0, 1, 2], [3, 4, 5]],
                     [[0, 1, 2], [3, 4, 5], [6, 7, 8]]]
    # What each body saw of the batch before it: batch 1 unacked while pending when
    # batch 2 came; batch 2 unacked when batch 3 came (batch 1 was acked before it).
    assert seen_settled[1][1] == [False, False, False]
    assert seen_settled[2][1] == [False, False, False]
    # Once batch 1's future ended: batch 1 acked, batch 2 (pending) and 3 not.
    assert acked == [[[True] * 3, [False] * 3, [False] * 3], [[True] * 3] * 3]


async def _put_all(running: Any, values: Any) -> None:
    for v in values:
        await running.put(v)
