"""`dicom_sr_read` against pydicom: the same `parse_sr` outcome, or it declines.

The walk over its reading is checked against highdicom in `test_dicom_sr_tree.py`; here
the whole parse (header fields, dates, age, evidence series, every result) must be equal
to the parse of pydicom's decoding of the same bytes, for generated reports in both
little-endian syntaxes and for those bytes damaged anywhere. Where it cannot vouch for
reading as pydicom would (other character sets, multi-valued or non-ASCII text), it
declines with `NotRead` and the SCP decodes with pydicom. STOW-RS parts (Part 10 files)
are read the same way once their file meta says an SR in a little-endian syntax.
"""

from __future__ import annotations

from dataclasses import replace
from io import BytesIO
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.sr.coding import Code
from pydicom.uid import ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian
from pynetdicom.dsutils import decode, encode

from surveillance.clinical.baselines import load_registry
from surveillance.interop.dicom_errors import UnusableObject
from surveillance.interop.dicom_sr import SR_SOP_CLASSES, parse_sr
from surveillance.interop.dicom_sr_read import AnyDataset, NotRead, read_dataset, read_file
from tests import dicom_samples as S
from tests.test_dicom_sr_tree import reports

REGISTRY = load_registry()


def _outcome(read: Any) -> tuple[str, Any]:
    """What the receiver would do with the object: its results, or why it refuses it."""
    try:
        ds: AnyDataset = read()
        parsed = parse_sr(ds, REGISTRY, "site-a")
        # The groups refused by what they say: exceptions compare by identity.
        return "parsed", (replace(parsed, refused=()),
                          [(e.reason, e.message) for e in parsed.refused])
    except UnusableObject as exc:
        return "refused", (exc.reason, exc.message)
    except Exception as exc:  # the receiver answers any other failure "cannot understand"
        return "failed", type(exc).__name__


def _both(raw: bytes, implicit: bool) -> tuple[tuple[str, Any], tuple[str, Any]] | None:
    """(short reader's outcome, pydicom's outcome), or None when the reader declines."""
    try:
        read = read_dataset(raw, implicit)
    except NotRead:
        return None
    return _outcome(lambda: read), _outcome(lambda: decode(BytesIO(raw), implicit, True,
                                                            False))


ICH_PROBABILITY = Code("ICH-P", "99RAPID", "ICH probability")


def _mapped_report() -> Dataset:
    return S.report([S.group(("Rapid ICH", "4.2.1"), S.ICH,
                             (ICH_PROBABILITY, 0.91, S.UNITLESS))])


#: One report's bytes per syntax (implicit VR?): the same bytes for every example.
MAPPED = {implicit: encode(_mapped_report(), implicit, True) for implicit in (False, True)}


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ds=reports(), implicit=st.booleans())
def test_generated_reports_parse_as_on_pydicoms_decoding(ds: Dataset, implicit: bool) -> None:
    both = _both(encode(ds, implicit, True), implicit)
    assert both is not None  # the common case is read, not declined
    assert both[0] == both[1]


@settings(max_examples=200, deadline=None)
@given(implicit=st.booleans(), data=st.data())
def test_damaged_bytes_are_declined_or_parse_as_on_pydicoms_decoding(
    implicit: bool, data: st.DataObject
) -> None:
    raw = bytearray(MAPPED[implicit])
    for _ in range(data.draw(st.integers(1, 3))):
        at = data.draw(st.integers(0, len(raw) - 1))
        raw[at] = data.draw(st.integers(0, 255))
    cut = data.draw(st.none() | st.integers(0, len(raw)))
    both = _both(bytes(raw[:cut]), implicit)
    if both is not None:
        assert both[0] == both[1]


@pytest.mark.parametrize("implicit", [False, True])
@pytest.mark.parametrize("space", [b"\t", b"\n", b"\r", b"\x0b", b"\x0c"])
def test_whitespace_in_a_uid_reads_as_on_pydicoms_decoding(implicit: bool, space: bytes) -> None:
    """A damaged SOP class UID ending in whitespace other than the space DICOM pads with
    (found by the damaged-bytes test: '...88.3' + tab): pydicom's UID strips it, so the
    reader must too, or the two refuse with different messages."""
    uid = str(_mapped_report().SOPClassUID).encode()
    raw = MAPPED[implicit]
    assert raw.count(uid) == 1
    both = _both(raw.replace(uid, uid[:-1] + space), implicit)
    assert both is not None and both[0][0] == "refused"  # not vacuous: read, then refused
    assert both[0] == both[1]


def test_a_mapped_report_gives_its_result_through_the_reader() -> None:
    both = _both(MAPPED[False], False)
    assert both is not None
    kind, (parsed, refused) = both[0]
    assert kind == "parsed" and refused == []
    assert [(r.tool_id, r.ai_result) for r in parsed.results] == [("ich-triage", 0.91)]
    assert both[0] == both[1]


@pytest.mark.parametrize("header", [
    {"SpecificCharacterSet": "ISO_IR 144"},  # Cyrillic: pydicom decodes, we do not
    {"PatientID": "A\\B"},  # multi-valued
    {"StudyDescription": "Schädel"},  # not ASCII
])
def test_what_it_cannot_vouch_for_is_declined(header: dict[str, str]) -> None:
    sr = _mapped_report()
    for keyword, value in header.items():
        setattr(sr, keyword, value)
    raw = encode(sr, False, True)
    assert raw is not None
    with pytest.raises(NotRead):
        read_dataset(raw, False)


def test_an_element_it_does_not_read_is_not_silently_absent() -> None:
    node = read_dataset(encode(_mapped_report(), False, True), False)
    assert node.get("PatientID")
    with pytest.raises(NotRead):
        node.get("PatientName")


def _file(ds: Dataset, syntax: str) -> bytes:
    buf = BytesIO()
    ds.file_meta.TransferSyntaxUID = syntax
    ds.save_as(buf, enforce_file_format=True, implicit_vr=syntax == ImplicitVRLittleEndian,
               little_endian=syntax != ExplicitVRBigEndian)
    return buf.getvalue()


@pytest.mark.parametrize("syntax", [ExplicitVRLittleEndian, ImplicitVRLittleEndian])
def test_a_stow_rs_file_parses_as_pydicoms_reading_of_it(syntax: str) -> None:
    raw = _file(_mapped_report(), syntax)
    assert _outcome(lambda: read_file(raw, SR_SOP_CLASSES)) == _outcome(
        lambda: dcmread(BytesIO(raw)))


def test_a_file_it_cannot_vouch_for_is_declined() -> None:
    sr = _mapped_report()
    with pytest.raises(NotRead):  # big endian: pydicom reads it
        read_file(_file(sr, ExplicitVRBigEndian), SR_SOP_CLASSES)
    with pytest.raises(NotRead):  # not a class asked for (an image goes to pydicom)
        read_file(_file(sr, ExplicitVRLittleEndian), frozenset({"1.2.840.10008.5.1.4.1.1.2"}))
    with pytest.raises(NotRead):  # no preamble and DICM prefix
        read_file(_file(sr, ExplicitVRLittleEndian)[132:], SR_SOP_CLASSES)
