"""`surveillance dicom parse`: AI results with identifiers pseudonymized as ingest does."""

from __future__ import annotations

import json
from pathlib import Path

from pydicom.sr.coding import Code
from typer.testing import CliRunner

from surveillance.cli import app
from surveillance.privacy import pseudonymize
from surveillance.settings import DEMO_PSEUDONYM_KEY
from tests import dicom_samples as S

ICH_SCORE = Code("ICH-P", "99RAPID", "ICH probability")


def test_parse_prints_pseudonymized_results_and_one_line_per_unusable_file(
    tmp_path: Path,
) -> None:
    good = tmp_path / "good.dcm"
    S.report([S.group(("Rapid ICH", "4.2.1"), S.ICH, (ICH_SCORE, 0.73, S.UNITLESS))]
             ).save_as(good, enforce_file_format=True)
    image = tmp_path / "image.dcm"
    S.image().save_as(image, implicit_vr=False, little_endian=True)
    unmapped = tmp_path / "unmapped.dcm"
    S.report([S.group(("Acme Bleed", "1"), S.ICH, (ICH_SCORE, 0.5, S.UNITLESS))]
             ).save_as(unmapped, enforce_file_format=True)
    text = tmp_path / "notes.txt"
    text.write_text("not DICOM")

    result = CliRunner().invoke(app, ["dicom", "parse", str(good), str(image), str(unmapped),
                                      str(text), "--site", "site-b"])
    assert result.exit_code == 2
    printed = [json.loads(line) for line in result.output.splitlines() if line.startswith("{")]
    assert len(printed) == 1
    key = DEMO_PSEUDONYM_KEY.encode()
    assert (printed[0]["patient_id"], printed[0]["accession_number"],
            printed[0]["study_instance_uid"], printed[0]["pseudonymized"]) == (
        pseudonymize(key, "patient", "MRN-0042"), pseudonymize(key, "accession", "A-7781"),
        pseudonymize(key, "study", S.STUDY_UID), True)
    assert (printed[0]["tool_id"], printed[0]["site"], printed[0]["acquisition"]["kvp"]) == (
        "ich-triage", "site-b", 120.0)
    assert "MRN-0042" not in result.output and "A-7781" not in result.output
    errors = [line for line in result.output.splitlines()
              if not line.startswith(("{", "warning: running in test mode"))]
    assert errors == [
        f"{unmapped}: unmapped: measurement group 1: no registry tool lists algorithm "
        "'Acme Bleed' in dicom.algorithm_names",
        f"{text}: cannot_understand: no SOPClassUID (not DICOM?)",
    ]
