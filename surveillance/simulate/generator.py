"""The seeded event simulator: AI results and reports of a health system, with ground truth.

For every study (profiles.py gives volumes, scanners, patients) and every tool that scores
it: the finding is present with the tool's prevalence; the report states the label (2%
indeterminate); the AI score is drawn from class-conditional beta distributions solved so
that the tool's positive calls reproduce the registry's sensitivity and specificity at its
operating threshold (scores.py). The AI result arrives minutes after acquisition; the
report hours to days later, except in an orchestrator backlog (5% of studies) when the
report comes first. About 1% of original reports misread one finding (the opposite
label, or "cannot exclude" for a fifth of them) and are later corrected or addended with
the true label: corrections fix errors, so a stable tool's final figures stay at its
cleared operating point. Scenario knobs act from the day of acquisition (scenario.py); faults are
injected last (faults.py). The stream ends at `start + days`: whatever would arrive later
is not in it.

Randomness comes from one `numpy` SeedSequence per seed, split into independent streams for
studies, report wording and faults: the same arguments give byte-identical events, enabling
a fault does not change the clean events, and the share of structured reports changes no
study, label or event id (only how each report is worded).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta

import numpy as np

from surveillance.clinical.baselines import ToolBaseline, load_registry
from surveillance.contracts import (
    AIResult,
    Exam,
    Label,
    ReportFinal,
    ReportStatus,
    StructuredFinding,
)
from surveillance.simulate import profiles as P
from surveillance.simulate.events import SimEvent, ToolTruth
from surveillance.simulate.faults import Faults, duplicates, invalid_events
from surveillance.simulate.reports import render_report_text
from surveillance.simulate.scenario import Scenario, ScenarioError
from surveillance.simulate.studies import (
    LABELS,
    StudyDraws,
    acquisition_of,
    draw_studies,
    scanner_of,
    sex_of,
)
from surveillance.simulate.truth import CaseRecord, ReportRecord, tool_truth

_STABLE = Scenario()
#: The first simulated day unless the caller gives one.
DEFAULT_START = date(2026, 7, 1)
_CLEAN = Faults()


@dataclass(frozen=True, slots=True)
class _ReportDraft:
    event_id: str
    study_type: str
    accession: str
    patient_id: str
    site: str
    finalized: datetime
    status: ReportStatus
    structured: bool
    exam: Exam


@dataclass
class _Stream:
    text_rng: np.random.Generator
    events: list[SimEvent]
    cases: list[CaseRecord]
    reports: list[ReportRecord]


def simulate(
    days: int = 90,
    seed: int = 7,
    start: date = DEFAULT_START,
    scenario: Scenario = _STABLE,
    faults: Faults = _CLEAN,
    volume_scale: float = 1.0,
    tools: Sequence[str] | None = None,
) -> tuple[list[SimEvent], dict[str, ToolTruth]]:
    """Events in arrival order, and per tool what a correct pipeline must count."""
    if days < 1:
        raise ScenarioError(f"days must be at least 1, got {days}")
    if volume_scale <= 0:
        raise ScenarioError(f"volume_scale must be positive, got {volume_scale}")
    registry = load_registry()
    selected = _selected_tools(registry, tools)
    _check_scenario(registry, scenario)
    study_seq, text_seq, fault_seq = np.random.SeedSequence(seed).spawn(3)
    rng = np.random.default_rng(study_seq)
    stream = _Stream(np.random.default_rng(text_seq), [], [], [])
    t0 = datetime(start.year, start.month, start.day, tzinfo=UTC)
    end = t0 + timedelta(days=days)
    next_accession = int(rng.integers(10**9, 2 * 10**9))
    for study_type in P.STUDY_TYPES:
        type_tools = [registry[t] for t in study_type.tools if t in selected]
        if not type_tools:
            continue
        draws = draw_studies(rng, study_type, type_tools, t0, days, volume_scale, scenario,
                             faults.correction_rate, faults.structured_rate)
        _emit_study_type(stream, study_type, type_tools, draws, t0, scenario, next_accession)
        next_accession += draws.n
    # Python's sort is stable: events arriving at the same millisecond keep creation order.
    clean = [e for e in sorted(stream.events, key=lambda e: e.arrival) if e.arrival < end]
    dup_rng, invalid_rng = (np.random.default_rng(s) for s in fault_seq.spawn(2))
    extra = duplicates(dup_rng, clean, faults.duplicate_rate, end)
    extra += invalid_events(invalid_rng, clean, faults.invalid_rate, end)
    events = sorted(clean + extra, key=lambda e: e.arrival)
    codes = {t: registry[t].finding_code for t in selected}
    return events, tool_truth(stream.cases, stream.reports, codes, end)


def past_start(days: int, today: date, usual: date = DEFAULT_START) -> date:
    """The first day of a `days`-day stream fed to the service on the wall clock: `usual`,
    or earlier when a stream from `usual` would reach past `today` (every arrival is before
    the start + `days`). The service dead-letters an event dated in the future (reason
    `schema`, `stream.ingest.DateRange`), so such a stream would lose its latest cases."""
    return min(usual, today - timedelta(days=days))


def utc_today() -> date:
    """The wall clock's date in UTC, the clock the service date-checks events against."""
    return datetime.now(UTC).date()


def stream_start(days: int, start: date | None, today: date | None = None) -> date:
    """The first day of a `days`-day stream a user asks for (`--start`, or none) that will
    be fed to the service: `past_start` without one; a given start whose stream would reach
    past `today` (default: `utc_today()`) is refused, since its latest events would be
    dead-lettered as "in the future" and read as lost by the service."""
    today = utc_today() if today is None else today
    if start is None:
        return past_start(days, today)
    end = start + timedelta(days=days)
    if end > today:
        raise ScenarioError(
            f"--start {start.isoformat()} with --days {days} runs to "
            f"{(end - timedelta(days=1)).isoformat()}, past today ({today.isoformat()} UTC): "
            "the service dead-letters events dated in the future; give an earlier --start "
            "or fewer --days (without --start the stream ends yesterday)"
        )
    return start


def _selected_tools(registry: dict[str, ToolBaseline], tools: Sequence[str] | None) -> list[str]:
    simulated = [t for t in P.TOOL_PROFILES if t in registry]
    if tools is None:
        return [t for t in simulated if t not in P.OPT_IN_TOOLS]
    unknown = sorted(set(tools) - set(simulated))
    if unknown:
        raise ScenarioError(
            f"cannot simulate tools {unknown}; simulated tools are: {', '.join(simulated)}"
        )
    return [t for t in simulated if t in tools]


def _check_scenario(registry: dict[str, ToolBaseline], scenario: Scenario) -> None:
    for field_name in ("model_update_tool", "drop_tool", "outage_tool"):
        tool = getattr(scenario, field_name)
        if tool not in registry or tool not in P.TOOL_PROFILES:
            raise ScenarioError(f"Scenario.{field_name} {tool!r} is not a simulated tool")
    if not 0.0 < scenario.triage_speedup <= 1.0:
        raise ScenarioError(
            f"Scenario.triage_speedup must be in (0, 1], got {scenario.triage_speedup}"
        )
    if not 0.0 < scenario.drop_to < 1.0:
        raise ScenarioError(f"Scenario.drop_to must be between 0 and 1, got {scenario.drop_to}")
    if scenario.outage_days < 1:
        raise ScenarioError(f"Scenario.outage_days must be >= 1, got {scenario.outage_days}")
    outage_sites = {s.site for t in P.STUDY_TYPES if scenario.outage_tool in t.tools
                    for s in t.sites}
    if scenario.outage_site not in outage_sites:
        raise ScenarioError(
            f"Scenario.outage_site {scenario.outage_site!r} does not run "
            f"{scenario.outage_tool}; use one of {', '.join(sorted(outage_sites))}"
        )
    head_ct_sites = {s.site for s in P.HEAD_CT.sites}
    for field_name in ("protocol_change_site", "new_scanner_software_site"):
        site = getattr(scenario, field_name)
        if site not in head_ct_sites:
            raise ScenarioError(
                f"Scenario.{field_name} {site!r} has no head CT; use one of "
                f"{', '.join(sorted(head_ct_sites))}"
            )


def _emit_study_type(
    stream: _Stream,
    study_type: P.StudyType,
    tools: list[ToolBaseline],
    d: StudyDraws,
    t0: datetime,
    scenario: Scenario,
    first_accession: int,
) -> None:
    per_study = len(tools) + 2

    def event_id(study: int, slot: int) -> str:
        offset = 16 * (study * per_study + slot)
        return str(uuid.UUID(bytes=d.id_bytes[offset : offset + 16], version=4))

    for i in range(d.n):
        number = first_accession + i
        accession = f"ACC{number}"
        day = int(d.day[i])
        site = study_type.sites[int(d.site[i])]
        scanner = site.scanners[int(d.scanner[i])]
        study_time = t0 + timedelta(seconds=float(d.t_study_s[i]))
        delay_h = float(d.report_delay_h[i])
        if any(float(d.tools[t.tool_id].score[i]) >= t.operating_threshold for t in tools):
            delay_h *= scenario.triage_speedup
        report_time = _ms(study_time + timedelta(hours=delay_h))
        patient_id = f"MRN{d.mrn[i]}"
        scanner_model = scanner_of(study_type, site, scanner, day, scenario)
        acquisition = acquisition_of(study_type, site, scanner, day, scenario,
                                     float(d.kvp_jitter[i]), float(d.spacing_jitter[i]))
        for k, tool in enumerate(tools):
            if _in_outage(scenario, tool.tool_id, site.site, int(d.scanner[i]), day):
                continue
            draws = d.tools[tool.tool_id]
            if d.backlog[i]:
                inferred = report_time + timedelta(seconds=float(d.backlog_lag_s[i]))
            else:
                inferred = study_time + timedelta(seconds=float(draws.ai_delay_s[i]))
            score = float(draws.score[i])
            result = AIResult(
                event_id=event_id(i, k),
                tool_id=tool.tool_id,
                manufacturer=tool.manufacturer,
                model=tool.product,
                software_version=str(draws.version[i]),
                platform=P.TOOL_PROFILES[tool.tool_id].platform,
                finding_code=tool.finding_code,
                ai_result=score,
                operating_threshold=tool.operating_threshold,
                result_indicator=score >= tool.operating_threshold,
                patient_id=patient_id,
                accession_number=accession,
                study_instance_uid=f"1.2.840.113619.2.{int(d.site[i]) + 1}.{number}."
                f"{d.uid_suffix[i]}",
                study_date=study_time.date(),
                site=site.site,
                modality=tool.modality,
                body_part_examined=tool.body_part,
                exam_name=study_type.exam_name,
                contrast_indication=study_type.contrast_indication,
                scanner=scanner_model,
                acquisition=acquisition,
                age=int(d.age[i]),
                sex=sex_of(float(d.sex[i]), study_type.female_fraction),
                inference_date=_ms(inferred),
                acquired_at=_ms(study_time),
            )
            arrival = _ms(result.inference_date + timedelta(seconds=float(draws.latency_s[i])))
            stream.events.append(_event("ai.results", accession, result.model_dump_json(),
                                        arrival, result.event_id))
            stream.cases.append(CaseRecord(tool.tool_id, accession, result.software_version,
                                           result.result_indicator, arrival))
        exam = Exam(modality=study_type.modality, body_part_examined=study_type.body_part,
                    exam_code=study_type.exam_code)
        labels = {t.finding_code: LABELS[int(d.tools[t.tool_id].label[i])] for t in tools}
        revised: dict[str, Label] | None = None
        if d.corrected[i]:
            target = tools[int(d.corrected_tool[i])]
            code = target.finding_code
            revised = dict(labels)
            revised[code] = _true_label(bool(d.tools[target.tool_id].disease[i]))
            labels[code] = _misread(revised[code], bool(d.to_indeterminate[i]))
        original = _ReportDraft(event_id(i, len(tools)), study_type.name, accession, patient_id,
                                site.site, report_time, ReportStatus.FINAL,
                                bool(d.structured[i]), exam)
        _emit_report(stream, original, labels, float(d.report_latency_s[0, i]))
        if revised is not None:
            revision = replace(
                original,
                event_id=event_id(i, len(tools) + 1),
                finalized=_ms(report_time + timedelta(hours=float(d.correction_delay_h[i]))),
                status=ReportStatus.ADDENDUM if d.addendum[i] else ReportStatus.CORRECTED,
            )
            _emit_report(stream, revision, revised, float(d.report_latency_s[1, i]))


def _in_outage(scenario: Scenario, tool_id: str, site: str, scanner: int, day: int) -> bool:
    """The tool does not run on the site's main scanner during the outage."""
    return (
        scenario.outage_day is not None
        and tool_id == scenario.outage_tool
        and site == scenario.outage_site
        and scanner == 0
        and scenario.outage_day <= day < scenario.outage_day + scenario.outage_days
    )


def _true_label(disease: bool) -> Label:
    return Label.PRESENT if disease else Label.ABSENT


def _misread(truth: Label, to_indeterminate: bool) -> Label:
    """The original report's error that a correction later fixes: hedged, or the opposite."""
    if to_indeterminate:
        return Label.INDETERMINATE
    return Label.ABSENT if truth is Label.PRESENT else Label.PRESENT


def _emit_report(
    stream: _Stream, draft: _ReportDraft, labels: dict[str, Label], latency_s: float
) -> None:
    findings: list[StructuredFinding] | None = None
    text: str | None = None
    if draft.structured:
        findings = [StructuredFinding(finding_code=c, label=v) for c, v in labels.items()]
    else:
        text = render_report_text(stream.text_rng, draft.study_type, labels, draft.status)
    report = ReportFinal(
        event_id=draft.event_id, accession_number=draft.accession, patient_id=draft.patient_id,
        site=draft.site, finalized_at=draft.finalized, status=draft.status, findings=findings,
        report_text=text, exam=draft.exam,
    )
    arrival = _ms(draft.finalized + timedelta(seconds=latency_s))
    stream.events.append(_event("reports.final", draft.accession, report.model_dump_json(),
                                arrival, draft.event_id))
    stream.reports.append(ReportRecord(draft.accession, draft.finalized, arrival, labels,
                                       draft.status))


def _event(topic: str, accession: str, value: str, arrival: datetime, event_id: str) -> SimEvent:
    return SimEvent(topic, accession.encode(), value.encode(), arrival, True, event_id)


def _ms(t: datetime) -> datetime:
    """Truncate to milliseconds, as source systems timestamp."""
    return t.replace(microsecond=t.microsecond // 1000 * 1000)
