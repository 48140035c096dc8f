"""Vectorized random draws for every study of one study type: who, where, what, when.

One `StudyDraws` holds arrays indexed by study (sorted by acquisition time); per tool the
disease state, the report's label, the AI score and version. Drawing whole arrays at once
keeps a 90-day stream to a few seconds, and the order of draws fixes the stream for a seed.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import numpy as np
from numpy.typing import NDArray

from surveillance.clinical.baselines import ToolBaseline
from surveillance.contracts import Acquisition, Label, Scanner, Sex
from surveillance.simulate import profiles as P
from surveillance.simulate.scenario import Scenario
from surveillance.simulate.scores import UPDATED_SHAPE, ScoreShape, solve_score_model

DAY_S = 86_400.0
#: Label codes of `ToolDraws.label`.
LABELS = (Label.ABSENT, Label.PRESENT, Label.INDETERMINATE)


@dataclass(frozen=True)
class ToolDraws:
    disease: NDArray[np.bool_]
    label: NDArray[np.int64]
    score: NDArray[np.float64]
    version: NDArray[np.str_]
    ai_delay_s: NDArray[np.float64]
    latency_s: NDArray[np.float64]


@dataclass(frozen=True)
class StudyDraws:
    n: int
    site: NDArray[np.int64]
    day: NDArray[np.int64]
    t_study_s: NDArray[np.float64]
    scanner: NDArray[np.int64]
    age: NDArray[np.int64]
    sex: NDArray[np.float64]
    kvp_jitter: NDArray[np.float64]
    spacing_jitter: NDArray[np.float64]
    tools: dict[str, ToolDraws]
    backlog: NDArray[np.bool_]
    report_delay_h: NDArray[np.float64]
    backlog_lag_s: NDArray[np.float64]
    corrected: NDArray[np.bool_]
    corrected_tool: NDArray[np.int64]
    to_indeterminate: NDArray[np.bool_]
    addendum: NDArray[np.bool_]
    correction_delay_h: NDArray[np.float64]
    structured: NDArray[np.bool_]
    mrn: NDArray[np.int64]
    uid_suffix: NDArray[np.int64]
    report_latency_s: NDArray[np.float64]
    #: 16 random bytes per event id: per study one per tool, the report and a correction.
    id_bytes: bytes


def daily_means(
    study_type: P.StudyType, t0: datetime, days: int, scale: float
) -> NDArray[np.float64]:
    """Expected studies per (site, day)."""
    weekend = np.array([(t0 + timedelta(days=d)).weekday() >= 5 for d in range(days)])
    factor = np.where(weekend, study_type.weekend_factor, 1.0)
    means = np.array([s.weekday_mean for s in study_type.sites])
    return np.outer(means, factor) * scale


def draw_studies(
    rng: np.random.Generator,
    study_type: P.StudyType,
    tools: list[ToolBaseline],
    t0: datetime,
    days: int,
    scale: float,
    scenario: Scenario,
    correction_rate: float,
    structured_rate: float,
) -> StudyDraws:
    counts = rng.poisson(daily_means(study_type, t0, days, scale))
    site = np.repeat(np.arange(len(study_type.sites)), counts.sum(axis=1))
    day = np.concatenate([np.repeat(np.arange(days), row) for row in counts])
    hours = rng.uniform(study_type.first_hour, study_type.last_hour, day.size)
    t_study = day * DAY_S + hours * 3600.0
    order = np.argsort(t_study, kind="stable")
    site, day, t_study = site[order], day[order], t_study[order]
    n = int(day.size)
    scanner = np.empty(n, dtype=np.int64)
    for s, profile in enumerate(study_type.sites):
        mask = site == s
        weights = np.array([sc.weight for sc in profile.scanners])
        scanner[mask] = rng.choice(len(profile.scanners), size=int(mask.sum()),
                                   p=weights / weights.sum())
    age = np.clip(np.round(rng.normal(study_type.age_mean, study_type.age_sd, n)),
                  study_type.age_min, study_type.age_max).astype(np.int64)
    sex = rng.random(n)
    kvp_jitter = rng.normal(0.0, 2.0, n)
    spacing_jitter = rng.uniform(-0.04, 0.04, n)
    tool_draws = {t.tool_id: _draw_tool(rng, t, scenario, day) for t in tools}
    backlog = rng.random(n) < P.AI_BACKLOG_RATE
    report_delay_h = np.minimum(
        rng.lognormal(np.log(P.REPORT_DELAY_MEDIAN_HOURS), P.REPORT_DELAY_SIGMA, n),
        P.REPORT_DELAY_MAX_HOURS,
    )
    # In a backlog the radiologist reads from PACS first (15-90 min) and the AI result
    # follows 0-60 min after the report.
    report_delay_h = np.where(backlog, rng.uniform(0.25, 1.5, n), report_delay_h)
    return StudyDraws(
        n=n, site=site, day=day, t_study_s=t_study, scanner=scanner, age=age, sex=sex,
        kvp_jitter=kvp_jitter, spacing_jitter=spacing_jitter, tools=tool_draws,
        backlog=backlog,
        report_delay_h=report_delay_h,
        backlog_lag_s=rng.uniform(0.0, 3600.0, n),
        corrected=rng.random(n) < correction_rate,
        corrected_tool=rng.integers(len(tools), size=n),
        to_indeterminate=rng.random(n) < P.CORRECTION_TO_INDETERMINATE,
        addendum=rng.random(n) < P.ADDENDUM_SHARE,
        # At least 10 minutes after the original, so a revision is never finalized first.
        correction_delay_h=1 / 6 + rng.lognormal(
            np.log(P.CORRECTION_DELAY_MEDIAN_HOURS), P.CORRECTION_DELAY_SIGMA, n
        ),
        structured=rng.random(n) < structured_rate,
        mrn=rng.integers(10**7, 10**8, n),
        uid_suffix=rng.integers(10**5, 10**6, n),
        report_latency_s=rng.uniform(1.0, 30.0, (2, n)),
        id_bytes=rng.bytes(16 * (len(tools) + 2) * n),
    )


def _draw_tool(
    rng: np.random.Generator, tool: ToolBaseline, scenario: Scenario, day: NDArray[np.int64]
) -> ToolDraws:
    n = day.size
    profile = P.TOOL_PROFILES[tool.tool_id]
    disease = rng.random(n) < profile.prevalence
    indeterminate = rng.random(n) < P.INDETERMINATE_RATE
    label = np.where(indeterminate, 2, disease.astype(np.int64))
    uniform = rng.random(n)
    updated = np.zeros(n, dtype=bool)
    if scenario.model_update_day is not None and scenario.model_update_tool == tool.tool_id:
        updated = day >= scenario.model_update_day
    dropped = np.zeros(n, dtype=bool)
    if scenario.sensitivity_drop_day is not None and scenario.drop_tool == tool.tool_id:
        dropped = day >= scenario.sensitivity_drop_day
    score = np.empty(n, dtype=np.float64)
    for is_updated in (False, True):
        for is_dropped in (False, True):
            mask = (updated == is_updated) & (dropped == is_dropped)
            if mask.any():
                model = solve_score_model(
                    scenario.drop_to if is_dropped else tool.baseline.sensitivity.value,
                    tool.baseline.specificity.value,
                    tool.operating_threshold,
                    UPDATED_SHAPE if is_updated else ScoreShape(),
                )
                score[mask] = model.scores(uniform[mask], disease[mask])
    return ToolDraws(
        disease=disease,
        label=label,
        score=score,
        version=np.where(updated, profile.updated_version, profile.base_version),
        ai_delay_s=60.0 * rng.lognormal(np.log(P.AI_DELAY_MEDIAN_MINUTES), P.AI_DELAY_SIGMA, n),
        latency_s=rng.uniform(0.5, 5.0, n),
    )


def scanner_of(
    study_type: P.StudyType, site: P.SiteVolume, scanner: P.ScannerProfile, day: int,
    scenario: Scenario,
) -> Scanner:
    software = scanner.software_version
    if (
        study_type is P.HEAD_CT
        and scenario.new_scanner_software_day is not None
        and day >= scenario.new_scanner_software_day
        and site.site == scenario.new_scanner_software_site
        and scanner is site.scanners[0]
    ):
        software = f"{software}{P.NEW_SCANNER_SOFTWARE_SUFFIX}"
    return Scanner(manufacturer=scanner.manufacturer, model=scanner.model,
                   software_version=software)


def acquisition_of(
    study_type: P.StudyType, site: P.SiteVolume, scanner: P.ScannerProfile, day: int,
    scenario: Scenario, kvp_jitter: float, spacing_jitter: float,
) -> Acquisition:
    kvp, slice_thickness, protocol = scanner.kvp, scanner.slice_thickness, scanner.protocol_name
    pixel_spacing = scanner.pixel_spacing
    if (
        study_type is P.HEAD_CT
        and scenario.protocol_change_day is not None
        and day >= scenario.protocol_change_day
        and site.site == scenario.protocol_change_site
    ):
        kvp, slice_thickness = P.HEAD_CT_CHANGED_KVP, P.HEAD_CT_CHANGED_SLICE
        protocol = P.HEAD_CT_PROTOCOL_CHANGED
    if study_type.modality == "DX" and kvp is not None:
        # Radiographers adjust kVp to the patient; CT protocols fix it.
        kvp = float(round(kvp + kvp_jitter))
    if study_type.modality == "CT" and pixel_spacing is not None:
        # In-plane spacing follows the reconstructed field of view.
        pixel_spacing = round(pixel_spacing + spacing_jitter, 3)
    return Acquisition(kvp=kvp, slice_thickness=slice_thickness, pixel_spacing=pixel_spacing,
                       protocol_name=protocol)


def sex_of(draw: float, female_fraction: float) -> Sex:
    """0.5% unknown, the rest female with `female_fraction`."""
    if draw < 0.005:
        return Sex.UNKNOWN
    return Sex.FEMALE if draw < 0.005 + female_fraction * 0.995 else Sex.MALE
