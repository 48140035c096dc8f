"""Post-market surveillance for cleared medical-imaging AI tools."""

from surveillance.errors import SurveillanceError

__all__ = ["SurveillanceError"]
__version__ = "0.1.0"
