"""The case ledger: the latest revision of every adjudicated case, and counts derived from it.

A consumer of `cases.adjudicated` applies each case through `CaseLedger.apply`, which keeps
the highest revision per case id. A lower or equal revision (a replay after a crash, a
duplicate) has no effect; a higher one replaces the earlier outcome, so a corrected case
moves between cells of the confusion matrix instead of being counted twice. Counts are a
function of the records alone, which is what lets a worker rebuild them from its Faust
table after a rebalance.
"""

from __future__ import annotations

from collections import Counter
from operator import attrgetter
from typing import Any

import msgspec

from surveillance.contracts import AdjudicatedCase, CaseOutcome, wire
from surveillance.contracts.wire import AnyAdjudicatedCase

CountKey = tuple[str, str, str, str]  # tool, version, site, outcome

#: The fields of a case that the tool's drift bank reads (its AI-result view, see
#: `stream.case_features`). Kept with each record, so that a worker taking over a tool's
#: partition rebuilds the drift bank (reference, detectors, open windows) from the table
#: instead of starting a new reference period with whatever comes next.
DRIFT_FIELDS = frozenset({
    "ai_event_id", "tool_id", "software_version", "finding_code", "ai_result",
    "operating_threshold", "result_indicator", "accession", "study_date", "site",
    "modality", "contrast_indication", "scanner_manufacturer", "scanner_model",
    "scanner_software_version", "kvp", "slice_thickness", "pixel_spacing",
    "protocol_name", "age", "sex", "inference_date",
})


class CaseRecord(msgspec.Struct, frozen=True):
    """What the ledger keeps per case (the Faust table value, as a dict).

    A msgspec struct: `as_dict` is a shallow copy (the features dict is shared, never
    mutated), written once per changed case per batch."""

    revision: int
    outcome: str
    tool: str
    version: str
    site: str
    partition: int
    inference_ts: float
    labelled_ts: float | None = None
    score: float = 0.0
    positive_call: bool = False
    scanner_manufacturer: str = ""
    sex: str = "U"
    age: int | None = None
    #: `DRIFT_FIELDS` of the case as JSON values (None in records written before them).
    features: dict[str, Any] | None = None
    #: The join partition the case came from: a drift bank rebuilt from the records
    #: closes no day some partition has not delivered yet (None: not known).
    source: int | None = None

    def as_dict(self) -> dict[str, object]:
        return msgspec.structs.asdict(self)

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> CaseRecord:
        return cls(**raw)

    @property
    def key(self) -> CountKey:
        return (self.tool, self.version, self.site, self.outcome)


def record_of(case: AnyAdjudicatedCase, partition: int, source: int | None = None) -> CaseRecord:
    # `_value_`, not `value`: the same string, without the enum's property (a Python-level
    # descriptor call per read, on the per-case path).
    return CaseRecord(
        source=source,
        revision=case.revision,
        outcome=case.outcome._value_,
        tool=case.tool_id,
        version=case.software_version,
        site=case.site,
        partition=partition,
        inference_ts=case.inference_date.timestamp(),
        labelled_ts=case.labelled_at.timestamp() if case.labelled_at else None,
        score=case.ai_result,
        positive_call=case.result_indicator,
        scanner_manufacturer=case.scanner_manufacturer,
        sex=case.sex._value_,
        age=case.age,
        features=drift_features(case),
    )


_DRIFT_INCLUDE = set(DRIFT_FIELDS)
#: `DRIFT_FIELDS` in the model's field order (that of pydantic's dump, and of the JSON).
_DRIFT_ORDER = tuple(name for name in AdjudicatedCase.model_fields if name in DRIFT_FIELDS)
_drift_values = attrgetter(*_DRIFT_ORDER)


def drift_features(case: AnyAdjudicatedCase) -> dict[str, Any]:
    """The case's `DRIFT_FIELDS` as JSON values (what a record keeps for the drift bank)."""
    if isinstance(case, wire.AdjudicatedCase):
        # msgspec writes each value as pydantic's JSON mode does (`contracts.wire`; the
        # wire tests check the records are equal), at a fraction of the cost.
        return dict(zip(_DRIFT_ORDER, msgspec.to_builtins(_drift_values(case)), strict=True))
    return case.model_dump(mode="json", include=_DRIFT_INCLUDE)


class CaseLedger:
    """Counts per (tool, version, site, outcome) over the cases this worker owns."""

    def __init__(self) -> None:
        self.counts: Counter[CountKey] = Counter()

    def apply(
        self, previous: CaseRecord | None, case: AnyAdjudicatedCase, partition: int,
        source: int | None = None,
    ) -> CaseRecord | None:
        """Return the record to store, or None when the case changes nothing."""
        if previous is not None and case.revision <= previous.revision:
            return None
        record = record_of(case, partition, source)
        if previous is not None:
            self.counts[previous.key] -= 1
            if not self.counts[previous.key]:
                del self.counts[previous.key]
        self.counts[record.key] += 1
        return record

    def add_existing(self, record: CaseRecord) -> None:
        """Count a record restored from the table (rebuild after assignment)."""
        self.counts[record.key] += 1

    def per_tool(self) -> dict[str, Counter[str]]:
        """Outcome counts per tool, all versions and sites together; `cases` is the total."""
        out: dict[str, Counter[str]] = {}
        for (tool, _version, _site, outcome), n in self.counts.items():
            c = out.setdefault(tool, Counter())
            c[outcome] += n
            c["cases"] += n
        return out


LABELLED = {CaseOutcome.TP.value, CaseOutcome.FP.value, CaseOutcome.TN.value, CaseOutcome.FN.value}
