"""Hospital formats in: HL7 v2 ORU^R01 and MDM^T02 (MLLP listener, batch files), FHIR R4
DiagnosticReport, DICOM SR (TID 1500) and image headers (C-STORE SCP, STOW-RS).

Pure parsers (`hl7_parse`, `fhir_parse`, `dicom_sr`, `dicom_header`) turn a message or an
object into contract events or say why not; the network servers (`mllp_server`,
`fhir_app`, `dicom_scp`, `stow`) and `hl7_import` only move bytes in and ACKs,
OperationOutcomes, DICOM statuses and records out. Every adapter writes the same contracts
(`ReportFinal` on `reports.final`, `AIResult` on `ai.results`), so nothing downstream knows
which format an event came in.
"""
