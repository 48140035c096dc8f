"""Who is asking: bearer tokens for systems, basic auth or a trusted proxy's header for people.

Secrets are compared with `hmac.compare_digest` against every configured entry, so the
time taken does not tell which entry nearly matched.
"""

from __future__ import annotations

import base64
import binascii
import hmac
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from pydantic import SecretStr

from surveillance.intake.config import IntakeSettings


@dataclass(frozen=True)
class Identity:
    kind: Literal["system", "user"]
    name: str

    @property
    def id(self) -> str:
        return f"{self.kind}:{self.name}"


def _match(secrets: Mapping[str, SecretStr], name: str | None, given: str) -> str | None:
    found: str | None = None
    given_b = given.encode()
    for entry, secret in secrets.items():
        name_ok = name is None or hmac.compare_digest(entry.encode(), name.encode())
        secret_ok = hmac.compare_digest(secret.get_secret_value().encode(), given_b)
        if name_ok and secret_ok and found is None:
            found = entry
    return found


def bearer_identity(authorization: str | None, settings: IntakeSettings) -> Identity | None:
    """A system, from `Authorization: Bearer <token>`."""
    if not authorization:
        return None
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    name = _match(settings.api_tokens, None, token.strip())
    return Identity("system", name) if name is not None else None


def basic_credentials(authorization: str | None) -> tuple[str, str] | None:
    """(user, password) from an `Authorization: Basic` header, None when there is none."""
    if not authorization:
        return None
    scheme, _, encoded = authorization.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        user, sep, password = base64.b64decode(encoded, validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return None
    if not sep or not user:
        return None
    return user, password


def person_identity(
    headers: Mapping[str, str], settings: IntakeSettings, via_trusted_proxy: bool = False
) -> Identity | None:
    """A person, from HTTP basic auth or the user header of a trusted reverse proxy."""
    authorization = headers.get("authorization")
    if authorization:
        credentials = basic_credentials(authorization)
        if credentials is None:
            return None
        name = _match(settings.basic_users, *credentials)
        return Identity("user", name) if name is not None else None
    if settings.trust_proxy_user_header and via_trusted_proxy:
        user = headers.get(settings.proxy_user_header.lower(), "").strip()
        if user:
            return Identity("user", user)
    return None


def is_reviewer(identity: Identity, settings: IntakeSettings) -> bool:
    """In the reviewer role (`viewers`): may read every report, not only their own."""
    return identity.id in settings.viewers
