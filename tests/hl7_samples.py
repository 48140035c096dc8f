"""The project's own ORU^R01 messages, written here in the styles real feeds use.

PowerScribe-style: v2.3, zone-less local timestamps, accession in OBR-3, one report line
per OBX. Epic-style: v2.5.1, MSH-18 UNICODE UTF-8, offsets on timestamps, MR among
several PID-3 identifiers, accession in OBR-18, FT text with \\.br\\ and highlighting,
coded CWE results, two exams (OBR groups) in one message. Mirth-relayed: v2.4, LF segment
ends, ISO 8859-1 bytes, every escape sequence. No real patient or report is in here.
"""

from __future__ import annotations

from pathlib import Path

MAPPING_YAML = """\
defaults:
  timezone: UTC
facilities:
  MERCY_PS:
    site: mercy-main
    timezone: America/Chicago
    accession: [OBR-3]
  STLUKE_EPIC:
    site: st-luke
    timezone: America/New_York
    accession: [OBR-18, OBR-3]
    report_time: [OBR-22]
    patient_id: {field: PID-3, type: MR}
    findings:
      "RID5352": pneumothorax
      "ICH": intracranial_hemorrhage
  RELAY:
    site: county
    timezone: Europe/Berlin
"""


def write_mapping(directory: Path) -> Path:
    path = directory / "mapping.yaml"
    path.write_text(MAPPING_YAML)
    return path


def obr(**fields: str) -> str:
    """An OBR segment from its numbered fields: obr(f3="ACC-1", f22="2024...")."""
    values = {int(k[1:]): v for k, v in fields.items()}
    return "|".join(["OBR", *(values.get(n, "") for n in range(1, max(values) + 1))])


def msg(*segments: str, end: str = "\r") -> bytes:
    return (end.join(segments) + end).encode("utf-8")


POWERSCRIBE_FINAL = msg(
    "MSH|^~\\&|PowerScribe360|MERCY_PS|RIS|MERCY|20240310011500||ORU^R01|PS-000123|P|2.3",
    "PID|1||4455667^^^MERCY^MR||DOE^JANE^Q||19610203|F",
    "PV1|1|E|ED^^^MERCY",
    "ORC|RE|ORD7788|ACC-1001",
    obr(f1="1", f2="ORD7788", f3="ACC-1001", f4="CTHEAD^CT HEAD WO CONTRAST",
        f7="20240310003000", f22="20240310011400", f25="F"),
    "OBX|1|TX|&GDT^REPORT||EXAM: CT head without contrast.||||||F",
    "OBX|2|TX|&GDT^REPORT||FINDINGS: Acute left subdural hematoma measuring 8 mm.||||||F",
    "OBX|3|TX|&GDT^REPORT||||||||F",
    "OBX|4|TX|&GDT^REPORT||IMPRESSION: Acute subdural hemorrhage. No pneumothorax.||||||F",
)

EPIC_TWO_EXAMS = msg(
    "MSH|^~\\&|EPIC|STLUKE_EPIC|SURV|SURV|20240705143000-0400||ORU^R01^ORU_R01|E9000011|P"
    "|2.5.1|||AL|NE||UNICODE UTF-8",
    "PID|1||E123^^^EPI^EPI~MRN-5566^^^STL^MR||ROE^JOHN||19700101|M",
    "ORC|RE|ORD1|FIL1",
    obr(f1="1", f2="ORD1", f3="FIL1", f4="IMG123^CT CHEST PE", f7="20240705130000-0400",
        f18="ACC-2001", f22="20240705142500-0400", f25="F"),
    "OBX|1|FT|IMP^Impression||\\H\\IMPRESSION:\\N\\\\.br\\Small right apical pneumothorax."
    "\\.br\\No pulmonary embolism.||||||F",
    "OBX|2|CWE|RID5352^Pneumothorax^RADLEX||Y^Yes^HL70136||||||F",
    "ORC|RE|ORD2|FIL2",
    obr(f1="2", f2="ORD2", f3="FIL2", f4="IMG456^CT HEAD", f7="20240705131000-0400",
        f18="ACC-2002", f22="20240705142600-0400", f25="A"),
    "OBX|1|FT|IMP^Impression||ADDENDUM: On review, no intracranial hemorrhage.||||||F",
    "OBX|2|CWE|ICH^Intracranial hemorrhage^L||N^No^HL70136||||||F",
)

# LF segment ends, ISO 8859-1 (0xE9 is e-acute), every escape sequence, status C.
MIRTH_RELAYED = (
    "MSH|^~\\&|MIRTH|RELAY|SURV|SURV|20240101090000||ORU^R01|M-42|P|2.4|||||DE|8859/1\n"
    "PID|1||P-77^^^RELAY\n"
    + obr(f1="1", f3="ACC-3001", f4="XR^CHEST", f7="20240101080000", f22="20240101085959",
          f25="C") + "\n"
    "OBX|1|TX|REP^Report||CORRECTED REPORT. Pleural effusion r\xe9sorb\xe9e. a\\F\\b "
    "c\\S\\d e\\T\\f g\\R\\h i\\E\\j \\X4E6F\\ pneumothorax.\\.br\\Second line."
    "~Third line.||||||C\n"
).encode("latin-1")

STATUS_MESSAGES = {
    "P": msg(
        "MSH|^~\\&|PS|MERCY_PS|R|R|20240310020000||ORU^R01|PS-P1|P|2.3",
        obr(f1="1", f3="ACC-4001", f4="CT", f22="20240310015900", f25="P"),
        "OBX|1|TX|R||Preliminary read: pneumothorax.||||||P",
    ),
    "X": msg(
        "MSH|^~\\&|PS|MERCY_PS|R|R|20240310030000||ORU^R01|PS-X1|P|2.3",
        obr(f1="1", f3="ACC-1001", f4="CT", f22="20240310033000", f25="X"),
    ),
    "F+ADDENDUM": msg(
        "MSH|^~\\&|PS|MERCY_PS|R|R|20240310040000||ORU^R01|PS-F2|P|2.3",
        obr(f1="1", f3="ACC-1001", f4="CT", f22="20240310035900", f25="F"),
        "OBX|1|TX|R||Acute subdural hemorrhage.||||||F",
        "OBX|2|TX|R||||||||F",
        "OBX|3|TX|R||Addendum: also a small pneumothorax.||||||F",
    ),
}

EUROS = "\u20ac" * 1000  # 3 bytes each in UTF-8

REJECTED = {
    "adt": (msg("MSH|^~\\&|A|MERCY_PS|R|R|20240310||ADT^A01|X1|P|2.5", "PID|1||1"),
            "AR", "200"),
    "no_accession": (msg("MSH|^~\\&|A|MERCY_PS|R|R|20240310||ORU^R01|X2|P|2.5",
                         obr(f1="1", f4="CT", f22="20240310", f25="F"), "OBX|1|TX|R||text||||||F"),
                     "AE", "101"),
    "garbage": (b"this is not HL7 at all\r", "AR", "100"),
    "bad_time": (msg("MSH|^~\\&|A|MERCY_PS|R|R|20240310||ORU^R01|X3|P|2.5",
                     obr(f1="1", f3="A1", f22="2024-03-10T10:00", f25="F"),
                     "OBX|1|TX|R||text||||||F"), "AE", "102"),
    "charset": (msg("MSH|^~\\&|A|MERCY_PS|R|R|20240310||ORU^R01|X4|P|2.5|||||| KLINGON"),
                "AR", "103"),
    "version": (msg("MSH|^~\\&|A|MERCY_PS|R|R|20240310||ORU^R01|X5|P|2.1",
                    obr(f1="1", f3="A1", f22="20240310", f25="F"), "OBX|1|TX|R||t||||||F"),
                "AR", "203"),
    "not_utf8": (b"MSH|^~\\&|A|MERCY_PS|R|R|20240310||ORU^R01|X6|P|2.5\r"
                 + obr(f1="1", f3="A1", f22="20240310", f25="F").encode()
                 + b"\rOBX|1|TX|R||caf\xe9||||||F\r",
                 "AR", "102"),
    "stray_line": (msg("MSH|^~\\&|A|MERCY_PS|R|R|20240310||ORU^R01|X10|P|2.5",
                       obr(f1="1", f3="A1", f22="20240310", f25="F"), "OBX|1|TX|R||t||||||F",
                       "this is no segment"), "AE", "100"),
    "too_big": (msg("MSH|^~\\&|A|MERCY_PS|R|R|20240310||ORU^R01|X11|P|2.5|||||||UNICODE UTF-8",
                    obr(f1="1", f3="A1", f22="20240310", f25="F"),
                    # 30,029 characters (within the contract) but 90 kB of UTF-8
                    *(f"OBX|{n}|TX|R||{EUROS}||||||F" for n in range(30))),
                "AE", "102"),
    "no_control_id": (msg("MSH|^~\\&|A|MERCY_PS|R|R|20240310||ORU^R01||P|2.5"), "AR", "101"),
    "obx_first": (msg("MSH|^~\\&|A|MERCY_PS|R|R|20240310||ORU^R01|X7|P|2.5",
                      "OBX|1|TX|R||t||||||F"), "AE", "100"),
    "no_text": (msg("MSH|^~\\&|A|MERCY_PS|R|R|20240310||ORU^R01|X8|P|2.5",
                    obr(f1="1", f3="A1", f22="20240310", f25="F")), "AE", "101"),
    "unknown_answer": (msg("MSH|^~\\&|A|MERCY_PS|R|R|20240310||ORU^R01|X9|P|2.5",
                           obr(f1="1", f3="A1", f22="20240310", f25="F"),
                           "OBX|1|CWE|pneumothorax||MAYBE||||||F"), "AE", "103"),
}
