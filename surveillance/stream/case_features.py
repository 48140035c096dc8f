"""Adapter: the AI-result view of an adjudicated case, for the tool-keyed drift bank.

The drift bank reads `AIResult`s; the tool-partitioned stream carries `AdjudicatedCase`s,
which hold every field the bank's features read (scanner, acquisition, demographics,
score, call). Identifiers are the pseudonyms the case already carries; fields the bank
never reads (AI product names, body part) are left empty.
"""

from __future__ import annotations

from surveillance.contracts import Acquisition, AdjudicatedCase, AIResult, Scanner


def as_ai_result(case: AdjudicatedCase) -> AIResult:
    return AIResult(
        event_id=case.ai_event_id,
        tool_id=case.tool_id,
        manufacturer="",
        model="",
        software_version=case.software_version,
        finding_code=case.finding_code,
        ai_result=case.ai_result,
        operating_threshold=case.operating_threshold,
        result_indicator=case.result_indicator,
        patient_id=case.accession,
        accession_number=case.accession,
        study_instance_uid=case.accession,
        study_date=case.study_date,
        site=case.site,
        modality=case.modality,
        body_part_examined="",
        contrast_indication=case.contrast_indication,
        scanner=Scanner(
            manufacturer=case.scanner_manufacturer,
            model=case.scanner_model,
            software_version=case.scanner_software_version,
        ),
        acquisition=Acquisition(
            kvp=case.kvp,
            slice_thickness=case.slice_thickness,
            pixel_spacing=case.pixel_spacing,
            protocol_name=case.protocol_name,
        ),
        age=case.age,
        sex=case.sex,
        inference_date=case.inference_date,
        pseudonymized=True,
    )
