"""The intake web app: an HTML form for people, a JSON API for systems, a listing for viewers.

Routes
  GET  /adverse-events/new     the form (people: basic auth or trusted proxy header)
  POST /adverse-events/new     submit the form (CSRF token bound to person and form)
  GET  /adverse-events         recent reports and their regulatory clocks: all of them for
                               the reviewer role (`viewers`), one's own for everyone else
  GET  /adverse-events/{ref}   one report in full, to its submitter or a reviewer
  POST /api/v1/adverse-events  submit JSON (systems: bearer token); OpenAPI at /openapi.json
  GET  /api/v1/adverse-events/{ref}  one report as JSON, to its submitting system or a reviewer

Before any password or token is checked, a client address over its request rate, or an
account or address locked after failed sign-ins, is refused (429 with Retry-After). Every
read of a report is audited: a row in the store and a log line (who, when, which
reference; nothing from the report).
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit
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
from surveillance.contracts import AdverseEvent, DiscordanceType, Label, Outcome, Sex
from surveillance.intake import csrf
from surveillance.intake.auth import (
    Identity,
    basic_credentials,
    bearer_identity,
    is_reviewer,
    person_identity,
)
from surveillance.intake.config import IntakeSettings, decode_store_key
from surveillance.intake.errors import PublishError, SubmissionConflict
from surveillance.intake.listing import to_row
from surveillance.intake.middleware import (
    VIA_TRUSTED_PROXY,
    BodySizeLimit,
    CatchAll,
    SecurityHeaders,
    StrictJson,
    TrustedProxy,
)
from surveillance.intake.publisher import Publisher
from surveillance.intake.ratelimit import Lockout, RateLimiter
from surveillance.intake.sealing import Sealer, SealError, join
from surveillance.intake.service import IntakeService, Receipt
from surveillance.intake.store import ReportStore, StoredReport, store_path
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
audit_log = logging.getLogger("surveillance.intake.audit")
log = logging.getLogger(__name__)
NO_SUCH_REPORT = "There is no report with this reference that you may read."

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


def _same_origin(origin: str, scheme: str, netloc: str) -> bool:
    """Whether a browser's Origin names this site (default ports written or not)."""
    default = {"http": 80, "https": 443}

    def parts(url: str) -> tuple[str, str, int | None] | None:
        try:
            split = urlsplit(url)
            return (split.scheme, (split.hostname or ""), split.port or default.get(split.scheme))
        except ValueError:
            return None

    mine, theirs = parts(f"{scheme}://{netloc}"), parts(origin)
    return mine is not None and mine == theirs


def _validation_detail(errors: Sequence[Any]) -> list[dict[str, Any]]:
    """Validation errors without the submitted values: they may hold a patient id, and
    NaN or a lone surrogate cannot even be written back as JSON."""
    return [
        {
            "loc": list(e.get("loc", ())),
            "msg": str(e.get("msg", "")).removeprefix("Value error, "),
            "type": str(e.get("type", "")),
        }
        for e in errors
    ]


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
    monotonic: Callable[[], float] = time.monotonic,
) -> FastAPI:
    """The ASGI app. `clock` returns the facility's aware "now" (tests pin it); `monotonic`
    drives the rate limits and lockouts (tests move it)."""
    cfg = intake or IntakeSettings()
    tools = dict(registry) if registry is not None else load_registry()
    tz = ZoneInfo(cfg.timezone)
    now_fn: Callable[[], datetime] = clock or (lambda: datetime.now(tz))
    sealer = Sealer(decode_store_key(cfg.store_key) if cfg.store_key else None)
    store = ReportStore(store_path(state_dir), cfg.max_records, sealer)
    if resealed := store.seal_clear_rows():
        log.warning("sealed or dropped the private text of %d reports stored in clear", resealed)
    service = IntakeService(publisher, store, pseudonym_key, tools, now_fn)
    limiter = RateLimiter(cfg.rate_per_minute, cfg.rate_burst, clock=monotonic)
    client_limiter = RateLimiter(cfg.client_rate_per_minute, cfg.client_rate_burst, clock=monotonic)
    lockout_times = (cfg.lockout_seconds, cfg.lockout_max_seconds, cfg.lockout_forget_seconds)
    account_lockout = Lockout(cfg.lockout_after_failures, *lockout_times, clock=monotonic)
    client_lockout = Lockout(cfg.client_lockout_after_failures, *lockout_times, clock=monotonic)
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
    # Added innermost first: TrustedProxy, SecurityHeaders, CatchAll, BodySizeLimit,
    # StrictJson, then the app.
    app.add_middleware(StrictJson)
    app.add_middleware(BodySizeLimit, max_bytes=cfg.max_body_bytes)
    app.add_middleware(CatchAll)
    app.add_middleware(SecurityHeaders, hsts_max_age=cfg.hsts_max_age_seconds)
    app.add_middleware(TrustedProxy, networks=cfg.trusted_proxies)

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

    def too_many(message: str, seconds: float) -> HTTPException:
        return HTTPException(429, message, headers={"Retry-After": str(max(1, round(seconds)))})

    def client_gate(request: Request) -> str:
        """The client's address, once it passed its request rate and is not locked out."""
        client = f"client:{request.client.host if request.client else 'unknown'}"
        if not client_limiter.allow(client):
            raise too_many(
                "Too many requests from your address in a short time; wait a minute and try again.",
                client_limiter.retry_after_seconds(),
            )
        if locked := client_lockout.retry_after(client):
            raise too_many(
                "Too many failed sign-ins from your address; try again in "
                f"{max(1, round(locked))} seconds.",
                locked,
            )
        return client

    def sign_in_failed(client: str, account: str | None) -> None:
        for lockout, key, what in (
            (client_lockout, client, "a client address"),
            (account_lockout, account, "an account"),
        ):
            if key is not None and (seconds := lockout.failed(key)):
                log.warning("sign-in lockout of %s for %.0f s after failed sign-ins", what, seconds)

    def person(request: Request) -> Identity:
        client = client_gate(request)
        credentials = basic_credentials(request.headers.get("authorization"))
        account = f"user:{credentials[0]}" if credentials else None
        if account is not None and (locked := account_lockout.retry_after(account)):
            # Refused without looking at the password: a guesser learns nothing meanwhile.
            raise too_many(
                "Too many failed sign-ins for this account; try again in "
                f"{max(1, round(locked))} seconds.",
                locked,
            )
        via_proxy = bool(request.scope.get("state", {}).get(VIA_TRUSTED_PROXY))
        identity = person_identity(request.headers, cfg, via_proxy)
        if identity is None:
            if "authorization" in request.headers:
                sign_in_failed(client, account)
            headers = {"WWW-Authenticate": 'Basic realm="adverse-event intake"'}
            raise HTTPException(
                401,
                "Sign in to report an adverse event.",
                headers=headers if cfg.basic_users else None,
            )
        if account is not None:
            account_lockout.succeeded(account)
        return limited(identity)

    bearer = HTTPBearer(auto_error=False, description="API token issued to the system")

    def system(
        request: Request,
        credentials: HTTPAuthorizationCredentials | None = Depends(bearer),  # noqa: B008
    ) -> Identity:
        client = client_gate(request)
        header = f"Bearer {credentials.credentials}" if credentials else None
        identity = bearer_identity(header, cfg)
        if identity is None:
            if "authorization" in request.headers:
                sign_in_failed(client, None)
            raise HTTPException(
                401,
                "A valid API token is required (Authorization: Bearer).",
                headers={"WWW-Authenticate": "Bearer"},
            )
        return limited(identity)

    def audited(identity: Identity, action: str, references: Sequence[str]) -> None:
        at = datetime.now(UTC)
        store.audit(at, identity.id, action, references)
        audit_log.info(
            "report %s by=%s at=%s references=%s",
            action,
            identity.id,
            at.isoformat(timespec="seconds"),
            ",".join(references) or "-",
        )

    def readable(identity: Identity, reference: str) -> StoredReport:
        """The report, if this identity may read it (audited either way); else 404."""
        report = store.get(reference) if len(reference) <= 64 else None
        if report is None:
            raise HTTPException(404, NO_SUCH_REPORT)
        if report.submitted_by != identity.id and not is_reviewer(identity, cfg):
            audited(identity, "read-refused", [report.reference])
            raise HTTPException(404, NO_SUCH_REPORT)
        audited(identity, "read", [report.reference])
        return report

    def full_event(report: StoredReport) -> tuple[AdverseEvent, str | None]:
        """The event with its private text, or with `NOT_KEPT` and the reason why."""
        try:
            private = sealer.open(report.sealed, report.submission_key)
        except SealError as exc:
            return report.event, str(exc)
        if private is None:
            return report.event, (
                "The narrative and the reporter's name and contact are not kept by this "
                "intake (no store key is configured)."
            )
        return join(report.event, private), None

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> Response:
        return JSONResponse({"detail": _validation_detail(exc.errors())}, 422)

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
        if origin is not None and not _same_origin(origin, request.url.scheme, request.url.netloc):
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
        reviewer = is_reviewer(identity, cfg)
        today = now_fn().date()
        found = store.recent(LISTING_LIMIT, submitted_by=None if reviewer else identity.id)
        audited(identity, "list", [r.reference for r in found])
        return page(
            "reports.html",
            reports=[(r, to_row(r, today)) for r in found],
            reviewer=reviewer,
            outcomes=OUTCOME_LABELS,
            discordances=DISCORDANCE_LABELS,
            today=today,
        )

    @app.get("/adverse-events/{reference}", include_in_schema=False, response_class=HTMLResponse)
    def report_page(
        reference: str,
        identity: Identity = Depends(person),  # noqa: B008
    ) -> HTMLResponse:
        report = readable(identity, reference)
        event, withheld = full_event(report)
        return page(
            "report.html",
            r=report,
            event=event,
            withheld=withheld,
            row=to_row(report, now_fn().date()),
            outcomes=OUTCOME_LABELS,
            discordances=DISCORDANCE_LABELS,
        )

    @app.get(
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
        event, _ = full_event(readable(identity, reference))
        return event

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
