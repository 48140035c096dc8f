"""The header fields of an image object that the drift detectors read, and nothing else.

From a CT/MR/CR/DX/MG/secondary-capture object we keep the scanner (Manufacturer,
ManufacturerModelName, SoftwareVersions), the acquisition (KVP, SliceThickness,
PixelSpacing, ProtocolName, contrast), BodyPartExamined, Modality, PatientAge and
PatientSex, keyed by study and series. Pixel data, names and identifiers other than the
study/series UIDs are never copied. Pure: a pydicom `Dataset` in, a frozen value out.
"""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass
from typing import Any

from pydicom.dataset import Dataset
from pydicom.multival import MultiValue

from surveillance.contracts import Acquisition, Scanner, Sex
from surveillance.interop.dicom_errors import UnusableObject
from surveillance.interop.dicom_sr_read import AnyDataset

_AGE = re.compile(r"(\d{3})([DWMY])")


@dataclass(frozen=True)
class ImageHeader:
    study_uid: str
    series_uid: str
    modality: str | None
    body_part: str | None
    manufacturer: str | None
    model: str | None
    software_version: str | None
    kvp: float | None
    slice_thickness: float | None
    pixel_spacing: float | None
    protocol_name: str | None
    contrast: bool
    age: int | None
    sex: str | None

    def scanner(self) -> Scanner:
        """Missing scanner fields are empty strings: unknown, as DICOM's empty type-2 value."""
        return Scanner(
            manufacturer=self.manufacturer or "",
            model=self.model or "",
            software_version=self.software_version or "",
        )

    def acquisition(self) -> Acquisition:
        return Acquisition(
            kvp=self.kvp,
            slice_thickness=self.slice_thickness,
            pixel_spacing=self.pixel_spacing,
            protocol_name=self.protocol_name,
        )

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ImageHeader:
        return cls(**data)


def image_header(ds: Dataset) -> ImageHeader:
    """The drift fields of one image object; `UnusableObject` without study/series UIDs.

    A value outside what the `AIResult` contract accepts (kVp above 200, a negative slice
    thickness) is dropped as unknown rather than refusing the image: it only describes
    the acquisition, and the AI result it enriches is still good.
    """
    study = _text(ds, "StudyInstanceUID", 64)
    series = _text(ds, "SeriesInstanceUID", 64)
    if study is None or series is None:
        raise UnusableObject(
            "cannot_understand", "image has no StudyInstanceUID or SeriesInstanceUID"
        )
    spacing = _number(ds, "PixelSpacing") or _number(ds, "ImagerPixelSpacing")
    return ImageHeader(
        study_uid=study,
        series_uid=series,
        modality=_text(ds, "Modality", 16),
        body_part=_text(ds, "BodyPartExamined", 64),
        manufacturer=_text(ds, "Manufacturer", 64),
        model=_text(ds, "ManufacturerModelName", 64),
        software_version=_text(ds, "SoftwareVersions", 64),
        kvp=_bounded(_number(ds, "KVP"), 200),
        slice_thickness=_bounded(_number(ds, "SliceThickness"), 50),
        pixel_spacing=_bounded(spacing, 10),
        protocol_name=_text(ds, "ProtocolName", 64),
        # The Contrast/Bolus module is required when contrast was used: its absence from
        # an image means none was, an agent named means some was.
        contrast=_text(ds, "ContrastBolusAgent", 64) is not None,
        age=patient_age(ds),
        sex=_sex(ds),
    )


def patient_age(ds: AnyDataset) -> int | None:
    """PatientAge (`045Y`, `006M`, `012W`, `003D`) in whole years; None if absent or odd."""
    raw = _text(ds, "PatientAge", 4)
    match = _AGE.fullmatch(raw) if raw else None
    if match is None:
        return None
    n, unit = int(match.group(1)), match.group(2)
    years = {"Y": n, "M": n // 12, "W": n // 52, "D": n // 365}[unit]
    return years if years <= 130 else None


def _sex(ds: Dataset) -> str | None:
    raw = _text(ds, "PatientSex", 16)
    return raw if raw in (Sex.FEMALE, Sex.MALE, Sex.OTHER) else None


def _text(ds: AnyDataset, keyword: str, max_len: int) -> str | None:
    """A string attribute, first value of a multi-valued one, stripped; None if empty."""
    try:
        value = ds.get(keyword)
    except (ValueError, TypeError, OverflowError):
        return None  # a malformed value reads as unknown
    if isinstance(value, MultiValue | list):
        value = value[0] if len(value) else None
    if value is None:
        return None
    text = str(value).strip().replace("\x00", "")
    return text[:max_len] if text else None


def _number(ds: Dataset, keyword: str) -> float | None:
    """A decimal attribute (first value when multi-valued: the row spacing); None if absent,
    empty or not a finite number."""
    try:
        value = ds.get(keyword)
        if isinstance(value, MultiValue | list):
            value = value[0] if len(value) else None
        number = None if value is None or value == "" else float(value)
    except (ValueError, TypeError, OverflowError):
        return None
    return number if number is not None and math.isfinite(number) else None


def _bounded(value: float | None, upper: float) -> float | None:
    return value if value is not None and 0 < value <= upper else None
