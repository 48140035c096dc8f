"""Quantification tools: pair each AI measurement with the report's reference, then judge.

Pairing (`pair_measurements`): an AI result of a quantification tool is paired with the
reference measurement of the tool's finding in the LAST report of its accession (by
finalized time; a corrected report or addendum supersedes the original). Duplicate event
ids count once; a re-run of the tool on the same accession replaces the earlier result.
Anything that cannot be paired is listed with its reason, never silently dropped: no
measurement on the AI result, a unit other than the registry's, no report, or a report
without a reference measurement of the finding (e.g. the radiologist saw no hemorrhage).

Assessment (`assess_quantification`), over the pairs in order of inference time:
- Bland-Altman bias and limits of agreement, ICC(A,1) and Lin's concordance with their
  intervals, over all pairs and per version;
- a two-sided CUSUM on the differences, in control at the baseline bias and SD, tuned to
  the registry's bias tolerance, with its threshold from the false-alarm budget at the
  observed weekly volume of pairs;
- per ISO week: the bias and a KS test of the AI measurements against the first
  `reference_days` of the stream, at a per-week level that spends the yearly budget.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from surveillance.clinical.agreement_baselines import QuantificationTool
from surveillance.contracts import AIResult, ReportFinal
from surveillance.stats.bland_altman import BlandAltman, Limit, bland_altman
from surveillance.stats.cusum import DAYS_PER_WEEK, DAYS_PER_YEAR
from surveillance.stats.distribution_shift import ShiftTest, distribution_shift
from surveillance.stats.icc import icc_absolute_agreement
from surveillance.stats.lin_concordance import lin_ccc
from surveillance.stats.mean_cusum import MeanShiftCUSUM, threshold_for_arl

WEEKS_PER_YEAR = DAYS_PER_YEAR / DAYS_PER_WEEK


@dataclass(frozen=True, slots=True)
class MeasurementPair:
    tool_id: str
    software_version: str
    site: str
    accession: str
    measured_at: datetime
    ai: float
    reference: float


@dataclass(frozen=True, slots=True)
class Unpaired:
    event_id: str
    tool_id: str
    reason: str


def pair_measurements(
    results: Iterable[AIResult],
    reports: Iterable[ReportFinal],
    tools: Mapping[str, QuantificationTool],
) -> tuple[list[MeasurementPair], list[Unpaired]]:
    """Pairs of (AI, reference) measurements per quantification tool, and what could not
    be paired with the reason. Results of tools not in `tools` are ignored."""
    last_report: dict[str, ReportFinal] = {}
    for report in reports:
        held = last_report.get(report.accession_number)
        if held is None or report.finalized_at >= held.finalized_at:
            last_report[report.accession_number] = report
    latest: dict[tuple[str, str], AIResult] = {}
    seen: set[str] = set()
    for result in results:
        if result.tool_id not in tools or result.event_id in seen:
            continue
        seen.add(result.event_id)
        key = (result.tool_id, result.accession_number)
        held_result = latest.get(key)
        if held_result is None or result.inference_date >= held_result.inference_date:
            latest[key] = result
    pairs: list[MeasurementPair] = []
    unpaired: list[Unpaired] = []
    for (tool_id, accession), result in latest.items():
        reason = _pair(result, last_report.get(accession), tools[tool_id], pairs)
        if reason is not None:
            unpaired.append(Unpaired(result.event_id, tool_id, reason))
    pairs.sort(key=lambda p: p.measured_at)
    return pairs, unpaired


def _pair(
    result: AIResult,
    report: ReportFinal | None,
    tool: QuantificationTool,
    out: list[MeasurementPair],
) -> str | None:
    if result.measurement is None:
        return "the AI result carries no measurement"
    if result.measurement.unit is not tool.unit:
        return f"AI measurement in {result.measurement.unit.value}, registry says {tool.unit.value}"
    if report is None:
        return "no report for the accession yet"
    references = [m for m in report.reference_measurements or ()
                  if m.finding_code == tool.finding_code]
    if not references:
        return f"the report has no reference measurement of {tool.finding_code}"
    reference = references[-1]
    if reference.unit is not tool.unit:
        return f"reference measurement in {reference.unit.value}, registry says {tool.unit.value}"
    out.append(MeasurementPair(tool.tool_id, result.software_version, result.site,
                               result.accession_number, result.inference_date,
                               result.measurement.value, reference.value))
    return None


@dataclass(frozen=True, slots=True)
class Agreement:
    """Agreement figures of one set of pairs (None: fewer pairs than the registry's minimum)."""

    n: int
    bland_altman: BlandAltman | None
    icc: Limit | None
    ccc: Limit | None


@dataclass(frozen=True, slots=True)
class BiasSignal:
    """The bias chart crossed its threshold at pair `measured_at`; the shift began after
    `change_at` (the last time the chart was at zero)."""

    measured_at: datetime
    change_at: datetime
    direction: str


@dataclass(frozen=True, slots=True)
class ChartWeek:
    """The bias chart's highest value in an ISO week (standardized units), for plotting
    against `QuantAssessment.bias_threshold`."""

    week_start: date
    statistic: float


@dataclass(frozen=True, slots=True)
class WeekFigures:
    week_start: date
    n: int
    bias: float | None
    shift: ShiftTest | None


@dataclass(frozen=True, slots=True)
class QuantAssessment:
    tool_id: str
    unit: str
    overall: Agreement
    by_version: dict[str, Agreement]
    bias_threshold: float
    bias_signals: list[BiasSignal]
    bias_chart: list[ChartWeek]
    weeks: list[WeekFigures]
    #: One sentence per reason for concern; empty when the tool agrees with its baseline.
    concerns: list[str]


def agreement_of(pairs: Sequence[MeasurementPair], min_pairs: int) -> Agreement:
    """Bland-Altman, ICC and concordance of `pairs`, or Nones below `min_pairs`."""
    n = len(pairs)
    if n < max(min_pairs, 4):
        return Agreement(n, None, None, None)
    ai = [p.ai for p in pairs]
    reference = [p.reference for p in pairs]
    spread = max(ai) != min(ai) and max(reference) != min(reference)
    return Agreement(
        n,
        bland_altman(ai, reference),
        icc_absolute_agreement(ai, reference) if spread else None,
        lin_ccc(ai, reference) if spread else None,
    )


def assess_quantification(
    pairs: Sequence[MeasurementPair], tool: QuantificationTool
) -> QuantAssessment:
    """Judge one tool's pairs (of that tool only, in time order) against its baseline."""
    pairs = sorted((p for p in pairs if p.tool_id == tool.tool_id), key=lambda p: p.measured_at)
    overall = agreement_of(pairs, tool.min_pairs)
    versions = sorted({p.software_version for p in pairs})
    by_version = {v: agreement_of([p for p in pairs if p.software_version == v], tool.min_pairs)
                  for v in versions}
    threshold = _bias_threshold(pairs, tool)
    signals, chart = _bias_chart(pairs, tool, threshold)
    weeks = _weeks(pairs, tool)
    return QuantAssessment(tool.tool_id, tool.unit.value, overall, by_version, threshold,
                           signals, chart, weeks, _concerns(tool, overall, signals, weeks))


def _bias_threshold(pairs: Sequence[MeasurementPair], tool: QuantificationTool) -> float:
    weeks_seen = _span_weeks(pairs)
    weekly = max(len(pairs) / weeks_seen, 1.0)
    target = weekly * WEEKS_PER_YEAR / tool.false_alarms_per_year
    return threshold_for_arl(max(target, 10.0), k=_k(tool))


def _k(tool: QuantificationTool) -> float:
    return tool.tolerance.bias / (2.0 * tool.agreement.sd_differences)


def _span_weeks(pairs: Sequence[MeasurementPair]) -> float:
    if len(pairs) < 2:
        return 1.0
    span = pairs[-1].measured_at - pairs[0].measured_at
    return max(span / timedelta(weeks=1), 1.0)


def _bias_chart(
    pairs: Sequence[MeasurementPair], tool: QuantificationTool, h: float
) -> tuple[list[BiasSignal], list[ChartWeek]]:
    """The chart's signals, and its weekly maximum (a signal week shows the crossing value,
    not the restart at zero that follows it)."""
    chart = MeanShiftCUSUM(tool.agreement.bias, tool.agreement.sd_differences, h, _k(tool))
    signals: list[BiasSignal] = []
    weekly: dict[date, float] = {}
    start = 0
    for i, pair in enumerate(pairs):
        chart.update(pair.ai - pair.reference)
        day = pair.measured_at.date()
        week = day - timedelta(days=day.weekday())
        weekly[week] = max(weekly.get(week, 0.0), chart.statistic)
        if chart.drift_detected:
            change = pairs[max(start + chart.change_point - 1, start)]
            signals.append(BiasSignal(pair.measured_at, change.measured_at,
                                      chart.direction or ""))
            start = i + 1
    return signals, [ChartWeek(w, weekly[w]) for w in sorted(weekly)]


def _weeks(pairs: Sequence[MeasurementPair], tool: QuantificationTool) -> list[WeekFigures]:
    if not pairs:
        return []
    cut = pairs[0].measured_at + timedelta(days=tool.reference_days)
    reference = [p.ai for p in pairs if p.measured_at < cut]
    alpha = min(tool.false_alarms_per_year / WEEKS_PER_YEAR, 0.5)
    by_week: dict[date, list[MeasurementPair]] = {}
    for pair in pairs:
        day = pair.measured_at.date()
        by_week.setdefault(day - timedelta(days=day.weekday()), []).append(pair)
    weeks: list[WeekFigures] = []
    for week_start in sorted(by_week):
        week = by_week[week_start]
        bias = sum(p.ai - p.reference for p in week) / len(week)
        after_reference = [p.ai for p in week if p.measured_at >= cut]
        weeks.append(WeekFigures(week_start, len(week), bias,
                                 distribution_shift(reference, after_reference, alpha)))
    return weeks


def _concerns(
    tool: QuantificationTool,
    overall: Agreement,
    signals: Sequence[BiasSignal],
    weeks: Sequence[WeekFigures],
) -> list[str]:
    unit = tool.unit.value
    concerns: list[str] = []
    if overall.bland_altman is not None:
        bias = overall.bland_altman.bias
        low = tool.agreement.bias - tool.tolerance.bias
        high = tool.agreement.bias + tool.tolerance.bias
        if bias.lower > high or bias.upper < low:
            concerns.append(
                f"bias {bias.value:+.2f} {unit} (95% CI {bias.lower:+.2f} to {bias.upper:+.2f}) "
                f"is beyond the baseline {tool.agreement.bias:+.2f} +/- "
                f"{tool.tolerance.bias:.2f} {unit}"
            )
    if signals:
        first = signals[0]
        concerns.append(
            f"the bias chart signalled a shift {first.direction} on "
            f"{first.measured_at.date().isoformat()}, starting after "
            f"{first.change_at.date().isoformat()}"
        )
    shifted = [w.week_start.isoformat() for w in weeks if w.shift is not None and w.shift.shifted]
    if shifted:
        concerns.append(
            f"the distribution of measured {tool.measurement} moved in week(s) of "
            f"{', '.join(shifted)}"
        )
    return concerns
