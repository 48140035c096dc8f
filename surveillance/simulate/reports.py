"""Free-text radiology reports whose labels `clinical.labels` reads back exactly.

Each finding the study's tools score gets one sentence stating its label (present, absent
or indeterminate), chosen from phrasings radiologists use; the sentence appears in FINDINGS
and again in IMPRESSION, among unrelated normal findings. A corrected report or addendum
restates the full revised report, as reporting systems send it.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from surveillance.contracts import Label, ReportStatus

_SIDES = ("left", "right")
_EYES = ("left", "right")

_SENTENCES: dict[str, dict[Label, tuple[str, ...]]] = {
    "intracranial_hemorrhage": {
        Label.PRESENT: (
            "Acute {side} subdural hematoma measuring {mm} mm in maximal thickness.",
            "Intraparenchymal hemorrhage in the {side} basal ganglia with surrounding edema.",
            "Small volume subarachnoid hemorrhage in the {side} sylvian fissure.",
            "Acute intraventricular hemorrhage layering in the occipital horns.",
        ),
        Label.ABSENT: (
            "No evidence of acute intracranial hemorrhage.",
            "No intracranial hemorrhage, mass effect, or midline shift.",
            "Negative for acute intracranial hemorrhage.",
            "There is no acute intracranial hemorrhage or extra-axial collection.",
        ),
        Label.INDETERMINATE: (
            "Subtle hyperdensity along the {side} tentorium; small subdural hemorrhage "
            "cannot be excluded.",
            "Questionable small subarachnoid hemorrhage in the {side} frontal sulci.",
            "Hyperdensity in the {side} sylvian fissure may represent subarachnoid hemorrhage.",
        ),
    },
    "large_vessel_occlusion": {
        Label.PRESENT: (
            "Hyperdense {side} MCA sign compatible with large vessel occlusion.",
            "Findings consistent with occlusion of the {side} M1 segment.",
            "Hyperdense basilar artery in keeping with basilar occlusion.",
        ),
        Label.ABSENT: (
            "No hyperdense vessel sign to suggest large vessel occlusion.",
            "No hyperdense MCA sign.",
        ),
        Label.INDETERMINATE: (
            "Possible hyperdense {side} MCA sign; recommend CTA for further evaluation.",
            "Equivocal hyperdensity of the {side} M1 segment, large vessel occlusion cannot "
            "be excluded.",
        ),
    },
    "pneumothorax": {
        Label.PRESENT: (
            "Small {side} apical pneumothorax.",
            "Moderate {side} pneumothorax without mediastinal shift.",
            "{Side} pneumothorax, increased in size from the prior radiograph.",
            "Large {side} tension pneumothorax with mediastinal shift.",
        ),
        Label.ABSENT: (
            "No pneumothorax.",
            "No pneumothorax or pleural effusion.",
            "Previously seen {side} pneumothorax has resolved.",
            "The lungs are clear without pneumothorax.",
        ),
        Label.INDETERMINATE: (
            "Possible tiny {side} apical pneumothorax.",
            "A small {side} pneumothorax cannot be excluded on this supine radiograph.",
        ),
    },
    "mtm_diabetic_retinopathy": {
        Label.PRESENT: (
            "Moderate nonproliferative diabetic retinopathy in the {eye} eye.",
            "Severe nonproliferative diabetic retinopathy, both eyes; referral recommended.",
            "Proliferative diabetic retinopathy with neovascularization of the disc in the "
            "{eye} eye.",
            "Diabetic macular edema in the {eye} eye.",
            "More than mild diabetic retinopathy detected; refer to an eye care professional.",
        ),
        Label.ABSENT: (
            "No diabetic retinopathy.",
            "Mild nonproliferative diabetic retinopathy without macular edema.",
            "Negative for more than mild diabetic retinopathy; rescreen in 12 months.",
        ),
        Label.INDETERMINATE: (
            "Possible moderate nonproliferative diabetic retinopathy in the {eye} eye; "
            "recommend dilated exam.",
            "Questionable diabetic macular edema in the {eye} eye.",
        ),
    },
    "pulmonary_embolism": {
        Label.PRESENT: (
            "Acute pulmonary embolism in the {side} lower lobe segmental arteries.",
            "Filling defects in the {side} interlobar and lower lobe pulmonary arteries "
            "consistent with acute pulmonary emboli.",
            "Saddle embolus extending into both main pulmonary arteries; RV/LV ratio 1.3.",
            "Pulmonary embolism: Present, {side} lower lobe subsegmental.",
        ),
        Label.ABSENT: (
            "No pulmonary embolism.",
            "No filling defect in the pulmonary arteries to the subsegmental level.",
            "Negative for acute pulmonary embolism.",
            "Pulmonary embolism: None.",
        ),
        Label.INDETERMINATE: (
            "Respiratory motion limits the lower lobes; subsegmental pulmonary embolism "
            "cannot be excluded.",
            "Questionable filling defect in a {side} lower lobe subsegmental artery, "
            "artifact versus embolus.",
        ),
    },
    "aortic_dissection": {
        Label.PRESENT: (
            "Stanford type A aortic dissection extending from the aortic root into the arch.",
            "Type B aortic dissection beginning distal to the left subclavian artery.",
            "Intimal flap in the descending thoracic aorta consistent with dissection.",
        ),
        Label.ABSENT: (
            "No aortic dissection.",
            "Normal caliber thoracic aorta without dissection or intramural hematoma.",
            "Aortic dissection: None.",
        ),
        Label.INDETERMINATE: (
            "Linear lucency in the ascending aorta, pulsation artifact versus dissection "
            "flap; recommend ECG-gated CTA.",
            "Equivocal short-segment intimal flap in the descending aorta; dissection is "
            "difficult to exclude.",
        ),
    },
}

#: Finding codes the templates can state.
TEMPLATED_FINDINGS = tuple(_SENTENCES)

_FILLERS: dict[str, tuple[str, ...]] = {
    "head_ct": (
        "The ventricles and sulci are age appropriate.",
        "Gray-white matter differentiation is preserved.",
        "No acute calvarial fracture.",
        "The paranasal sinuses and mastoid air cells are clear.",
    ),
    "chest_xr": (
        "The cardiomediastinal silhouette is within normal limits.",
        "No focal consolidation.",
        "Support devices in expected position.",
        "Degenerative changes of the thoracic spine.",
    ),
    "fundus": (
        "Image quality adequate for grading.",
        "Optic discs are sharp.",
    ),
    "cta_chest": (
        "Adequate opacification of the pulmonary arteries.",
        "The heart is normal in size. No pericardial effusion.",
        "No suspicious pulmonary nodule.",
        "Mild degenerative changes of the thoracic spine.",
    ),
}

_HISTORIES: dict[str, tuple[str, ...]] = {
    "head_ct": (
        "Headache.",
        "Fall on anticoagulation.",
        "Acute stroke symptoms, last known well 2 hours ago.",
        "Evaluate for hemorrhage.",
    ),
    "chest_xr": (
        "Chest pain.",
        "Shortness of breath.",
        "Post line placement, rule out pneumothorax.",
    ),
    "fundus": ("Diabetes mellitus type 2, annual screening.",),
    "cta_chest": (
        "Shortness of breath, evaluate for PE.",
        "Tearing chest pain radiating to the back, rule out aortic dissection.",
        "Pleuritic chest pain, elevated D-dimer.",
        "History of pulmonary embolism, new hypoxia.",
    ),
}

_EXAMS = {
    "head_ct": "CT HEAD WITHOUT CONTRAST",
    "chest_xr": "XR CHEST 1 VIEW",
    "fundus": "FUNDUS PHOTOGRAPHY, 2 FIELDS EACH EYE",
    "cta_chest": "CTA CHEST W CONTRAST (PE PROTOCOL)",
}

_PREFIX = {
    ReportStatus.FINAL: "",
    ReportStatus.CORRECTED: "CORRECTED REPORT. ",
    ReportStatus.ADDENDUM: "ADDENDUM: On review with the prior study, the report is revised. ",
}


def _pick(rng: np.random.Generator, options: tuple[str, ...]) -> str:
    return options[int(rng.integers(len(options)))]


def finding_sentence(rng: np.random.Generator, finding_code: str, label: Label) -> str:
    side = _pick(rng, _SIDES)
    template = _pick(rng, _SENTENCES[finding_code][label])
    return template.format(
        side=side, Side=side.capitalize(), eye=_pick(rng, _EYES), mm=int(rng.integers(3, 15))
    )


def render_report_text(
    rng: np.random.Generator,
    study_type: str,
    labels: Mapping[str, Label],
    status: ReportStatus = ReportStatus.FINAL,
) -> str:
    """A report stating each finding's label; `labels` maps finding code to label."""
    stated = [finding_sentence(rng, code, label) for code, label in labels.items()]
    fillers = list(_FILLERS[study_type])
    rng.shuffle(fillers)
    findings = stated + fillers[: int(rng.integers(1, len(fillers) + 1))]
    rng.shuffle(findings)
    return (
        f"{_PREFIX[status]}EXAM: {_EXAMS[study_type]}.\n"
        f"CLINICAL HISTORY: {_pick(rng, _HISTORIES[study_type])}\n"
        f"FINDINGS: {' '.join(findings)}\n"
        f"IMPRESSION: {' '.join(stated)}"
    )
