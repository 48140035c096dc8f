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
