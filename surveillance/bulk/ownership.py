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

With two and `surveillance backfill --tool-split` (`bulk.backfill` passes the tools), the
case partitions are shared out too, by the tools on them: the join process also owns the
case partitions of the lighter half of the tools, the other process those of the heavier
half (at least half of them). Split by stage, the case stage ran alone on one core for
the last third of a 90-day backfill: it lagged the join while the calibration processes
shared the cores, then caught up and replayed its held tools' drift with the join done.
With tools in both processes, both have case work to the end (the per-process timeline
shows the lone case stage gone), but on a loaded host it was not shown faster (the
join's process is then the longer one, and a held tool's last calibration job still
ends the backfill): not the default until measured in a quiet window.
The join stays in one process: its inputs are taken in one event-time order
(`bulk.order`), so the case records each tool reads come in the same order as with one
process (the same alerts).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
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


def plan(processes: int, partitions: int, tools: Sequence[int] = ()) -> list[Ownership]:
    """Disjoint ownerships covering every partition of both stages, one per process:
    one process owns everything; two share the case partitions by `tools` (the
    `cases.adjudicated` partition of each tool: `tool_split`), or, without tools, split
    by stage as more do: the join and the case partitions between ceil(n/2) join
    processes and floor(n/2) case processes (never more of either than there are
    partitions: the extra processes are not started)."""
    if processes < 1 or partitions < 1:
        raise ValueError(f"need at least one process and one partition, got {processes} "
                         f"and {partitions}")
    if processes == 1:
        return [Ownership.everything(partitions)]
    if processes == 2 and tools:
        return tool_split(partitions, tools)
    joiners = min((processes + 1) // 2, partitions)
    casers = min(processes // 2, partitions)
    none: frozenset[int] = frozenset()
    return ([Ownership(_share(partitions, joiners, i), none) for i in range(joiners)]
            + [Ownership(none, _share(partitions, casers, i)) for i in range(casers)])


def tool_split(partitions: int, tools: Sequence[int]) -> list[Ownership]:
    """Two processes: the first owns every join partition and the case partitions of the
    lighter tools, the second the case partitions holding at least half of `tools` (the
    partitions with most tools first, the lower first among equals), so the join and
    the heavier half of the case stage are apart."""
    if any(not 0 <= p < partitions for p in tools):
        raise ValueError(f"a tool's partition is outside 0..{partitions - 1}: {list(tools)}")
    held = Counter(tools)
    heavy: set[int] = set()
    for p in sorted(held, key=lambda p: (-held[p], p)):
        if 2 * sum(held[q] for q in heavy) >= len(tools):
            break
        heavy.add(p)
    every = frozenset(range(partitions))
    return [Ownership(every, every - heavy), Ownership(frozenset(), frozenset(heavy))]


def _share(partitions: int, processes: int, index: int) -> frozenset[int]:
    return frozenset(range(index, partitions, processes))
