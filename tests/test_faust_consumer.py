"""`stream.faust_consumer`: a delivery run in place up to its first suspension, then the
rest as a task, behaves as the same coroutine run as a task from the start: same steps in
the same order, same result or exception, same cancellation."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from surveillance.stream import faust_consumer
from surveillance.stream.faust_consumer import DONE, resume, start

#: What a delivery does at each step: return at once, yield to the loop, wait for a
#: future that another task resolves (with a value or an error), raise.
_STEP = st.sampled_from(["sleep0", "future", "future_error", "raise"])


class _Boom(Exception):
    pass


async def _delivery(steps: list[str], log: list[Any], futures: list[asyncio.Future[Any]]
                    ) -> str:
    try:
        for i, step in enumerate(steps):
            log.append(("step", i, step))
            if step == "sleep0":
                await asyncio.sleep(0)
            elif step in ("future", "future_error"):
                fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
                futures.append(fut)
                try:
                    log.append(("got", await fut))
                except _Boom as exc:
                    log.append(("caught", str(exc)))
            else:
                raise _Boom(f"raised at {i}")
        return f"done after {len(steps)}"
    finally:
        log.append("finally")


async def _resolver(steps: list[str], futures: list[asyncio.Future[Any]]) -> None:
    """Resolve each future the delivery waits on, in turn, from another task."""
    wanted = [s for s in steps if s.startswith("future")]
    for i, step in enumerate(wanted):
        while len(futures) <= i:
            await asyncio.sleep(0)
        if step == "future":
            futures[i].set_result(i)
        else:
            futures[i].set_exception(_Boom(f"future {i}"))


async def _run(steps: list[str], in_place: bool) -> tuple[list[Any], Any, bool]:
    """The delivery's log, its outcome (result or error) and whether it finished without
    suspending (in place: its result is then not kept, as Faust's loop does not use it)."""
    log: list[Any] = []
    futures: list[asyncio.Future[Any]] = []
    resolver = asyncio.ensure_future(_resolver(steps, futures))
    coro = _delivery(steps, log, futures)
    at_once = False
    try:
        if in_place:
            yielded = start(coro)
            at_once = yielded is DONE
            outcome = None if at_once else await resume(coro, yielded)
        else:
            outcome = await asyncio.ensure_future(coro)
    except _Boom as exc:
        outcome = ("raised", str(exc))
    resolver.cancel()
    return log, outcome, at_once


@settings(max_examples=150, deadline=None)
@given(st.lists(_STEP, max_size=6))
def test_in_place_then_resumed_equals_a_task(steps: list[str]) -> None:
    async def both() -> tuple[Any, Any]:
        return await _run(steps, in_place=False), await _run(steps, in_place=True)

    (task_log, task_outcome, _), (log, outcome, at_once) = asyncio.run(both())
    assert log == task_log
    ran = steps[:steps.index("raise") + 1] if "raise" in steps else steps
    assert at_once == (not any(s != "raise" for s in ran) and "raise" not in steps)
    assert outcome == (None if at_once else task_outcome)


def test_a_delivery_that_does_not_suspend_finishes_in_place() -> None:
    log: list[str] = []

    async def quick() -> None:
        log.append("ran")

    assert start(quick()) is DONE
    assert log == ["ran"]


def test_an_error_before_any_suspension_is_raised_in_place() -> None:
    async def bad() -> None:
        raise _Boom("decode")

    with pytest.raises(_Boom, match="decode"):
        start(bad())


def test_cancelling_the_rest_cancels_the_delivery_where_it_waits() -> None:
    """What Faust's loop does when the consumer suspends its flow while a delivery waits
    for flow control: `wait_first` cancels the pending delivery."""
    log: list[str] = []

    async def blocked(gate: asyncio.Event) -> None:
        try:
            await gate.wait()
            log.append("delivered")
        except asyncio.CancelledError:
            log.append("cancelled while waiting")
            raise

    async def main() -> None:
        gate = asyncio.Event()
        coro = blocked(gate)
        yielded = start(coro)
        assert yielded is not DONE
        task = asyncio.ensure_future(resume(coro, yielded))
        await asyncio.sleep(0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        gate.set()
        await asyncio.sleep(0)

    asyncio.run(main())
    assert log == ["cancelled while waiting"]


def test_install_sets_the_fetch_wait_of_the_consumer_faust_creates() -> None:
    """Faust's driver builds its aiokafka consumer with `fetch_max_wait_ms=1500`; after
    `install` the consumer it builds (not started: nothing connects) carries the
    configured wait, which `AIOKafkaConsumer.start()` hands its fetcher."""
    import faust
    from aiokafka import AIOKafkaConsumer
    from faust.transport.drivers import aiokafka as driver
    from yarl import URL

    faust_consumer.install(37)

    async def build() -> Any:
        app = faust.App("fetch-wait-test", broker="kafka://127.0.0.1:1",
                        store="memory://")
        thread: Any = driver.AIOKafkaConsumerThread.__new__(driver.AIOKafkaConsumerThread)
        thread.app = app
        thread.consumer = type("Owner", (), {"in_transaction": False})()
        transport = type("Transport", (), {"url": [URL("kafka://127.0.0.1:1")],
                                           "default_port": 9092})()
        return thread._create_worker_consumer(transport)

    made = asyncio.run(build())
    assert isinstance(made, AIOKafkaConsumer)
    assert made._fetch_max_wait_ms == 37


def test_a_cancellation_thrown_in_reaches_the_delivery_where_it_yielded() -> None:
    """A task cancelled while it is not waiting on a future (here: after `sleep(0)`) has
    the cancellation thrown into its coroutine; the relay must pass it on, not resume."""
    log: list[str] = []

    async def yielding() -> None:
        try:
            await asyncio.sleep(0)
            log.append("went on")
        except asyncio.CancelledError:
            log.append("cancelled at the yield")
            raise

    async def main() -> None:
        coro = yielding()
        yielded = start(coro)
        assert yielded is None  # `sleep(0)` yields bare to the loop
        task = asyncio.ensure_future(resume(coro, yielded))
        await asyncio.sleep(0)  # its first step relays the bare yield: no future awaited
        task.cancel()  # so the cancellation is thrown in at its next step
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    assert log == ["cancelled at the yield"]
