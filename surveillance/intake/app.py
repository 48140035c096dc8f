"""The intake web app: an HTML form for people, a JSON API for systems, a listing for viewers.

Routes
  GET  /adverse-events/new     the form (people: basic auth or trusted proxy header)
  POST /adverse-events/new     submit the form (CSRF token bound to person and form)
  GET  /adverse-events         recent reports and their regulatory clocks (viewers only)
  POST /api/v1/adverse-events  submit JSON (systems: bearer token); OpenAPI at /openapi.json
"""

from __future__ import annotations

import secrets
import time
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import jinja2
from fastapi import Depends, FastAPI, HTTPException, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, RedirectResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, ValidationError
from starlette.concurrency import run_in_threadpool

from surveillance.clinical.baselines import ToolBaseline, load_registry
from surveillance.clinical.regulatory_clock import Obligation
from surveillance.contracts import DiscordanceType, Label, Outcome, Sex
from surveillance.intake import csrf
from surveillance.intake.auth import Identity, bearer_identity, can_view, person_identity
from surveillance.intake.config import IntakeSettings
from surveillance.intake.errors import PublishError, SubmissionConflict
from surveillance.intake.listing import to_row
from surveillance.intake.middleware import BodySizeLimit, SecurityHeaders
from surveillance.intake.publisher import Publisher
from surveillance.intake.ratelimit import RateLimiter
from surveillance.intake.service import IntakeService, Receipt
from surveillance.intake.store import ReportStore, store_path
from surveillance.intake.submission import (
    FORM_FIELDS,
    AdverseEventSubmission,
    check_form_fields,
    check_submission,
    field_errors,
    form_to_nested,
)

_HERE = Path(__file__).parent
LISTING_LIMIT = 100

OUTCOME_LABELS = {
    Outcome.DEATH: "Death",
    Outcome.LIFE_THREATENING: "Life-threatening",
    Outcome.HOSPITALIZATION: "Hospitalization (initial or prolonged)",
    Outcome.DISABILITY: "Disability or permanent damage",
    Outcome.REQUIRED_INTERVENTION: "Required intervention to prevent permanent impairment",
    Outcome.OTHER_SERIOUS: "Other serious (important medical event)",
    Outcome.NON_SERIOUS: "Non-serious",
}
DISCORDANCE_LABELS = {
    DiscordanceType.FALSE_NEGATIVE: "False negative (AI missed a finding)",
    DiscordanceType.FALSE_POSITIVE: "False positive (AI flagged an absent finding)",
    DiscordanceType.DELAYED_NOTIFICATION: "Delayed notification",
    DiscordanceType.OTHER: "Other",
}
SEX_LABELS = {Sex.FEMALE: "Female", Sex.MALE: "Male", Sex.OTHER: "Other", Sex.UNKNOWN: "Unknown"}
READ_LABELS = {
    Label.PRESENT: "Finding present",
    Label.ABSENT: "Finding absent",
    Label.INDETERMINATE: "Indeterminate",
}
EVENT_TYPE_LABELS = {
    "adverse_event": "Adverse event",
    "product_problem": "Product problem",
    "both": "Both",
}


class ObligationOut(BaseModel):
    regime: str
    recipient: str
    due: str
    basis: str


class ReceiptOut(BaseModel):
    reference: str
    submission_id: str
    recorded: bool
    duplicate: bool
    obligations: list[ObligationOut]


class NotRecordedOut(BaseModel):
    recorded: bool
    submission_id: str | None
    detail: str


class ErrorOut(BaseModel):
    detail: str


def _obligations_out(items: tuple[Obligation, ...]) -> list[ObligationOut]:
    return [
        ObligationOut(regime=o.regime, recipient=o.recipient, due=o.due.isoformat(), basis=o.basis)
        for o in items
    ]


def create_app(
    *,
    publisher: Publisher,
    pseudonym_key: bytes,
    state_dir: Path,
    intake: IntakeSettings | None = None,
    registry: Mapping[str, ToolBaseline] | None = None,
    clock: Callable[[], datetime] | None = None,
) -> FastAPI:
    """The ASGI app. `clock` returns the facility's aware "now" (tests pin it)."""
    cfg = intake or IntakeSettings()
    tools = dict(registry) if registry is not None else load_registry()
    tz = ZoneInfo(cfg.timezone)
    now_fn: Callable[[], datetime] = clock or (lambda: datetime.now(tz))
    store = ReportStore(store_path(state_dir), cfg.max_records)
    service = IntakeService(publisher, store, pseudonym_key, tools, now_fn)
    limiter = RateLimiter(cfg.rate_per_minute, cfg.rate_burst)
    csrf_secret = (
        cfg.csrf_secret.get_secret_value().encode() if cfg.csrf_secret else secrets.token_bytes(32)
    )
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(_HERE / "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
    )

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        await run_in_threadpool(publisher.close)

    app = FastAPI(
        title="Adverse-event intake",
        version="1",
        description="Report an adverse event involving an imaging AI tool (FDA 3500A A, B, D, "
        "E plus AI fields). Systems authenticate with a bearer token.",
        docs_url=None,  # the hosted docs pages load scripts from a CDN; CSP forbids them
        redoc_url=None,
        lifespan=lifespan,
    )
    app.add_middleware(BodySizeLimit, max_bytes=cfg.max_body_bytes)
    app.add_middleware(SecurityHeaders)

    def page(name: str, status: int = 200, **context: Any) -> HTMLResponse:
        html = env.get_template(name).render(**context)
        return HTMLResponse(html, status_code=status)

    def limited(identity: Identity) -> Identity:
        if not limiter.allow(identity.id):
            raise HTTPException(
                429,
                "Too many requests from you in a short time; wait a minute and try again.",
                headers={"Retry-After": str(limiter.retry_after_seconds())},
            )
        return identity

    def person(request: Request) -> Identity:
        identity = person_identity(request.headers, cfg)
        if identity is None:
            headers = {"WWW-Authenticate": 'Basic realm="adverse-event intake"'}
            raise HTTPException(
                401,
                "Sign in to report an adverse event.",
                headers=headers if cfg.basic_users else None,
            )
        return limited(identity)

    bearer = HTTPBearer(auto_error=False, description="API token issued to the system")

    def system(
        credentials: HTTPAuthorizationCredentials | None = Depends(bearer),  # noqa: B008
    ) -> Identity:
        header = f"Bearer {credentials.credentials}" if credentials else None
        identity = bearer_identity(header, cfg)
        if identity is None:
            raise HTTPException(
                401,
                "A valid API token is required (Authorization: Bearer).",
                headers={"WWW-Authenticate": "Bearer"},
            )
        return limited(identity)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> Response:
        if request.url.path.startswith("/api/"):
            return JSONResponse({"detail": exc.detail}, exc.status_code, headers=exc.headers)
        response = page("error.html", exc.status_code, message=str(exc.detail))
        for k, v in (exc.headers or {}).items():
            response.headers[k] = v
        return response

    def form_context(
        identity: Identity,
        sid: str,
        values: Mapping[str, str],
        errors: Mapping[str, str],
        **extra: Any,
    ) -> dict[str, Any]:
        return {
            "values": values,
            "errors": errors,
            "submission_id": sid,
            "csrf_token": csrf.make_token(csrf_secret, identity.id, sid, int(time.time())),
            "tools": tools,
            "outcomes": OUTCOME_LABELS,
            "discordances": DISCORDANCE_LABELS,
            "sexes": SEX_LABELS,
            "reads": READ_LABELS,
            "event_types": EVENT_TYPE_LABELS,
            "field_order": list(FORM_FIELDS),
            "identity": identity,
            "not_recorded": False,
            "conflict": None,
            **extra,
        }

    @app.get("/", include_in_schema=False)
    def root() -> RedirectResponse:
        return RedirectResponse("/adverse-events/new", status_code=303)

    @app.get("/static/intake.css", include_in_schema=False)
    def stylesheet() -> FileResponse:
        return FileResponse(_HERE / "static" / "intake.css", media_type="text/css")

    @app.get("/healthz", include_in_schema=False)
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/adverse-events/new", include_in_schema=False, response_class=HTMLResponse)
    def new_form(identity: Identity = Depends(person)) -> HTMLResponse:  # noqa: B008
        sid = IntakeService.new_submission_id()
        response = page("form.html", **form_context(identity, sid, {}, {}))
        # Cacheable in the person's browser only, so that Back shows this same form (same
        # submission id) and a second submit is recognised as a resubmission.
        response.headers["Cache-Control"] = "private, no-cache"
        return response

    @app.post("/adverse-events/new", include_in_schema=False, response_class=HTMLResponse)
    async def submit_form(
        request: Request,
        identity: Identity = Depends(person),  # noqa: B008
    ) -> HTMLResponse:
        origin = request.headers.get("origin")
        if origin is not None and origin != f"{request.url.scheme}://{request.url.netloc}":
            raise HTTPException(403, "This form can only be submitted from this site.")
        raw = await request.form()
        values = {k: v for k, v in raw.items() if isinstance(v, str)}
        sid = values.get("submission_id", "")
        token = values.get("csrf_token", "")
        valid_sid = 8 <= len(sid) <= 64 and sid.replace("-", "").replace("_", "").isalnum()
        if not valid_sid or not csrf.check_token(
            csrf_secret, token, identity.id, sid, int(time.time()), cfg.csrf_max_age_seconds
        ):
            raise HTTPException(
                403, "This form has expired or did not come from this site: open a new form."
            )
        errors: dict[str, str]
        try:
            sub = AdverseEventSubmission.model_validate(form_to_nested(values))
        except ValidationError as exc:
            errors = {**check_form_fields(values, tools, now_fn().date()), **field_errors(exc)}
        else:
            errors = check_submission(sub, tools, now_fn().date())
        if errors:
            return page("form.html", 422, **form_context(identity, sid, values, errors))
        try:
            receipt = await run_in_threadpool(service.submit, sub, identity.id)
        except PublishError:
            return page(
                "form.html", 503, **form_context(identity, sid, values, {}, not_recorded=True)
            )
        except SubmissionConflict as exc:
            return page(
                "form.html", 409, **form_context(identity, sid, values, {}, conflict=exc.reference)
            )
        return page("result.html", receipt=receipt, outcomes=OUTCOME_LABELS)

    @app.get("/adverse-events", include_in_schema=False, response_class=HTMLResponse)
    def listing(identity: Identity = Depends(person)) -> HTMLResponse:  # noqa: B008
        if not can_view(identity, cfg):
            raise HTTPException(403, "You are not on the list of people who may view reports.")
        today = now_fn().date()
        reports = [(r, to_row(r, today)) for r in store.recent(LISTING_LIMIT)]
        return page(
            "reports.html",
            reports=reports,
            outcomes=OUTCOME_LABELS,
            discordances=DISCORDANCE_LABELS,
            today=today,
        )

    @app.post(
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
        errors = check_submission(sub, tools, now_fn().date())
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
            receipt: Receipt = service.submit(sub, identity.id)
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
            obligations=_obligations_out(receipt.obligations),
        )

    def openapi() -> dict[str, Any]:
        # The tool must be one of the registry's: say so in the contract clients read.
        if app.openapi_schema is None:
            doc = FastAPI.openapi(app)
            device = doc["components"]["schemas"]["DeviceIn"]["properties"]["tool_id"]
            device["enum"] = sorted(tools)
        return app.openapi_schema or {}

    app.openapi = openapi  # type: ignore[method-assign]
    return app
