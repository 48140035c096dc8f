"""A simulated quantification tool: hemorrhage volumes from AI and from the report.

Every head CT with a hemorrhage at the three sites is measured by the registry's
quantification tool (`ich-volume`); the report states the radiologist's volume in a
structured field. The true volume is 5 mL plus a lognormal part (median 15 mL); the
radiologist and the tool each measure it with independent normal errors whose combined SD
is the registry's `sd_differences`, and the tool reads `agreement.bias` high on top. From
`BiasDrift.day` (day of acquisition) the tool reads `BiasDrift.shift` more (a silent
calibration change after, say, a protocol or software change). Measurements are reported
to 0.1 mL and never below 0. One report in 20 states the finding without a volume, which
leaves its AI result unpaired.

Events are in arrival order: the AI result minutes after acquisition, the report hours
later; the stream ends at `start + days`.
"""

from __future__ import annotations

import math
import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

import numpy as np

from surveillance.clinical.agreement_baselines import QuantificationTool, load_agreement_baselines
from surveillance.contracts import (
    Acquisition,
    AIResult,
    Label,
    Measurement,
    ReferenceMeasurement,
    ReportFinal,
    Scanner,
    StructuredFinding,
)
from surveillance.simulate import profiles as P
from surveillance.simulate.events import SimEvent
from surveillance.simulate.scenario import ScenarioError

QUANT_TOOL = "ich-volume"
VERSION = "1.4.2"
#: Hemorrhage studies per site per day (a mid-size ED sees a few a day).
DAILY_PER_SITE = 4.0
NO_VOLUME_RATE = 0.05


@dataclass(frozen=True)
class BiasDrift:
    day: int | None = None
    shift: float = 3.0


def simulate_quantification(
    days: int = 90,
    seed: int = 11,
    start: date = date(2026, 7, 1),
    drift: BiasDrift = BiasDrift(),
    tool_id: str = QUANT_TOOL,
) -> list[SimEvent]:
    """AI results with a measurement and reports with the reference, in arrival order."""
    if days < 1:
        raise ScenarioError(f"days must be at least 1, got {days}")
    tools = load_agreement_baselines()
    if tool_id not in tools:
        raise ScenarioError(f"{tool_id!r} is not a quantification tool in the registry")
    if not math.isfinite(drift.shift):
        raise ScenarioError(f"BiasDrift.shift must be a finite number, got {drift.shift}")
    tool = tools[tool_id]
    rng = np.random.default_rng(seed)
    t0 = datetime(start.year, start.month, start.day, tzinfo=UTC)
    end = t0 + timedelta(days=days)
    events: list[SimEvent] = []
    number = 3 * 10**9
    for day in range(days):
        for site_index, site in enumerate(P.HEAD_CT.sites):
            for _ in range(int(rng.poisson(DAILY_PER_SITE))):
                number += 1
                shift = drift.shift if drift.day is not None and day >= drift.day else 0.0
                events += _study(rng, tool, t0 + timedelta(days=day), site, site_index,
                                 number, shift)
    return sorted((e for e in events if e.arrival < end), key=lambda e: e.arrival)


def _study(
    rng: np.random.Generator,
    tool: QuantificationTool,
    day_start: datetime,
    site: P.SiteVolume,
    site_index: int,
    number: int,
    shift: float,
) -> list[SimEvent]:
    accession = f"ACC{number}"
    acquired = day_start + timedelta(seconds=float(rng.uniform(0, 86_400)))
    inferred = _ms(acquired + timedelta(minutes=float(rng.lognormal(math.log(4.0), 0.5))))
    finalized = _ms(acquired + timedelta(hours=float(rng.lognormal(math.log(6.0), 0.8))))
    scanner = site.scanners[int(rng.integers(len(site.scanners)))]
    error_sd = tool.agreement.sd_differences / math.sqrt(2.0)
    volume = 5.0 + float(rng.lognormal(math.log(15.0), 0.8))
    reference = _reported(volume + float(rng.normal(0.0, error_sd)))
    measured = _reported(volume + tool.agreement.bias + shift + float(rng.normal(0.0, error_sd)))
    with_volume = bool(rng.random() >= NO_VOLUME_RATE)
    score = float(rng.uniform(tool.operating_threshold, 1.0))
    result = AIResult(
        event_id=_uuid(rng), tool_id=tool.tool_id, manufacturer=tool.manufacturer,
        model=tool.product, software_version=VERSION, platform="PowerShare AI Gateway",
        finding_code=tool.finding_code, ai_result=score,
        operating_threshold=tool.operating_threshold, result_indicator=True,
        patient_id=f"MRN{number % 10**7}", accession_number=accession,
        study_instance_uid=f"1.2.840.113619.9.{site_index + 1}.{number}",
        study_date=acquired.date(), site=site.site, modality=tool.modality,
        body_part_examined=tool.body_part, exam_name=P.HEAD_CT.exam_name,
        contrast_indication=False,
        scanner=Scanner(manufacturer=scanner.manufacturer, model=scanner.model,
                        software_version=scanner.software_version),
        acquisition=Acquisition(kvp=scanner.kvp, slice_thickness=scanner.slice_thickness,
                                pixel_spacing=scanner.pixel_spacing,
                                protocol_name=scanner.protocol_name),
        inference_date=inferred,
        measurement=Measurement(value=measured, unit=tool.unit),
    )
    report = ReportFinal(
        event_id=_uuid(rng), accession_number=accession, patient_id=result.patient_id,
        site=site.site, finalized_at=finalized,
        findings=[StructuredFinding(finding_code=tool.finding_code, label=Label.PRESENT)],
        reference_measurements=[ReferenceMeasurement(
            finding_code=tool.finding_code, value=reference, unit=tool.unit)]
        if with_volume else None,
    )
    ai_arrival = _ms(inferred + timedelta(seconds=float(rng.uniform(0.2, 3.0))))
    report_arrival = _ms(finalized + timedelta(seconds=float(rng.uniform(0.2, 3.0))))
    return [
        SimEvent("ai.results", accession.encode(), result.model_dump_json().encode(),
                 ai_arrival, True, result.event_id),
        SimEvent("reports.final", accession.encode(), report.model_dump_json().encode(),
                 report_arrival, True, report.event_id),
    ]


def _reported(value: float) -> float:
    return round(max(value, 0.0), 1)


def _uuid(rng: np.random.Generator) -> str:
    return str(uuid.UUID(bytes=rng.bytes(16), version=4))


def _ms(t: datetime) -> datetime:
    return t.replace(microsecond=t.microsecond // 1000 * 1000)
