"""Correct log-end offsets on the embedded broker (Tansu 0.6.0).

Tansu answers ListOffsets(latest) with the base offset of a partition's last record
batch plus one, not the log end: a partition holding one batch of five records reports
1. Faust's table recovery reads each changelog up to that offset, so after a crash it
could stop short of the last records and restore stale state. Fetch responses do carry
the true high watermark, so `install()` wraps `AIOKafkaConsumer.end_offsets` to fetch
once from the reported offset and take the high watermark from the answer.

Only for the embedded broker (`SURVEILLANCE_KAFKA__PROBE_LOG_END=true`, which
`stream.runner.WorkerProcess` sets); Apache Kafka answers ListOffsets correctly.
"""

from __future__ import annotations

import asyncio
from collections.abc import Collection
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition

_original = AIOKafkaConsumer.end_offsets
PROBE_TIMEOUT_SECONDS = 10.0


async def probe_log_end(
    bootstrap: str | list[str], reported: dict[TopicPartition, int]
) -> dict[TopicPartition, int]:
    """The true log end of each partition, given what ListOffsets reported."""
    nonempty = [tp for tp, end in reported.items() if end > 0]
    if not nonempty:
        return dict(reported)
    probe = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await probe.start()
    try:
        probe.assign(nonempty)
        for tp in nonempty:
            probe.seek(tp, reported[tp] - 1)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + PROBE_TIMEOUT_SECONDS
        while any(probe.highwater(tp) is None for tp in nonempty) and loop.time() < deadline:
            await probe.getmany(timeout_ms=200)
        out = dict(reported)
        for tp in nonempty:
            high = probe.highwater(tp)
            if high is not None and high > out[tp]:
                out[tp] = high
        return out
    finally:
        await probe.stop()


async def _end_offsets(
    self: AIOKafkaConsumer, partitions: Collection[TopicPartition]
) -> dict[TopicPartition, int]:
    reported: dict[TopicPartition, int] = await _original(self, partitions)
    client: Any = self._client
    return await probe_log_end(client._bootstrap_servers, reported)


def install() -> None:
    AIOKafkaConsumer.end_offsets = _end_offsets
