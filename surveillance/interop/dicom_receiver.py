"""What the C-STORE SCP and STOW-RS do with one received object, transport aside.

An image: its drift header fields go to the spool (pixel data is dropped with the decoded
dataset; it is never written anywhere). An SR: its AI results go to the spool, to be
published by `DicomPublisher` once the study's images arrived or after the wait. Anything
else, or anything unreadable: refused with its DICOM failure status and a dead letter on
`ai.results.dlq` naming the reason. Success is returned only after the spool commit (or,
for a refusal, after the broker acknowledged the dead letter); when either fails the
status is 0xA700 (out of resources) and the sender keeps the object and retries.
"""

from __future__ import annotations

import base64
import logging
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, tzinfo
from io import BytesIO
from typing import Protocol

from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError

from surveillance.clinical.baselines import ToolBaseline
from surveillance.contracts import MAX_EVENT_BYTES, DeadLetter
from surveillance.interop.dicom_errors import UnusableObject
from surveillance.interop.dicom_header import image_header
from surveillance.interop.dicom_spool import Spool, SpoolError
from surveillance.interop.dicom_sr import SR_SOP_CLASSES, parse_sr
from surveillance.interop.dicom_sr_read import AnyDataset, NotRead, read_file
from surveillance.observe.metrics import DicomOutcome, record_dicom_object

log = logging.getLogger(__name__)

#: Image storage SOP classes whose headers we read, by the label used in metrics.
IMAGE_SOP_CLASSES = {
    "1.2.840.10008.5.1.4.1.1.2": "CT",  # CT Image
    "1.2.840.10008.5.1.4.1.1.2.1": "CT",  # Enhanced CT Image
    "1.2.840.10008.5.1.4.1.1.4": "MR",  # MR Image
    "1.2.840.10008.5.1.4.1.1.4.1": "MR",  # Enhanced MR Image
    "1.2.840.10008.5.1.4.1.1.1": "CR",  # Computed Radiography Image
    "1.2.840.10008.5.1.4.1.1.1.1": "DX",  # Digital X-Ray Image, for presentation
    "1.2.840.10008.5.1.4.1.1.1.1.1": "DX",  # Digital X-Ray Image, for processing
    "1.2.840.10008.5.1.4.1.1.1.2": "MG",  # Digital Mammography, for presentation
    "1.2.840.10008.5.1.4.1.1.1.2.1": "MG",  # Digital Mammography, for processing
    "1.2.840.10008.5.1.4.1.1.7": "SC",  # Secondary Capture Image
}
SUPPORTED_SOP_CLASSES = frozenset(IMAGE_SOP_CLASSES) | SR_SOP_CLASSES

OUT_OF_RESOURCES = 0xA700
#: Warning "elements discarded": some measurement groups of an SR were refused.
ELEMENTS_DISCARDED = 0xB006
SUCCESS = 0x0000

#: Pixel Data, Float and Double Float Pixel Data (7FE0,0010/0008/0009) as they start in an
#: encoded data set (little or big endian): a dead letter keeps the bytes before them only.
_PIXEL_TAG = re.compile(rb"\xe0\x7f[\x08\x09\x10]\x00|\x7f\xe0\x00[\x08\x09\x10]")


class DeadLetterSink(Protocol):
    def publish(self, key: bytes, value: bytes) -> None: ...


@dataclass(frozen=True)
class Outcome:
    status: int
    sop_class: str
    sop_instance: str
    reason: str | None = None


def without_pixels(raw: bytes) -> bytes:
    """The encoded object up to its first pixel data element, at most the DLQ limit."""
    match = _PIXEL_TAG.search(raw)
    return (raw[: match.start()] if match else raw)[:MAX_EVENT_BYTES]


class Receiver:
    def __init__(
        self,
        registry: Mapping[str, ToolBaseline],
        spool: Spool,
        dead_letters: DeadLetterSink,
        local_tz: tzinfo = UTC,
        on_stored: Callable[[], None] = lambda: None,
        earliest: date | None = None,
    ) -> None:
        from surveillance.stream.ingest import DateRange

        self._registry = registry
        #: The event dates the worker's ingest takes: an SR outside them is refused here.
        self._dates = DateRange() if earliest is None else DateRange(earliest)
        self._spool = spool
        self._dlq = dead_letters
        self._tz = local_tz
        self._on_stored = on_stored

    def receive_file(self, raw: bytes, channel: str, site: str) -> Outcome:
        """A DICOM Part 10 file (STOW-RS part): its SOP class comes from the file. An SR
        is read by `dicom_sr_read` unless that reader declines it."""
        ds: AnyDataset
        try:
            try:
                ds = read_file(raw, SR_SOP_CLASSES)
                if str(ds.get("SOPClassUID", "")) not in SR_SOP_CLASSES:
                    raise NotRead("the data set is not an SR after all")
            except NotRead:
                ds = dcmread(BytesIO(raw), force=True)
            sop_class = str(ds.get("SOPClassUID", ""))
        except (InvalidDicomError, ValueError, TypeError, EOFError, OSError, KeyError,
                AttributeError, NotImplementedError) as exc:
            return self._refuse(raw, "", "", channel, UnusableObject(
                "cannot_understand", f"not a readable DICOM file ({type(exc).__name__})"))
        if not sop_class:
            return self._refuse(raw, "", "", channel, UnusableObject(
                "cannot_understand", "no SOPClassUID: not a DICOM object"))
        return self.receive(lambda: ds, sop_class, raw, channel, site,
                            str(ds.get("SOPInstanceUID", "")))

    def receive(
        self,
        decode: Callable[[], AnyDataset],
        sop_class: str,
        raw: bytes,
        channel: str,
        site: str,
        sop_instance: str = "",
    ) -> Outcome:
        """One object whose SOP class (and instance) the transport already knows."""
        if sop_class not in SUPPORTED_SOP_CLASSES:
            return self._refuse(raw, sop_class, sop_instance, channel, UnusableObject(
                "unsupported_sop_class", f"SOP class {sop_class or '(none)'} is not an SR or "
                "image class this service reads"))
        try:
            ds = decode()
            sop_instance = str(ds.get("SOPInstanceUID", "")) or sop_instance
            in_data = str(ds.get("SOPClassUID", ""))
        except Exception as exc:  # any decoding failure of hostile bytes is "cannot understand"
            return self._refuse(raw, sop_class, sop_instance, channel, UnusableObject(
                "cannot_understand", f"the data set cannot be decoded ({type(exc).__name__})"))
        if not in_data:
            return self._refuse(raw, sop_class, sop_instance, channel, UnusableObject(
                "cannot_understand", "the data set has no SOPClassUID"))
        if in_data != sop_class:
            return self._refuse(raw, sop_class, sop_instance, channel, UnusableObject(
                "invalid", "the data set's SOPClassUID differs from the transfer's SOP class"))
        try:
            if sop_class in SR_SOP_CLASSES:
                return self._store_sr(ds, raw, sop_class, sop_instance, channel, site)
            assert isinstance(ds, Dataset)  # dicom_sr_read reads SRs only
            return self._store_image(ds, sop_class, sop_instance)
        except UnusableObject as exc:
            return self._refuse(raw, sop_class, sop_instance, channel, exc)
        except SpoolError as exc:
            log.error("DICOM spool write failed: %s", exc)
            return Outcome(OUT_OF_RESOURCES, sop_class, sop_instance, "spool unavailable")
        except Exception as exc:  # a parser bug on one object must not stop the SCP
            log.exception("unexpected error reading a DICOM object")
            return self._refuse(raw, sop_class, sop_instance, channel, UnusableObject(
                "cannot_understand", f"the object cannot be read ({type(exc).__name__})"))

    def _store_image(self, ds: Dataset, sop_class: str, sop_instance: str) -> Outcome:
        header = image_header(ds)
        new = self._spool.add_header(header, time.time())
        record_dicom_object(DicomOutcome.STORED if new else DicomOutcome.DUPLICATE,
                            IMAGE_SOP_CLASSES[sop_class])
        if new:
            self._on_stored()
        return Outcome(SUCCESS, sop_class, sop_instance)

    def _store_sr(
        self, ds: AnyDataset, raw: bytes, sop_class: str, sop_instance: str, channel: str,
        site: str,
    ) -> Outcome:
        parsed = parse_sr(ds, self._registry, site, self._tz)
        # Every group carries the SR header's dates: one check answers for all of them.
        first = parsed.results[0]
        why = self._dates.first_outside(
            [("study_date", first.study_date), ("inference_date", first.inference_date)],
            datetime.now(UTC))
        if why is not None:  # 0xA900 now, rather than success and a dead letter at ingest
            raise UnusableObject("invalid", f"the SR's {why.message}")
        if parsed.refused:
            reasons = "; ".join(r.message for r in parsed.refused)
            self._dead_letter(raw, channel, f"some measurement groups refused: {reasons}")
        new = self._spool.add_results(
            parsed.results, parsed.study_uid, parsed.referenced_series, time.time()
        )
        record_dicom_object(DicomOutcome.STORED if new else DicomOutcome.DUPLICATE, "SR")
        if new:
            self._on_stored()
        status = ELEMENTS_DISCARDED if parsed.refused else SUCCESS
        return Outcome(status, sop_class, sop_instance)

    def _refuse(
        self, raw: bytes, sop_class: str, sop_instance: str, channel: str, exc: UnusableObject
    ) -> Outcome:
        reason = f"{exc.reason}: {exc.message}"
        try:
            self._dead_letter(raw, channel, reason)
        except Exception as dlq_exc:  # no dead letter: let the sender keep it and retry
            log.error("dead letter not written (%s); answering out of resources",
                      type(dlq_exc).__name__)
            return Outcome(OUT_OF_RESOURCES, sop_class, sop_instance, reason)
        record_dicom_object(DicomOutcome.REFUSED, _label(sop_class))
        return Outcome(exc.status, sop_class, sop_instance, reason)

    def _dead_letter(self, raw: bytes, channel: str, reason: str) -> None:
        kept = without_pixels(raw)
        letter = DeadLetter(
            source_topic=f"dicom.{channel}",
            source_partition=-1,
            source_offset=-1,
            reason=reason[:2000],
            received_at=datetime.now(UTC),
            original_b64=base64.b64encode(kept).decode(),
            original_size=len(raw),
        )
        self._dlq.publish(b"", letter.model_dump_json().encode())


def _label(sop_class: str) -> str:
    if sop_class in SR_SOP_CLASSES:
        return "SR"
    return IMAGE_SOP_CLASSES.get(sop_class, "other")
