"""Turn the stored pixels of a study into the model input: one [1, 64, 64] float32 image.

Steps, per slice: modality LUT (RescaleSlope/RescaleIntercept, DICOM PS3.3 C.11.1), VOI LUT
window (the linear function of PS3.3 C.11.2.1.2.1, output scaled to [0, 1]), MONOCHROME1
inversion, area-average resize to 64 x 64. A multi-slice study is then reduced to one
image by its maximum-intensity projection, because the findings we re-score (hyperdense
blood, a hyperdense vessel) are bright and may sit on any slice.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from surveillance.shadow.errors import ImageSourceError

SIZE = 64

FloatArray = npt.NDArray[np.float32]

#: Window (center, width) in modality units used when a slice has no WindowCenter/Width.
#: CT: the brain window, the usual first read for hemorrhage and hyperdense vessels.
DEFAULT_WINDOWS: dict[str, tuple[float, float]] = {"CT": (40.0, 80.0)}


@dataclass(frozen=True)
class Slice:
    """One image as stored, with the header values needed to display it."""

    stored: npt.NDArray[np.generic]
    modality: str
    rescale_slope: float = 1.0
    rescale_intercept: float = 0.0
    window_center: float | None = None
    window_width: float | None = None
    monochrome1: bool = False
    position: float = 0.0


def modality_lut(stored: npt.NDArray[np.generic], slope: float, intercept: float) -> FloatArray:
    """Stored values to modality units (Hounsfield units for CT)."""
    return (stored.astype(np.float64) * slope + intercept).astype(np.float32)


def voi_window(values: FloatArray, center: float, width: float) -> FloatArray:
    """DICOM linear VOI LUT, output in [0, 1] instead of [ymin, ymax]."""
    if width < 1.0:
        raise ImageSourceError(f"window width {width} is below 1; fix WindowWidth in the header")
    scaled = (values.astype(np.float64) - (center - 0.5)) / (width - 1.0) + 0.5
    return np.clip(scaled, 0.0, 1.0).astype(np.float32)


def _area_weights(n_in: int, n_out: int) -> npt.NDArray[np.float64]:
    """Row i averages the input cells overlapping output cell i, by overlap length."""
    edges_out = np.linspace(0.0, n_in, n_out + 1)
    lo = np.arange(n_in, dtype=np.float64)
    hi = lo + 1.0
    right = np.minimum(hi[None, :], edges_out[1:, None])
    left = np.maximum(lo[None, :], edges_out[:-1, None])
    overlap = np.clip(right - left, 0.0, None)
    weights: npt.NDArray[np.float64] = overlap / overlap.sum(axis=1, keepdims=True)
    return weights


def resize_area(image: FloatArray, size: int = SIZE) -> FloatArray:
    """Area-average resize; exact block mean when the input is a multiple of `size`."""
    rows = _area_weights(image.shape[0], size)
    cols = _area_weights(image.shape[1], size)
    return (rows @ image.astype(np.float64) @ cols.T).astype(np.float32)


def window_for(item: Slice) -> tuple[float, float] | None:
    if item.window_center is not None and item.window_width is not None:
        return item.window_center, item.window_width
    return DEFAULT_WINDOWS.get(item.modality.upper())


def preprocess_slice(item: Slice, size: int = SIZE) -> FloatArray:
    """One stored slice to a [size, size] image in [0, 1]."""
    if item.stored.ndim != 2:
        raise ImageSourceError(
            f"expected a 2-D slice, got shape {item.stored.shape}; multi-frame files are not read"
        )
    values = modality_lut(item.stored, item.rescale_slope, item.rescale_intercept)
    window = window_for(item)
    if window is not None:
        scaled = voi_window(values, *window)
    else:
        # No window in the header and no modality default: use the slice's own range.
        low, high = float(values.min()), float(values.max())
        scaled = ((values - low) / (high - low) if high > low else values * 0.0).astype(np.float32)
    if item.monochrome1:
        scaled = (1.0 - scaled).astype(np.float32)
    return resize_area(scaled, size)


def preprocess_study(slices: Sequence[Slice], size: int = SIZE) -> FloatArray:
    """A study's slices to the model input [1, size, size]: maximum-intensity projection."""
    if not slices:
        raise ImageSourceError("study has no slices; check that its DICOM files were exported")
    stack = np.stack([preprocess_slice(s, size) for s in slices])
    projection: FloatArray = stack.max(axis=0)[None, :, :]
    return projection
