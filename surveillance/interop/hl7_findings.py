"""Coded OBX results (CE, CWE, CNE) of an HL7 v2 report as structured findings
(`hl7_parse`): OBX-3 is the finding, through the facility's mapping or as one of our own
finding codes, OBX-5 the answer, through the facility's answer labels. Pure.
"""

from __future__ import annotations

from functools import lru_cache

from surveillance.contracts import Label, StructuredFinding
from surveillance.interop.hl7_header import ERR_TABLE_VALUE, Reject, Segment, field_at
from surveillance.interop.hl7_mapping import FacilityMapping
from surveillance.interop.hl7_text import Delimiters

CODED_TYPES = frozenset({"CE", "CWE", "CNE"})


def _coded(value: str, d: Delimiters) -> tuple[str, str]:
    """(code, system) of the first repetition of a CE/CWE value."""
    first = value.split(d.repetition, 1)[0].split(d.component)
    code = first[0].strip()
    system = first[2].strip() if len(first) > 2 else ""
    return code, system


def _lookup(table: dict[str, str] | dict[str, Label], code: str, system: str, upper: bool,
            ) -> str | Label | None:
    keys = [f"{system}|{code}", code] if system else [code]
    for key in keys:
        k = key.upper() if upper else key
        if k in table:
            return table[k]
    return None


def coded_findings(obx_segments: list[Segment], group: int, d: Delimiters,
                   facility: FacilityMapping) -> list[StructuredFinding]:
    """The structured findings of an OBR group's coded OBX results (CE, CWE, CNE) whose
    OBX-3 the facility's mapping knows (or that is one of our own finding codes); an
    answer (OBX-5) the mapping does not know rejects the message."""
    known = _known_findings()
    out: dict[str, Label] = {}
    for obx in obx_segments:
        if field_at(obx, 2).strip().upper() not in CODED_TYPES:
            continue
        code, system = _coded(field_at(obx, 3), d)
        finding = _lookup(facility.findings, code, system, upper=False)
        if finding is None and code in known:
            finding = code  # our own finding codes need no mapping entry
        if finding is None:
            continue
        answer_code, answer_system = _coded(field_at(obx, 5), d)
        label = _lookup(facility.answer_labels, answer_code, answer_system, upper=True)
        if label is None:
            raise Reject("AE", ERR_TABLE_VALUE,
                          f"OBR group {group}: OBX-5 answer of coded result "
                          f"{str(finding)[:40]!r} is not in the facility's answers")
        out[str(finding)] = Label(label)
    return [StructuredFinding(finding_code=k, label=v) for k, v in out.items()]


@lru_cache(maxsize=1)
def _known_findings() -> frozenset[str]:
    from surveillance.clinical.labels import load_vocabulary

    return frozenset(load_vocabulary().findings)
