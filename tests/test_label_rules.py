"""The reading rules of report-label extraction, one kind of sentence at a time.

Sections and template lines (which part of a report decides), addenda (the last statement
wins), scope (terminators, comparatives, post-negation, uncertainty, history), and coded
results winning over the text. Each case is a phrasing with the label a radiologist means.
"""

from __future__ import annotations

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from surveillance.clinical.label_vocabulary import (
    DEFAULT_VOCABULARY,
    SectionKind,
    load_vocabulary,
)
from surveillance.clinical.labels import (
    MentionState,
    explain_label,
    extract_label,
    extract_labels,
    report_labels,
)
from surveillance.contracts import Label, StructuredFinding

ICH = "intracranial_hemorrhage"
LVO = "large_vessel_occlusion"
PTX = "pneumothorax"
DR = "mtm_diabetic_retinopathy"
PE = "pulmonary_embolism"
AD = "aortic_dissection"
P, A, U = Label.PRESENT, Label.ABSENT, Label.INDETERMINATE

TEMPLATES = [
    ("Pneumothorax: None.", PTX, A),
    ("Pneumothorax: Present, small, right apex.", PTX, P),
    ("Pneumothorax: Indeterminate.", PTX, U),
    ("PE: negative", PE, A),
    ("PE: positive (right lower lobe).", PE, P),
    ("Pulmonary embolism: equivocal.", PE, U),
    ("Aortic dissection: absent.", AD, A),
    ("Intracranial hemorrhage: yes", ICH, P),
    ("More than mild diabetic retinopathy: not detected.", DR, A),
    ("Large vessel occlusion: Present, left M1.", LVO, P),
    # Several template lines: each one decides only its own finding.
    ("Intracranial hemorrhage: None.\nLarge vessel occlusion: Present.", ICH, A),
    ("Intracranial hemorrhage: None.\nLarge vessel occlusion: Present.", LVO, P),
    # The answer decides, whatever follows it.
    ("Pneumothorax: None. Chest tube in place.", PTX, A),
    # A line naming another thing is read as prose.
    ("Lungs: small left apical pneumothorax.", PTX, P),
    ("Pleural spaces: no pneumothorax.", PTX, A),
]

SECTIONS = [
    # The indication and history never decide, however they are phrased.
    ("INDICATION: Pulmonary embolism.\nIMPRESSION: Normal CTA chest.", PE, A),
    ("CLINICAL HISTORY: Subdural hematoma on the outside CT.\nIMPRESSION: No acute "
     "intracranial abnormality.", ICH, A),
    ("HISTORY: PE.\nFINDINGS: No filling defect.", PE, A),
    ("Reason for exam: aortic dissection?\nImpression: Normal aorta.", AD, A),
    # A comparison describes another study.
    ("COMPARISON: CT 2 days ago, which showed a large right pneumothorax.\n"
     "IMPRESSION: No pneumothorax.", PTX, A),
    ("TECHNIQUE: CTA with dissection protocol.\nIMPRESSION: Normal thoracic aorta.", AD, A),
    # The impression decides over the findings when it speaks of the finding...
    ("FINDINGS: Possible small filling defect in a subsegmental artery.\n"
     "IMPRESSION: No pulmonary embolism.", PE, A),
    ("FINDINGS: No pneumothorax.\nIMPRESSION: Small left apical pneumothorax.", PTX, P),
    # ...and the findings decide when it does not.
    ("FINDINGS: Small left apical pneumothorax.\nIMPRESSION: No acute cardiopulmonary "
     "process.", PTX, P),
    # Headings also start mid-line after a sentence, in any case.
    ("History: rule out PE. Impression: Segmental pulmonary embolism.", PE, P),
    ("Exam: CTA chest PE protocol. Impression: No acute findings.", PE, A),
    # Text without any heading is body.
    ("Acute left subdural hematoma.", ICH, P),
]

ADDENDA = [
    ("IMPRESSION: Acute subdural hematoma.\nADDENDUM: There is no subdural hematoma; the "
     "density is the dural sinus.", ICH, A),
    ("IMPRESSION: No subdural hematoma.\nADDENDUM: A small acute subdural hematoma is "
     "present along the falx.", ICH, P),
    ("IMPRESSION: No pulmonary embolism.\nADDENDUM: A subsegmental embolus cannot be "
     "excluded on reformats.", PE, U),
    # The last addendum that mentions the finding wins.
    ("IMPRESSION: No PE.\nADDENDUM 1: Right lower lobe segmental PE.\nADDENDUM 2: On "
     "further review, the finding is mixing artifact and there is no pulmonary embolism.",
     PE, A),
    ("IMPRESSION: Type B aortic dissection.\nADDENDUM: No dissection.\nADDENDUM: Findings "
     "discussed with Dr. Lee at 14:05.", AD, A),
    # An addendum that does not mention the finding changes nothing.
    ("IMPRESSION: Moderate left pneumothorax.\nADDENDUM: Findings called to the ED.", PTX, P),
    # An addendum line inside one paragraph, after a sentence.
    ("Small left pneumothorax. Addendum: on the lateral view this is a skin fold and there "
     "is no pneumothorax.", PTX, A),
    # Corrections and amendments are addenda.
    ("IMPRESSION: No LVO.\nCORRECTION: Occlusion of the left M1 segment.", LVO, P),
]

SCOPE = [
    # A comma before a new statement ends a negation's reach.
    ("No midline shift, and there is a small subdural hematoma.", ICH, P),
    ("No pleural effusion, small left pneumothorax.", PTX, P),
    ("No fracture, tiny right apical pneumothorax.", PTX, P),
    ("No consolidation and there is a small right pneumothorax.", PTX, P),
    # A list keeps the negation.
    ("No intracranial hemorrhage, mass effect, or midline shift.", ICH, A),
    ("No pneumothorax, effusion or consolidation.", PTX, A),
    ("No mass effect, hemorrhage or hydrocephalus.", ICH, A),
    ("No hemorrhage, large vessel occlusion or mass.", LVO, A),
    # Conjunctions and semicolons end a scope.
    ("No effusion but a small pneumothorax.", PTX, P),
    ("No fracture; subdural hematoma along the falx.", ICH, P),
    ("The lungs are clear; however, there is a small left pneumothorax.", PTX, P),
    ("Although the bolus is suboptimal, there is a definite lobar embolus.", PE, P),
    # Pseudo-negations are not negations.
    ("No change in the size of the right subdural hematoma.", ICH, P),
    ("No interval change in the type B dissection.", AD, P),
    ("CTA without and with contrast shows a saddle embolus.", PE, P),
    # Comparatives: the finding after "rather than" / "favored ... over" is not there...
    ("Favored to represent calcification rather than hemorrhage.", ICH, A),
    ("Favored to represent calcification over hemorrhage.", ICH, A),
    ("Streak artifact mimicking a dissection flap.", AD, A),
    # ...the one before them is.
    ("Favored to represent hemorrhage over calcification.", ICH, P),
    ("Hemorrhage rather than calcification given the interval change.", ICH, P),
    # Post-negation.
    ("Evaluation for pulmonary embolism was negative.", PE, A),
    ("CTA for dissection was negative.", AD, A),
    ("Head CT is negative for hemorrhage.", ICH, A),
    ("Pulmonary emboli were not identified.", PE, A),
    ("Pneumothorax: none.", PTX, A),
    # Uncertainty phrases, before and after the finding.
    ("Subsegmental PE is difficult to exclude.", PE, U),
    ("Difficult to exclude a small subdural hematoma.", ICH, U),
    ("Small pneumothorax not entirely excluded.", PTX, U),
    ("Equivocal intimal flap in the arch.", AD, U),
    ("Questionable left M1 occlusion.", LVO, U),
    ("A tiny pneumothorax cannot be ruled out.", PTX, U),
    ("Cannot rule out a small subarachnoid hemorrhage.", ICH, U),
    ("Hyperdensity that could represent hemorrhage.", ICH, U),
    ("Artifact versus embolus in the right lower lobe.", PE, U),
    # Certainty words that are a diagnosis, not a hedge.
    ("Findings likely represent acute pulmonary embolism.", PE, P),
    ("Probable small subdural hematoma.", ICH, P),
    # Historical and resolved mentions.
    ("History of pulmonary embolism.", PE, A),
    ("Remote history of aortic dissection repair.", AD, A),
    ("h/o subarachnoid hemorrhage, status post clipping.", ICH, A),
    ("The previously seen pneumothorax has resolved.", PTX, A),
    ("Resolution of the right lower lobe emboli.", PE, A),
    ("Previously noted subdural hematoma is no longer seen.", ICH, A),
    # A finding named by a different thing is not the finding.
    ("Right vertebral artery dissection.", AD, A),
    ("Large scalp hematoma.", ICH, A),
    ("Vitreous hemorrhage in the right eye.", ICH, A),
    # Synonyms.
    ("Layering blood products in the occipital horns.", ICH, P),
    ("Trace subarachnoid blood in the sylvian fissure.", ICH, P),
    ("Filling defect in the right interlobar artery.", PE, P),
    ("Saddle embolus.", PE, P),
    ("Intimal flap in the descending aorta.", AD, P),
    ("Abrupt cutoff of the right M1 segment.", LVO, P),
    ("Severe NPDR in the left eye.", DR, P),
    # Grading schemes: English screening grades and ETDRS levels.
    ("Right eye R2 M0, left eye R1 M0; refer to the eye clinic.", DR, P),
    ("R3A in the left eye.", DR, P),
    ("R1 M0 both eyes; annual recall.", DR, A),
    ("M1 maculopathy, right eye.", DR, P),
    ("ETDRS level 53 in the right eye.", DR, P),
    ("ETDRS level 35 OU.", DR, A),
]


@pytest.mark.parametrize(("text", "code", "expected"), TEMPLATES)
def test_template_lines(text: str, code: str, expected: Label) -> None:
    assert extract_label(text, code) is expected


@pytest.mark.parametrize(("text", "code", "expected"), SECTIONS)
def test_sections(text: str, code: str, expected: Label) -> None:
    assert extract_label(text, code) is expected


@pytest.mark.parametrize(("text", "code", "expected"), ADDENDA)
def test_addenda(text: str, code: str, expected: Label) -> None:
    assert extract_label(text, code) is expected


@pytest.mark.parametrize(("text", "code", "expected"), SCOPE)
def test_scope(text: str, code: str, expected: Label) -> None:
    assert extract_label(text, code) is expected


def test_every_finding_and_label_is_covered() -> None:
    cases = TEMPLATES + SECTIONS + ADDENDA + SCOPE
    covered = {(code, label) for _, code, label in cases}
    for code in (ICH, PE, AD, PTX):
        assert {(code, label) for label in Label} <= covered


def test_explain_names_the_deciding_mention_and_trigger() -> None:
    text = ("FINDINGS: Filling defect in a right lower lobe segmental artery.\n"
            "IMPRESSION: Segmental pulmonary embolism.\n"
            "ADDENDUM: The filling defect is mixing artifact; no pulmonary embolism.")
    result = explain_label(text, PE)
    assert result.label is A
    assert result.decided_by is SectionKind.ADDENDUM
    assert [(m.term, m.state, m.trigger) for m in result.deciding] == [
        ("filling defect", MentionState.NEGATED, "is mixing artifact"),
        ("pulmonary embolism", MentionState.NEGATED, "no"),
    ]
    assert [m.section for m in result.mentions] == [
        SectionKind.BODY, SectionKind.IMPRESSION, SectionKind.ADDENDUM, SectionKind.ADDENDUM
    ]


def test_explain_shows_template_answers_and_uncertainty_triggers() -> None:
    template = explain_label("Pulmonary embolism: None.", PE)
    assert [(m.term, m.state, m.trigger) for m in template.mentions] == [
        ("pulmonary embolism", MentionState.NEGATED, "none")
    ]
    hedged = explain_label("A small pneumothorax is difficult to exclude.", PTX)
    assert hedged.label is U and hedged.decided_by is SectionKind.BODY
    assert [(m.term, m.trigger) for m in hedged.deciding] == [
        ("pneumothorax", "is difficult to exclude")
    ]
    silent = explain_label("Normal study.", PTX)
    assert silent.label is A and silent.decided_by is None and silent.mentions == ()


def test_explain_reports_ignored_questions() -> None:
    result = explain_label("Rule out pneumothorax. Clear lungs.", PTX)
    assert result.label is A
    assert [(m.state, m.trigger) for m in result.mentions] == [
        (MentionState.IGNORED, "rule out")
    ]


# Coded results win over the text.

def _coded(code: str, label: Label) -> list[StructuredFinding]:
    return [StructuredFinding(finding_code=code, label=label)]


def test_a_coded_label_wins_over_text_that_says_otherwise() -> None:
    labels, source = report_labels(_coded(PE, A), "Acute segmental pulmonary embolism.", [PE])
    assert labels == {PE: A} and source == "structured"


def test_text_fills_only_the_codes_the_coded_results_leave_out() -> None:
    text = "No pulmonary embolism. Type B aortic dissection."
    labels, source = report_labels(_coded(PE, P), text, [PE, AD])
    assert labels == {PE: P, AD: P} and source == "structured"


def test_text_alone_and_codes_alone() -> None:
    assert report_labels(None, "No pneumothorax.", [PTX]) == ({PTX: A}, "text")
    assert report_labels(_coded(PTX, U), None, [PTX, ICH]) == ({PTX: U}, "structured")
    assert report_labels([], "No pneumothorax.", [PTX]) == ({PTX: A}, "text")


_CODES = st.sampled_from([ICH, LVO, PTX, DR, PE, AD])
_TEXT = st.lists(
    st.sampled_from([
        *"abcdefghijklmnopqrstuvwxyz .,;:\n", " no ", " pneumothorax", " pe", " hemorrhage",
        " dissection", "IMPRESSION:", "ADDENDUM:", "HISTORY:", " versus ", " not excluded",
        " rather than ", ":none", "Pneumothorax: ",
    ]),
    max_size=60,
).map("".join)


@given(code=_CODES, label=st.sampled_from(list(Label)), text=_TEXT)
def test_coded_label_always_wins(code: str, label: Label, text: str) -> None:
    labels, source = report_labels(_coded(code, label), text, [code])
    assert labels == {code: label} and source == "structured"


@given(text=_TEXT)
def test_any_text_gets_one_label_per_code_and_case_does_not_matter(text: str) -> None:
    codes = [ICH, LVO, PTX, DR, PE, AD]
    labels = extract_labels(text, codes)
    assert set(labels) == set(codes)
    # Headings are matched in any case and everything else is lowered: upper case reads alike.
    assert extract_labels(text.upper(), codes) == labels


def test_every_vocabulary_phrase_matches_whole_and_longest_first() -> None:
    vocab = load_vocabulary()
    for phrase in vocab.roles:
        # Each trigger is found whole, also with its spaces stretched (line wrapping).
        assert [m.group(0) for m in vocab.triggers.finditer(phrase)] == [phrase], phrase
        stretched = phrase.replace(" ", " \n  ")
        assert [m.group(0) for m in vocab.triggers.finditer(stretched)] == [stretched]
    assert [m.group(0) for m in vocab.triggers.finditer("no evidence of pe")] == [
        "no evidence of"
    ]
    # A longer phrase that does not end at a word boundary gives way to a shorter one.
    assert [m.group(0) for m in vocab.triggers.finditer("not seeing")] == ["not"]
    raw = yaml.safe_load(DEFAULT_VOCABULARY.read_text())
    for code, finding in raw["findings"].items():
        for term in finding.get("terms", []):
            match = vocab.findings[code].search(f"x {term.upper()} y".lower())
            assert match is not None and match.group(0) == term.lower(), (code, term)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (("occlusion of the " + "left " * 7000)[:32_000], {LVO: A}),
        ("no " * 10_000 + "pneumothorax", {PTX: A}),
        (("favored to represent a b c d " * 1200) + "over hemorrhage", {ICH: A}),
        (("pneumothorax" + " x" * 40 + ": ") * 300, {PTX: P}),
        ("IMPRESSION: no pe; possible dissection. ADDENDUM: " * 600, {PE: A, AD: U}),
        ("\n" * 32_000 + "Saddle embolus.", {PE: P}),
    ],
)
def test_long_hostile_texts_are_read_in_one_pass(text: str, expected: dict[str, Label]) -> None:
    # Report text may be 32,000 characters; none of the patterns may backtrack on it.
    assert extract_labels(text, list(expected)) == expected
