"""Two costs of Faust's (0.15) consumer that the worker does not need to pay, removed.

`install(fetch_max_wait_ms)` is called once, before the app's consumer is created.

1. **Fetch wait.** Faust's aiokafka driver asks every fetch to wait up to 1,500 ms for data
   (`fetch_max_wait_ms=1500`, not a setting). A broker that does not answer a waiting fetch
   as soon as a record arrives (the embedded Tansu broker: a record produced 0.3 s into a
   1.5 s fetch reached the consumer 450 ms later; with a 100 ms wait, 2-10 ms later) makes
   every hop through an internal topic (`cases.adjudicated`, `cases.join`) wait that long
   whenever the fetch in flight covered no partition with data, e.g. while the input
   partitions are paused because the agents' buffers are full. The worker's consumer uses
   `SURVEILLANCE_STREAM__FETCH_MAX_WAIT_MS` (default 100) instead. An idle worker then
   sends one fetch per wait: at 100 ms, 1.3% of a core in the worker and 3.8% in the
   embedded broker (at 50 ms 2.0 and 7.4%; at 1,500 ms 0.5 and 0.5%; at 200 ms a hop
   took ~50 ms again).

2. **One task per record.** Faust's fetch loop hands each record to the conductor with
   `await wait_first(callback(message), suspend_flow.wait())`: four tasks and an
   `asyncio.wait` per record (about a third of Faust's ~62 µs per consumed record,
   measured with py-spy), so that a delivery blocked by flow control can be abandoned when
   the consumer suspends its flow (a rebalance). A delivery blocks only then (flow control
   suspended, or Faust's producer buffer full); otherwise the conductor's callback runs to
   its end without waiting. Here the callback is run up to its first suspension in place;
   only if it does suspend does the rest of it go through `wait_first` exactly as before
   (abandoned if the flow is suspended first). A record is delivered, dropped or raised in
   the same cases as in Faust's loop, in the same order.

3. **Per-record statistics.** Faust's `Monitor` sensor counts and times every record four
   times (in, into a stream, out of it, acknowledged: dicts and clocks per record, ~1.5%
   of the worker's CPU, measured with py-spy) for Faust's stats pages, which the worker
   turns off (`web_stats_enabled=False`). `QuietMonitor` (the app's `Monitor`) skips those
   four; the rest (commits, rebalances, end offsets) it keeps as Faust's.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine, Generator
from typing import Any, cast

from faust.sensors import Monitor
from faust.transport import consumer as faust_consumer
from faust.transport.drivers import aiokafka as faust_aiokafka

_installed: dict[str, int] = {}


def install(fetch_max_wait_ms: int) -> None:
    """Patch Faust's consumer classes (idempotent; the last wait given wins)."""
    _installed["fetch_max_wait_ms"] = fetch_max_wait_ms
    if "done" in _installed:
        return
    _installed["done"] = 1
    create = faust_aiokafka.AIOKafkaConsumerThread._create_worker_consumer

    def _create_worker_consumer(self: Any, transport: Any) -> Any:
        created = create(self, transport)
        # Read by `AIOKafkaConsumer.start()` when it builds its fetcher.
        created._fetch_max_wait_ms = _installed["fetch_max_wait_ms"]
        return created

    setattr(faust_aiokafka.AIOKafkaConsumerThread, "_create_worker_consumer",  # noqa: B010
            _create_worker_consumer)
    setattr(faust_consumer.Consumer, "_drain_messages", _drain_messages)  # noqa: B010


class QuietMonitor(Monitor):
    """Faust's monitor without its per-record statistics (3. above)."""

    def on_message_in(self, tp: Any, offset: int, message: Any) -> None:
        return None

    def on_stream_event_in(self, tp: Any, offset: int, stream: Any, event: Any) -> None:
        return None

    def on_stream_event_out(self, tp: Any, offset: int, stream: Any, event: Any,
                            state: Any = None) -> None:
        return None

    def on_message_out(self, tp: Any, offset: int, message: Any) -> None:
        return None


DONE = object()


def start(coro: Coroutine[Any, Any, Any]) -> Any:
    """Run `coro` until it first suspends: `DONE` if it finished (its exception, if it
    raised), else what it yielded to the event loop (resume it with `resume`)."""
    try:
        return coro.send(None)
    except StopIteration:
        return DONE


class _Resume:
    """The rest of a coroutine that `start` ran to its first suspension, as an awaitable:
    the value it yielded goes to the event loop first, then every value, result and
    exception (cancellation included) passes between the two as if never interrupted."""

    def __init__(self, coro: Coroutine[Any, Any, Any], yielded: Any) -> None:
        self._coro = coro
        self._yielded = yielded

    def __await__(self) -> Generator[Any, Any, Any]:
        return self._relay()

    def _relay(self) -> Generator[Any, Any, Any]:
        coro, yielded = self._coro, self._yielded
        while True:
            try:
                sent = yield yielded
            except GeneratorExit:
                coro.close()
                raise
            except BaseException as exc:  # passed on, as a task would pass it
                try:
                    yielded = coro.throw(exc)
                except StopIteration as stop:
                    return stop.value
            else:
                try:
                    yielded = coro.send(sent)
                except StopIteration as stop:
                    return stop.value


async def resume(coro: Coroutine[Any, Any, Any], yielded: Any) -> Any:
    return await _Resume(coro, yielded)


async def _drain_messages(self: Any, fetcher: Any) -> None:  # pragma: no cover - Faust's loop
    """Faust 0.15.3's `Consumer._drain_messages`, with the delivery run in place (above).

    Otherwise Faust's: read offsets, gap tracking, commit every N acks (less its debug log
    of a record older than the read offset, which it skips, as here).
    """
    callback = self.callback
    getmany = self.getmany
    consumer_should_stop = self._stopped.is_set
    fetcher_should_stop = fetcher._stopped.is_set
    get_read_offset = self._read_offset.__getitem__
    set_read_offset = self._read_offset.__setitem__
    flag_consumer_fetching = faust_consumer.CONSUMER_FETCHING
    set_flag = self.diag.set_flag
    unset_flag = self.diag.unset_flag
    commit_every = self._commit_every
    acks_enabled_for = self.app.topics.acks_enabled_for
    yield_every = 100
    num_since_yield = 0
    sleep = asyncio.sleep
    try:
        while not (consumer_should_stop() or fetcher_should_stop()):
            set_flag(flag_consumer_fetching)
            ait = getmany(timeout=1.0)
            await self.sleep(0)
            if not self.should_stop:
                async for tp, message in ait:
                    num_since_yield += 1
                    if num_since_yield > yield_every:
                        await sleep(0)
                        num_since_yield = 0
                    offset = message.offset
                    r_offset = get_read_offset(tp)
                    if r_offset is None or offset >= r_offset:
                        gap = offset - (r_offset or 0)
                        if gap > 1 and r_offset and acks_enabled_for(message.topic):
                            await self._add_gap(tp, r_offset + 1, offset)
                        if commit_every is not None and self._n_acked >= commit_every:
                            self._n_acked = 0
                            await self.commit()
                        delivery = cast(Coroutine[Any, Any, Any], callback(message))
                        yielded = start(delivery)
                        if yielded is not DONE:
                            await self.wait_first(resume(delivery, yielded),
                                                  self.suspend_flow.wait())
                        set_read_offset(tp, offset)
                unset_flag(flag_consumer_fetching)
    except self.consumer_stopped_errors:
        if self.transport.app.should_stop:
            self.log.info("Broker stopped consumer, shutting down...")
            return
        raise
    except asyncio.CancelledError:
        if self.transport.app.should_stop:
            self.log.info("Consumer shutting down for user cancel.")
            return
        raise
    except Exception as exc:
        self.log.exception("Drain messages raised: %r", exc)
        raise
    finally:
        unset_flag(flag_consumer_fetching)
