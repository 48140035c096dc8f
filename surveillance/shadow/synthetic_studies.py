"""Seeded synthetic head-CT studies, written as real DICOM files, for tests and benchmarks.

Each study is a few 64 x 64 axial slices: air (-1000 HU), a skull ring (700-1300 HU), brain
(28-40 HU with low-frequency shading and 8 HU noise). A positive study has a hyperdense
"hemorrhage" blob (46-75 HU, radius 1-4.5 px) on a run of contiguous slices; about a third of
all studies also carry a tiny calcification (150-400 HU), a bright distractor that is not
blood. Pixels are stored as unsigned 16-bit with RescaleSlope 1 and RescaleIntercept -1024,
and the header carries the brain window (WindowCenter 40, WindowWidth 80), like a scanner's
head protocol. Nothing here resembles a real patient; identifiers are generated.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
from pydicom.dataset import FileDataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

from surveillance.shadow.preprocess import Slice

INTERCEPT = -1024.0
SLOPE = 1.0
WINDOW = (40.0, 80.0)


@dataclass(frozen=True)
class SyntheticStudy:
    accession: str
    positive: bool
    hu: npt.NDArray[np.float32]  # [slices, rows, cols], Hounsfield units

    def stored(self) -> npt.NDArray[np.uint16]:
        """The values a scanner would store, given the rescale slope and intercept."""
        stored: npt.NDArray[np.uint16] = np.clip(
            np.rint((self.hu - INTERCEPT) / SLOPE), 0, 65535
        ).astype(np.uint16)
        return stored

    def slices(self) -> list[Slice]:
        """The same values `FolderDicomSource` would read back from the written files."""
        return [
            Slice(
                stored=plane,
                modality="CT",
                rescale_slope=SLOPE,
                rescale_intercept=INTERCEPT,
                window_center=WINDOW[0],
                window_width=WINDOW[1],
                position=5.0 * k,
            )
            for k, plane in enumerate(self.stored())
        ]


def _blob(
    yy: npt.NDArray[np.float64], xx: npt.NDArray[np.float64], cy: float, cx: float, radius: float
) -> npt.NDArray[np.float64]:
    """A disc with a soft edge (partial-volume), 1 inside and 0 outside."""
    distance = np.hypot(yy - cy, xx - cx)
    return np.clip(radius + 0.5 - distance, 0.0, 1.0)


def synthesize_study(
    rng: np.random.Generator, positive: bool, accession: str, size: int = 64
) -> SyntheticStudy:
    n_slices = int(rng.integers(4, 9))
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    cy = size / 2 + rng.uniform(-2, 2)
    cx = size / 2 + rng.uniform(-2, 2)
    a = size * rng.uniform(0.36, 0.42)
    b = size * rng.uniform(0.30, 0.36)
    radial = np.hypot((yy - cy) / a, (xx - cx) / b)
    thickness = rng.uniform(0.06, 0.1)
    brain = radial < 1.0 - thickness
    skull = (radial >= 1.0 - thickness) & (radial < 1.0)

    base = np.full((size, size), -1000.0)
    base[skull] = rng.uniform(700, 1300)
    shading = 4.0 * np.sin(yy / size * np.pi * rng.uniform(0.5, 2)) * np.cos(xx / size * np.pi)
    base[brain] = rng.uniform(28, 40) + shading[brain]

    hu = np.repeat(base[None], n_slices, axis=0)
    # Lesions are placed well inside the brain, never touching the skull.
    inner = np.argwhere(radial < 0.6)
    if positive:
        y0, x0 = inner[rng.integers(len(inner))]
        radius = rng.uniform(1.0, 4.5)
        contrast = rng.uniform(46, 75) - hu[0, y0, x0]
        first = int(rng.integers(0, n_slices))
        last = min(n_slices, first + int(rng.integers(1, 4)))
        for k in range(first, last):
            hu[k] += contrast * _blob(yy, xx, float(y0), float(x0), radius)
    if rng.uniform() < 1 / 3:
        y1, x1 = inner[rng.integers(len(inner))]
        k = int(rng.integers(0, n_slices))
        hu[k] += rng.uniform(150, 400) * _blob(yy, xx, float(y1), float(x1), 0.7)
    hu += rng.normal(0.0, 8.0, size=hu.shape)
    return SyntheticStudy(accession=accession, positive=positive, hu=hu.astype(np.float32))


def synthesize_dataset(
    seed: int, n_studies: int, prevalence: float = 0.5, size: int = 64
) -> list[SyntheticStudy]:
    """`n_studies` studies; exactly round(n * prevalence) positives, in seeded random order."""
    rng = np.random.default_rng(seed)
    n_pos = round(n_studies * prevalence)
    labels = rng.permutation(np.arange(n_studies) < n_pos)
    return [
        synthesize_study(rng, bool(label), f"SYN{seed:04d}-{i:06d}", size)
        for i, label in enumerate(labels)
    ]


def write_study(study: SyntheticStudy, folder: Path) -> list[Path]:
    """Write one study as single-frame CT Image Storage files; returns the paths."""
    entropy = [study.accession]
    study_uid = generate_uid(entropy_srcs=[*entropy, "study"])
    series_uid = generate_uid(entropy_srcs=[*entropy, "series"])
    out = folder / study.accession
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for k, plane in enumerate(study.stored()):
        sop_uid = generate_uid(entropy_srcs=[*entropy, "sop", str(k)])
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = CTImageStorage
        meta.MediaStorageSOPInstanceUID = sop_uid
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        path = out / f"{k:04d}.dcm"
        ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
        ds.SOPClassUID = CTImageStorage
        ds.SOPInstanceUID = sop_uid
        ds.StudyInstanceUID = study_uid
        ds.SeriesInstanceUID = series_uid
        ds.AccessionNumber = study.accession
        ds.PatientID = f"P-{study.accession}"
        ds.Modality = "CT"
        ds.BodyPartExamined = "HEAD"
        ds.InstanceNumber = k + 1
        ds.ImagePositionPatient = [0.0, 0.0, 5.0 * k]
        ds.SliceThickness = 5.0
        ds.PixelSpacing = [3.5, 3.5]
        ds.Rows, ds.Columns = plane.shape
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.BitsAllocated = 16
        ds.BitsStored = 16
        ds.HighBit = 15
        ds.PixelRepresentation = 0
        ds.RescaleSlope = f"{SLOPE:g}"
        ds.RescaleIntercept = f"{INTERCEPT:g}"
        ds.WindowCenter = f"{WINDOW[0]:g}"
        ds.WindowWidth = f"{WINDOW[1]:g}"
        ds.PixelData = plane.tobytes()
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths


def write_dataset(studies: list[SyntheticStudy], folder: Path) -> None:
    for study in studies:
        write_study(study, folder)
