"""The content items of a TID 1500 Measurement Report that the tool mapping reads.

Pure: a pydicom `Dataset` (or `dicom_sr_read`'s reading) in, plain values out. This
walks the SR content tree directly rather than through highdicom's typed templates:
highdicom copies and validates every content item of every group it builds (about 15 ms
of CPU per SR here, against about 1 ms for this walk), which capped the C-STORE receiver
near 60 SRs per CPU-second. The walk follows highdicom's reading rules exactly, and the
tests keep highdicom as the oracle: for generated SRs both readers must give the same
groups (`tests/test_dicom_sr_tree.py`).

The rules, as highdicom applies them:

- a Measurement Group is a CONTAINER named (DCM, 125007) anywhere under the root, nested
  groups included (TID 1501 and the ROI groups of TID 1410/1411 read alike);
- a group's finding (DCM 121071), tracking UID (DCM 112040), numeric measurements and
  qualitative evaluations are its direct children; a coded child that is the finding, a
  finding site or a measurement method is not an evaluation;
- its algorithm name and version (TID 4019, DCM 111001/111003) are its direct children,
  else the first ones anywhere under it;
- a concept name matches a code when scheme and value are equal (SNOMED's retired SRT
  codes read as their SCT equivalents) and neither has a coding scheme version.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from pydicom.sr._snomed_dict import mapping as _snomed  # the map pydicom's Code uses

from surveillance.interop.dicom_errors import UnusableObject
from surveillance.interop.dicom_sr_read import AnyDataset

Key = tuple[str, str]

_REPORT = ("DCM", "126000")
_GROUP = ("DCM", "125007")
_FINDING = ("DCM", "121071")
_TRACKING_UID = ("DCM", "112040")
_ALGORITHM_NAME = ("DCM", "111001")
_ALGORITHM_VERSION = ("DCM", "111003")
_OBSERVER_TYPE = ("DCM", "121005")
_DEVICE = ("DCM", "121007")
_DEVICE_NAME = ("DCM", "121013")
_DEVICE_MODEL = ("DCM", "121015")
#: Coded children of a group that describe the finding, not evaluate it.
_NOT_EVALUATIONS = frozenset({_FINDING, ("SCT", "363698007"), ("SCT", "370129005")})


@dataclass(frozen=True)
class Measured:
    """A numeric measurement: its concept, value and UCUM unit (None when absent)."""

    name: Key
    value: float | None
    unit: str | None


@dataclass(frozen=True)
class Group:
    """What one Measurement Group says, as the tool mapping reads it."""

    algorithm: str | None
    version: str | None
    finding: Key | None
    tracking_uid: str | None
    measurements: tuple[Measured, ...]
    evaluations: tuple[tuple[Key, Key], ...]


def check_measurement_report(ds: AnyDataset) -> None:
    """`UnusableObject` unless the root is an Imaging Measurement Report container."""
    try:
        _code(ds.ConceptNameCodeSequence[0])
        is_report = ds.ValueType == "CONTAINER" and _is(ds, _REPORT)
    except (ValueError, AttributeError, KeyError, TypeError, IndexError) as exc:
        raise UnusableObject(
            "cannot_understand", f"the SR has no readable root concept ({type(exc).__name__})"
        ) from exc
    if not is_report:
        raise UnusableObject(
            "unmapped", "the SR is not a TID 1500 Measurement Report (its root is not an "
            "'Imaging Measurement Report' container)"
        )


def measurement_groups(report: AnyDataset) -> list[Group]:
    """Every Measurement Group of the report, in document order."""
    try:
        return [_group(item) for item in _walk(report) if _is_group(item)]
    except (ValueError, AttributeError, KeyError, TypeError, IndexError) as exc:
        raise UnusableObject(
            "cannot_understand", f"the measurement groups cannot be read ({type(exc).__name__})"
        ) from exc


def device_name(report: AnyDataset) -> str | None:
    """Name (else model name) of the first device observer (TID 1004) of the report."""
    try:
        items = list(report.ContentSequence)
        for i, item in enumerate(items):
            if not _is(item, _OBSERVER_TYPE) or _mapped(_coded_value(item)) != _DEVICE:
                continue
            attributes: list[AnyDataset] = []
            for other in items[i + 1 :]:
                if _is(other, _OBSERVER_TYPE):
                    break
                attributes.append(other)
            for wanted in (_DEVICE_NAME, _DEVICE_MODEL):
                name = next((_text(a) for a in attributes if _is(a, wanted)), None)
                if name:
                    return name
    except (ValueError, AttributeError, KeyError, TypeError, IndexError):
        return None
    return None


def _walk(node: AnyDataset) -> Iterator[AnyDataset]:
    """Every content item under `node`, depth first, each before its children."""
    for item in node.get("ContentSequence", ()):
        yield item
        yield from _walk(item)


def _is_group(item: AnyDataset) -> bool:
    return item.get("ValueType") == "CONTAINER" and _is(item, _GROUP)


def _group(group: AnyDataset) -> Group:
    children = list(group.get("ContentSequence", ()))
    finding = tracking = None
    measurements: list[Measured] = []
    evaluations: list[tuple[Key, Key]] = []
    for item in children:
        kind = item.get("ValueType")
        if kind == "CODE":
            if finding is None and _is(item, _FINDING):
                finding = _coded_value(item)
            if not any(_is(item, code) for code in _NOT_EVALUATIONS):
                evaluations.append((_code(item.ConceptNameCodeSequence[0]), _coded_value(item)))
        elif kind == "UIDREF" and tracking is None and _is(item, _TRACKING_UID):
            tracking = str(item.UID)
        elif kind == "NUM":
            measurements.append(_measured(item, _code(item.ConceptNameCodeSequence[0])))
    algorithm, version = _algorithm(children, group)
    return Group(algorithm, version, finding, tracking, tuple(measurements), tuple(evaluations))


def _algorithm(children: list[AnyDataset], group: AnyDataset) -> tuple[str | None, str | None]:
    for scope in (children, list(_walk(group))):
        name = next((item for item in scope if _is(item, _ALGORITHM_NAME)), None)
        if name is not None:
            version = next((i for i in scope if _is(i, _ALGORITHM_VERSION)), None)
            text = None if version is None else str(version.TextValue).strip()
            return str(name.TextValue).strip(), text or None
    return None, None


def _measured(item: AnyDataset, name: Key) -> Measured:
    values = item.get("MeasuredValueSequence") or ()
    if not values:
        return Measured(name, None, None)
    value = values[0]
    try:
        number = float(value.FloatingPointValue if "FloatingPointValue" in value
                       else value.NumericValue)
    except (ValueError, TypeError, AttributeError):
        number = None
    units = value.get("MeasurementUnitsCodeSequence") or ()
    return Measured(name, number, _code(units[0])[1] if units else None)


def _coded_value(item: AnyDataset) -> Key:
    return _code(item.ConceptCodeSequence[0])


def _text(item: AnyDataset) -> str | None:
    value = item.get("TextValue")
    return None if value is None else str(value)


def _is(item: AnyDataset, code: Key) -> bool:
    """Whether the item's concept name is `code` (which is unversioned): highdicom's
    equality, under which a name with a coding scheme version matches no such code."""
    names = item.get("ConceptNameCodeSequence")
    if not names or names[0].get("CodingSchemeVersion") is not None:
        return False
    return _mapped(_code(names[0])) == code


def _mapped(key: Key) -> Key:
    """SNOMED's retired SRT codes as their SCT equivalents (as pydicom compares codes)."""
    scheme, value = key
    if scheme == "SRT" and value in _snomed["SRT"]:
        return ("SCT", _snomed["SRT"][value])
    return key


def _code(code: AnyDataset) -> Key:
    """(scheme designator, value) of a code sequence item, whichever value attribute."""
    value: Any = code.get("CodeValue")
    if value is None:
        value = code.get("LongCodeValue")
    if value is None:
        value = code.URNCodeValue
    return str(code.CodingSchemeDesignator), str(value)
