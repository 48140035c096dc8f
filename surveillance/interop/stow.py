"""DICOMweb STOW-RS (`POST /studies`), in the same process as the C-STORE SCP.

The request is `multipart/related; type="application/dicom"`, one DICOM Part 10 file per
part. Each part goes through the same `Receiver` as a C-STORE. The response is the
standard Store Instances Response Module (PS3.18 10.5.3) as `application/dicom+json`:
ReferencedSOPSequence for the stored instances (with WarningReason when some measurement
groups were refused), FailedSOPSequence with FailureReason for the others; HTTP 200 when
all were stored, 202 when some failed, 409 when none was stored, 415 for another media
type. `/metrics` serves this process's Prometheus metrics.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from fastapi import FastAPI, Request, Response
from pydicom.dataset import Dataset
from starlette.concurrency import run_in_threadpool

from surveillance.interop.dicom_receiver import ELEMENTS_DISCARDED, SUCCESS, Outcome, Receiver
from surveillance.observe.metrics import render

DICOM_JSON = "application/dicom+json"
_BOUNDARY = re.compile(r'boundary="?([^";]+)"?', re.IGNORECASE)
_TYPE = re.compile(r'type="?([^";]+)"?', re.IGNORECASE)


class MultipartError(ValueError):
    """The body is not a well-formed multipart/related message."""


def split_multipart(body: bytes, boundary: str) -> list[tuple[dict[str, str], bytes]]:
    """(headers, content) of every part of a multipart body (RFC 2046)."""
    delimiter = b"--" + boundary.encode("latin-1")
    segments = body.split(delimiter)
    if len(segments) < 3:
        raise MultipartError("no multipart boundary found in the body")
    parts = []
    for segment in segments[1:]:
        if segment.startswith(b"--"):
            break  # the close delimiter
        segment = segment.removeprefix(b"\r\n").removesuffix(b"\r\n")
        head, sep, content = segment.partition(b"\r\n\r\n")
        if not sep:
            raise MultipartError("a part has no header/body separator")
        headers = {}
        for line in head.decode("latin-1").split("\r\n"):
            name, colon, value = line.partition(":")
            if colon:
                headers[name.strip().lower()] = value.strip()
        parts.append((headers, content))
    return parts


def response_dataset(outcomes: list[Outcome]) -> Dataset:
    ds = Dataset()
    stored, failed = [], []
    for outcome in outcomes:
        item = Dataset()
        item.ReferencedSOPClassUID = outcome.sop_class or ""
        item.ReferencedSOPInstanceUID = outcome.sop_instance or ""
        if outcome.status in (SUCCESS, ELEMENTS_DISCARDED):
            if outcome.status == ELEMENTS_DISCARDED:
                item.WarningReason = ELEMENTS_DISCARDED
            stored.append(item)
        else:
            item.FailureReason = outcome.status
            failed.append(item)
    if stored:
        ds.ReferencedSOPSequence = stored
    if failed:
        ds.FailedSOPSequence = failed
    return ds


def http_status(outcomes: list[Outcome]) -> int:
    stored = sum(o.status in (SUCCESS, ELEMENTS_DISCARDED) for o in outcomes)
    if stored == len(outcomes):
        return 200
    return 202 if stored else 409


def create_app(receiver: Receiver, site: str, on_parts: Callable[[], None] = lambda: None
               ) -> FastAPI:
    app = FastAPI(title="surveillance DICOMweb STOW-RS", docs_url=None, redoc_url=None)

    def store(content_type: str, body: bytes) -> Response:
        boundary = _BOUNDARY.search(content_type)
        kind = _TYPE.search(content_type)
        if (not content_type.lower().startswith("multipart/related") or boundary is None
                or (kind is not None and kind.group(1).lower() != "application/dicom")):
            return Response(
                'send multipart/related; type="application/dicom" with a boundary',
                status_code=415, media_type="text/plain",
            )
        try:
            parts = split_multipart(body, boundary.group(1))
        except MultipartError as exc:
            return Response(str(exc), status_code=400, media_type="text/plain")
        outcomes = []
        for headers, content in parts:
            part_type = headers.get("content-type", "application/dicom").split(";")[0]
            if part_type.strip().lower() != "application/dicom":
                outcomes.append(Outcome(0xC000, "", "", "part is not application/dicom"))
                continue
            outcomes.append(receiver.receive_file(content, "stow-rs", site))
        on_parts()
        return Response(
            response_dataset(outcomes).to_json(), status_code=http_status(outcomes),
            media_type=DICOM_JSON,
        )

    @app.post("/studies")
    async def store_instances(request: Request) -> Response:
        body = await request.body()
        # Parsing is CPU work and the spool commit blocks: off the event loop.
        return await run_in_threadpool(store, request.headers.get("content-type", ""), body)

    @app.get("/metrics")
    def metrics() -> Response:
        payload, content_type = render()
        return Response(payload, media_type=content_type)

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    return app
