"""The intake web app: an HTML form for people (`pages`), a JSON API for systems (`api`),
a listing for viewers; `gates` signs them in, `reading` decides and audits who reads what.

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
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from fastapi import FastAPI, HTTPException, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from surveillance.clinical.baselines import ToolBaseline, load_registry
from surveillance.intake.api import api_routes
from surveillance.intake.api_models import validation_detail
from surveillance.intake.config import IntakeSettings, decode_store_key
from surveillance.intake.gates import Gates
from surveillance.intake.middleware import (
    BodySizeLimit,
    CatchAll,
    SecurityHeaders,
    StrictJson,
    TrustedProxy,
)
from surveillance.intake.pages import Templates, page_routes
from surveillance.intake.parts import IntakeParts
from surveillance.intake.publisher import Publisher
from surveillance.intake.reading import Reader
from surveillance.intake.sealing import Sealer
from surveillance.intake.service import IntakeService
from surveillance.intake.store import ReportStore, store_path

log = logging.getLogger(__name__)


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
    parts = IntakeParts(
        cfg=cfg,
        tools=tools,
        now=now_fn,
        store=store,
        service=IntakeService(publisher, store, pseudonym_key, tools, now_fn),
        gates=Gates(cfg, monotonic),
        reader=Reader(store, sealer, cfg),
    )
    csrf_secret = (
        cfg.csrf_secret.get_secret_value().encode() if cfg.csrf_secret else secrets.token_bytes(32)
    )
    templates = Templates()

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

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> Response:
        return JSONResponse({"detail": validation_detail(exc.errors())}, 422)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> Response:
        if request.url.path.startswith("/api/"):
            return JSONResponse({"detail": exc.detail}, exc.status_code, headers=exc.headers)
        response = templates.page("error.html", exc.status_code, message=str(exc.detail))
        for k, v in (exc.headers or {}).items():
            response.headers[k] = v
        return response

    app.include_router(page_routes(parts, templates, csrf_secret))
    app.include_router(api_routes(parts))

    def openapi() -> dict[str, Any]:
        # The tool must be one of the registry's: say so in the contract clients read.
        if app.openapi_schema is None:
            doc = FastAPI.openapi(app)
            device = doc["components"]["schemas"]["DeviceIn"]["properties"]["tool_id"]
            device["enum"] = sorted(tools)
        return app.openapi_schema or {}

    app.openapi = openapi  # type: ignore[method-assign]
    return app
