"""Intake settings: who may submit and read, and the limits that protect the service.

Read from the environment with the `SURVEILLANCE_INTAKE_` prefix; dicts and lists as JSON,
e.g. `SURVEILLANCE_INTAKE_API_TOKENS='{"pacs-bridge": "<long random token>"}'`,
`SURVEILLANCE_INTAKE_BASIC_USERS='{"alice": "<password>"}'`,
`SURVEILLANCE_INTAKE_VIEWERS='["user:alice"]'`,
`SURVEILLANCE_INTAKE_TRUSTED_PROXIES='["10.0.0.0/8"]'`.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
from typing import Self

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

STORE_KEY_HELP = (
    "the store key must be 32 random bytes, base64-encoded: make one with `openssl rand -base64 32`"
)


def decode_store_key(secret: SecretStr) -> bytes:
    """The AES-256 key of the intake's store from its base64 text; `ValueError` when unfit."""
    try:
        key = base64.b64decode(secret.get_secret_value().strip(), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError(STORE_KEY_HELP) from None
    if len(key) != 32:
        raise ValueError(STORE_KEY_HELP)
    return key


class IntakeSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SURVEILLANCE_INTAKE_", extra="ignore")

    #: System name -> bearer token, for the JSON API (identity `system:<name>`).
    api_tokens: dict[str, SecretStr] = Field(default_factory=dict)
    #: User -> password, HTTP basic auth for the form (identity `user:<name>`).
    basic_users: dict[str, SecretStr] = Field(default_factory=dict)
    #: Honour the reverse proxy's user header (identity `user:<value>`), only on requests
    #: that come from one of `trusted_proxies`, which must authenticate people and set
    #: (overwrite) this header.
    trust_proxy_user_header: bool = False
    proxy_user_header: str = "X-Forwarded-User"
    #: Addresses or networks of the TLS-terminating reverse proxies in front of the intake.
    #: From them only, X-Forwarded-Proto / -Host / -For give the scheme, host and client
    #: address (for the form's origin check, HSTS and the per-client limits).
    trusted_proxies: list[IPNetwork] = Field(default_factory=list)
    #: The reviewer role: identities (e.g. `user:alice`) that may read every report.
    #: Everyone else reads only the reports they submitted. Every read is audited.
    viewers: list[str] = Field(default_factory=list)
    #: AES-256-GCM key (base64 of 32 bytes) sealing each report's narrative and reporter
    #: name and contact in the local store. Unset: those fields are not kept there at all.
    store_key: SecretStr | None = None
    #: Key signing the form's CSRF tokens; unset, a random key per process (forms rendered
    #: before a restart are then refused and must be reloaded).
    csrf_secret: SecretStr | None = None
    csrf_max_age_seconds: int = Field(default=8 * 3600, ge=60)
    max_body_bytes: int = Field(default=64 * 1024, ge=1024, le=1024 * 1024)
    #: Sustained requests per minute per identity, and the burst allowed above it.
    rate_per_minute: float = Field(default=30.0, gt=0)
    rate_burst: int = Field(default=20, ge=1)
    #: The same per client address, checked before authentication.
    client_rate_per_minute: float = Field(default=120.0, gt=0)
    client_rate_burst: int = Field(default=60, ge=1)
    #: Failed sign-ins in a row that lock an account, or a client address (which many
    #: people may share behind one proxy or NAT), and the first lockout; each further
    #: failure after a lockout doubles it, up to the maximum. Failures are forgotten after
    #: `lockout_forget_seconds` without one.
    lockout_after_failures: int = Field(default=5, ge=1)
    client_lockout_after_failures: int = Field(default=20, ge=1)
    lockout_seconds: float = Field(default=30.0, gt=0)
    lockout_max_seconds: float = Field(default=900.0, gt=0)
    lockout_forget_seconds: float = Field(default=3600.0, gt=0)
    #: Strict-Transport-Security max-age sent on replies served over HTTPS (0: not sent).
    hsts_max_age_seconds: int = Field(default=365 * 24 * 3600, ge=0)
    publish_attempts: int = Field(default=3, ge=1, le=10)
    publish_timeout_seconds: float = Field(default=5.0, gt=0, le=60)
    #: Reports kept in the local store (listing and resubmission record); oldest pruned.
    max_records: int = Field(default=100_000, ge=100)
    #: The facility's time zone: "today" for due dates and date checks.
    timezone: str = "UTC"

    @field_validator("store_key")
    @classmethod
    def _store_key_fits(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            decode_store_key(value)
        return value

    @model_validator(mode="after")
    def _proxy_user_needs_a_proxy(self) -> Self:
        if self.trust_proxy_user_header and not self.trusted_proxies:
            raise ValueError(
                "SURVEILLANCE_INTAKE_TRUST_PROXY_USER_HEADER needs "
                "SURVEILLANCE_INTAKE_TRUSTED_PROXIES: the proxy's address, so that no one "
                "else can set the user header"
            )
        if self.lockout_max_seconds < self.lockout_seconds:
            raise ValueError("lockout_max_seconds must be at least lockout_seconds")
        return self
