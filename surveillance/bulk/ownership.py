"""Which partitions each bulk runner process owns: pure.

The engine has two keyed stages. The join reads `ai.results`, `reports.final` and
`cases.join` (keyed by accession) and keeps the join table; the case stage reads
`cases.adjudicated` and `adverse.events` (keyed by tool, co-partitioned) and keeps the
case and adverse tables. A process owns some join partitions (those partitions of the
three join topics and of the join table's changelog) and some case partitions (those of
the two case topics and of the case and adverse tables' changelogs). A tool's cases all
go to one `cases.adjudicated` partition, so the monitor and drift bank of a tool always
live in one process.

With two processes or more the stages are split rather than the partitions: the join's
and the case stage's costs are of the same order, and splitting by stage keeps each
process's share independent of how the tools happen to hash onto partitions (four tools
on four partitions put two on one partition in the shipped registry).
"""

from __future__ import annotations

from dataclasses import dataclass

from surveillance.stream import topics

JOIN_TOPICS = (topics.AI_RESULTS, topics.REPORTS_FINAL, topics.CASES_JOIN)
CASE_TOPICS = (topics.CASES_ADJUDICATED, topics.ADVERSE_EVENTS)


@dataclass(frozen=True)
class Ownership:
    join: frozenset[int]
    cases: frozenset[int]

    @classmethod
    def everything(cls, partitions: int) -> Ownership:
        every = frozenset(range(partitions))
        return cls(every, every)

    def topic_partitions(self) -> list[tuple[str, int]]:
        return ([(t, p) for t in JOIN_TOPICS for p in sorted(self.join)]
                + [(t, p) for t in CASE_TOPICS for p in sorted(self.cases)])


def plan(processes: int, partitions: int) -> list[Ownership]:
    """Disjoint ownerships covering every partition of both stages, one per process:
    one process owns everything; more split the join and the case partitions between
    ceil(n/2) join processes and floor(n/2) case processes (never more of either than
    there are partitions: the extra processes are not started)."""
    if processes < 1 or partitions < 1:
        raise ValueError(f"need at least one process and one partition, got {processes} "
                         f"and {partitions}")
    if processes == 1:
        return [Ownership.everything(partitions)]
    joiners = min((processes + 1) // 2, partitions)
    casers = min(processes // 2, partitions)
    none: frozenset[int] = frozenset()
    return ([Ownership(_share(partitions, joiners, i), none) for i in range(joiners)]
            + [Ownership(none, _share(partitions, casers, i)) for i in range(casers)])


def _share(partitions: int, processes: int, index: int) -> frozenset[int]:
    return frozenset(range(index, partitions, processes))
