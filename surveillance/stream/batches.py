"""An agent's stream in batches of what has arrived, without waiting for a timer.

Faust's `Stream.take_events(max_, within)` hands over a batch only when `max_` events are
buffered or `within` seconds have passed, every time: with `within=0.05` each batch of a
worker that is keeping up waited 50 ms (traced: 55 batches of ~270 events per agent over
15,000 inputs), and both agents often waited at once while the core had work queued on
the broker. `take_batches` hands over the events buffered so far as soon as the agent asks
and the stream has moved every event already waiting in its queue into the buffer; with
none buffered it waits for the first. Under load a batch is what arrived while the last
one was processed (up to `max_`); at a trickle, a batch is an event or a few.

Otherwise it is Faust's `take_events` (0.15): the same processor fills the buffer from
the stream's passive drainer, which waits while a batch is being consumed; acks are
turned off on the stream and each batch's events are acknowledged only once the agent is
done with it: when its body returns, or, if the body handed over a `settled` future (its
outputs on their way to the broker: `stream.app`), once that ends. The agent then works
on the next batch while the broker acknowledges the last one's outputs.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any

from mode.utils.futures import notify


class Batch(list[Any]):
    """A batch's events. The agent may set `settled` to a future that ends once the
    batch's effects are safe (its outputs acknowledged by the broker): its events are then
    acknowledged when that future ends, and the agent can work on the next batch
    meanwhile. Left None, they are acknowledged as soon as the agent's body returns."""

    settled: asyncio.Future[Any] | None = None


def take_batches(stream: Any, max_: int, idle: float | None = None
                 ) -> AsyncIterator[Batch]:
    """Batches of at most `max_` events (Faust `EventT`) of `stream`, in order; with
    `idle`, an empty batch after that many seconds without an event (an agent holding
    events for their turn, `stream.input_order`, looks at them again).

    At most one batch waits for its `settled` while the agent works on the next: before
    the one after is gathered, the earlier one is settled and acknowledged (in order).
    The agent may replace a batch's events (`batch[:] = ...`) with those it is done with:
    only those are acknowledged."""
    batches = _take(stream, max_, idle)
    # As Faust registers its own: a stream that stops closes the generator, so its
    # `finally` (acks, the processor removed) runs then.
    stream._active_agens.add(batches)
    return batches


async def _take(stream: Any, max_: int, idle: float | None
                ) -> AsyncGenerator[Batch, None]:
    events: list[Any] = []
    arrived = asyncio.Event()  # the buffer is not empty
    consumed = asyncio.Event()
    consuming: asyncio.Future[None] | None = None
    loop = asyncio.get_running_loop()
    enable_acks: bool = stream.enable_acks

    async def add_to_buffer(value: Any) -> Any:
        nonlocal consuming
        try:
            if consuming is not None:  # a batch is being consumed: wait for its end
                try:
                    await consuming
                finally:
                    consuming = None
            event = stream.current_event
            if event is None:
                raise RuntimeError("take_batches found current_event is None")
            events.append(event)
            arrived.set()
            if len(events) >= max_:
                consumed.clear()
                await stream.wait(consumed)  # never more than max_ in a batch
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            stream.log.exception("Error adding to take buffer: %r", exc)
            await stream.crash(exc)
        return value

    async def ack(batch: Batch) -> None:
        if batch.settled is not None:
            await batch.settled  # its error is the agent's (it exits): nothing is acked
        for event in batch:
            await stream.ack(event)

    stream.enable_acks = False  # acked here, once the agent is done with the batch
    stream.add_processor(add_to_buffer)
    stream._enable_passive(aiter(stream.channel))
    acking: asyncio.Future[None] | None = None  # the last batch's acks, once it settles
    try:
        while not stream.should_stop:
            if not events and await _stopped_or_idle(stream, arrived, idle):
                break
            await _settle(events, max_)
            consuming = loop.create_future()
            batch = Batch(events)
            try:
                yield batch
            finally:
                events.clear()
                arrived.clear()
                if acking is not None:  # the one before: settled and acked first
                    await acking
                    acking = None
                if batch.settled is None or batch.settled.done():
                    await ack(batch)
                else:  # acked as soon as it settles, also if no batch follows
                    acking = asyncio.ensure_future(ack(batch))
                notify(consuming)
                consumed.set()
    finally:
        if acking is not None:
            await acking
        stream.enable_acks = enable_acks
        stream._processors.remove(add_to_buffer)


async def _stopped_or_idle(stream: Any, arrived: asyncio.Event, idle: float | None) -> bool:
    """Wait for an event to arrive (False) or the stream to stop (True); after `idle`
    seconds, False (mode's own timeout reads as stopped)."""
    try:
        stopped: bool = await asyncio.wait_for(stream.wait_for_stopped(arrived), idle)
    except TimeoutError:
        return False
    return stopped


async def _settle(events: list[Any], max_: int) -> None:
    """Let the stream's drainer move the events already queued into the buffer: yield to
    the event loop until a turn adds none (or the buffer is full)."""
    seen = -1
    while seen != len(events) and len(events) < max_:
        seen = len(events)
        await asyncio.sleep(0)
