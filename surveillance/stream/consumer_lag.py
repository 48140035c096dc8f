"""Messages behind the end of each stream topic a worker reads (the consumer-lag gauge).

Faust keeps the last offset it read per partition (`Consumer._read_offset`) and the
high watermark of each partition's last fetch; the lag of a topic is the sum over its
assigned partitions of what lies between the two. A partition not fetched since its
assignment has no high watermark yet: its lag is unknown, not zero, and is left out.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from surveillance.observe import metrics

log = logging.getLogger(__name__)

#: The topics the gauge has a label value for (the stream topics a worker reads).
TOPICS = frozenset(t.value for t in metrics.Topic)


def lag_by_topic(assignment: Iterable[Any], read: Mapping[Any, int | None],
                 highwater: Callable[[Any], int | None]) -> dict[str, int]:
    """topic -> messages not yet read, over the assigned partitions (`tp.topic`) of `TOPICS`
    whose high watermark is known; `read`: the last offset read per partition."""
    lag: dict[str, int] = {}
    for tp in assignment:
        if tp.topic not in TOPICS:
            continue
        position, high = read.get(tp), highwater(tp)
        if high is None:
            continue
        behind = high - (position + 1 if position is not None else 0)
        lag[tp.topic] = lag.get(tp.topic, 0) + max(behind, 0)
    return lag


def measure(consumer: Any) -> None:
    """Set the gauge from a Faust consumer's assignment, read offsets and watermarks. A
    failure is logged, not raised: a timer's exception would stop the whole worker."""
    try:
        for topic, n in lag_by_topic(consumer.assignment(), consumer._read_offset,
                                     consumer.highwater).items():
            metrics.set_consumer_lag(metrics.Topic(topic), n)
    except Exception:
        log.exception("consumer lag measurement failed; retrying next tick")
