"""Everything the engine is configured with: built once per worker (or test, or backfill)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta

from surveillance.clinical.baselines import ToolBaseline, load_registry
from surveillance.engine.evaluation import EVALUATION_GRACE
from surveillance.engine.horizon import CaseLookup
from surveillance.settings import Settings
from surveillance.stream.dlq_seal import Sealer
from surveillance.stream.ingest import DateRange, Ingest

#: A join partition silent this long stops holding the case clock back (`SourceWatermark`).
SOURCE_IDLE_SECONDS = 30.0


@dataclass(frozen=True)
class EngineConfig:
    registry: Mapping[str, ToolBaseline]
    ingest: Ingest
    #: Partitions of the input topics, `cases.join` and the join table.
    partitions: int
    horizon: timedelta = timedelta(days=14)
    retention: timedelta = timedelta(days=120)
    dates: DateRange = field(default_factory=DateRange)
    max_event_bytes: int = 64 * 1024
    sealer: Sealer = field(default_factory=lambda: Sealer(""))
    idle_seconds: float = SOURCE_IDLE_SECONDS
    #: Build a snapshot record per figure at each daily evaluation (off in scenario tests
    #: that only read alerts: it is most of an evaluation's cost).
    snapshots: bool = True
    #: Case records whose latest event time is this far behind their partition's case
    #: clock leave the case table (`engine.horizon`); None keeps every record.
    case_horizon: timedelta | None = timedelta(days=180)
    #: Where a revision of an evicted case finds its previous revision (the store's
    #: `cases`); None: such revisions are dead-lettered (reason `horizon`).
    case_lookup: CaseLookup | None = None
    #: The monitor's last-N-cases window (each site's last N records are kept past the
    #: case horizon for it).
    last_n: int = 200
    #: How long after a day's end (event time, the case clock) the day is evaluated: case
    #: revisions read later count from the next evaluation on (`engine.evaluation`).
    evaluation_grace: timedelta = EVALUATION_GRACE
    #: A tool's state snapshot (`engine.snapshots`) is written at the end of a batch that
    #: changed the tool at most once per this many seconds (the batch's monotonic clock;
    #: 0: every such batch); `Engine.snapshot` writes the pending ones at once.
    snapshot_seconds: float = 60.0

    @classmethod
    def from_settings(cls, settings: Settings, lookup: CaseLookup | None = None
                      ) -> EngineConfig:
        """`lookup`: the store's cases (`store.case_lookup`), given by the shell that has
        a store; the engine itself does no I/O."""
        registry = load_registry(settings.baselines_file)
        dates = DateRange(settings.stream.earliest_event_date)
        return cls(
            registry=registry,
            ingest=Ingest(
                key=settings.pseudonym_key.get_secret_value().encode(),
                finding_codes=[t.finding_code for t in registry.values()],
                max_bytes=settings.stream.max_event_bytes, dates=dates,
            ),
            partitions=settings.kafka.partitions,
            horizon=timedelta(hours=settings.stream.unlabelled_horizon_hours),
            retention=timedelta(days=settings.stream.join_retention_days),
            dates=dates,
            max_event_bytes=settings.stream.max_event_bytes,
            sealer=Sealer(settings.dlq_encryption_key.get_secret_value()),
            case_horizon=timedelta(days=settings.stream.case_horizon_days),
            case_lookup=lookup,
            evaluation_grace=timedelta(hours=settings.stream.evaluation_grace_hours),
        )

    @classmethod
    def plain(cls, partitions: int, key: bytes = b"test-key", snapshots: bool = True,
              registry: Mapping[str, ToolBaseline] | None = None) -> EngineConfig:
        """The defaults with the shipped registry: tests, benchmarks, scenario runs."""
        registry = registry if registry is not None else load_registry()
        ingest = Ingest(key, [b.finding_code for b in registry.values()], 64 * 1024)
        return cls(registry=registry, ingest=ingest, partitions=partitions,
                   snapshots=snapshots)
