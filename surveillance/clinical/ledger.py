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
from dataclasses import dataclass

from surveillance.contracts import AdjudicatedCase, CaseOutcome

CountKey = tuple[str, str, str, str]  # tool, version, site, outcome


@dataclass(frozen=True)
class CaseRecord:
    """What the ledger keeps per case (the Faust table value, as a dict)."""

    revision: int
    outcome: str
    tool: str
    version: str
    site: str
    partition: int
    inference_ts: float

    def as_dict(self) -> dict[str, object]:
        return {
            "revision": self.revision,
            "outcome": self.outcome,
            "tool": self.tool,
            "version": self.version,
            "site": self.site,
            "partition": self.partition,
            "inference_ts": self.inference_ts,
        }

    @classmethod
    def from_dict(cls, raw: dict[str, object]) -> CaseRecord:
        return cls(
            revision=int(raw["revision"]),  # type: ignore[call-overload]
            outcome=str(raw["outcome"]),
            tool=str(raw["tool"]),
            version=str(raw["version"]),
            site=str(raw["site"]),
            partition=int(raw["partition"]),  # type: ignore[call-overload]
            inference_ts=float(raw["inference_ts"]),  # type: ignore[arg-type]
        )

    @property
    def key(self) -> CountKey:
        return (self.tool, self.version, self.site, self.outcome)


def record_of(case: AdjudicatedCase, partition: int) -> CaseRecord:
    return CaseRecord(
        revision=case.revision,
        outcome=case.outcome.value,
        tool=case.tool_id,
        version=case.software_version,
        site=case.site,
        partition=partition,
        inference_ts=case.inference_date.timestamp(),
    )


class CaseLedger:
    """Counts per (tool, version, site, outcome) over the cases this worker owns."""

    def __init__(self) -> None:
        self.counts: Counter[CountKey] = Counter()

    def apply(
        self, previous: CaseRecord | None, case: AdjudicatedCase, partition: int
    ) -> CaseRecord | None:
        """Return the record to store, or None when the case changes nothing."""
        if previous is not None and case.revision <= previous.revision:
            return None
        record = record_of(case, partition)
        if previous is not None:
            self.counts[previous.key] -= 1
            if not self.counts[previous.key]:
                del self.counts[previous.key]
        self.counts[record.key] += 1
        return record

    def add_existing(self, record: CaseRecord) -> None:
        """Count a record restored from the table (rebuild after assignment)."""
        self.counts[record.key] += 1

    def drop_partitions(self, records: list[CaseRecord]) -> None:
        for record in records:
            self.counts[record.key] -= 1
            if not self.counts[record.key]:
                del self.counts[record.key]

    def per_tool(self) -> dict[str, Counter[str]]:
        """Outcome counts per tool, all versions and sites together; `cases` is the total."""
        out: dict[str, Counter[str]] = {}
        for (tool, _version, _site, outcome), n in self.counts.items():
            c = out.setdefault(tool, Counter())
            c[outcome] += n
            c["cases"] += n
        return out


LABELLED = {CaseOutcome.TP.value, CaseOutcome.FP.value, CaseOutcome.TN.value, CaseOutcome.FN.value}
