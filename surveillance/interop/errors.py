"""Errors of the interop adapters (HL7 v2, MLLP, FHIR).

`InteropError` is the root. A message a hospital system sent that we cannot accept is
not an exception of the service: the parsers return a `Rejection` value (see
`hl7_parse`) that the adapters turn into a NAK, an OperationOutcome or a dead letter.
"""

from __future__ import annotations

from surveillance.errors import SurveillanceError


class InteropError(SurveillanceError):
    """Root of the interop errors."""


class MappingError(InteropError):
    """The per-facility mapping file is missing or invalid (one line: where and why)."""


class DeliveryError(InteropError):
    """The broker did not acknowledge a write within the allowed time."""
