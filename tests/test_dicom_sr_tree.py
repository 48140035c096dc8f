"""The direct SR walk (`dicom_sr_tree`) against highdicom's typed templates as the oracle.

Hypothesis builds TID 1500 reports with highdicom (any number of groups, with or without
algorithm, finding, tracking UID, scores, evaluations; codes in SCT, retired SRT,
versioned and private schemes; items removed; groups nested in groups), encodes and
decodes them as the SCP does, and both readers must say the same thing about every group
and the device observer. highdicom is read as `parse_sr` read it before the walk. The walk
is checked on pydicom's decoding and on `dicom_sr_read`'s reading of the same bytes.
"""

from __future__ import annotations

from copy import deepcopy
from io import BytesIO
from typing import Any

import highdicom as hd
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.sr.codedict import codes
from pydicom.sr.coding import Code
from pynetdicom.dsutils import encode

from surveillance.interop.dicom_sr_read import read_dataset
from surveillance.interop.dicom_sr_tree import (
    Group,
    Measured,
    check_measurement_report,
    device_name,
    measurement_groups,
)
from tests import dicom_samples as S

CODES = [
    S.ICH, S.PTX, S.LVO, S.MTMDR, S.PRESENT, S.ABSENT,
    Code("ICH-P", "99RAPID", "ICH probability"),
    Code("G-C0E3", "SRT", "Finding Site"),  # retired SRT code of SCT 363698007
    Code("363698007", "SCT", "Finding Site"),
    Code("370129005", "SCT", "Measurement Method"),
    Code("121071", "DCM", "Finding"),
    Code("T-A0100", "SRT", "Brain"),
    Code("1386000", "SCT", "Intracranial hemorrhage", scheme_version="2023"),
    Code("RID4700", "RADLEX", "hemorrhage"),
]
UNITS = [S.UNITLESS, S.PERCENT, Code("mm", "UCUM", "millimeter")]
code = st.sampled_from(CODES)


@st.composite
def groups(draw: st.DrawFn) -> hd.sr.MeasurementsAndQualitativeEvaluations:
    algorithm = draw(st.none() | st.tuples(st.sampled_from(["Rapid ICH", " SmartChest "]),
                                           st.sampled_from(["4.2.1", "1"])))
    measurements = draw(st.lists(st.tuples(code, st.floats(0, 1e4), st.sampled_from(UNITS)),
                                 max_size=3))
    evaluations = draw(st.lists(st.tuples(code, code), max_size=3))
    return hd.sr.MeasurementsAndQualitativeEvaluations(
        tracking_identifier=hd.sr.TrackingIdentifier(uid=hd.UID(), identifier="finding"),
        finding_type=draw(st.none() | code),
        algorithm_id=None if algorithm is None else hd.sr.AlgorithmIdentification(
            name=algorithm[0], version=algorithm[1]),
        measurements=[hd.sr.Measurement(name=n, value=v, unit=u)
                      for n, v, u in measurements] or None,
        qualitative_evaluations=[hd.sr.QualitativeEvaluation(name=n, value=v)
                                 for n, v in evaluations] or None,
    )


@st.composite
def reports(draw: st.DrawFn) -> Dataset:
    sr = S.report(draw(st.lists(groups(), min_size=1, max_size=4)),
                  device_name=draw(st.sampled_from(["Rapid", "Lunit INSIGHT", "x"])))
    ds = dcmread(BytesIO(_encode(sr)), force=True)
    found = [i for i in _items(ds) if i.ValueType == "CONTAINER"
             and i.ConceptNameCodeSequence[0].CodeValue == "125007"]
    # Remove some items of some groups (missing version, finding, tracking UID...).
    for group in found:
        children = group.ContentSequence
        for index in sorted(draw(st.sets(st.integers(0, len(children) - 1), max_size=2)),
                            reverse=True):
            del children[index]
    # Nest a copy of one group anywhere inside another (a TID 1501 group inside a larger
    # container; its algorithm may then come before the outer group's own).
    if len(found) > 1 and draw(st.booleans()):
        outer, inner = draw(st.permutations(found))[:2]
        where = draw(st.integers(0, len(outer.ContentSequence)))
        outer.ContentSequence.insert(where, deepcopy(inner))
    return dcmread(BytesIO(_encode(ds)), force=True)


def _encode(ds: Dataset) -> bytes:
    buf = BytesIO()
    ds.save_as(buf, implicit_vr=False, little_endian=True)
    return buf.getvalue()


def _items(node: Dataset) -> list[Dataset]:
    out = []
    for item in node.get("ContentSequence", []):
        out.append(item)
        out.extend(_items(item))
    return out


def _key(concept: Any) -> tuple[str, str]:
    return (str(concept.scheme_designator), str(concept.value))


def _oracle_algorithm(group: Any) -> tuple[str | None, str | None]:
    for recursive in (False, True):
        names = hd.sr.utils.find_content_items(
            group[0], name=codes.DCM.AlgorithmName, recursive=recursive)
        if names:
            versions = hd.sr.utils.find_content_items(
                group[0], name=codes.DCM.AlgorithmVersion, recursive=recursive)
            version = str(versions[0].TextValue).strip() if versions else None
            return str(names[0].TextValue).strip(), version or None
    return None, None


def oracle_groups(ds: Dataset) -> list[Group]:
    items = hd.sr.utils.find_content_items(
        ds, name=codes.DCM.MeasurementGroup, value_type="CONTAINER", recursive=True)
    out = []
    for item in items:
        group = hd.sr.MeasurementsAndQualitativeEvaluations.from_sequence([item])
        finding = group.finding_type
        tracking = group.tracking_uid
        out.append(Group(
            *_oracle_algorithm(group),
            finding=None if finding is None else _key(finding),
            tracking_uid=None if tracking is None else str(tracking),
            measurements=tuple(Measured(_key(m.name), float(m.value), str(m.unit.value))
                               for m in group.get_measurements()),
            evaluations=tuple((_key(q.name), _key(q.value))
                              for q in group.get_qualitative_evaluations()),
        ))
    return out


def oracle_device(ds: Dataset) -> str | None:
    typed = hd.sr.MeasurementReport.from_sequence([ds])
    for context in typed.get_observer_contexts(observer_type=codes.DCM.Device):
        attrs = context.observer_identifying_attributes
        if isinstance(attrs, hd.sr.DeviceObserverIdentifyingAttributes):
            name = attrs.name or attrs.model_name
            if name:
                return str(name)
    return None


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ds=reports(), implicit=st.booleans())
def test_the_walk_reads_every_group_as_highdicom_does(ds: Dataset, implicit: bool) -> None:
    check_measurement_report(ds)
    expected = oracle_groups(ds)
    assert measurement_groups(ds) == expected
    assert device_name(ds) == oracle_device(ds)
    # The same walk over the short reader's reading of the bytes the SCP receives.
    read = read_dataset(encode(ds, implicit, True), implicit)
    check_measurement_report(read)
    assert measurement_groups(read) == expected
    assert device_name(read) == oracle_device(ds)


def test_the_oracle_sees_what_the_strategy_varies() -> None:
    """The cases the property relies on exist: an excluded finding site (SCT and SRT), a
    versioned code kept as an evaluation, a nested group found on its own and placed
    before the outer group's own algorithm, which still names the outer group."""
    sr = S.report([S.group(("Rapid ICH", "4.2.1"), S.ICH, None, (CODES[7], S.PRESENT)),
                   S.group(("SmartChest", "1"), S.ICH, None, (CODES[12], S.PRESENT))])
    ds = dcmread(BytesIO(_encode(sr)), force=True)
    first, second = [i for i in _items(ds) if i.ValueType == "CONTAINER"
                     and i.ConceptNameCodeSequence[0].CodeValue == "125007"]
    first.ContentSequence.insert(0, deepcopy(second))
    ds = dcmread(BytesIO(_encode(ds)), force=True)
    walked = measurement_groups(ds)
    assert walked == oracle_groups(ds)
    assert [(g.algorithm, g.version) for g in walked] == [
        ("Rapid ICH", "4.2.1"), ("SmartChest", "1"), ("SmartChest", "1")]
    assert [g.evaluations for g in walked] == [
        (), ((("SCT", "1386000"), ("SCT", "52101004")),),
        ((("SCT", "1386000"), ("SCT", "52101004")),)]
