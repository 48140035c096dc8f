"""Hospital formats in: HL7 v2, FHIR R4, DICOM SR and image headers (pure parsers
apart from the network servers); the output is the existing contracts."""
