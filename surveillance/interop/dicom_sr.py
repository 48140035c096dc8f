"""DICOM Structured Reports (TID 1500 Measurement Report) to `AIResult`s.

Pure: a pydicom `Dataset` (or `dicom_sr_read`'s reading) and the baseline registry in,
AI results out. The content tree is read by `dicom_sr_tree` (highdicom's reading rules,
without its per-item copies; the tests check it against highdicom). Every measurement
group (TID 1501, and the ROI groups TID 1410/1411) is one AI result of one tool: the
group's algorithm (TID 4019, else the device observer's name) says which tool, the
group's finding must be one the tool's `dicom:` mapping lists, the score and the tool's
own call are where the mapping says (`clinical/dicom_mapping.py`).

The SR describes the AI's output, not the acquisition: the results come out with the
scanner and acquisition unknown (`draft`), and `enrich()` fills them from the study's
image headers when those arrive. The AI vendor and product are the registry's (the
tool is identified by its mapping); the SR's equipment Manufacturer, when it is not the
vendor, is the orchestration platform that wrote it. The identifiers stay as the source
sent them: like any producer of `ai.results`, we leave pseudonymization to ingest.
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, timezone, tzinfo
from typing import Any

from pydantic import ValidationError

from surveillance.clinical.baselines import ToolBaseline
from surveillance.clinical.dicom_mapping import DicomMapping
from surveillance.contracts import AIResult, Scanner, Sex
from surveillance.interop.dicom_errors import UnusableObject
from surveillance.interop.dicom_header import ImageHeader, patient_age
from surveillance.interop.dicom_sr_read import AnyDataset
from surveillance.interop.dicom_sr_tree import (
    Group,
    check_measurement_report,
    device_name,
    measurement_groups,
)

#: SR storage SOP classes that can carry TID 1500: Enhanced, Comprehensive, Comprehensive 3D.
SR_SOP_CLASSES = frozenset(
    {
        "1.2.840.10008.5.1.4.1.1.88.22",
        "1.2.840.10008.5.1.4.1.1.88.33",
        "1.2.840.10008.5.1.4.1.1.88.34",
    }
)

#: Event ids are UUIDv5 of the SR instance and the group: a resent SR has the same ids.
EVENT_NAMESPACE = uuid.UUID("5b1d7c4e-3f0a-4a57-9a53-2d1f1e0c9d11")

_UNKNOWN_SCANNER = Scanner(manufacturer="", model="", software_version="")


@dataclass(frozen=True)
class SrResults:
    """What one SR yields: draft results (acquisition unknown) and the groups refused."""

    sop_instance_uid: str
    study_uid: str
    referenced_series: tuple[str, ...]
    results: tuple[AIResult, ...]
    refused: tuple[UnusableObject, ...]


def parse_sr(
    ds: AnyDataset,
    registry: Mapping[str, ToolBaseline],
    site: str,
    local_tz: tzinfo = UTC,
) -> SrResults:
    """Every usable measurement group of `ds` as a draft `AIResult`.

    Raises `UnusableObject` when the SR yields no result at all (wrong SOP class, not a
    TID 1500 report, a header field the contract needs is missing, or every group
    refused); a group refused among usable ones is returned in `refused`.
    """
    sop_class = str(ds.get("SOPClassUID", ""))
    if sop_class not in SR_SOP_CLASSES:
        raise UnusableObject(
            "unsupported_sop_class",
            f"SOP class {sop_class or '(none)'} is not an Enhanced, Comprehensive or "
            "Comprehensive 3D SR",
        )
    check_measurement_report(ds)
    header = _header(ds, local_tz)
    # The device observer is read only for groups without an algorithm name.
    device = functools.cache(lambda: device_name(ds))
    results: list[AIResult] = []
    refused: list[UnusableObject] = []
    for index, group in enumerate(measurement_groups(ds)):
        try:
            results.append(_result(group, index, header, device, registry, site))
        except UnusableObject as exc:
            refused.append(
                UnusableObject(exc.reason, f"measurement group {index + 1}: {exc.message}")
            )
    if not results:
        if not refused:
            raise UnusableObject("unmapped", "the Measurement Report has no measurement group")
        raise UnusableObject(refused[0].reason, "; ".join(r.message for r in refused)[:1000])
    return SrResults(
        sop_instance_uid=header["sop_instance_uid"],
        study_uid=header["study_instance_uid"],
        referenced_series=_referenced_series(ds, header["study_instance_uid"]),
        results=tuple(results),
        refused=tuple(refused),
    )


def enrich(draft: AIResult, header: ImageHeader | None) -> AIResult:
    """The draft with its study's scanner and acquisition; unchanged (unknown) without."""
    if header is None:
        return draft
    return draft.model_copy(
        update={
            "scanner": header.scanner(),
            "acquisition": header.acquisition(),
            "modality": header.modality or draft.modality,
            "body_part_examined": header.body_part or draft.body_part_examined,
            "contrast_indication": header.contrast,
            "age": draft.age if draft.age is not None else header.age,
            "sex": draft.sex if draft.sex is not Sex.UNKNOWN else Sex(header.sex or "U"),
        }
    )


def _header(ds: AnyDataset, local_tz: tzinfo) -> dict[str, Any]:
    def text(keyword: str) -> str:
        try:
            value = ds.get(keyword)
        except (ValueError, TypeError):
            return ""
        return "" if value is None else str(value).strip()

    needed = {
        "patient_id": text("PatientID"),
        "accession_number": text("AccessionNumber"),
        "study_instance_uid": text("StudyInstanceUID"),
        "sop_instance_uid": text("SOPInstanceUID"),
    }
    missing = [k for k, v in needed.items() if not v]
    if missing:
        raise UnusableObject(
            "invalid", f"the SR header has no {', '.join(missing)} (the case join needs them)"
        )
    study_date = _date(text("StudyDate"))
    if study_date is None:
        raise UnusableObject("invalid", "the SR header has no valid StudyDate")
    inferred = _datetime(text("ContentDate"), text("ContentTime"),
                         text("TimezoneOffsetFromUTC"), local_tz)
    if inferred is None:
        raise UnusableObject("invalid", "the SR header has no valid ContentDate/ContentTime")
    sex = text("PatientSex")
    return {
        **needed,
        "study_date": study_date,
        "inference_date": inferred,
        "age": patient_age(ds),
        "sex": Sex(sex) if sex in ("F", "M", "O") else Sex.UNKNOWN,
        "exam_name": text("StudyDescription")[:256] or None,
        "equipment": text("Manufacturer")[:256] or None,
    }


def _date(raw: str) -> date | None:
    try:
        return datetime.strptime(raw[:8], "%Y%m%d").date() if len(raw) >= 8 else None
    except ValueError:
        return None


def _datetime(day: str, time: str, offset: str, local_tz: tzinfo) -> datetime | None:
    """ContentDate + ContentTime (HHMMSS.FFFFFF, any precision) in the SR's own UTC offset
    (TimezoneOffsetFromUTC) or, without one, the site's local time zone."""
    d = _date(day)
    if d is None:
        return None
    digits, _, fraction = time.partition(".")
    if not digits.isdigit() or len(digits) not in (2, 4, 6):
        return None
    hh, mm, ss = (int(digits[i : i + 2]) if len(digits) > i else 0 for i in (0, 2, 4))
    micro = int((fraction + "000000")[:6]) if fraction.isdigit() else 0
    tz = _offset(offset) or local_tz
    try:
        return datetime(d.year, d.month, d.day, hh, mm, min(ss, 59), micro, tzinfo=tz)
    except ValueError:
        return None


def _offset(raw: str) -> tzinfo | None:
    if len(raw) != 5 or raw[0] not in "+-" or not raw[1:].isdigit():
        return None
    minutes = int(raw[1:3]) * 60 + int(raw[3:5])
    return timezone((-1 if raw[0] == "-" else 1) * timedelta(minutes=minutes))


def _referenced_series(ds: AnyDataset, study_uid: str) -> tuple[str, ...]:
    """Series of the study the SR lists as evidence (CurrentRequestedProcedureEvidence)."""
    series: list[str] = []
    for study in ds.get("CurrentRequestedProcedureEvidenceSequence", []):
        if str(study.get("StudyInstanceUID", "")) != study_uid:
            continue
        for item in study.get("ReferencedSeriesSequence", []):
            uid = str(item.get("SeriesInstanceUID", ""))
            if uid and uid not in series:
                series.append(uid)
    return tuple(series)


def _tool_for(
    name: str, finding: tuple[str, str] | None, registry: Mapping[str, ToolBaseline]
) -> tuple[ToolBaseline, DicomMapping]:
    candidates = [
        (tool, tool.dicom)
        for tool in registry.values()
        if tool.dicom is not None and name in tool.dicom.algorithm_names
    ]
    if not candidates:
        raise UnusableObject(
            "unmapped", f"no registry tool lists algorithm {name!r} in dicom.algorithm_names"
        )
    if finding is None:
        if len(candidates) == 1:
            return candidates[0]
        raise UnusableObject(
            "unmapped", f"algorithm {name!r} maps to several tools and the group names no finding"
        )
    for tool, mapping in candidates:
        if finding in {c.key for c in mapping.findings}:
            return tool, mapping
    raise UnusableObject(
        "unmapped",
        f"finding {finding[0]} {finding[1]} is not in dicom.findings of "
        f"{', '.join(t.tool_id for t, _ in candidates)}",
    )


def _score(group: Group, mapping: DicomMapping) -> float | None:
    if mapping.score is None:
        return None
    where = mapping.score
    found = [m for m in group.measurements if m.name == where.concept.key]
    if not found:
        return None
    if len(found) > 1:
        raise UnusableObject("invalid", f"{len(found)} score measurements in one group")
    value, unit = found[0].value, found[0].unit
    if value is None or unit is None:
        raise UnusableObject("invalid", "the score measurement has no numeric value")
    if unit != where.unit:
        raise UnusableObject(
            "invalid", f"the score is in unit {unit!r} where the mapping expects {where.unit!r}"
        )
    if not 0.0 <= value <= where.full_scale:
        raise UnusableObject(
            "invalid", f"the score is outside [0, {where.full_scale:g}] {where.unit}"
        )
    return value / where.full_scale


def _call(group: Group, mapping: DicomMapping) -> bool | None:
    if mapping.call is None:
        return None
    where = mapping.call
    found = [value for name, value in group.evaluations if name == where.concept.key]
    if not found:
        return None
    value = found[0]
    if value in {c.key for c in where.positive}:
        return True
    if value in {c.key for c in where.negative}:
        return False
    raise UnusableObject(
        "unmapped", f"call value {value[0]} {value[1]} is neither positive nor negative in "
        "the mapping"
    )


def _result(
    group: Group,
    index: int,
    header: dict[str, Any],
    device: Callable[[], str | None],
    registry: Mapping[str, ToolBaseline],
    site: str,
) -> AIResult:
    name = group.algorithm or device()
    if not name:
        raise UnusableObject("unmapped", "no algorithm identification and no device observer")
    tool, mapping = _tool_for(name, group.finding, registry)
    score, call = _score(group, mapping), _call(group, mapping)
    if score is None and call is None:
        raise UnusableObject("invalid", f"no score and no call where tool {tool.tool_id}'s "
                             "mapping puts them")
    if score is None:
        # A binary tool: its call is its whole output.
        score = 1.0 if call else 0.0
    positive = call if call is not None else score >= tool.operating_threshold
    version = group.version
    if version is None:
        raise UnusableObject("invalid", "the algorithm identification has no version")
    tracking = group.tracking_uid
    event_id = uuid.uuid5(
        EVENT_NAMESPACE, f"{header['sop_instance_uid']}/{tracking or index}"
    )
    equipment = header["equipment"]
    try:
        return AIResult(
            event_id=str(event_id),
            tool_id=tool.tool_id,
            manufacturer=tool.manufacturer,
            model=tool.product,
            software_version=version,
            # The SR was written by an orchestration platform when its equipment is not
            # the AI vendor's own.
            platform=equipment if equipment and equipment != tool.manufacturer else None,
            finding_code=tool.finding_code,
            ai_result=score,
            operating_threshold=tool.operating_threshold,
            result_indicator=positive,
            patient_id=header["patient_id"],
            accession_number=header["accession_number"],
            study_instance_uid=header["study_instance_uid"],
            study_date=header["study_date"],
            site=site,
            modality=tool.modality,
            body_part_examined=tool.body_part,
            exam_name=header["exam_name"],
            contrast_indication=None,
            scanner=_UNKNOWN_SCANNER,
            age=header["age"],
            sex=header["sex"],
            inference_date=header["inference_date"],
        )
    except ValidationError as exc:
        first = exc.errors(include_url=False, include_input=False)[0]
        where = ".".join(str(p) for p in first["loc"])
        raise UnusableObject("invalid", f"{where}: {first['msg']}") from exc
