"""Alert burden: how many flags a site's radiologists see, and how many of them are right.

Per tool and site: flags (positive AI calls) per day and per reading shift, the PPV of
the flags with its Wilson interval beside the prevalence it depends on, and the share of
flags that were false positives. Labels come from each study's last report; flags whose
study has no definitive read yet count as flags but not in PPV.

Alert fatigue builds when false flags per day climb week after week. `fatigue_trend`
fits a least-squares line to weekly false flags per day and reports the slope (false
flags per day, per week) with its t interval; an interval above 0 is a trend to act on.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime

from scipy.stats import t as student_t

from surveillance.clinical.labels import extract_labels
from surveillance.contracts import AIResult, Label, ReportFinal
from surveillance.stats.intervals import StatsParameterError, wilson

#: Reading shifts by hour of the day (UTC unless the caller shifts the times): day
#: 07-15, evening 15-23, night 23-07, the common three-shift ED rota.
SHIFTS: tuple[tuple[str, int, int], ...] = (("day", 7, 15), ("evening", 15, 23))


def shift_of(moment: datetime) -> str:
    for name, start, end in SHIFTS:
        if start <= moment.hour < end:
            return name
    return "night"


@dataclass(frozen=True, slots=True)
class Flag:
    tool_id: str
    site: str
    at: datetime
    #: The study's last definitive read: True present, False absent, None not (yet) known.
    present: bool | None


@dataclass(frozen=True, slots=True)
class Burden:
    tool_id: str
    site: str
    days: int
    flags: int
    flags_per_day: float
    flags_per_shift: dict[str, float]
    ppv: float | None
    ppv_lower: float
    ppv_upper: float
    prevalence: float | None
    false_positive_share: float | None


def flags_and_prevalence(
    results: Iterable[AIResult], reports: Iterable[ReportFinal], finding_codes: Mapping[str, str]
) -> tuple[list[Flag], dict[tuple[str, str], tuple[int, int]]]:
    """Every flag with its read, and per (tool, site) (present, labelled) study counts."""
    codes = tuple(sorted(set(finding_codes.values())))
    last: dict[str, ReportFinal] = {}
    for report in reports:
        held = last.get(report.accession_number)
        if held is None or report.finalized_at >= held.finalized_at:
            last[report.accession_number] = report
    flags: list[Flag] = []
    prevalence: dict[tuple[str, str], tuple[int, int]] = {}
    seen: set[str] = set()
    for result in results:
        if result.tool_id not in finding_codes or result.event_id in seen:
            continue
        seen.add(result.event_id)
        latest = last.get(result.accession_number)
        label = _label(latest, finding_codes[result.tool_id], codes) if latest else None
        present = None if label not in (Label.PRESENT, Label.ABSENT) else label is Label.PRESENT
        if present is not None:
            key = (result.tool_id, result.site)
            p, n = prevalence.get(key, (0, 0))
            prevalence[key] = (p + present, n + 1)
        if result.result_indicator:
            flags.append(Flag(result.tool_id, result.site, result.inference_date, present))
    return flags, prevalence


def _label(report: ReportFinal, code: str, codes: tuple[str, ...]) -> Label | None:
    if report.findings is not None:
        return next((f.label for f in report.findings if f.finding_code == code), None)
    return extract_labels(report.report_text or "", codes).get(code)


def burden(
    flags: Sequence[Flag],
    prevalence: Mapping[tuple[str, str], tuple[int, int]],
    tool_id: str,
    site: str,
    start: date,
    end: date,
) -> Burden:
    """The burden of one tool at one site over the days [start, end)."""
    days = (end - start).days
    if days < 1:
        raise StatsParameterError(f"need end after start, got {start} to {end}")
    mine = [f for f in flags if f.tool_id == tool_id and f.site == site
            and start <= f.at.date() < end]
    per_shift = {name: 0 for name in ("day", "evening", "night")}
    for f in mine:
        per_shift[shift_of(f.at)] += 1
    read = [f for f in mine if f.present is not None]
    true = sum(1 for f in read if f.present)
    low, high = wilson(true, len(read))
    present, labelled = prevalence.get((tool_id, site), (0, 0))
    ppv = true / len(read) if read else None
    return Burden(
        tool_id, site, days, len(mine), len(mine) / days,
        {name: count / days for name, count in per_shift.items()},
        ppv, low, high, present / labelled if labelled else None,
        None if ppv is None else 1.0 - ppv,
    )


@dataclass(frozen=True, slots=True)
class Trend:
    weeks: int
    slope: float
    lower: float
    upper: float

    @property
    def building(self) -> bool:
        """False flags per day are rising: the whole interval is above zero."""
        return self.lower > 0.0


def fatigue_trend(
    flags: Sequence[Flag], tool_id: str, site: str, first_week: date, weeks: int,
    confidence: float = 0.95,
) -> Trend:
    """Slope of weekly false flags per day over `weeks` weeks from Monday `first_week`."""
    if weeks < 3:
        raise StatsParameterError(f"a trend needs at least 3 weeks, got {weeks}")
    counts = [0] * weeks
    for f in flags:
        if f.tool_id != tool_id or f.site != site or f.present is not False:
            continue
        week = (f.at.date() - first_week).days // 7
        if 0 <= week < weeks:
            counts[week] += 1
    y = [c / 7.0 for c in counts]
    x = list(range(weeks))
    mx, my = sum(x) / weeks, sum(y) / weeks
    sxx = sum((xi - mx) ** 2 for xi in x)
    slope = sum((xi - mx) * (yi - my) for xi, yi in zip(x, y, strict=True)) / sxx
    residual = sum((yi - my - slope * (xi - mx)) ** 2 for xi, yi in zip(x, y, strict=True))
    se = math.sqrt(residual / (weeks - 2) / sxx)
    half = float(student_t.isf((1.0 - confidence) / 2.0, weeks - 2)) * se
    return Trend(weeks, slope, slope - half, slope + half)

