"""The HTML pages for people: the form, the listing, one report.

  GET  /adverse-events/new     the form (people: basic auth or trusted proxy header)
  POST /adverse-events/new     submit the form (CSRF token bound to person and form)
  GET  /adverse-events         recent reports and their regulatory clocks: all of them for
                               the reviewer role (`viewers`), one's own for everyone else
  GET  /adverse-events/{ref}   one report in full, to its submitter or a reviewer
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jinja2
from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool

from surveillance.intake import csrf
from surveillance.intake.auth import Identity, is_reviewer
from surveillance.intake.errors import PublishError, SubmissionConflict
from surveillance.intake.form_labels import (
    DISCORDANCE_LABELS,
    EVENT_TYPE_LABELS,
    OUTCOME_LABELS,
    READ_LABELS,
    SEX_LABELS,
)
from surveillance.intake.listing import to_row
from surveillance.intake.parts import IntakeParts
from surveillance.intake.service import IntakeService
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


class Templates:
    def __init__(self) -> None:
        self._env = jinja2.Environment(
            loader=jinja2.FileSystemLoader(_HERE / "templates"),
            autoescape=True,
            undefined=jinja2.StrictUndefined,
        )

    def page(self, name: str, status: int = 200, **context: Any) -> HTMLResponse:
        html = self._env.get_template(name).render(**context)
        return HTMLResponse(html, status_code=status)


def same_origin(origin: str, scheme: str, netloc: str) -> bool:
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


def page_routes(p: IntakeParts, templates: Templates, csrf_secret: bytes) -> APIRouter:
    router = APIRouter()
    page, person = templates.page, p.gates.person

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
            "tools": p.tools,
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

    @router.get("/", include_in_schema=False)
    def root() -> RedirectResponse:
        return RedirectResponse("/adverse-events/new", status_code=303)

    @router.get("/static/intake.css", include_in_schema=False)
    def stylesheet() -> FileResponse:
        return FileResponse(_HERE / "static" / "intake.css", media_type="text/css")

    @router.get("/healthz", include_in_schema=False)
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @router.get("/adverse-events/new", include_in_schema=False, response_class=HTMLResponse)
    def new_form(identity: Identity = Depends(person)) -> HTMLResponse:  # noqa: B008
        sid = IntakeService.new_submission_id()
        response = page("form.html", **form_context(identity, sid, {}, {}))
        # Cacheable in the person's browser only, so that Back shows this same form (same
        # submission id) and a second submit is recognised as a resubmission.
        response.headers["Cache-Control"] = "private, no-cache"
        return response

    @router.post("/adverse-events/new", include_in_schema=False, response_class=HTMLResponse)
    async def submit_form(
        request: Request,
        identity: Identity = Depends(person),  # noqa: B008
    ) -> HTMLResponse:
        origin = request.headers.get("origin")
        if origin is not None and not same_origin(origin, request.url.scheme, request.url.netloc):
            raise HTTPException(403, "This form can only be submitted from this site.")
        raw = await request.form()
        values = {k: v for k, v in raw.items() if isinstance(v, str)}
        sid = values.get("submission_id", "")
        token = values.get("csrf_token", "")
        valid_sid = 8 <= len(sid) <= 64 and sid.replace("-", "").replace("_", "").isalnum()
        if not valid_sid or not csrf.check_token(
            csrf_secret, token, identity.id, sid, int(time.time()), p.cfg.csrf_max_age_seconds
        ):
            raise HTTPException(
                403, "This form has expired or did not come from this site: open a new form."
            )
        errors: dict[str, str]
        try:
            sub = AdverseEventSubmission.model_validate(form_to_nested(values))
        except ValidationError as exc:
            errors = {**check_form_fields(values, p.tools, p.now().date()), **field_errors(exc)}
        else:
            errors = check_submission(sub, p.tools, p.now().date())
        if errors:
            return page("form.html", 422, **form_context(identity, sid, values, errors))
        try:
            receipt = await run_in_threadpool(p.service.submit, sub, identity.id)
        except PublishError:
            return page(
                "form.html", 503, **form_context(identity, sid, values, {}, not_recorded=True)
            )
        except SubmissionConflict as exc:
            return page(
                "form.html", 409, **form_context(identity, sid, values, {}, conflict=exc.reference)
            )
        return page("result.html", receipt=receipt, outcomes=OUTCOME_LABELS)

    @router.get("/adverse-events", include_in_schema=False, response_class=HTMLResponse)
    def listing(identity: Identity = Depends(person)) -> HTMLResponse:  # noqa: B008
        reviewer = is_reviewer(identity, p.cfg)
        today = p.now().date()
        found = p.store.recent(LISTING_LIMIT, submitted_by=None if reviewer else identity.id)
        p.reader.audited(identity, "list", [r.reference for r in found])
        return page(
            "reports.html",
            reports=[(r, to_row(r, today)) for r in found],
            reviewer=reviewer,
            outcomes=OUTCOME_LABELS,
            discordances=DISCORDANCE_LABELS,
            today=today,
        )

    @router.get(
        "/adverse-events/{reference}", include_in_schema=False, response_class=HTMLResponse
    )
    def report_page(
        reference: str,
        identity: Identity = Depends(person),  # noqa: B008
    ) -> HTMLResponse:
        report = p.reader.readable(identity, reference)
        event, withheld = p.reader.full_event(report)
        return page(
            "report.html",
            r=report,
            event=event,
            withheld=withheld,
            row=to_row(report, p.now().date()),
            outcomes=OUTCOME_LABELS,
            discordances=DISCORDANCE_LABELS,
        )

    return router
