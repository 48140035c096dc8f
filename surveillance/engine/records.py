"""What goes into the engine and what comes out of one batch."""

from __future__ import annotations

from collections.abc import Mapping, MutableMapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from surveillance.contracts import Alert
from surveillance.stream import topics


@dataclass(frozen=True, slots=True)
class Record:
    """One consumed record, as any Kafka client gives it."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: Sequence[tuple[str, bytes]] = ()
    #: An input record's value already decoded as its topic's contract by its reader
    #: (`bulk.order.decoded`: the bulk runner orders its inputs by their time), which
    #: ingest then takes as it is: one decode per record. None: ingest decodes it.
    decoded: Any = field(default=None, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class Produce:
    """A record to send; `partition` None lets the producer's partitioner place it by key."""

    topic: str
    key: bytes
    value: bytes
    partition: int | None = None
    headers: dict[str, bytes] | None = None


@dataclass(frozen=True, slots=True)
class Change:
    """The value a table key has at the end of a batch (None: deleted), written to the
    changelog partition `partition` (that of the record that caused the last write): a
    JSON-ready dict, or an object msgspec encodes to the same JSON (`Engine`'s
    `join_objects`)."""

    table: str
    key: str
    value: Any
    partition: int


#: A metric to record, by name, with its arguments: ("case", (tool, version, site, outcome)).
#: `stream.effects` makes the calls on `observe.metrics` and `observe.publish`.
MetricCall = tuple[str, tuple[Any, ...]]


@dataclass
class Output:
    """Everything one batch asks the outside world to do, in the order it arose."""

    produce: list[Produce] = field(default_factory=list)
    changes: list[Change] = field(default_factory=list)
    metrics: list[MetricCall] = field(default_factory=list)
    #: The alerts among `produce`, as objects (tests and reports read them).
    alerts: list[Alert] = field(default_factory=list)
    #: Whether `metric` keeps its calls (a caller may skip working out their arguments).
    metered: ClassVar[bool] = True

    def metric(self, name: str, *args: Any) -> None:
        self.metrics.append((name, args))

    def apply_to(self, tables: Mapping[str, MutableMapping[str, Any]]) -> None:
        """Write the batch's table changes into the tables' backing mappings (by name), in
        order: what a caller without Faust tables persists before the next batch."""
        for change in self.changes:
            table = tables[change.table]
            if change.value is None:
                table.pop(change.key, None)
            else:
                table[change.key] = change.value

    def alert(self, alerts: list[Alert]) -> None:
        for alert in alerts:
            self.alerts.append(alert)
            self.produce.append(Produce(topics.ALERTS, alert.tool_id.encode(),
                                        alert.model_dump_json().encode()))


class Unmetered(Output):
    """The output of an engine whose caller records no metrics (the bulk runner serves no
    /metrics): each call is dropped as it is made, not kept to be dropped later (about
    2.5 metric calls per input event)."""

    metered: ClassVar[bool] = False

    def metric(self, name: str, *args: Any) -> None:
        pass
