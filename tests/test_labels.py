"""Report-label extraction: each case is a phrasing with the label a radiologist means."""

from __future__ import annotations

from pathlib import Path

import pytest

from surveillance.clinical.labels import (
    LabelConfigError,
    extract_label,
    extract_labels,
    load_vocabulary,
)
from surveillance.contracts import Label

ICH = "intracranial_hemorrhage"
LVO = "large_vessel_occlusion"
PTX = "pneumothorax"
DR = "mtm_diabetic_retinopathy"
P, A, U = Label.PRESENT, Label.ABSENT, Label.INDETERMINATE

CASES = [
    # The three required examples.
    ("no evidence of intracranial hemorrhage", ICH, A),
    ("acute subdural hematoma", ICH, P),
    ("cannot exclude small hemorrhage", ICH, U),
    # Intracranial hemorrhage.
    ("No intracranial hemorrhage, mass effect, or midline shift.", ICH, A),
    ("Negative for acute intracranial hemorrhage.", ICH, A),
    ("Acute left epidural haematoma with mass effect.", ICH, P),
    ("Diffuse SAH in the basal cisterns.", ICH, P),
    ("Small subdural hematoma without mass effect.", ICH, P),
    ("CT head without contrast demonstrates acute subdural hematoma.", ICH, P),
    ("Small left frontal scalp hematoma. No intracranial hemorrhage.", ICH, A),
    ("No acute hemorrhage. Chronic left subdural hematoma is unchanged.", ICH, P),
    ("No change in size of the right subdural hematoma.", ICH, P),
    ("No significant interval change in the intraparenchymal hemorrhage.", ICH, P),
    ("There is no hemorrhage, however a small subdural hematoma along the falx cannot be "
     "excluded.", ICH, U),
    ("Hyperdensity in the left sylvian fissure may represent subarachnoid hemorrhage.", ICH, U),
    ("Hemorrhage versus calcification in the left basal ganglia.", ICH, U),
    ("Questionable small subarachnoid hemorrhage in the frontal sulci.", ICH, U),
    ("Probable small subarachnoid hemorrhage in the right sylvian fissure.", ICH, P),
    ("CLINICAL HISTORY: Evaluate for hemorrhage.\nFINDINGS: Normal noncontrast head CT.", ICH, A),
    ("History: rule out bleed. Impression: Acute epidural hematoma.", ICH, P),
    ("Hemorrhage is not seen.", ICH, A),
    ("Hemorrhagic transformation of the left MCA infarct.", ICH, P),
    ("No hemorrhage on the left. Acute right subdural hematoma.", ICH, P),
    ("The hemorrhage has resolved.", ICH, A),
    ("Normal noncontrast CT of the head.", ICH, A),
    ("", ICH, A),
    # Large vessel occlusion.
    ("Hyperdense left MCA sign compatible with large vessel occlusion.", LVO, P),
    ("Findings consistent with occlusion of the right M1 segment.", LVO, P),
    ("Hyperdense basilar artery in keeping with basilar occlusion.", LVO, P),
    ("No hyperdense vessel sign to suggest large vessel occlusion.", LVO, A),
    ("Negative for LVO.", LVO, A),
    ("Hyperdense left MCA sign is not seen.", LVO, A),
    ("Possibly hyperdense right MCA, correlate with CTA.", LVO, U),
    ("Equivocal hyperdensity of the left M1 segment, large vessel occlusion cannot be "
     "excluded.", LVO, U),
    ("Findings may represent early basilar occlusion.", LVO, U),
    ("No LVO; acute ICH in the right basal ganglia.", LVO, A),
    # Pneumothorax.
    ("no pneumothorax. Small left apical pneumothorax on the prior has resolved", PTX, A),
    ("Small left apical pneumothorax.", PTX, P),
    ("Moderate right pneumothorax without mediastinal shift.", PTX, P),
    ("Left pneumothorax, not under tension.", PTX, P),
    ("Resolving small left pneumothorax.", PTX, P),
    ("Interval resolution of the left pneumothorax.", PTX, A),
    ("Resolved right pneumothorax.", PTX, A),
    ("Left chest tube in place. No residual pneumothorax.", PTX, A),
    ("No pneumothorax on the right; small left pneumothorax persists.", PTX, P),
    ("No pneumothorax on the right, but a small left pneumothorax persists.", PTX, P),
    ("Pneumothorax has been ruled out.", PTX, A),
    ("Pneumothorax absent.", PTX, A),
    ("Suspicious for small right apical pneumothorax.", PTX, U),
    ("A small pneumothorax cannot be ruled out on this supine radiograph.", PTX, U),
    ("Possible tiny left apical PTX.", PTX, U),
    ("Post line placement, rule out pneumothorax. No pneumothorax.", PTX, A),
    ("No pneumothorax. Possible small left pneumothorax on the lateral view.", PTX, U),
    ("No change in the small left pneumothorax.", PTX, P),
    ("Small left hydropneumothorax.", PTX, P),
    # More-than-mild diabetic retinopathy.
    ("Moderate nonproliferative diabetic retinopathy in the left eye.", DR, P),
    ("Moderate NPDR OU.", DR, P),
    ("Severe non-proliferative diabetic retinopathy, both eyes.", DR, P),
    ("Proliferative diabetic retinopathy with neovascularization of the disc.", DR, P),
    ("More than mild diabetic retinopathy detected; refer to an eye care professional.", DR, P),
    ("Mild nonproliferative diabetic retinopathy without macular edema.", DR, A),
    ("Mild non-proliferative diabetic retinopathy.", DR, A),
    ("Mild NPDR OU.", DR, A),
    ("No diabetic retinopathy.", DR, A),
    ("No more than mild diabetic retinopathy.", DR, A),
    ("Negative for more than mild diabetic retinopathy; rescreen in 12 months.", DR, A),
    ("Questionable diabetic macular edema in the right eye.", DR, U),
    ("Possible moderate nonproliferative diabetic retinopathy; recommend dilated exam.", DR, U),
    ("Proliferative diabetic retinopathy, right eye; mild nonproliferative diabetic "
     "retinopathy, left eye.", DR, P),
    ("No diabetic macular edema; moderate nonproliferative diabetic retinopathy in the right "
     "eye.", DR, P),
]


@pytest.mark.parametrize(("text", "code", "expected"), CASES)
def test_extract_label(text: str, code: str, expected: Label) -> None:
    assert extract_label(text, code) is expected


def test_case_list_covers_every_finding_and_label() -> None:
    assert len(CASES) >= 30
    covered = {(code, label) for _, code, label in CASES}
    assert covered == {(c, lab) for c in (ICH, LVO, PTX, DR) for lab in Label}


def test_extract_labels_reads_each_finding_of_one_report() -> None:
    text = (
        "EXAM: CT HEAD WITHOUT CONTRAST.\nCLINICAL HISTORY: Evaluate for hemorrhage.\n"
        "FINDINGS: No acute calvarial fracture. Hyperdense left MCA sign compatible with "
        "large vessel occlusion. No evidence of acute intracranial hemorrhage.\n"
        "IMPRESSION: Hyperdense left MCA sign compatible with large vessel occlusion. "
        "No evidence of acute intracranial hemorrhage."
    )
    assert extract_labels(text, [ICH, LVO, PTX]) == {ICH: A, LVO: P, PTX: A}


def test_case_spacing_and_line_wrapping_do_not_matter() -> None:
    assert extract_label("NO   EVIDENCE OF\nINTRACRANIAL HEMORRHAGE", ICH) is A
    assert extract_label("NO EVIDENCE OF INTRACRANIAL HEMORRHAGE", ICH) is A
    assert extract_label("Acute   Subdural   Hematoma", ICH) is P


def test_section_headings_and_blank_lines_end_sentences() -> None:
    assert extract_label("HISTORY: no trauma\nIMPRESSION: Acute subdural hematoma", ICH) is P
    assert extract_label("No fracture\n\nAcute subdural hematoma", ICH) is P


def test_unknown_finding_code_is_a_config_error() -> None:
    with pytest.raises(LabelConfigError, match="no vocabulary for finding code 'pe'"):
        extract_label("No pulmonary embolism.", "pe")


def test_vocabulary_errors_name_the_file_and_field(tmp_path: Path) -> None:
    missing = tmp_path / "missing.yaml"
    with pytest.raises(LabelConfigError, match="cannot read finding vocabulary"):
        load_vocabulary(missing)
    bad = tmp_path / "bad.yaml"
    bad.write_text("triggers: {negation_before: ['no']}\nfindings: {}\n")
    with pytest.raises(LabelConfigError, match=r"field triggers\.negation_after"):
        load_vocabulary(bad)
    twice = tmp_path / "twice.yaml"
    twice.write_text(
        "triggers: {negation_before: ['no'], negation_after: ['no'], uncertainty_before: [may],"
        " uncertainty_after: [is possible], terminators: [but]}\nfindings: {x: {terms: [x]}}\n"
    )
    with pytest.raises(LabelConfigError, match="trigger 'no' is listed twice"):
        load_vocabulary(twice)
    empty = tmp_path / "empty.yaml"
    empty.write_text(
        "triggers: {negation_before: ['no'], negation_after: [absent], uncertainty_before: [may],"
        " uncertainty_after: [is possible], terminators: [but]}\nfindings: {x: {}}\n"
    )
    with pytest.raises(LabelConfigError, match="finding 'x' has no terms or patterns"):
        load_vocabulary(empty)


def test_a_custom_vocabulary_is_used(tmp_path: Path) -> None:
    path = tmp_path / "pe.yaml"
    path.write_text(
        "triggers: {negation_before: ['no'], negation_after: [absent], uncertainty_before: [may],"
        " uncertainty_after: [is possible], terminators: [but]}\n"
        "findings: {pe: {terms: [pulmonary embolism, pe]}}\n"
    )
    vocab = load_vocabulary(path)
    assert extract_label("No pulmonary embolism.", "pe", vocab) is A
    assert extract_label("Right lower lobe PE.", "pe", vocab) is P
    assert extract_label("PE is possible.", "pe", vocab) is U
    assert extract_label("No pneumonia but segmental PE.", "pe", vocab) is P
