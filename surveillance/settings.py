"""Settings: one pydantic-settings object, `SURVEILLANCE_` prefix, nested with `__`.

Example: `SURVEILLANCE_KAFKA__BOOTSTRAP=kafka-1:9092`,
`SURVEILLANCE_DATABASE__URL=postgresql://surv@tsdb/surveillance`,
`SURVEILLANCE_PSEUDONYM_KEY=...` (required outside the embedded demo).
"""

from __future__ import annotations

from datetime import date
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from surveillance.contracts import MAX_EVENT_BYTES

#: Used only by the embedded demo and tests; production must set its own key.
DEMO_PSEUDONYM_KEY = "embedded-demo-key-not-for-production"


class KafkaSettings(BaseModel):
    bootstrap: str = "localhost:9092"
    partitions: int = Field(default=4, ge=1, le=1024)
    replication_factor: int = Field(default=1, ge=1, le=7)
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    #: Embedded broker only: correct its log-end offsets (see embedded/log_end.py).
    probe_log_end: bool = False


class DatabaseSettings(BaseModel):
    url: SecretStr = SecretStr("")
    batch_size: int = Field(default=2000, ge=1, le=100_000)
    max_buffer_rows: int = Field(default=200_000, ge=1)
    #: The store writer's /metrics (outage, buffered rows) for Prometheus; 0 turns it off.
    metrics_port: int = Field(default=6067, ge=0, le=65535)
    #: Address the store writer's /metrics binds to (0.0.0.0 in a container).
    metrics_host: str = "127.0.0.1"


class StreamSettings(BaseModel):
    app_id: str = "surveillance"
    #: An AI result with no report this long (event time) after inference is `unlabelled`.
    unlabelled_horizon_hours: float = Field(default=14 * 24, gt=0)
    #: Join state for an accession is dropped this long (event time) after its last event.
    join_retention_days: float = Field(default=120, gt=0)
    max_event_bytes: int = Field(default=MAX_EVENT_BYTES, ge=1024)
    web_port: int = Field(default=6066, ge=0, le=65535)
    #: Address the worker's /metrics and status pages bind to (0.0.0.0 in a container).
    web_host: str = "127.0.0.1"
    #: How often regulatory clocks and consumer lag are re-evaluated (wall-clock seconds).
    clock_interval_seconds: float = Field(default=60.0, gt=0)
    store: str = "memory://"
    #: Event dates before this are refused at ingest (DLQ, reason `schema`): a study date in
    #: year 1 is a typo or a default, and date arithmetic downstream must never overflow.
    earliest_event_date: date = date(1980, 1, 1)


class MetricsSettings(BaseModel):
    """Bounds on /metrics label values: tools come from the baselines registry."""

    #: Sites exported by name; others are counted under `other`. Empty: the first
    #: `max_sites` distinct sites seen get their own series.
    sites: list[str] = []
    max_sites: int = Field(default=32, ge=0, le=1000)
    #: Distinct versions per registered tool exported by name; later ones under `other`.
    max_versions_per_tool: int = Field(default=16, ge=0, le=1000)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="SURVEILLANCE_", env_nested_delimiter="__", extra="ignore"
    )

    pseudonym_key: SecretStr = SecretStr(DEMO_PSEUDONYM_KEY)
    kafka: KafkaSettings = KafkaSettings()
    database: DatabaseSettings = DatabaseSettings()
    stream: StreamSettings = StreamSettings()
    metrics: MetricsSettings = MetricsSettings()
    baselines_file: Path | None = None
    state_dir: Path = Path(".surveillance")


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
