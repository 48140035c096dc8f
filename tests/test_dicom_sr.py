"""TID 1500 SRs (built here with highdicom) to exact `AIResult`s; image drift headers."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime
from io import BytesIO
from zoneinfo import ZoneInfo

import highdicom as hd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydicom import dcmread
from pydicom.sr.coding import Code

from surveillance.clinical.baselines import load_registry
from surveillance.contracts import Acquisition, AIResult, Scanner, Sex
from surveillance.interop.dicom_errors import UnusableObject
from surveillance.interop.dicom_header import image_header
from surveillance.interop.dicom_receiver import without_pixels
from surveillance.interop.dicom_sr import EVENT_NAMESPACE, enrich, parse_sr
from surveillance.interop.dicom_write import image_of, sr_of
from tests import dicom_samples as S

REGISTRY = load_registry()
SOP = "1.2.826.0.1.3680043.10.511.1.100.99.1"
UNKNOWN_SCANNER = Scanner(manufacturer="", model="", software_version="")
ICH_SCORE = Code("ICH-P", "99RAPID", "ICH probability")
LVO_SCORE = Code("LVO-P", "99RAPID", "LVO probability")
PTX_SCORE = Code("PTX-SCORE", "99MILVUE", "Pneumothorax score")


def roundtrip(ds: object) -> object:
    """Encode and decode, as the SCP receives it."""
    buf = BytesIO()
    if "TransferSyntaxUID" in getattr(ds, "file_meta", {}):
        ds.save_as(buf, enforce_file_format=True)  # type: ignore[attr-defined]
    else:
        ds.save_as(buf, implicit_vr=False, little_endian=True)  # type: ignore[attr-defined]
    return dcmread(BytesIO(buf.getvalue()), force=True)


def event_id(tracking: str) -> str:
    return str(uuid.uuid5(EVENT_NAMESPACE, f"{SOP}/{tracking}"))


def expected(**fields: object) -> AIResult:
    base: dict[str, object] = dict(
        manufacturer="RapidAI", platform="PowerShare AI Gateway", operating_threshold=0.5,
        patient_id="MRN-0042", accession_number="A-7781", study_instance_uid=S.STUDY_UID,
        study_date=date(2026, 8, 12), site="site-b", modality="CT", body_part_examined="HEAD",
        exam_name=None, contrast_indication=None, scanner=UNKNOWN_SCANNER,
        acquisition=Acquisition(), age=None, sex=Sex.FEMALE,
        inference_date=datetime(2026, 8, 12, 8, 30, 15, 250000, tzinfo=UTC),
    )
    base.update(fields)
    return AIResult.model_validate(base)


def test_qualitative_and_numeric_finding_give_the_exact_result() -> None:
    sr = S.report([S.group(("Rapid ICH", "4.2.1"), S.ICH, (ICH_SCORE, 0.73, S.UNITLESS),
                           (S.ICH, S.PRESENT), tracking_uid="1.2.3.4.1")])
    parsed = parse_sr(roundtrip(sr), REGISTRY, "site-b")
    assert parsed.refused == ()
    assert parsed.study_uid == S.STUDY_UID
    assert parsed.referenced_series == (S.SERIES_UID,)
    assert parsed.results == (expected(
        event_id=event_id("1.2.3.4.1"), tool_id="ich-triage",
        model="Rapid NCCT Stroke (ICH)", software_version="4.2.1",
        finding_code="intracranial_hemorrhage", ai_result=0.73, result_indicator=True,
    ),)


def test_two_tools_in_one_sr_each_with_its_own_units_and_call() -> None:
    sr = S.report([
        S.group(("Rapid ICH", "4.2.1"), S.ICH, (ICH_SCORE, 0.2, S.UNITLESS), (S.ICH, S.ABSENT),
                tracking_uid="1.2.3.4.1"),
        S.group(("Rapid NCCT LVO", "2.0"), S.LVO, (LVO_SCORE, 62, S.PERCENT),
                (S.LVO, S.PRESENT), tracking_uid="1.2.3.4.2"),
    ])
    results = parse_sr(roundtrip(sr), REGISTRY, "site-b").results
    assert results == (
        expected(event_id=event_id("1.2.3.4.1"), tool_id="ich-triage",
                 model="Rapid NCCT Stroke (ICH)", software_version="4.2.1",
                 finding_code="intracranial_hemorrhage", ai_result=0.2,
                 result_indicator=False),
        expected(event_id=event_id("1.2.3.4.2"), tool_id="lvo-triage",
                 model="Rapid NCCT Stroke (LVO)", software_version="2.0",
                 finding_code="large_vessel_occlusion", ai_result=0.62,
                 result_indicator=True),
    )


def test_the_tools_own_call_wins_over_the_registry_threshold() -> None:
    sr = S.report([S.group(("Rapid ICH", "4.2.1"), S.ICH, (ICH_SCORE, 0.55, S.UNITLESS),
                           (S.ICH, S.ABSENT))])
    (result,) = parse_sr(roundtrip(sr), REGISTRY, "site-b").results
    assert (result.ai_result, result.result_indicator) == (0.55, False)


def test_missing_optional_items_finding_call_age_description_and_utc_offset() -> None:
    """No Finding (the algorithm maps to one tool), no call (the threshold decides), no
    PatientAge or StudyDescription, no TimezoneOffsetFromUTC (the site's zone applies)."""
    sr = S.report(
        [S.group(("SmartChest", "2.5.0"), None, (PTX_SCORE, 0.61, S.UNITLESS), None,
                 tracking_uid="1.2.3.4.9")],
        content=("20260812", "103015", None), PatientSex="M",
    )
    parsed = parse_sr(roundtrip(sr), REGISTRY, "site-b", ZoneInfo("Europe/Paris"))
    assert parsed.results == (expected(
        event_id=event_id("1.2.3.4.9"), tool_id="ptx-triage", manufacturer="Milvue",
        model="SmartChest", software_version="2.5.0", finding_code="pneumothorax",
        ai_result=0.61, result_indicator=True, modality="DX", body_part_examined="CHEST",
        sex=Sex.MALE, inference_date=datetime(2026, 8, 12, 8, 30, 15, tzinfo=UTC),
    ),)


def test_a_call_only_tool_scores_one_or_zero() -> None:
    positive = Code("MTMDR-POS", "99IDX", "mtmDR detected")
    sr = S.report([S.group(("IDx-DR", "2.3.1"), Code("4855003", "SCT", "Diabetic retinopathy"),
                           None, (S.MTMDR, positive))])
    (result,) = parse_sr(roundtrip(sr), REGISTRY, "site-b").results
    assert (result.tool_id, result.ai_result, result.result_indicator) == ("dr-screen", 1.0, True)


def test_several_groups_of_one_tool_are_several_results_with_distinct_ids() -> None:
    sr = S.report([
        S.group(("SmartChest", "2.5.0"), S.PTX, (PTX_SCORE, 0.1, S.UNITLESS),
                tracking_uid="1.2.3.4.5"),
        S.group(("SmartChest", "2.5.0"), S.PTX, (PTX_SCORE, 0.9, S.UNITLESS),
                tracking_uid="1.2.3.4.6"),
    ])
    results = parse_sr(roundtrip(sr), REGISTRY, "site-b").results
    assert [(r.event_id, r.ai_result, r.result_indicator) for r in results] == [
        (event_id("1.2.3.4.5"), 0.1, False), (event_id("1.2.3.4.6"), 0.9, True)]


def test_enrich_takes_the_scanner_and_acquisition_of_the_study_image() -> None:
    sr = S.report([S.group(("Rapid ICH", "4.2.1"), S.ICH, (ICH_SCORE, 0.73, S.UNITLESS))])
    (draft,) = parse_sr(roundtrip(sr), REGISTRY, "site-b").results
    header = image_header(roundtrip(S.image()))
    assert enrich(draft, header) == draft.model_copy(update={
        "scanner": Scanner(manufacturer="GE MEDICAL SYSTEMS", model="Revolution CT",
                           software_version="revo_ct_22bc.50"),
        "acquisition": Acquisition(kvp=120.0, slice_thickness=5.0, pixel_spacing=0.488281,
                                   protocol_name="ROUTINE HEAD"),
        "contrast_indication": False, "age": 67,
    })
    assert enrich(draft, None) == draft


def _refusal(groups: list[object], **header: str) -> UnusableObject:
    with pytest.raises(UnusableObject) as info:
        parse_sr(roundtrip(S.report(groups, **header)), REGISTRY, "site-b")  # type: ignore[arg-type]
    return info.value


@pytest.mark.parametrize(
    ("groups", "header", "reason", "says"),
    [
        ([S.group(("Acme Bleed", "1"), S.ICH, (ICH_SCORE, 0.5, S.UNITLESS))], {},
         "unmapped", "no registry tool lists algorithm 'Acme Bleed'"),
        ([S.group(("Rapid ICH", "1"), S.PTX, (ICH_SCORE, 0.5, S.UNITLESS))], {},
         "unmapped", "finding SCT 36118008 is not in dicom.findings of ich-triage"),
        ([S.group(("SmartChest", "1"), S.PTX, (PTX_SCORE, 1.7, S.UNITLESS))], {},
         "invalid", "outside [0, 1]"),
        ([S.group(("SmartChest", "1"), S.PTX, (PTX_SCORE, 17, S.PERCENT))], {},
         "invalid", "unit '%' where the mapping expects '1'"),
        ([S.group(("Rapid ICH", "1"), S.ICH, None, (S.ICH, Code("X1", "99Z", "maybe")))], {},
         "unmapped", "neither positive nor negative"),
        ([S.group(("Rapid ICH", "1"), S.ICH, (Code("VOL", "99Z", "volume"), 3, S.UNITLESS))],
         {}, "invalid", "no score and no call"),
        ([S.group(("SmartChest", "1"), S.PTX, (PTX_SCORE, 0.4, S.UNITLESS))],
         {"AccessionNumber": ""}, "invalid", "no accession_number"),
        ([S.group(("SmartChest", "1"), S.PTX, (PTX_SCORE, 0.4, S.UNITLESS))],
         {"StudyDate": ""}, "invalid", "no valid StudyDate"),
    ],
)
def test_unusable_groups_are_refused_with_a_reason(
    groups: list[object], header: dict[str, str], reason: str, says: str
) -> None:
    refusal = _refusal(groups, **header)
    assert refusal.reason == reason
    assert says in refusal.message
    assert "MRN-0042" not in refusal.message and "A-7781" not in refusal.message


def test_a_refused_group_beside_a_usable_one_is_reported_not_fatal() -> None:
    sr = S.report([
        S.group(("Acme Bleed", "1"), S.ICH, (ICH_SCORE, 0.5, S.UNITLESS)),
        S.group(("Rapid ICH", "4.2.1"), S.ICH, (ICH_SCORE, 0.73, S.UNITLESS)),
    ])
    parsed = parse_sr(roundtrip(sr), REGISTRY, "site-b")
    assert [r.tool_id for r in parsed.results] == ["ich-triage"]
    assert [(r.reason, r.message[:21]) for r in parsed.refused] == [
        ("unmapped", "measurement group 1: ")]


def test_other_sr_classes_and_other_templates_are_refused() -> None:
    sr = S.report([S.group(("Rapid ICH", "1"), S.ICH, (ICH_SCORE, 0.5, S.UNITLESS))])
    basic_text = roundtrip(sr)
    basic_text.SOPClassUID = "1.2.840.10008.5.1.4.1.1.88.11"
    with pytest.raises(UnusableObject) as info:
        parse_sr(basic_text, REGISTRY, "x")
    assert info.value.reason == "unsupported_sop_class"
    assert info.value.status == 0x0122
    other_template = roundtrip(sr)
    other_template.ConceptNameCodeSequence[0].CodeValue = "111036"  # Mammography CAD Report
    with pytest.raises(UnusableObject) as info:
        parse_sr(other_template, REGISTRY, "x")
    assert info.value.reason == "unmapped"


def test_enhanced_and_comprehensive_sr_read_like_comprehensive_3d() -> None:
    for sr_class in (hd.sr.EnhancedSR, hd.sr.ComprehensiveSR):
        sr = S.report([S.group(("Rapid ICH", "4.2.1"), S.ICH, (ICH_SCORE, 0.73, S.UNITLESS))],
                      sr_class=sr_class)
        (result,) = parse_sr(roundtrip(sr), REGISTRY, "site-b").results
        assert (result.tool_id, result.ai_result) == ("ich-triage", 0.73)


@pytest.mark.parametrize(
    ("age", "years"),
    [("067Y", 67), ("006M", 0), ("030M", 2), ("104W", 2), ("003D", 0), ("45Y", None),
     ("999Y", None), (None, None)],
)
def test_patient_age_in_whole_years(age: str | None, years: int | None) -> None:
    assert image_header(S.image(PatientAge=age)).age == years


def test_image_header_drops_impossible_values_and_reads_imager_spacing() -> None:
    header = image_header(S.image(KVP="500", SliceThickness="-1", PixelSpacing=None,
                                  ImagerPixelSpacing=["0.139", "0.139"], ProtocolName=None,
                                  ContrastBolusAgent="OMNIPAQUE"))
    assert (header.kvp, header.slice_thickness, header.pixel_spacing, header.protocol_name,
            header.contrast) == (None, None, 0.139, None, True)
    with pytest.raises(UnusableObject):
        image_header(S.image(SeriesInstanceUID=None))


def test_dead_letters_keep_the_bytes_before_pixel_data_only() -> None:
    ds = image_of(_a_result(0.4, "ich-triage"), pixel_data=b"PIXELMARK" * 4)
    buf = BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    kept = without_pixels(buf.getvalue())
    assert b"PIXELMARK" in buf.getvalue() and b"PIXELMARK" not in kept
    assert b"ROUTINE HEAD" in kept


def _a_result(
    score: float, tool: str, indicator: bool | None = None, sex: Sex = Sex.MALE
) -> AIResult:
    t = REGISTRY[tool]
    return AIResult(
        event_id=str(uuid.uuid4()), tool_id=tool, manufacturer=t.manufacturer, model=t.product,
        software_version="5.2.1", platform="PowerShare AI Gateway", finding_code=t.finding_code,
        ai_result=score, operating_threshold=t.operating_threshold,
        result_indicator=score >= 0.5 if indicator is None else indicator,
        patient_id="MRN9", accession_number="ACC9", study_instance_uid="1.2.3.9",
        study_date=date(2026, 7, 1), site="site-a", modality=t.modality,
        body_part_examined=t.body_part, exam_name="CT HEAD WO", contrast_indication=False,
        scanner=Scanner(manufacturer="SIEMENS", model="SOMATOM go.Top", software_version="VA40"),
        acquisition=Acquisition(kvp=120, slice_thickness=5, pixel_spacing=0.46,
                                protocol_name="ROUTINE HEAD"),
        age=71, sex=sex, inference_date=datetime(2026, 7, 1, 3, 4, 5, 678000, tzinfo=UTC),
    )


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    score=st.floats(0, 1),
    tool=st.sampled_from(["ich-triage", "lvo-triage", "ptx-triage"]),
    indicator=st.booleans(),
    sex=st.sampled_from(list(Sex)),
)
def test_written_sr_and_image_read_back_as_the_result(
    score: float, tool: str, indicator: bool, sex: Sex
) -> None:
    """Writer and reader agree for any score and any sex (unknown is written empty, as
    DICOM wants, and read back as unknown); a tool with a call keeps its own call."""
    original = _a_result(score, tool, indicator, sex)
    (draft,) = parse_sr(roundtrip(sr_of([original], REGISTRY)), REGISTRY, "site-a").results
    got = enrich(draft, image_header(roundtrip(image_of(original))))
    has_call = REGISTRY[tool].dicom.call is not None  # type: ignore[union-attr]
    assert got.ai_result == pytest.approx(score, abs=1e-12)
    assert got.result_indicator == (indicator if has_call else got.ai_result >= 0.5)
    assert got.model_dump(exclude={"event_id", "ai_result", "result_indicator"}) == \
        original.model_dump(exclude={"event_id", "ai_result", "result_indicator"})
