"""DICOM files on disk to AI results: the path `dicom parse` and `backfill FILE...` share.

SRs (TID 1500) give the results; images given alongside fill in their study's acquisition
(`dicom_sr.enrich`), as over C-STORE. A file that is not usable is a problem with its
reason, never an exception.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import tzinfo
from pathlib import Path

from surveillance.clinical.baselines import ToolBaseline
from surveillance.contracts import AIResult


@dataclass
class DicomFiles:
    #: (file, result): the SRs' results, enriched by the images of their study.
    results: list[tuple[Path, AIResult]] = field(default_factory=list)
    #: (file, "reason: message") of each file or SR group that gave no result.
    problems: list[tuple[Path, str]] = field(default_factory=list)


def read_dicom_files(paths: Iterable[Path], registry: Mapping[str, ToolBaseline], site: str,
                     tz: tzinfo) -> DicomFiles:
    from pydicom import dcmread
    from pydicom.errors import InvalidDicomError

    from surveillance.interop.dicom_errors import UnusableObject
    from surveillance.interop.dicom_header import ImageHeader, image_header
    from surveillance.interop.dicom_receiver import IMAGE_SOP_CLASSES
    from surveillance.interop.dicom_sr import SrResults, enrich, parse_sr

    # pydicom's warnings about odd files would break the one-line-per-file contract.
    logging.getLogger("pydicom").setLevel(logging.ERROR)
    out = DicomFiles()
    reports: list[tuple[Path, SrResults]] = []
    headers: dict[str, ImageHeader] = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        for path in paths:
            try:
                ds = dcmread(path, force=True, stop_before_pixels=True)
                sop_class = str(ds.get("SOPClassUID", ""))
                if not sop_class:
                    out.problems.append((path, "cannot_understand: no SOPClassUID (not DICOM?)"))
                    continue
                if sop_class in IMAGE_SOP_CLASSES:
                    header = image_header(ds)
                    headers.setdefault(header.study_uid, header)
                    continue
                reports.append((path, parse_sr(ds, registry, site, tz)))
            except UnusableObject as exc:
                out.problems.append((path, f"{exc.reason}: {exc.message}"))
            except (OSError, InvalidDicomError, ValueError, TypeError, AttributeError,
                    KeyError, EOFError) as exc:
                out.problems.append((path, "cannot_understand: not a readable DICOM file "
                                           f"({type(exc).__name__})"))
    for path, parsed in reports:
        out.problems += [(path, f"{r.reason}: {r.message}") for r in parsed.refused]
        out.results += [(path, enrich(draft, headers.get(parsed.study_uid)))
                        for draft in parsed.results]
    return out
