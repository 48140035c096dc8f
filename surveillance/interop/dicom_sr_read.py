"""Reads the elements an SR's parse needs straight from its encoded data set.

Pure: bytes in, a tree of `Node`s out. pydicom decodes every element of every content
item it is asked about, lazily but one `Dataset` and one conversion at a time; for a TID
1500 report that was 2.6 ms of the C-STORE receiver's CPU per SR, most of its work. This
reader walks the bytes once, keeps only the elements `dicom_sr`, `dicom_sr_tree` and
`dicom_header.patient_age` read (`KEYWORDS`) and skips the rest by their length.

It covers the common case only and says so: anything it is not sure to read exactly as
pydicom would (big endian or deflated syntaxes are not offered to it; a character set
other than ASCII, Latin-1 or UTF-8, or a byte outside ASCII; a multi-valued, empty
numeric or oddly encoded wanted element; an element twice in one data set; a VR other
than the dictionary's; lengths that overrun) raises `NotRead`, and the caller decodes the
object with pydicom instead. `tests/test_dicom_sr_read.py` checks that whenever it reads
an object, `parse_sr` gives the same results as on pydicom's decoding.
"""

from __future__ import annotations

import math
import struct
from typing import Any

from pydicom.datadict import dictionary_VR, tag_for_keyword
from pydicom.dataset import Dataset
from pydicom.valuerep import VR

#: Every element the SR parse reads, by keyword (`Node.get` refuses any other).
KEYWORDS = (
    "SpecificCharacterSet", "SOPClassUID", "SOPInstanceUID", "StudyDate", "ContentDate",
    "ContentTime", "AccessionNumber", "Manufacturer", "CodeValue", "CodingSchemeDesignator",
    "CodingSchemeVersion", "LongCodeValue", "URNCodeValue", "TimezoneOffsetFromUTC",
    "StudyDescription", "ReferencedSeriesSequence", "PatientID", "PatientSex", "PatientAge",
    "StudyInstanceUID", "SeriesInstanceUID", "MeasurementUnitsCodeSequence", "ValueType",
    "ConceptNameCodeSequence", "UID", "TextValue", "FloatingPointValue",
    "ConceptCodeSequence", "MeasuredValueSequence", "NumericValue", "ContentSequence",
    "CurrentRequestedProcedureEvidenceSequence",
)
_WANTED: dict[int, tuple[str, str]] = {}
for _keyword in KEYWORDS:
    _tag = tag_for_keyword(_keyword)
    assert _tag is not None, _keyword
    _WANTED[_tag] = (_keyword, dictionary_VR(_tag))

#: Character sets in which ASCII bytes mean what they mean in ASCII (pydicom's default
#: for an absent value is ISO 646 too).
_ASCII_CHARSETS = frozenset({"", "ISO_IR 6", "ISO 2022 IR 6", "ISO_IR 100", "ISO_IR 192"})
#: VRs with a 4-byte length in explicit VR (PS3.5 7.1.2).
_LONG_VRS = frozenset({b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC",
                       b"UN", b"UR", b"UT", b"UV"})
_VRS = frozenset(vr.value.encode() for vr in VR if len(vr.value) == 2)
_UNDEFINED = 0xFFFFFFFF
_ITEM, _ITEM_END, _SEQUENCE_END = 0xFFFEE000, 0xFFFEE00D, 0xFFFEE0DD
_U16 = struct.Struct("<HH")
_U32 = struct.Struct("<I")
_EXPLICIT = struct.Struct("<HH2sH")


class NotRead(Exception):
    """This reader cannot vouch for reading the object as pydicom would: use pydicom."""


class Node:
    """One data set (the object or a sequence item): the wanted elements, by keyword."""

    __slots__ = ("_values",)

    def __init__(self, values: dict[str, Any]) -> None:
        self._values = values

    def get(self, keyword: str, default: Any = None) -> Any:
        if keyword not in _KEYWORD_SET:
            raise NotRead(f"{keyword} is not among the elements read")
        return self._values.get(keyword, default)

    def __getattr__(self, keyword: str) -> Any:
        if keyword.startswith("__"):
            raise AttributeError(keyword)
        value = self.get(keyword)
        if value is None:
            raise AttributeError(keyword)
        return value

    def __contains__(self, keyword: str) -> bool:
        return self.get(keyword) is not None


_KEYWORD_SET = frozenset(KEYWORDS)

#: What the SR parse reads: pydicom's decoding or this reader's.
AnyDataset = Dataset | Node


def read_dataset(raw: bytes, implicit_vr: bool) -> Node:
    """The wanted elements of a little-endian data set (no file meta); `NotRead` when not
    sure to match pydicom's reading."""
    try:
        return _Reader(raw, implicit_vr).dataset(0, len(raw))[0]
    except (struct.error, UnicodeDecodeError, ValueError, IndexError, RecursionError) as exc:
        raise NotRead(type(exc).__name__) from exc


def read_file(raw: bytes, sop_classes: frozenset[str]) -> Node:
    """The data set of a DICOM Part 10 file (a STOW-RS part) whose file meta names one of
    `sop_classes`; `NotRead` unless preamble, file meta (group 2, explicit VR little
    endian) and transfer syntax (explicit or implicit VR little endian) are plain."""
    if raw[128:132] != b"DICM":
        raise NotRead("no DICM prefix after the preamble")
    pos, meta = 132, {}
    try:
        while _U16.unpack_from(raw, pos)[0] == 2:
            _, element, vr, length = _EXPLICIT.unpack_from(raw, pos)
            if vr not in _VRS:
                raise NotRead("file meta with an unknown VR")
            if vr in _LONG_VRS:
                (length,) = _U32.unpack_from(raw, pos + 8)
                pos += 12
            else:
                pos += 8
            if length == _UNDEFINED or pos + length > len(raw):
                raise NotRead("file meta element overruns the file")
            if element in (0x0002, 0x0010):  # media storage SOP class, transfer syntax
                meta[element] = raw[pos : pos + length].decode("ascii").rstrip("\0 ")
            pos += length
    except (struct.error, UnicodeDecodeError) as exc:
        raise NotRead(type(exc).__name__) from exc
    if meta.get(0x0002) not in sop_classes:
        raise NotRead("not one of the SOP classes asked for")
    implicit = _LITTLE_ENDIAN_SYNTAXES.get(meta.get(0x0010, ""))
    if implicit is None:
        raise NotRead(f"transfer syntax {meta.get(0x0010)!r}")
    return read_dataset(raw[pos:], implicit)


#: Explicit and Implicit VR Little Endian: whether the VR is implicit.
_LITTLE_ENDIAN_SYNTAXES = {"1.2.840.10008.1.2.1": False, "1.2.840.10008.1.2": True}


class _Reader:
    def __init__(self, raw: bytes, implicit_vr: bool) -> None:
        self.raw = raw
        self.implicit = implicit_vr

    def dataset(self, pos: int, end: int, delimited: bool = False
                ) -> tuple[Node, int]:
        """Elements from `pos` to `end` or, for an undefined-length item (`delimited`), to
        its item delimiter."""
        raw = self.raw
        values: dict[str, Any] = {}
        first = True
        while pos < end:
            group, element = _U16.unpack_from(raw, pos)
            tag = group << 16 | element
            if tag == _ITEM_END:
                if not delimited:
                    raise NotRead("item delimiter outside an undefined-length item")
                return self._node(values), pos + 8
            if tag in (_ITEM, _SEQUENCE_END):
                raise NotRead("item tag inside a data set")
            if self.implicit:
                if first and _looks_like_vr(raw[pos + 4 : pos + 6]):
                    raise NotRead("implicit VR data that pydicom would read as explicit")
                (length,) = _U32.unpack_from(raw, pos + 4)
                vr = None
                pos += 8
            else:
                _, _, vr_bytes, length = _EXPLICIT.unpack_from(raw, pos)
                if vr_bytes not in _VRS:
                    raise NotRead("not a VR (pydicom would guess the syntax again)")
                if vr_bytes in _LONG_VRS:
                    (length,) = _U32.unpack_from(raw, pos + 8)
                    pos += 12
                else:
                    pos += 8
                vr = vr_bytes.decode("ascii")
            first = False
            wanted = _WANTED.get(tag)
            if wanted is not None and wanted[0] in values:
                raise NotRead(f"{wanted[0]} twice in one data set")
            if wanted is not None and vr is not None and vr != wanted[1]:
                raise NotRead(f"{wanted[0]} has VR {vr}")
            is_sequence = (vr == "SQ" or (wanted is not None and wanted[1] == "SQ")
                           or (vr is None and length == _UNDEFINED))
            if is_sequence:
                items, pos = self.sequence(pos, length, end)
                if wanted is not None:
                    values[wanted[0]] = items
                continue
            if length == _UNDEFINED or pos + length > end:
                raise NotRead("undefined or overrunning length")
            if wanted is not None:
                values[wanted[0]] = _value(raw[pos : pos + length], wanted[1])
            pos += length
        if pos != end or delimited:
            raise NotRead("an element overruns its data set, or no item delimiter")
        return self._node(values), pos

    @staticmethod
    def _node(values: dict[str, Any]) -> Node:
        charset = values.get("SpecificCharacterSet", "")
        if charset not in _ASCII_CHARSETS:
            raise NotRead(f"character set {charset!r}")
        return Node(values)

    def sequence(self, pos: int, length: int, outer_end: int) -> tuple[list[Node], int]:
        raw = self.raw
        defined = length != _UNDEFINED
        end = pos + length if defined else outer_end
        if end > outer_end:
            raise NotRead("a sequence overruns its data set")
        items: list[Node] = []
        while pos < end:
            group, element = _U16.unpack_from(raw, pos)
            (item_length,) = _U32.unpack_from(raw, pos + 4)
            tag = group << 16 | element
            pos += 8
            if tag == _SEQUENCE_END and not defined:
                return items, pos
            if tag != _ITEM:
                raise NotRead("not an item in a sequence")
            if item_length == _UNDEFINED:
                item, pos = self.dataset(pos, end, delimited=True)
            else:
                if pos + item_length > end:
                    raise NotRead("an item overruns its sequence")
                item, pos = self.dataset(pos, pos + item_length)
            items.append(item)
        if not defined:
            raise NotRead("no sequence delimiter")
        return items, pos


def _looks_like_vr(two: bytes) -> bool:
    """pydicom's test of whether a data set starts in explicit VR (two capital letters)."""
    return len(two) == 2 and all(0x40 < b < 0x5B for b in two)


def _value(data: bytes, vr: str) -> Any:
    """The element's value as pydicom gives it, for the VRs of the wanted elements."""
    if vr == "FD":
        if len(data) != 8:
            raise NotRead("FD of other than one value")
        return struct.unpack("<d", data)[0]
    if b"\\" in data or b"\x1b" in data:
        raise NotRead("multi-valued or escaped text")
    text = data.decode("ascii")
    text = text.rstrip() if vr == "UR" else text.rstrip("\0 ")
    if vr == "UI":  # pydicom's UID strips any whitespace around it too (a tab, a CR)
        text = text.strip()
    if vr == "DS":
        number = float(text) if text else math.nan
        if not math.isfinite(number):
            raise NotRead("an empty or non-finite DS")
        return number
    return text
