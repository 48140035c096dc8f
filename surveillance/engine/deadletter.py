"""A record the engine cannot take becomes a dead letter on `<topic>.dlq`, with the reason."""

from __future__ import annotations

import logging
from datetime import datetime

from surveillance.contracts import DeadLetter
from surveillance.engine.config import EngineConfig
from surveillance.engine.records import Output, Produce, Record
from surveillance.stream import topics
from surveillance.stream.ingest import Rejected

log = logging.getLogger(__name__)


def dead_letter(config: EngineConfig, record: Record, why: Rejected, now: datetime,
                out: Output) -> None:
    original = record.value or b""
    letter = DeadLetter(
        source_topic=record.topic,
        source_partition=record.partition,
        source_offset=record.offset,
        reason=f"{why.reason}: {why.message}"[:2000],
        received_at=now,
        original_b64=config.sealer.seal(original[: config.max_event_bytes]),
        original_size=len(original),
        encryption=config.sealer.encryption,
    )
    out.produce.append(Produce(topics.dlq(record.topic),
                               f"{record.partition}:{record.offset}".encode(),
                               letter.model_dump_json().encode()))
    out.metric("dead_letter", record.topic, why.reason)
    log.warning("dead-lettered %s[%d]@%d: %s", record.topic, record.partition, record.offset,
                why.reason)
