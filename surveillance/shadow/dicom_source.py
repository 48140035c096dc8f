"""Where shadow re-scoring gets a study's images: a pluggable `ImageSource`.

`FolderDicomSource` reads a local folder of DICOM files (searched recursively, any file
name) with pydicom. Studies are looked up by a key taken from each file's header,
`AccessionNumber` by default, because both `ai.results` and `cases.adjudicated` carry the
accession. Downstream of ingest the accession is a keyed HMAC, so pass `key_fn` = the same
pseudonymizer ingest uses: the index then holds pseudonyms only and no raw identifier
leaves this module.

DICOMweb is the other supported shape of source: implement `ImageSource.load` with a
WADO-RS client (`GET {base}/studies?AccessionNumber=...` via QIDO-RS to find the study,
then `GET {base}/studies/{study}/series/{series}/instances/{sop}` with
`Accept: application/dicom`) and build `Slice` objects with `slice_from_dataset` below.
It is not shipped here because this service makes no network calls outside loopback
unless deployed with a PACS gateway.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Literal, Protocol

import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.multival import MultiValue

from surveillance.shadow.errors import ImageSourceError
from surveillance.shadow.preprocess import Slice


class ImageSource(Protocol):
    def load(self, key: str) -> list[Slice]:
        """The slices of the study with this key, ordered along the patient axis."""
        ...


def _first(value: object) -> float | None:
    """WindowCenter/Width may be multi-valued; the first pair is the default view."""
    if isinstance(value, MultiValue):
        value = value[0] if len(value) else None
    if value is None or value == "":
        return None
    return float(str(value))


def slice_from_dataset(ds: Dataset) -> Slice:
    """Header values and stored pixels of one single-frame DICOM image."""
    position = ds.get("ImagePositionPatient")
    where = float(position[2]) if position is not None else float(ds.get("InstanceNumber", 0))
    return Slice(
        stored=np.asarray(ds.pixel_array),
        modality=str(ds.get("Modality", "")),
        rescale_slope=float(ds.get("RescaleSlope", 1.0)),
        rescale_intercept=float(ds.get("RescaleIntercept", 0.0)),
        window_center=_first(ds.get("WindowCenter")),
        window_width=_first(ds.get("WindowWidth")),
        monochrome1=str(ds.get("PhotometricInterpretation", "")) == "MONOCHROME1",
        position=where,
    )


class FolderDicomSource:
    """Studies in a local folder, indexed once from the headers (pixels are read on load)."""

    def __init__(
        self,
        root: Path,
        key_tag: Literal["AccessionNumber", "StudyInstanceUID"] = "AccessionNumber",
        key_fn: Callable[[str], str] = str,
        rescan_seconds: float = 60.0,
    ) -> None:
        if not root.is_dir():
            raise ImageSourceError(f"image folder {root} does not exist; set shadow.image_folder")
        self.root = root
        self.key_tag = key_tag
        self._key_fn = key_fn
        self.rescan_seconds = rescan_seconds
        self._index: dict[str, dict[str, list[Path]]] | None = None
        self._indexed_at = 0.0

    def _build_index(self) -> dict[str, dict[str, list[Path]]]:
        index: dict[str, dict[str, list[Path]]] = defaultdict(lambda: defaultdict(list))
        for path in sorted(p for p in self.root.rglob("*") if p.is_file()):
            try:
                ds = pydicom.dcmread(path, stop_before_pixels=True)
            except (InvalidDicomError, OSError):
                continue  # not a DICOM file: folders often hold DICOMDIR notes, thumbnails
            raw = ds.get(self.key_tag)
            if raw is None or "Rows" not in ds:
                continue  # no key, or not an image (structured report, presentation state)
            index[self._key_fn(str(raw))][str(ds.get("SeriesInstanceUID", ""))].append(path)
        self._indexed_at = time.monotonic()
        return index

    def refresh(self) -> None:
        """Forget the index; the next load re-reads the headers (new studies arrived)."""
        self._index = None

    def load(self, key: str) -> list[Slice]:
        if self._index is None:
            self._index = self._build_index()
        series = self._index.get(key)
        if not series and time.monotonic() - self._indexed_at >= self.rescan_seconds:
            # The study may have arrived after indexing; rescanning is rate-limited so a
            # stream of missing studies cannot turn into a stream of folder scans.
            self._index = self._build_index()
            series = self._index.get(key)
        if not series:
            raise ImageSourceError(
                f"no DICOM study with this {self.key_tag} under {self.root}; export it first"
            )
        # Several series: take the one with most images, the primary axial stack.
        paths = max(series.values(), key=len)
        try:
            slices = [slice_from_dataset(pydicom.dcmread(p)) for p in paths]
        except (InvalidDicomError, OSError, ValueError, AttributeError) as exc:
            raise ImageSourceError(
                f"cannot decode a DICOM file under {self.root} ({type(exc).__name__}); "
                "check transfer syntax support (pylibjpeg for compressed images)"
            ) from exc
        return sorted(slices, key=lambda s: s.position)
