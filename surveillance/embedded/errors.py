"""Errors of the embedded stack."""

from surveillance.errors import SurveillanceError


class EmbeddedError(SurveillanceError):
    """An embedded service (broker or database) could not be started or reached."""
