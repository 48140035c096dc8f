"""Case streams for the case-horizon tests: `cases.adjudicated` records fed to the engine.

Cases are built directly (no ingest or join), keyed by tool, without source headers, so
the case clock is the latest AI time seen; each record is one batch, one second of
monotonic time after the previous one.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from surveillance.clinical.ledger import CaseRecord
from surveillance.contracts import AdjudicatedCase
from surveillance.engine.config import EngineConfig
from surveillance.engine.horizon import is_summary
from surveillance.engine.pipeline import CASE_TABLE, Engine
from surveillance.engine.records import Change, Produce, Record
from surveillance.privacy import pseudonymize
from surveillance.stream import topics
from tests.store_fixtures import TOOLS

T0 = datetime(2025, 1, 6, tzinfo=UTC)
#: Later than every event: the wall clock the records are read at.
NOW = datetime(2031, 1, 1, tzinfo=UTC)
KEY = b"horizon-test-key"
_INDICATOR = {"TP": True, "FP": True, "TN": False, "FN": False}
_LABEL = {"TP": "present", "FN": "present", "FP": "absent", "TN": "absent"}


def make_case(n: int, tool: str, at: datetime, outcome: str, site: str = "site-a",
              version: str = "1.0", revision: int = 0, report_hours: float = 2.0
              ) -> AdjudicatedCase:
    """Case `n` of `tool`, AI call at `at`, reported `report_hours` later."""
    finding, modality, *_ = TOOLS[tool]
    accession = pseudonymize(KEY, "accession", f"ACC-{n}")
    positive = _INDICATOR[outcome]
    return AdjudicatedCase(
        case_id=f"{accession}:{tool}", revision=revision, outcome=outcome,
        label=_LABEL[outcome], label_status="final" if revision == 0 else "corrected",
        tool_id=tool, software_version=version, finding_code=finding, site=site,
        ai_result=0.8 if positive else 0.2, operating_threshold=0.5,
        result_indicator=positive, accession=accession, study_date=at.date(),
        inference_date=at, labelled_at=at + timedelta(hours=report_hours), modality=modality,
        scanner_manufacturer="Siemens", scanner_model="SOMATOM", scanner_software_version="VB20",
        protocol_name="ROUTINE", age=60, sex="F", ai_event_id=f"ai-{n}",
        report_event_id=f"rp-{n}-{revision}",
    )


def flipped(case: AdjudicatedCase, revision: int, at: datetime) -> AdjudicatedCase:
    """A corrected report of `case`, finalized at `at`: the opposite label."""
    outcome = {"TP": "FP", "FP": "TP", "TN": "FN", "FN": "TN"}[case.outcome.value]
    return AdjudicatedCase.model_validate({
        **case.model_dump(), "revision": revision, "outcome": outcome,
        "label": _LABEL[outcome], "label_status": "corrected", "labelled_at": at,
        "report_event_id": f"{case.report_event_id}-r{revision}"})


@dataclass
class Feed:
    """One engine over dict tables; every change kept in log order (the changelog)."""

    config: EngineConfig
    tables: dict[str, dict[str, Any]] = field(default_factory=lambda: {
        "join_state": {}, "case_state": {}, "adverse_state": {}})
    changelog: list[Change] = field(default_factory=list)
    alerts: list[str] = field(default_factory=list)
    dead_letters: list[Produce] = field(default_factory=list)
    metrics: list[tuple[str, tuple[Any, ...]]] = field(default_factory=list)
    offset: int = 0

    def __post_init__(self) -> None:
        self.engine = Engine(self.config, *self.tables.values())

    def feed(self, cases: Iterable[AdjudicatedCase], partition: int = 0) -> None:
        for case in cases:
            record = Record(topics.CASES_ADJUDICATED, partition, self.offset,
                            case.tool_id.encode(), case.model_dump_json().encode())
            out = self.engine.process([record], NOW, float(self.offset))
            self.offset += 1
            for change in out.changes:
                table = self.tables[change.table]
                if change.value is None:
                    table.pop(change.key, None)
                else:
                    table[change.key] = change.value
            self.changelog += out.changes
            self.alerts += [a.alert_id for a in out.alerts]
            self.dead_letters += [p for p in out.produce if p.topic.endswith(".dlq")]
            self.metrics += out.metrics

    def records(self) -> dict[str, CaseRecord]:
        return {k: CaseRecord.from_dict(v) for k, v in self.tables["case_state"].items()
                if not is_summary(k)}

    def restored(self) -> Feed:
        """A new engine on the tables as the changelog restores them, rebuilt (a worker
        taking the partitions over)."""
        tables: dict[str, dict[str, Any]] = {"join_state": {}, "case_state": {},
                                             "adverse_state": {}}
        for change in self.changelog:
            if change.value is None:
                tables[change.table].pop(change.key, None)
            else:
                tables[change.table][change.key] = change.value
        other = Feed(self.config, tables, list(self.changelog), offset=self.offset)
        other.engine.cases.rebuild(sorted(other.records().items()), {0})
        return other

    def tombstoned(self) -> set[str]:
        return {c.key for c in self.changelog if c.table == CASE_TABLE and c.value is None}


def windows(engine: Engine) -> dict[tuple[Any, ...], Any]:
    """Confusion counts of every window of every key the monitor holds (keys are
    ((tool, t), (version, v), (site, s)[, (dimension, value)])) of the versions it still
    evaluates (a case in the longest window), read at the latest AI day in the table;
    last-N only for sites (subgroups' last-N are not kept past the horizon)."""
    monitor = engine.cases.monitor
    latest = max(r.inference_ts for r in engine_records(engine))
    at = datetime.fromtimestamp(latest, UTC)
    longest = monitor.windows_days[-1]
    out: dict[tuple[Any, ...], Any] = {}
    for tool in engine.config.registry:
        for key in monitor.window_keys(tool):
            (_, t), (_, version), (_, site), *subgroup = key
            if not monitor.window(t, version, "all", longest, at).n:
                continue  # a version no longer evaluated: nothing of it is published
            kinds: list[int | Literal["last_n"]] = [*monitor.windows_days]
            if not subgroup:
                kinds.append("last_n")
            for kind in kinds:
                out[(key, kind)] = monitor.window(t, version, site, kind, at,
                                                  subgroup[0] if subgroup else None)
    return out


def engine_records(engine: Engine) -> list[CaseRecord]:
    backing = engine.case_table.backing
    return [CaseRecord.from_dict(v) for k, v in backing.items() if not is_summary(k)]
