"""Static profiles of the simulated health system: sites, scanners, protocols, volumes, tools.

Three sites. Every non-contrast head CT is scored by both `ich-triage` and `lvo-triage`
(two AI results, one report with both findings); chest radiographs by `ptx-triage`; fundus
photographs (one diabetic-eye clinic at site-a) by `dr-screen`; chest CT angiograms (sites
a and b) by `pe-triage` and `ad-triage`, which are simulated only when named. Volumes,
prevalence on the triage worklists, scanner fleets and acquisition parameters are typical of
a mid-size US health system; the names of sites, software versions and identifiers are made up.

Tool ids, finding codes, operating thresholds and clearance figures are NOT here: the
generator reads them from the baseline registry, so the stream matches whatever the
registry says the tool was cleared at.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class ScannerProfile:
    manufacturer: str
    model: str
    software_version: str
    weight: float
    #: Nominal acquisition values; kVp and pixel spacing get a small jitter per study.
    kvp: float | None
    slice_thickness: float | None
    pixel_spacing: float | None
    protocol_name: str


@dataclass(frozen=True, slots=True)
class SiteVolume:
    site: str
    #: Mean studies per weekday; weekends get `StudyType.weekend_factor` of it.
    weekday_mean: float
    scanners: tuple[ScannerProfile, ...]


@dataclass(frozen=True, slots=True)
class StudyType:
    name: str
    tools: tuple[str, ...]
    modality: str
    body_part: str
    exam_name: str
    #: The RIS's exam code (CPT) on the order, which reports carry.
    exam_code: str
    contrast_indication: bool | None
    sites: tuple[SiteVolume, ...]
    weekend_factor: float
    #: Hours of the (UTC) day in which studies are acquired: ED work is round the clock,
    #: the fundus clinic runs office hours.
    first_hour: float
    last_hour: float
    age_mean: float
    age_sd: float
    age_min: int
    age_max: int
    female_fraction: float


@dataclass(frozen=True, slots=True)
class ToolProfile:
    #: Prevalence of the finding on the worklist the tool triages.
    prevalence: float
    platform: str
    base_version: str
    #: The version the vendor ships when a `model_update_day` scenario fires.
    updated_version: str


#: Probability that a report states a finding as indeterminate ("cannot exclude ...").
INDETERMINATE_RATE = 0.02
#: Probability that a study's AI results are delayed behind its report (orchestrator backlog).
AI_BACKLOG_RATE = 0.05
#: Report turnaround, lognormal: median 6 h, p99 about 5 days, capped at 5 days.
REPORT_DELAY_MEDIAN_HOURS = 6.0
REPORT_DELAY_SIGMA = 1.29
REPORT_DELAY_MAX_HOURS = 120.0
#: AI inference after acquisition, lognormal minutes: median 4 min.
AI_DELAY_MEDIAN_MINUTES = 4.0
AI_DELAY_SIGMA = 0.5
#: Correction or addendum after the original report, lognormal hours: median 1 day.
CORRECTION_DELAY_MEDIAN_HOURS = 24.0
CORRECTION_DELAY_SIGMA = 1.0
#: Share of misread original reports that hedge ("cannot exclude") instead of stating the
#: opposite label; the correction then states the true label.
CORRECTION_TO_INDETERMINATE = 0.2
#: Share of corrections issued as addenda (the rest are corrected reports).
ADDENDUM_SHARE = 0.3


def _ct(manufacturer: str, model: str, software: str, weight: float) -> ScannerProfile:
    return ScannerProfile(manufacturer, model, software, weight, 120.0, 5.0, 0.46, "ROUTINE HEAD")


HEAD_CT_PROTOCOL_CHANGED = "HEAD LOW DOSE 2.5MM"
HEAD_CT_CHANGED_KVP = 100.0
HEAD_CT_CHANGED_SLICE = 2.5

#: In the new-scanner-software scenario the site's main head CT scanner (its first) reports
#: its software version with this suffix, a version never seen before.
NEW_SCANNER_SOFTWARE_SUFFIX = "-SP2"

HEAD_CT = StudyType(
    name="head_ct",
    tools=("ich-triage", "lvo-triage"),
    modality="CT",
    body_part="HEAD",
    exam_name="CT HEAD WO CONTRAST",
    exam_code="70450",
    contrast_indication=False,
    sites=(
        SiteVolume("site-a", 36.0, (
            _ct("GE MEDICAL SYSTEMS", "Revolution CT", "revo_ct_23A.1", 0.6),
            _ct("SIEMENS", "SOMATOM Force", "syngo CT VB10A", 0.4),
        )),
        SiteVolume("site-b", 30.0, (
            _ct("SIEMENS", "SOMATOM Definition AS+", "syngo CT VA48A", 0.7),
            _ct("CANON_MEC", "Aquilion ONE", "V10.8", 0.3),
        )),
        SiteVolume("site-c", 26.0, (
            _ct("Philips", "Ingenuity CT", "4.1.6", 0.55),
            _ct("GE MEDICAL SYSTEMS", "Optima CT660", "optima_ct_15.2", 0.45),
        )),
    ),
    weekend_factor=0.75,
    first_hour=0.0,
    last_hour=24.0,
    age_mean=63.0,
    age_sd=18.0,
    age_min=18,
    age_max=100,
    female_fraction=0.49,
)

CHEST_XR = StudyType(
    name="chest_xr",
    tools=("ptx-triage",),
    modality="DX",
    body_part="CHEST",
    exam_name="XR CHEST 1 VIEW",
    exam_code="71045",
    contrast_indication=None,
    sites=(
        SiteVolume("site-a", 45.0, (
            ScannerProfile("Carestream Health", "DRX-Evolution", "5.7.412", 0.6,
                           120.0, None, 0.139, "CHEST PA"),
            ScannerProfile("GE Healthcare", "Optima XR240amx", "2.1.3", 0.4,
                           90.0, None, 0.2, "CHEST AP PORTABLE"),
        )),
        SiteVolume("site-b", 40.0, (
            ScannerProfile("Philips", "DigitalDiagnost C90", "1.2.4", 0.65,
                           125.0, None, 0.148, "CHEST PA"),
            ScannerProfile("FUJIFILM Corporation", "FDR Go PLUS", "V6.0", 0.35,
                           90.0, None, 0.15, "CHEST AP PORTABLE"),
        )),
        SiteVolume("site-c", 35.0, (
            ScannerProfile("SIEMENS", "Ysio Max", "VF10F", 0.7,
                           121.0, None, 0.148, "CHEST PA"),
            ScannerProfile("Carestream Health", "DRX-Revolution", "5.7.412", 0.3,
                           90.0, None, 0.139, "CHEST AP PORTABLE"),
        )),
    ),
    weekend_factor=0.75,
    first_hour=0.0,
    last_hour=24.0,
    age_mean=58.0,
    age_sd=19.0,
    age_min=16,
    age_max=100,
    female_fraction=0.47,
)

FUNDUS = StudyType(
    name="fundus",
    tools=("dr-screen",),
    modality="OP",
    body_part="EYE",
    exam_name="FUNDUS PHOTOGRAPHY DR SCREENING",
    exam_code="92250",
    contrast_indication=None,
    sites=(
        SiteVolume("site-a", 14.0, (
            ScannerProfile("Topcon", "TRC-NW400", "1.2.0", 1.0, None, None, None,
                           "FUNDUS 45 2-FIELD"),
        )),
    ),
    weekend_factor=0.0,
    first_hour=13.0,
    last_hour=22.0,
    age_mean=59.0,
    age_sd=12.0,
    age_min=22,
    age_max=90,
    female_fraction=0.52,
)


def _cta(manufacturer: str, model: str, software: str, weight: float) -> ScannerProfile:
    return ScannerProfile(manufacturer, model, software, weight, 100.0, 1.0, 0.7, "CTA CHEST PE")


CTA_CHEST = StudyType(
    name="cta_chest",
    tools=("pe-triage", "ad-triage"),
    modality="CT",
    body_part="CHEST",
    exam_name="CTA CHEST W CONTRAST",
    exam_code="71275",
    contrast_indication=True,
    sites=(
        SiteVolume("site-a", 14.0, (
            _cta("SIEMENS", "SOMATOM Force", "syngo CT VB10A", 0.7),
            _cta("GE MEDICAL SYSTEMS", "Revolution CT", "revo_ct_23A.1", 0.3),
        )),
        SiteVolume("site-b", 10.0, (
            _cta("CANON_MEC", "Aquilion ONE", "V10.8", 1.0),
        )),
    ),
    weekend_factor=0.8,
    first_hour=0.0,
    last_hour=24.0,
    age_mean=57.0,
    age_sd=17.0,
    age_min=18,
    age_max=100,
    female_fraction=0.55,
)

STUDY_TYPES: tuple[StudyType, ...] = (HEAD_CT, CHEST_XR, FUNDUS, CTA_CHEST)

TOOL_PROFILES: dict[str, ToolProfile] = {
    "ich-triage": ToolProfile(0.10, "PowerShare AI Gateway", "5.2.1", "5.3.0"),
    "lvo-triage": ToolProfile(0.04, "PowerShare AI Gateway", "5.2.1", "5.3.0"),
    "ptx-triage": ToolProfile(0.05, "PowerShare AI Gateway", "2.4.0", "2.5.0"),
    "dr-screen": ToolProfile(0.24, "IDx edge", "2.3.1", "2.4.0"),
    # Yield of emergency CT pulmonary angiography is about 10-15%; dissection is found in a
    # few percent of chest CTAs done for acute chest pain.
    "pe-triage": ToolProfile(0.12, "PowerShare AI Gateway", "1.6.0", "1.7.0"),
    "ad-triage": ToolProfile(0.03, "PowerShare AI Gateway", "1.2.0", "1.3.0"),
}

#: Simulated only when asked for by name (`simulate(tools=[...])`): the default stream is
#: the one the demo, the alerting scenarios and the drift calibration were tuned on.
OPT_IN_TOOLS: tuple[str, ...] = ("pe-triage", "ad-triage")
