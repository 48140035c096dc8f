"""Errors of the shadow package; each message is one line saying what is wrong and what to do."""

from surveillance.errors import SurveillanceError


class ShadowError(SurveillanceError):
    """Base of every error raised by `surveillance.shadow`."""


class ModelContractError(ShadowError):
    """The ONNX model is unreadable or does not honour the shadow model contract."""


class ImageSourceError(ShadowError):
    """The images of a study cannot be found or read."""


class RunnerClosedError(ShadowError):
    """An item was submitted to a runner that has been closed."""
