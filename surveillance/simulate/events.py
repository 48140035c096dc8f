"""What the simulator emits: events as the source systems send them, and the ground truth."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime

#: Outcome keys of `ToolTruth.final_outcomes`.
OUTCOME_KEYS = ("TP", "FP", "TN", "FN", "indeterminate", "no_report")


@dataclass(frozen=True)
class SimEvent:
    topic: str
    #: The raw accession number: source systems key their messages by accession.
    key: bytes
    #: JSON of the contract model, or the invalid bytes.
    value: bytes
    #: Time the source system sends the event (tz-aware); events are in arrival order.
    arrival: datetime
    valid: bool
    #: None for invalid events that carry no id.
    event_id: str | None


@dataclass
class ToolTruth:
    """What a correct pipeline must count for one tool over the whole stream.

    - `cases`: distinct valid AI results (distinct event ids) in the stream.
    - `final_outcomes`: per case, TP/FP/TN/FN/"indeterminate" from the AI call and the label
      of the LAST report of the case's accession in the stream (corrections applied);
      "no_report" when no report arrives within the stream. Sums to `cases`.
    - `corrections`: cases whose label was changed by a corrected/addendum report in the
      stream.
    - `correction_reports`: corrected/addendum report events (valid, duplicates not
      counted) in the stream for the accessions of this tool's cases.
    - `versions`: cases per AI software version.
    """

    cases: int = 0
    final_outcomes: Counter[str] = field(default_factory=Counter)
    corrections: int = 0
    versions: Counter[str] = field(default_factory=Counter)
    correction_reports: int = 0
