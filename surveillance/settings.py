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

from pydantic import BaseModel, Field, SecretStr, model_validator
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
    #: SASL (with `SASL_SSL`; `SASL_PLAINTEXT` only with SCRAM, never PLAIN in clear).
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = None
    sasl_username: str = ""
    sasl_password: SecretStr = SecretStr("")
    #: TLS: the CA bundle that signed the brokers' certificates (system CAs when unset),
    #: and a client certificate and key when the brokers require mutual TLS.
    ssl_cafile: Path | None = None
    ssl_certfile: Path | None = None
    ssl_keyfile: Path | None = None
    ssl_check_hostname: bool = True
    #: `retention.ms` of the DLQ topics (original bytes, may hold raw identifiers).
    dlq_retention_hours: float = Field(default=14 * 24, gt=0)
    #: `retention.ms` of `adverse.events` (reports with narrative, as the intake sent them).
    adverse_retention_days: float = Field(default=30, gt=0)

    @model_validator(mode="after")
    def _coherent_security(self) -> KafkaSettings:
        sasl = self.security_protocol.startswith("SASL_")
        if sasl and not (self.sasl_mechanism and self.sasl_username
                         and self.sasl_password.get_secret_value()):
            raise ValueError(f"{self.security_protocol} needs SASL_MECHANISM, SASL_USERNAME "
                             "and SASL_PASSWORD")
        if not sasl and self.sasl_mechanism is not None:
            raise ValueError(f"SASL_MECHANISM is set but SECURITY_PROTOCOL is "
                             f"{self.security_protocol}: use SASL_SSL")
        if self.security_protocol == "SASL_PLAINTEXT" and self.sasl_mechanism == "PLAIN":
            raise ValueError("PLAIN would send the password in clear: use SASL_SSL")
        if (self.ssl_certfile is None) != (self.ssl_keyfile is None):
            raise ValueError("SSL_CERTFILE and SSL_KEYFILE go together (mutual TLS)")
        return self


class DatabaseSettings(BaseModel):
    url: SecretStr = SecretStr("")
    batch_size: int = Field(default=2000, ge=1, le=100_000)
    max_buffer_rows: int = Field(default=200_000, ge=1)
    #: The store writer's /metrics (outage, buffered rows) for Prometheus; 0 turns it off.
    metrics_port: int = Field(default=6067, ge=0, le=65535)
    #: Address the store writer's /metrics binds to (0.0.0.0 in a container).
    metrics_host: str = "127.0.0.1"
    #: Case-level history is kept this long (TimescaleDB policies; `db migrate` applies it).
    retention_days: int = Field(default=3653, ge=366)


class StreamSettings(BaseModel):
    app_id: str = "surveillance"
    #: An AI result with no report this long (event time) after inference is `unlabelled`.
    unlabelled_horizon_hours: float = Field(default=14 * 24, gt=0)
    #: A tool's day is evaluated once its case clock is this far past the day's end.
    evaluation_grace_hours: float = Field(default=24, ge=0)
    #: Join state for an accession is dropped this long (event time) after its last event.
    join_retention_days: float = Field(default=120, gt=0)
    #: A case record leaves the worker's live state this long (event time) after its
    #: latest event; a later correction is resolved from the store (`engine.horizon`).
    #: At least the longest monitor window and the charts' settling (98 days).
    case_horizon_days: float = Field(default=180, ge=98)
    max_event_bytes: int = Field(default=MAX_EVENT_BYTES, ge=1024)
    web_port: int = Field(default=6066, ge=0, le=65535)
    #: Address the worker's /metrics and status pages bind to (0.0.0.0 in a container,
    #: behind a NetworkPolicy: see deploy/k8s/network-policy.yaml).
    web_host: str = "127.0.0.1"
    #: How often regulatory clocks and consumer lag are re-evaluated (wall-clock seconds).
    clock_interval_seconds: float = Field(default=60.0, gt=0)
    store: str = "memory://"
    #: With `rocksdb://`: once Faust assigned the worker its table partitions, bring
    #: those (active and standby) up to their changelogs' ends with a plain consumer
    #: before Faust's recovery, which then reads only what follows
    #: (`stream.preseed_recovery`: a worker with no local state rebuilds ~50x faster).
    preseed_tables: bool = True
    #: Processes the pre-seed reads and writes the partitions with
    #: (`stream.preseed_processes`); 0: one per core (`os.cpu_count()`); 1: this
    #: process alone.
    preseed_processes: int = Field(default=0, ge=0)
    #: Workers that keep each table partition's copy warm besides its owner (Faust's
    #: `table_standby_replicas`): a rebalance onto one recovers only the tail. 0: each
    #: worker holds, on disk, only the partitions it owns.
    standby_replicas: int = Field(default=1, ge=0)
    #: Event dates before this are refused at ingest (DLQ, reason `schema`): a study date in
    #: year 1 is a typo or a default, and date arithmetic downstream must never overflow.
    earliest_event_date: date = date(1980, 1, 1)
    #: How long one fetch of the worker's consumer may wait for data at the broker. Faust
    #: asks for 1,500 ms; a broker that does not answer a waiting fetch when data arrives
    #: (the embedded one) then delays every hop through an internal topic by up to that
    #: (`stream.faust_consumer`). A Kafka cluster answers at once: a larger wait only
    #: means fewer idle fetches there.
    fetch_max_wait_ms: int = Field(default=100, ge=1, le=60_000)
    #: The drift banks' Monte Carlo calibrations (seconds of CPU once per tool reference)
    #: in a child process, off the worker's event loop (`stream.calibration_process`);
    #: false: in the worker, holding every agent and the web server while they run.
    calibration_process: bool = True
    #: A restarted worker rewinds its case table to its tools' snapshots and reads their
    #: partitions again (`stream.case_rewind`), instead of replaying the tools whose
    #: snapshots a crash left behind (a replay is approximate: other alerts and figures).
    #: On by default (session 21); false: the replay, which is also the fallback when a
    #: rewind cannot be made (retention, an eviction, the broker: `stream.case_rewind`).
    case_rewind: bool = True


class MetricsSettings(BaseModel):
    """Bounds on /metrics label values: tools come from the baselines registry."""

    #: Sites exported by name; others are counted under `other`. Empty: the first
    #: `max_sites` distinct sites seen get their own series.
    sites: list[str] = []
    max_sites: int = Field(default=32, ge=0, le=1000)
    #: Distinct versions per registered tool exported by name; later ones under `other`.
    max_versions_per_tool: int = Field(default=16, ge=0, le=1000)


class DicomSettings(BaseModel):
    """`surveillance dicom listen`: the C-STORE SCP and STOW-RS (see interop/)."""

    ae_title: str = Field(default="SURVEILLANCE", min_length=1, max_length=16)
    host: str = "0.0.0.0"
    port: int = Field(default=11112, ge=0, le=65535)
    #: Calling AE titles allowed to associate; empty lets any AE in.
    allowed_calling_aets: list[str] = []
    #: Site id per calling AE title; others (and STOW-RS, `dicom parse`) get `default_site`.
    sites: dict[str, str] = {}
    default_site: str = "default"
    stow_host: str = "127.0.0.1"
    stow_port: int = Field(default=8042, ge=0, le=65535)
    #: How long an AI result waits for an image of its study before it is published with
    #: scanner and acquisition unknown.
    wait_for_images_seconds: float = Field(default=600.0, ge=0)
    #: Time zone of SR content times that carry no TimezoneOffsetFromUTC.
    timezone: str = "UTC"
    #: The spool (acknowledged, not yet published); default: <state_dir>/dicom-spool.sqlite.
    spool_path: Path | None = None
    #: FULL survives a machine crash; NORMAL only a process crash (faster).
    spool_synchronous: Literal["FULL", "NORMAL"] = "FULL"
    #: Topic of the AI results (its dead letters go to `<topic>.dlq`).
    topic: str = "ai.results"
    #: Processes accepting C-STORE on `port` (SO_REUSEPORT; they share the spool; the
    #: first also runs STOW-RS and publishes). More than one uses more than one core.
    processes: int = Field(default=1, ge=1, le=32)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="SURVEILLANCE_", env_nested_delimiter="__", extra="ignore"
    )

    #: `production` (the default) refuses the demo pseudonym key and weak keys; the demo
    #: and the test suite run as `demo` / `test` (see `privacy_key.require_key`).
    mode: Literal["production", "demo", "test"] = "production"
    pseudonym_key: SecretStr = SecretStr(DEMO_PSEUDONYM_KEY)
    #: A Fernet key (`cryptography.fernet.Fernet.generate_key()`): when set, DLQ records
    #: carry the original bytes encrypted with it instead of in clear.
    dlq_encryption_key: SecretStr = SecretStr("")
    kafka: KafkaSettings = KafkaSettings()
    database: DatabaseSettings = DatabaseSettings()
    stream: StreamSettings = StreamSettings()
    dicom: DicomSettings = DicomSettings()
    metrics: MetricsSettings = MetricsSettings()
    baselines_file: Path | None = None
    state_dir: Path = Path(".surveillance")


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
