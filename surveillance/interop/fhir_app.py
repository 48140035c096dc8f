"""`surveillance fhir serve`: a small FHIR R4 endpoint for DiagnosticReport, its own process.

- `GET /fhir/metadata`: the CapabilityStatement (public, as FHIR servers publish it);
- `POST /fhir/DiagnosticReport`: 201 + Location once the report is on `reports.final`;
  200 + an informational OperationOutcome for a status not used (preliminary...);
- `POST /fhir`: a batch Bundle (each entry answered on its own) or a transaction Bundle
  (all entries written, or none and the first error);
- errors answer with an OperationOutcome: 400 unreadable, 401 no or wrong token, 413 too
  large, 415 wrong media type, 422 a resource we cannot use, 503 broker not confirming.
Auth is the intake API's: `Authorization: Bearer <token>` against
`SURVEILLANCE_INTAKE_API_TOKENS`; the token's name is the site when no performer says.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from surveillance.contracts import ReportFinal
from surveillance.intake.auth import bearer_identity
from surveillance.intake.config import IntakeSettings
from surveillance.interop.errors import DeliveryError
from surveillance.interop.fhir_parse import (
    FhirRejection,
    FhirResult,
    FhirSkipped,
    bundle_type,
    parse_resource,
)
from surveillance.interop.hl7_sink import ReportSink

FHIR_JSON = "application/fhir+json"
_BODY = {
    "requestBody": {
        "required": True,
        "content": {FHIR_JSON: {"schema": {"type": "object"}},
                    "application/json": {"schema": {"type": "object"}}},
    },
    "responses": {
        "201": {"description": "Created"}, "400": {"description": "OperationOutcome"},
        "401": {"description": "OperationOutcome"}, "422": {"description": "OperationOutcome"},
    },
}


def outcome(severity: str, code: str, text: str) -> dict[str, Any]:
    return {
        "resourceType": "OperationOutcome",
        "issue": [{"severity": severity, "code": code, "diagnostics": text}],
    }


def _fhir(body: dict[str, Any], status: int, headers: dict[str, str] | None = None
          ) -> JSONResponse:
    return JSONResponse(body, status, headers=headers, media_type=FHIR_JSON)


def capability_statement(now: datetime) -> dict[str, Any]:
    from fhir.resources.R4B.capabilitystatement import CapabilityStatement

    statement = {
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": now.isoformat(),
        "kind": "instance",
        "fhirVersion": "4.0.1",
        "format": ["json"],
        "implementation": {"description": "imaging-ai-surveillance report intake"},
        "rest": [{
            "mode": "server",
            "security": {"description": "Bearer token (the intake API's tokens)"},
            "resource": [{"type": "DiagnosticReport", "interaction": [{"code": "create"}]}],
            "interaction": [{"code": "batch"}, {"code": "transaction"}],
        }],
    }
    CapabilityStatement.model_validate(statement)  # a statement we publish must be valid
    return statement


def create_fhir_app(intake: IntakeSettings, bootstrap: str,
                    sink: ReportSink | None = None, earliest: date | None = None) -> FastAPI:
    """`earliest`: `stream.earliest_event_date` (None: its default); a report issued
    before it, or in the future, is a 422 as the worker's ingest would dead-letter it."""
    state: dict[str, ReportSink] = {}
    lock = asyncio.Lock()

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        yield
        if "sink" in state and sink is None:
            await state.pop("sink").stop()

    app = FastAPI(title="imaging-ai-surveillance FHIR R4", docs_url=None, redoc_url=None,
                  lifespan=lifespan)

    async def get_sink() -> ReportSink:
        async with lock:
            if "sink" not in state:
                state["sink"] = sink or await ReportSink(bootstrap, timeout_seconds=10).start()
            return state["sink"]

    async def read(request: Request) -> tuple[str, bytes] | JSONResponse:
        identity = bearer_identity(request.headers.get("authorization"), intake)
        if identity is None:
            return _fhir(outcome("error", "security", "a valid bearer token is required"),
                         401, {"WWW-Authenticate": "Bearer"})
        kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if kind not in (FHIR_JSON, "application/json"):
            return _fhir(outcome("error", "not-supported",
                                 f"Content-Type must be {FHIR_JSON}"), 415)
        body = await request.body()
        if len(body) > intake.max_body_bytes * 16:
            return _fhir(outcome("error", "too-costly", "the body is too large"), 413)
        return identity.name, body

    async def deliver(reports: list[ReportFinal]) -> JSONResponse | None:
        if not reports:
            return None
        try:
            await (await get_sink()).deliver(reports)
        except DeliveryError:
            return _fhir(outcome("error", "transient",
                                 "the report could not be stored now; retry later"), 503)
        return None

    @app.get("/fhir/metadata")
    async def metadata() -> JSONResponse:
        return _fhir(capability_statement(datetime.now(UTC)), 200)

    @app.post("/fhir/DiagnosticReport", openapi_extra=_BODY)
    async def create_report(request: Request) -> JSONResponse:
        got = await read(request)
        if isinstance(got, JSONResponse):
            return got
        system, body = got
        results = parse_resource(body, system, datetime.now(UTC), earliest)
        if len(results) != 1 or _resource_type(body) == "Bundle":
            return _fhir(outcome("error", "not-supported", "POST /fhir/DiagnosticReport takes "
                                 "one DiagnosticReport; POST a Bundle to /fhir"), 422)
        result = results[0]
        if isinstance(result, FhirRejection):
            return _refused(result)
        if isinstance(result, FhirSkipped):
            return _fhir(outcome("information", "informational", result.reason), 200)
        failed = await deliver([result])
        if failed is not None:
            return failed
        return _fhir(outcome("information", "informational", "stored"), 201,
                     {"Location": f"/fhir/DiagnosticReport/{result.event_id}"})

    @app.post("/fhir", openapi_extra=_BODY)
    async def post_bundle(request: Request) -> JSONResponse:
        got = await read(request)
        if isinstance(got, JSONResponse):
            return got
        system, body = got
        results = parse_resource(body, system, datetime.now(UTC), earliest)
        whole = [r for r in results if isinstance(r, FhirRejection) and r.whole]
        if whole:
            return _refused(whole[0])
        if _resource_type(body) != "Bundle":
            return _fhir(outcome("error", "not-supported",
                                 "POST /fhir takes a batch or transaction Bundle"), 422)
        kind = _bundle_kind(body)
        rejections = [r for r in results if isinstance(r, FhirRejection)]
        if kind == "transaction" and rejections:
            return _refused(rejections[0])
        failed = await deliver([r for r in results if isinstance(r, ReportFinal)])
        if failed is not None:
            return failed
        return _fhir({
            "resourceType": "Bundle",
            "type": f"{kind}-response",
            "entry": [_entry(r) for r in results],
        }, 200)

    return app


def _refused(rejection: FhirRejection) -> JSONResponse:
    return _fhir(outcome("error", rejection.code, rejection.reason),
                 400 if rejection.code == "structure" else 422)


def _resource_type(body: bytes) -> str | None:
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return None
    return str(data.get("resourceType")) if isinstance(data, dict) else None


def _bundle_kind(body: bytes) -> str:
    return bundle_type(json.loads(body))


def _entry(result: FhirResult) -> dict[str, Any]:
    if isinstance(result, ReportFinal):
        return {"response": {"status": "201 Created",
                             "location": f"DiagnosticReport/{result.event_id}"}}
    if isinstance(result, FhirSkipped):
        return {"response": {"status": "200 OK",
                             "outcome": outcome("information", "informational", result.reason)}}
    return {"response": {"status": "422 Unprocessable Entity",
                         "outcome": outcome("error", result.code, result.reason)}}
