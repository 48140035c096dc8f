"""The JSON API for systems (bearer token); its OpenAPI document is at /openapi.json.

  POST /api/v1/adverse-events        submit JSON
  GET  /api/v1/adverse-events/{ref}  one report as JSON, to its submitting system or a reviewer
"""

from __future__ import annotations

from fastapi import APIRouter, Depends, HTTPException, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from surveillance.contracts import AdverseEvent
from surveillance.intake.api_models import ErrorOut, NotRecordedOut, ReceiptOut, obligations_out
from surveillance.intake.auth import Identity
from surveillance.intake.errors import PublishError, SubmissionConflict
from surveillance.intake.parts import IntakeParts
from surveillance.intake.service import IntakeService, Receipt
from surveillance.intake.submission import FORM_FIELDS, AdverseEventSubmission, check_submission


def api_routes(p: IntakeParts) -> APIRouter:
    router = APIRouter()
    system = p.gates.system

    @router.get(
        "/api/v1/adverse-events/{reference}",
        response_model=AdverseEvent,
        summary="Read one adverse-event report (its submitter or a reviewer)",
        responses={
            401: {"model": ErrorOut, "description": "missing or invalid API token"},
            404: {"model": ErrorOut, "description": "no such report that you may read"},
            429: {"model": ErrorOut, "description": "rate limit exceeded"},
        },
    )
    def api_read(
        reference: str,
        identity: Identity = Depends(system),  # noqa: B008
    ) -> AdverseEvent:
        event, _ = p.reader.full_event(p.reader.readable(identity, reference))
        return event

    @router.post(
        "/api/v1/adverse-events",
        status_code=201,
        response_model=ReceiptOut,
        summary="Submit an adverse-event report",
        responses={
            200: {"model": ReceiptOut, "description": "already recorded (same submission_id)"},
            401: {"model": ErrorOut, "description": "missing or invalid API token"},
            409: {"model": ErrorOut, "description": "submission_id reused with other content"},
            413: {"model": ErrorOut, "description": "request body too large"},
            429: {"model": ErrorOut, "description": "rate limit exceeded"},
            503: {"model": NotRecordedOut, "description": "NOT recorded: broker unavailable"},
        },
    )
    def api_submit(
        sub: AdverseEventSubmission,
        response: Response,
        identity: Identity = Depends(system),  # noqa: B008
    ) -> ReceiptOut | JSONResponse:
        errors = check_submission(sub, p.tools, p.now().date())
        if errors:
            raise RequestValidationError(
                [
                    {"loc": ("body", *FORM_FIELDS[name]), "msg": msg, "type": "value_error"}
                    for name, msg in errors.items()
                ]
            )
        # Fix the id before publishing, so a 503 can tell the client which id to retry with.
        sub = sub.model_copy(
            update={"submission_id": sub.submission_id or IntakeService.new_submission_id()}
        )
        try:
            receipt: Receipt = p.service.submit(sub, identity.id)
        except PublishError as exc:
            return JSONResponse(
                NotRecordedOut(
                    recorded=False,
                    submission_id=sub.submission_id,
                    detail=f"NOT recorded: {exc}. Retry with the same "
                    "submission_id; it will be recorded once.",
                ).model_dump(),
                status_code=503,
            )
        except SubmissionConflict as exc:
            raise HTTPException(409, str(exc)) from exc
        if receipt.duplicate:
            response.status_code = 200
        return ReceiptOut(
            reference=receipt.reference,
            submission_id=receipt.submission_id,
            recorded=True,
            duplicate=receipt.duplicate,
            obligations=obligations_out(receipt.obligations),
        )

    return router
