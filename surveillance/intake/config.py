"""Intake settings: who may submit and view, and the limits that protect the service.

Read from the environment with the `SURVEILLANCE_INTAKE_` prefix; dicts and lists as JSON,
e.g. `SURVEILLANCE_INTAKE_API_TOKENS='{"pacs-bridge": "<long random token>"}'`,
`SURVEILLANCE_INTAKE_BASIC_USERS='{"alice": "<password>"}'`,
`SURVEILLANCE_INTAKE_VIEWERS='["user:alice"]'`.
"""

from __future__ import annotations

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class IntakeSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SURVEILLANCE_INTAKE_", extra="ignore")

    #: System name -> bearer token, for the JSON API (identity `system:<name>`).
    api_tokens: dict[str, SecretStr] = Field(default_factory=dict)
    #: User -> password, HTTP basic auth for the form (identity `user:<name>`).
    basic_users: dict[str, SecretStr] = Field(default_factory=dict)
    #: Honour the reverse proxy's user header (identity `user:<value>`). Enable only behind
    #: a proxy that authenticates people and strips this header from client requests.
    trust_proxy_user_header: bool = False
    proxy_user_header: str = "X-Forwarded-User"
    #: Identities allowed to see the list of reports, e.g. `user:alice`.
    viewers: list[str] = Field(default_factory=list)
    #: Key signing the form's CSRF tokens; unset, a random key per process (forms rendered
    #: before a restart are then refused and must be reloaded).
    csrf_secret: SecretStr | None = None
    csrf_max_age_seconds: int = Field(default=8 * 3600, ge=60)
    max_body_bytes: int = Field(default=64 * 1024, ge=1024, le=1024 * 1024)
    #: Sustained requests per minute per identity, and the burst allowed above it.
    rate_per_minute: float = Field(default=30.0, gt=0)
    rate_burst: int = Field(default=20, ge=1)
    publish_attempts: int = Field(default=3, ge=1, le=10)
    publish_timeout_seconds: float = Field(default=5.0, gt=0, le=60)
    #: Reports kept in the local store (listing and resubmission record); oldest pruned.
    max_records: int = Field(default=100_000, ge=100)
    #: The facility's time zone: "today" for due dates and date checks.
    timezone: str = "UTC"
