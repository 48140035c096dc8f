"""The root exception. Each subpackage raises its own subclass, documented where raised."""


class SurveillanceError(Exception):
    """Base of every error this service raises on purpose: a one-line, user-facing message."""
