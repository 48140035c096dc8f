"""Hand-built TID 1500 SRs and image headers for the DICOM tests (highdicom templates).

Each builder writes what a vendor would send, with values chosen here, so that a test can
state the exact `AIResult` it expects without going through our own writer.
"""

from __future__ import annotations

from collections.abc import Sequence

import highdicom as hd
from pydicom.dataset import Dataset
from pydicom.sr.codedict import codes
from pydicom.sr.coding import Code

ICH = Code("1386000", "SCT", "Intracranial hemorrhage")
PTX = Code("36118008", "SCT", "Pneumothorax")
LVO = Code("LVO", "99RAPID", "Large vessel occlusion")
MTMDR = Code("MTMDR", "99IDX", "More than mild DR")
PRESENT = Code("52101004", "SCT", "Present")
ABSENT = Code("2667000", "SCT", "Absent")
UNITLESS = Code("1", "UCUM", "no units")
PERCENT = Code("%", "UCUM", "percent")

STUDY_UID = "1.2.826.0.1.3680043.10.511.1.100"
SERIES_UID = "1.2.826.0.1.3680043.10.511.1.100.1"


def evidence(study_uid: str = STUDY_UID, series_uid: str = SERIES_UID, **header: str) -> Dataset:
    ds = Dataset()
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
    ds.SOPInstanceUID = series_uid + ".1"
    ds.StudyInstanceUID = study_uid
    ds.SeriesInstanceUID = series_uid
    ds.Modality = "CT"
    ds.PatientID = header.get("PatientID", "MRN-0042")
    ds.PatientName = "Doe^Jane"
    ds.PatientBirthDate = ""
    ds.PatientSex = header.get("PatientSex", "F")
    ds.AccessionNumber = header.get("AccessionNumber", "A-7781")
    ds.StudyID = "1"
    ds.StudyDate = header.get("StudyDate", "20260812")
    ds.StudyTime = "101500"
    ds.ReferringPhysicianName = ""
    return ds


def group(
    algorithm: tuple[str, str] | None,
    finding: Code | None = None,
    score: tuple[Code, float, Code] | None = None,
    call: tuple[Code, Code] | None = None,
    tracking_uid: str | None = None,
) -> hd.sr.MeasurementsAndQualitativeEvaluations:
    measurements = None
    if score is not None:
        name, value, unit = score
        measurements = [hd.sr.Measurement(name=name, value=value, unit=unit)]
    evaluations = None
    if call is not None:
        evaluations = [hd.sr.QualitativeEvaluation(name=call[0], value=call[1])]
    return hd.sr.MeasurementsAndQualitativeEvaluations(
        tracking_identifier=hd.sr.TrackingIdentifier(
            uid=tracking_uid or hd.UID(), identifier="finding"
        ),
        finding_type=finding,
        algorithm_id=None if algorithm is None else hd.sr.AlgorithmIdentification(
            name=algorithm[0], version=algorithm[1]
        ),
        measurements=measurements,
        qualitative_evaluations=evaluations,
    )


def report(
    groups: Sequence[hd.sr.MeasurementsAndQualitativeEvaluations],
    sop_instance_uid: str = "1.2.826.0.1.3680043.10.511.1.100.99.1",
    device_name: str = "Rapid",
    manufacturer: str = "PowerShare AI Gateway",
    content: tuple[str, str, str | None] = ("20260812", "103015.250", "+0200"),
    sr_class: type = hd.sr.Comprehensive3DSR,
    evidence_ds: Dataset | None = None,
    **header: str,
) -> Dataset:
    observer = hd.sr.ObserverContext(
        observer_type=codes.DCM.Device,
        observer_identifying_attributes=hd.sr.DeviceObserverIdentifyingAttributes(
            uid=hd.UID(), name=device_name, manufacturer_name="RapidAI"
        ),
    )
    measurement_report = hd.sr.MeasurementReport(
        observation_context=hd.sr.ObservationContext(observer_device_context=observer),
        procedure_reported=Code("24727-0", "LN", "CT Head WO contrast"),
        imaging_measurements=list(groups),
    )
    sr = sr_class(
        evidence=[evidence_ds if evidence_ds is not None else evidence(**header)],
        content=measurement_report,
        series_instance_uid="1.2.826.0.1.3680043.10.511.1.100.99",
        series_number=99,
        sop_instance_uid=sop_instance_uid,
        instance_number=1,
        manufacturer=manufacturer,
    )
    day, time, offset = content
    sr.ContentDate = day
    sr.ContentTime = time
    if offset is not None:
        sr.TimezoneOffsetFromUTC = offset
    elif "TimezoneOffsetFromUTC" in sr:
        del sr.TimezoneOffsetFromUTC
    return sr


def image(study_uid: str = STUDY_UID, series_uid: str = SERIES_UID, **attrs: object) -> Dataset:
    """A CT image header as a scanner writes it (no pixel data unless given)."""
    ds = Dataset()
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
    ds.SOPInstanceUID = series_uid + ".7"
    ds.StudyInstanceUID = study_uid
    ds.SeriesInstanceUID = series_uid
    ds.PatientID = "MRN-0042"
    ds.Modality = "CT"
    ds.BodyPartExamined = "HEAD"
    ds.Manufacturer = "GE MEDICAL SYSTEMS"
    ds.ManufacturerModelName = "Revolution CT"
    ds.SoftwareVersions = ["revo_ct_22bc.50", "gmp_vct.42"]
    ds.KVP = "120"
    ds.SliceThickness = "5.0"
    ds.PixelSpacing = ["0.488281", "0.488281"]
    ds.ProtocolName = "ROUTINE HEAD"
    ds.PatientAge = "067Y"
    ds.PatientSex = "F"
    for keyword, value in attrs.items():
        if value is None:
            if keyword in ds:
                delattr(ds, keyword)
        else:
            setattr(ds, keyword, value)
    return ds
