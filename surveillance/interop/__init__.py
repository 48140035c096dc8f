"""Hospital formats in: HL7 v2 ORU^R01 (MLLP listener, batch files), FHIR R4 DiagnosticReport.

Pure parsers (`hl7_parse`, `fhir_parse`) turn a message into `ReportFinal` events or say
why not; the network servers (`mllp_server`, `fhir_app`) and `hl7_import` only move bytes
in and ACKs, OperationOutcomes and records out. Every adapter writes the same contract on
`reports.final`, so nothing downstream knows which format a report came in.
"""
