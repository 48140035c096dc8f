"""Who may come in: the FastAPI dependencies that sign people and systems in.

Before any password or token is checked, a client address over its request rate, or an
account or address locked after failed sign-ins, is refused (429 with Retry-After).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from surveillance.intake.auth import Identity, basic_credentials, bearer_identity, person_identity
from surveillance.intake.config import IntakeSettings
from surveillance.intake.middleware import VIA_TRUSTED_PROXY
from surveillance.intake.ratelimit import Lockout, RateLimiter

log = logging.getLogger(__name__)
bearer = HTTPBearer(auto_error=False, description="API token issued to the system")


def too_many(message: str, seconds: float) -> HTTPException:
    return HTTPException(429, message, headers={"Retry-After": str(max(1, round(seconds)))})


class Gates:
    """Rate limits and sign-in lockouts in front of the two ways in: `person` (basic auth
    or a trusted proxy's header) and `system` (bearer token). `monotonic` drives the
    limits and lockouts (tests move it)."""

    def __init__(self, cfg: IntakeSettings, monotonic: Callable[[], float]) -> None:
        self._cfg = cfg
        self._limiter = RateLimiter(cfg.rate_per_minute, cfg.rate_burst, clock=monotonic)
        self._client_limiter = RateLimiter(
            cfg.client_rate_per_minute, cfg.client_rate_burst, clock=monotonic
        )
        times = (cfg.lockout_seconds, cfg.lockout_max_seconds, cfg.lockout_forget_seconds)
        self._account_lockout = Lockout(cfg.lockout_after_failures, *times, clock=monotonic)
        self._client_lockout = Lockout(cfg.client_lockout_after_failures, *times, clock=monotonic)

    def _limited(self, identity: Identity) -> Identity:
        if not self._limiter.allow(identity.id):
            raise HTTPException(
                429,
                "Too many requests from you in a short time; wait a minute and try again.",
                headers={"Retry-After": str(self._limiter.retry_after_seconds())},
            )
        return identity

    def _client_gate(self, request: Request) -> str:
        """The client's address, once it passed its request rate and is not locked out."""
        client = f"client:{request.client.host if request.client else 'unknown'}"
        if not self._client_limiter.allow(client):
            raise too_many(
                "Too many requests from your address in a short time; wait a minute and try again.",
                self._client_limiter.retry_after_seconds(),
            )
        if locked := self._client_lockout.retry_after(client):
            raise too_many(
                "Too many failed sign-ins from your address; try again in "
                f"{max(1, round(locked))} seconds.",
                locked,
            )
        return client

    def _sign_in_failed(self, client: str, account: str | None) -> None:
        for lockout, key, what in (
            (self._client_lockout, client, "a client address"),
            (self._account_lockout, account, "an account"),
        ):
            if key is not None and (seconds := lockout.failed(key)):
                log.warning("sign-in lockout of %s for %.0f s after failed sign-ins", what, seconds)

    def person(self, request: Request) -> Identity:
        client = self._client_gate(request)
        credentials = basic_credentials(request.headers.get("authorization"))
        account = f"user:{credentials[0]}" if credentials else None
        if account is not None and (locked := self._account_lockout.retry_after(account)):
            # Refused without looking at the password: a guesser learns nothing meanwhile.
            raise too_many(
                "Too many failed sign-ins for this account; try again in "
                f"{max(1, round(locked))} seconds.",
                locked,
            )
        via_proxy = bool(request.scope.get("state", {}).get(VIA_TRUSTED_PROXY))
        identity = person_identity(request.headers, self._cfg, via_proxy)
        if identity is None:
            if "authorization" in request.headers:
                self._sign_in_failed(client, account)
            headers = {"WWW-Authenticate": 'Basic realm="adverse-event intake"'}
            raise HTTPException(
                401,
                "Sign in to report an adverse event.",
                headers=headers if self._cfg.basic_users else None,
            )
        if account is not None:
            self._account_lockout.succeeded(account)
        return self._limited(identity)

    def system(
        self,
        request: Request,
        credentials: HTTPAuthorizationCredentials | None = Depends(bearer),  # noqa: B008
    ) -> Identity:
        client = self._client_gate(request)
        header = f"Bearer {credentials.credentials}" if credentials else None
        identity = bearer_identity(header, self._cfg)
        if identity is None:
            if "authorization" in request.headers:
                self._sign_in_failed(client, None)
            raise HTTPException(
                401,
                "A valid API token is required (Authorization: Bearer).",
                headers={"WWW-Authenticate": "Bearer"},
            )
        return self._limited(identity)
