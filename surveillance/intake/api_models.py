"""The JSON API's response bodies (they are its OpenAPI contract) and error details."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel

from surveillance.clinical.regulatory_clock import Obligation


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


def validation_detail(errors: Sequence[Any]) -> list[dict[str, Any]]:
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


def obligations_out(items: tuple[Obligation, ...]) -> list[ObligationOut]:
    return [
        ObligationOut(regime=o.regime, recipient=o.recipient, due=o.due.isoformat(), basis=o.basis)
        for o in items
    ]
