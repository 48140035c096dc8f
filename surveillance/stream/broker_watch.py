"""Notice that the broker lost its logs under a running worker, say so in one line, exit.

The embedded broker keeps its logs in memory. Killed and started again on the same port,
it answers with empty topics; the worker's consumer only logs "Heartbeat failed ...
re-joining group" and then waits forever (tried: 90 s without an error, an exit, or one
tick of a Faust timer), so the check cannot live inside Faust's event loop. A daemon
thread with its own kafka-python client (the worker's TLS/SASL options) asks the broker
for the log end of every topic of the service every few seconds. Offsets never go
backwards while a log is kept, so a partition whose log end is now below the highest one
seen before proves the log was lost (the embedded broker restarted; on Kafka: a topic
deleted and re-created, or unclean leader election). The table changelogs cannot refill
meanwhile, since only the stuck worker writes them.

Tansu answers ListOffsets(latest) with the last batch's base offset plus one
(`embedded.log_end`): lower than the true end, but it too only grows while the log is kept
and falls to 0 when it is lost, and the watch compares its own answers only, so the
reported value serves as it is. Nothing runs on the worker's hot path.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any

from surveillance.settings import KafkaSettings

log = logging.getLogger(__name__)

#: Seconds between two looks at the broker.
INTERVAL_SECONDS = 3.0
#: The worker's exit code when its broker lost the logs its state rests on.
EXIT_BROKER_LOST_DATA = 3

Partition = tuple[str, int]


@dataclass(frozen=True)
class Loss:
    """One partition whose log end fell below what the watch saw before."""

    topic: str
    partition: int
    seen: int
    now: int


class LogEndWatch:
    """Highest log end seen per partition; `observe` reports the first that went back.

    A partition missing from an answer (topic unknown for now, broker unreachable) is
    simply not judged: only a log end that the broker states and that is lower counts.
    """

    def __init__(self) -> None:
        self.highest: dict[Partition, int] = {}

    def observe(self, ends: Mapping[Partition, int]) -> Loss | None:
        loss = None
        for key, end in sorted(ends.items()):
            seen = self.highest.get(key)
            if seen is not None and end < seen:
                loss = loss or Loss(key[0], key[1], seen, end)
            else:
                self.highest[key] = end
        return loss


def message(bootstrap: str, loss: Loss) -> str:
    return (
        f"error: the broker at {bootstrap} restarted without its data (embedded broker: "
        f"memory only; {loss.topic}[{loss.partition}] ends at offset {loss.now}, was "
        f"{loss.seen}); the worker's state no longer matches it. Restart the demo/tests, "
        "or on real Kafka check the cluster's storage."
    )


def _log_ends(consumer: Any, topics: Collection[str]) -> dict[Partition, int]:
    """The broker's log end of every partition of `topics` that it knows now."""
    from kafka import TopicPartition

    partitions = [
        TopicPartition(topic, p)
        for topic in sorted(set(topics) & consumer.topics())
        for p in sorted(consumer.partitions_for_topic(topic) or ())
    ]
    if not partitions:
        return {}
    ends: dict[Any, int] = consumer.end_offsets(partitions)
    return {(tp.topic, tp.partition): int(end) for tp, end in ends.items()}


def _run(kafka: KafkaSettings, topics: Collection[str]) -> None:
    from kafka import KafkaConsumer

    from surveillance.kafka_clients import client_options

    # While the broker is away this client's reconnect errors would double the worker's
    # own (aiokafka's); nothing else in the worker uses kafka-python once it runs.
    logging.getLogger("kafka").setLevel(logging.CRITICAL)
    watch = LogEndWatch()
    consumer: Any = None
    while True:
        time.sleep(INTERVAL_SECONDS)
        try:
            if consumer is None:
                consumer = KafkaConsumer(
                    bootstrap_servers=kafka.bootstrap, enable_auto_commit=False,
                    request_timeout_ms=10_000, **client_options(kafka))
            loss = watch.observe(_log_ends(consumer, topics))
        except Exception as exc:  # unreachable for now: no verdict, look again
            log.debug("broker watch: no answer this time (%s)", exc)
            continue
        if loss is not None:
            log.critical(message(kafka.bootstrap, loss))
            for handler in logging.getLogger().handlers:
                handler.flush()
            # Faust's loop is the one that is stuck, so it cannot be asked to stop; the
            # state it holds is wrong anyway, and the supervisor (or the demo) restarts us.
            os._exit(EXIT_BROKER_LOST_DATA)


def start(kafka: KafkaSettings, topics: Collection[str]) -> None:
    """Watch `topics` in a daemon thread for as long as the worker runs."""
    threading.Thread(
        target=_run, args=(kafka, tuple(topics)), name="broker-watch", daemon=True
    ).start()
