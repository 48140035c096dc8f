"""What the worker keeps of an adverse-event report in its `adverse_state` table.

The table (and its changelog topic, compacted, kept forever) needs what links a report
to its tool, version and case and what its regulatory clocks need: ids, dates, outcome,
device, pseudonymized accession and patient, AI output, discordance. The free-text
narrative (it often names the patient, MRN and date of birth) and the reporter's name
and contact are not needed there, so they are withheld. The full report stays in the
intake's record and on `adverse.events` until that topic's retention; PostgreSQL never
stores them either (migration 0001).
"""

from __future__ import annotations

from typing import Any

from surveillance.contracts import AdverseEvent

WITHHELD = "[withheld: see the intake record]"


def redacted(report: AdverseEvent) -> AdverseEvent:
    """The report without narrative, reporter name and reporter contact."""
    return report.model_copy(update={
        "event": report.event.model_copy(update={"narrative": WITHHELD}),
        "reporter": report.reporter.model_copy(update={"name": WITHHELD, "contact": WITHHELD}),
    })


def for_table(report: AdverseEvent) -> dict[str, Any]:
    """The JSON the `adverse_state` table stores for this report."""
    return redacted(report).model_dump(mode="json")
