"""Errors of the DICOM interop (SR parsing, C-STORE SCP, STOW-RS).

`UnusableObject` carries a reason code from a small fixed set (a metric label and the
DICOM failure status follow from it) and a one-line message that names fields, never
their values: the message ends up in a dead letter and in logs.
"""

from __future__ import annotations

from typing import Literal

from surveillance.errors import SurveillanceError

#: Why an object was refused.
#: - unsupported_sop_class: not an SR or image SOP class we read
#: - cannot_understand: not decodable as DICOM, or required attributes missing
#: - unmapped: an SR whose algorithm or finding no registry tool maps
#: - invalid: values outside what the AI-result contract accepts
Reason = Literal["unsupported_sop_class", "cannot_understand", "unmapped", "invalid"]

#: DICOM C-STORE failure status per reason (PS3.4 B.2.3): 0x0122 SOP Class not
#: supported, 0xC000-0xCFFF "cannot understand", 0xA900 data set does not match SOP class.
STATUS: dict[Reason, int] = {
    "unsupported_sop_class": 0x0122,
    "cannot_understand": 0xC000,
    "unmapped": 0xC001,
    "invalid": 0xA900,
}


class DicomError(SurveillanceError):
    """Root of the DICOM interop's errors."""


class UnusableObject(DicomError):
    """A DICOM object (or one measurement group of an SR) that yields no AI result."""

    def __init__(self, reason: Reason, message: str) -> None:
        super().__init__(message)
        self.reason: Reason = reason
        self.message = message

    @property
    def status(self) -> int:
        return STATUS[self.reason]
