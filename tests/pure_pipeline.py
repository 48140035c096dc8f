"""The worker's ingest -> join -> ledger path without Kafka, for scenario tests.

Yields each new case revision with the record it replaces, in arrival order, exactly as
`stream.app`'s join and case agents apply them (one join partition; the event-time
watermark advanced by every event).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from datetime import datetime, timedelta

from surveillance.clinical import join
from surveillance.clinical.baselines import load_registry
from surveillance.clinical.ledger import CaseLedger, CaseRecord
from surveillance.contracts import AdjudicatedCase
from surveillance.simulate import SimEvent
from surveillance.stream.ingest import Ingest, Rejected

HORIZON = timedelta(days=14)


def case_revisions(
    events: Iterable[SimEvent], key: bytes = b"test-key"
) -> Iterator[tuple[CaseRecord | None, AdjudicatedCase]]:
    codes = [b.finding_code for b in load_registry().values()]
    ingest = Ingest(key, codes, 64 * 1024)
    ledger = CaseLedger()
    states: dict[str, join.JoinState] = {}
    table: dict[str, CaseRecord] = {}
    watermark: datetime | None = None
    for event in events:
        item = ingest(event.topic, event.value, event.arrival)
        if isinstance(item, Rejected):
            continue
        state, cases = join.apply(states.get(item.accession), item, 0, HORIZON, watermark)
        states[item.accession] = state
        at = join.event_time(item)
        watermark = at if watermark is None or at > watermark else watermark
        for case in cases:
            previous = table.get(case.case_id)
            record = ledger.apply(previous, case, 0)
            if record is not None:
                table[case.case_id] = record
                yield previous, case
