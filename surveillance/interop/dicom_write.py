"""AI results as DICOM, the way orchestration platforms deliver them to a PACS.

`sr_of()` writes one study's AI results as a TID 1500 Measurement Report (Comprehensive
3D SR, built with highdicom's templates): one measurement group per result, coded the way
the tool's `dicom:` mapping in the registry says. `image_of()` writes the study's
header-only image object (no Pixel Data unless asked: the receiver never needs it). The
simulator's DICOM leg, the tests and the benchmarks use both; `dicom_sr.parse_sr()` of
`sr_of()` gives back the results (a call-only tool's score becomes 1.0 or 0.0).
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from copy import deepcopy
from datetime import UTC

import highdicom as hd
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sr.codedict import codes
from pydicom.sr.coding import Code
from pydicom.uid import UID, ExplicitVRLittleEndian, generate_uid
from pydicom.valuerep import DA, TM

from surveillance.clinical.baselines import ToolBaseline
from surveillance.clinical.dicom_mapping import Code as MappedCode
from surveillance.clinical.dicom_mapping import DicomMapping
from surveillance.contracts import AIResult, Sex
from surveillance.interop.dicom_errors import DicomError

#: Image storage SOP class per modality; other modalities go as Secondary Capture.
IMAGE_SOP_CLASS = {
    "CT": "1.2.840.10008.5.1.4.1.1.2",
    "MR": "1.2.840.10008.5.1.4.1.1.4",
    "CR": "1.2.840.10008.5.1.4.1.1.1",
    "DX": "1.2.840.10008.5.1.4.1.1.1.1",
    "MG": "1.2.840.10008.5.1.4.1.1.1.2",
}
SECONDARY_CAPTURE = "1.2.840.10008.5.1.4.1.1.7"

#: Series UIDs derived from the study UID, so that an SR's evidence names the series of
#: the image `image_of()` writes for the same study.
_SERIES_NAMESPACE = uuid.UUID("8a0f3f4e-9f5d-4c1e-8d5e-0b2c7f6a1e33")


def series_uid_of(study_uid: str, n: int = 1) -> str:
    return f"2.25.{uuid.uuid5(_SERIES_NAMESPACE, f'{study_uid}/{n}').int}"


def instance_uid_of(study_uid: str, what: str) -> str:
    return f"2.25.{uuid.uuid5(_SERIES_NAMESPACE, f'{study_uid}/{what}').int}"


def image_of(result: AIResult, pixel_data: bytes | None = None) -> Dataset:
    """The header of one image of `result`'s study, as its scanner wrote it."""
    ds = Dataset()
    ds.SOPClassUID = IMAGE_SOP_CLASS.get(result.modality, SECONDARY_CAPTURE)
    ds.SOPInstanceUID = instance_uid_of(result.study_instance_uid, "image")
    _patient_study(ds, result)
    ds.SeriesInstanceUID = series_uid_of(result.study_instance_uid)
    ds.SeriesNumber = 1
    ds.InstanceNumber = 1
    ds.Modality = result.modality
    ds.BodyPartExamined = result.body_part_examined[:16]
    ds.Manufacturer = result.scanner.manufacturer
    ds.ManufacturerModelName = result.scanner.model
    ds.SoftwareVersions = result.scanner.software_version
    acq = result.acquisition
    if acq.kvp is not None:
        ds.KVP = f"{acq.kvp:.6g}"
    if acq.slice_thickness is not None:
        ds.SliceThickness = f"{acq.slice_thickness:.6g}"
    if acq.pixel_spacing is not None:
        ds.PixelSpacing = [f"{acq.pixel_spacing:.6g}"] * 2
    if acq.protocol_name is not None:
        ds.ProtocolName = acq.protocol_name[:64]
    if result.contrast_indication:
        ds.ContrastBolusAgent = "IODINATED CONTRAST"
    if pixel_data is not None:
        ds.Rows, ds.Columns = 1, len(pixel_data)
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
        ds.PixelData = pixel_data
    return _with_meta(ds)


def sr_of(
    results: Sequence[AIResult],
    registry: Mapping[str, ToolBaseline],
    sop_instance_uid: str | None = None,
) -> Dataset:
    """One TID 1500 SR holding every result of one study (one group per result)."""
    if not results:
        raise DicomError("an SR needs at least one AI result")
    first = results[0]
    if any(r.study_instance_uid != first.study_instance_uid for r in results):
        raise DicomError("the results of one SR must belong to one study")
    groups = [_group(r, _mapping(registry, r.tool_id)) for r in results]
    evidence = Dataset()
    _patient_study(evidence, first)
    evidence.SOPClassUID = IMAGE_SOP_CLASS.get(first.modality, SECONDARY_CAPTURE)
    evidence.SOPInstanceUID = instance_uid_of(first.study_instance_uid, "image")
    evidence.SeriesInstanceUID = series_uid_of(first.study_instance_uid)
    evidence.Modality = first.modality
    device = hd.sr.DeviceObserverIdentifyingAttributes(
        uid=instance_uid_of(first.study_instance_uid, f"device/{first.tool_id}"),
        name=first.model[:64] or first.tool_id,
        manufacturer_name=first.manufacturer[:64] or None,
        model_name=first.model[:64] or None,
    )
    context = hd.sr.ObservationContext(
        observer_device_context=hd.sr.ObserverContext(
            observer_type=codes.DCM.Device, observer_identifying_attributes=device
        )
    )
    report = hd.sr.MeasurementReport(
        observation_context=context,
        procedure_reported=Code("P5-0905E", "SRT", "Imaging procedure"),
        imaging_measurements=groups,
    )
    sop_uid = sop_instance_uid or instance_uid_of(
        first.study_instance_uid, "sr/" + "/".join(r.event_id for r in results)
    )
    sr = hd.sr.Comprehensive3DSR(
        evidence=[evidence],
        content=report,
        series_instance_uid=series_uid_of(first.study_instance_uid, 99),
        series_number=99,
        sop_instance_uid=sop_uid,
        instance_number=1,
        manufacturer=first.platform or first.manufacturer,
        institution_name=first.site,
    )
    when = first.inference_date.astimezone(UTC)
    sr.ContentDate = DA(when.strftime("%Y%m%d"))
    sr.ContentTime = TM(when.strftime("%H%M%S.%f"))
    sr.TimezoneOffsetFromUTC = "+0000"
    if first.age is not None:
        sr.PatientAge = f"{first.age:03d}Y"
    if first.exam_name:
        sr.StudyDescription = first.exam_name[:64]
    return sr


def _mapping(registry: Mapping[str, ToolBaseline], tool_id: str) -> DicomMapping:
    tool = registry.get(tool_id)
    if tool is None or tool.dicom is None:
        raise DicomError(f"tool {tool_id} has no dicom: mapping in the baseline registry")
    return tool.dicom


def _code(c: MappedCode) -> Code:
    return Code(c.value, c.scheme, c.meaning or c.value)


def _group(result: AIResult, mapping: DicomMapping) -> hd.sr.MeasurementsAndQualitativeEvaluations:
    measurements = []
    if mapping.score is not None:
        unit = mapping.score.unit
        measurements.append(
            hd.sr.Measurement(
                name=_code(mapping.score.concept),
                value=result.ai_result * mapping.score.full_scale,
                unit=Code(unit, "UCUM", "no units" if unit == "1" else unit),
            )
        )
    evaluations = []
    if mapping.call is not None:
        value = mapping.call.positive[0] if result.result_indicator else mapping.call.negative[0]
        evaluations.append(
            hd.sr.QualitativeEvaluation(name=_code(mapping.call.concept), value=_code(value))
        )
    return hd.sr.MeasurementsAndQualitativeEvaluations(
        tracking_identifier=hd.sr.TrackingIdentifier(
            uid=f"2.25.{uuid.UUID(result.event_id).int}"
            if _is_uuid(result.event_id) else generate_uid(),
            identifier=result.tool_id,
        ),
        finding_type=_code(mapping.findings[0]),
        algorithm_id=hd.sr.AlgorithmIdentification(
            name=mapping.algorithm_names[0], version=result.software_version
        ),
        measurements=measurements or None,
        qualitative_evaluations=evaluations or None,
    )


def _is_uuid(value: str) -> bool:
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True


def _dicom_sex(result: AIResult) -> str:
    """PatientSex as DICOM allows it (M, F, O): unknown is an empty value, not "U"."""
    return "" if result.sex is Sex.UNKNOWN else result.sex.value


def _patient_study(ds: Dataset, result: AIResult) -> None:
    ds.PatientID = result.patient_id
    ds.PatientName = ""
    ds.PatientBirthDate = ""
    ds.PatientSex = _dicom_sex(result)
    if result.age is not None:
        ds.PatientAge = f"{result.age:03d}Y"
    ds.StudyInstanceUID = result.study_instance_uid
    ds.AccessionNumber = result.accession_number
    ds.StudyID = ""
    ds.StudyDate = result.study_date.strftime("%Y%m%d")
    ds.StudyTime = ""
    ds.ReferringPhysicianName = ""


def _with_meta(ds: Dataset) -> Dataset:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = ds.SOPClassUID
    meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta = meta
    return ds


def restamp(sr: Dataset, result: AIResult, sop_instance_uid: str) -> Dataset:
    """A copy of an `sr_of()` SR for another study, same AI output (load generation:
    building an SR with highdicom costs tens of milliseconds; this, a few).

    Only header attributes change (patient, study, accession, dates, evidence UIDs):
    the content tree, and so the tool, version, score and call, stay the template's.
    """
    copy = deepcopy(sr)  # nothing shared: copies may be encoded in parallel threads
    copy.file_meta.MediaStorageSOPInstanceUID = UID(sop_instance_uid)
    copy.SOPInstanceUID = sop_instance_uid
    copy.PatientID = result.patient_id
    copy.PatientSex = _dicom_sex(result)
    if result.age is not None:
        copy.PatientAge = f"{result.age:03d}Y"
    copy.AccessionNumber = result.accession_number
    copy.StudyInstanceUID = result.study_instance_uid
    copy.StudyDate = DA(result.study_date.strftime("%Y%m%d"))
    when = result.inference_date.astimezone(UTC)
    copy.ContentDate = DA(when.strftime("%Y%m%d"))
    copy.ContentTime = TM(when.strftime("%H%M%S.%f"))
    evidence = Dataset()
    evidence.StudyInstanceUID = result.study_instance_uid
    series = Dataset()
    series.SeriesInstanceUID = series_uid_of(result.study_instance_uid)
    instance = Dataset()
    instance.ReferencedSOPClassUID = IMAGE_SOP_CLASS.get(result.modality, SECONDARY_CAPTURE)
    instance.ReferencedSOPInstanceUID = instance_uid_of(result.study_instance_uid, "image")
    series.ReferencedSOPSequence = [instance]
    evidence.ReferencedSeriesSequence = [series]
    copy.CurrentRequestedProcedureEvidenceSequence = [evidence]
    return copy
