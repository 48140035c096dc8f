"""Topic names and explicit provisioning (`surveillance topics create`).

Every topic the service reads or writes is created up front with its partition count,
including the Faust table changelogs: we never rely on broker auto-creation (on the
embedded broker an auto-created source topic made a Faust `group_by` count twice).

Each topic also gets the configuration its contents need: the table changelogs
`cleanup.policy=compact` (with the default `delete`, a real cluster drops table state
older than 7 days and a restarted worker recovers a table with holes), the DLQs and
`adverse.events` a bounded `retention.ms` (they hold raw identifiers and narrative).
On a cluster made earlier, `topics create` reads the existing topics' configuration
back and reports (or, with `--fix`, alters) every value that differs.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from surveillance.errors import SurveillanceError
from surveillance.settings import KafkaSettings

AI_RESULTS = "ai.results"
REPORTS_FINAL = "reports.final"
ADVERSE_EVENTS = "adverse.events"
CASES_JOIN = "cases.join"
CASES_ADJUDICATED = "cases.adjudicated"
ALERTS = "surveillance.alerts"
SNAPSHOTS = "surveillance.snapshots"

INPUT_TOPICS = (AI_RESULTS, REPORTS_FINAL, ADVERSE_EVENTS)
#: Topics whose bad records go to `<topic>.dlq`: the inputs, and the internal topics the
#: agents read (anything with broker access can write them; see `stream.internal`).
DEAD_LETTERED = (*INPUT_TOPICS, CASES_JOIN, CASES_ADJUDICATED)

#: Faust tables (name -> the topic whose partitions it follows).
TABLES = ("join_state", "case_state", "adverse_state", "case_snapshots")


class TopicError(SurveillanceError):
    """Topics could not be listed or created on the broker."""


def dlq(topic: str) -> str:
    return f"{topic}.dlq"


def changelog(app_id: str, table: str) -> str:
    return f"{app_id}-{table}-changelog"


@dataclass(frozen=True)
class TopicSpec:
    name: str
    partitions: int
    #: Topic-level configuration set at creation and checked on an existing topic.
    config: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Retention:
    """How long the topics holding raw identifiers keep them."""

    dlq_hours: float = 14 * 24
    adverse_days: float = 30

    @classmethod
    def of(cls, kafka: KafkaSettings) -> Retention:
        return cls(dlq_hours=kafka.dlq_retention_hours, adverse_days=kafka.adverse_retention_days)


COMPACTED = {"cleanup.policy": "compact"}


def _retention(hours: float) -> dict[str, str]:
    return {"cleanup.policy": "delete", "retention.ms": str(round(hours * 3_600_000))}


def all_topics(
    app_id: str, partitions: int, retention: Retention | None = None
) -> list[TopicSpec]:
    """Every topic of the service with its configuration (retention: the defaults)."""
    kept = retention or Retention()
    specs = [TopicSpec(n, partitions) for n in (*INPUT_TOPICS, CASES_JOIN, CASES_ADJUDICATED,
                                                ALERTS, SNAPSHOTS)]
    # `adverse.events` holds each report as the intake sent it (narrative, reporter).
    specs[INPUT_TOPICS.index(ADVERSE_EVENTS)] = TopicSpec(
        ADVERSE_EVENTS, partitions, _retention(kept.adverse_days * 24))
    specs += [TopicSpec(dlq(t), partitions, _retention(kept.dlq_hours)) for t in DEAD_LETTERED]
    specs += [TopicSpec(changelog(app_id, t), partitions, COMPACTED) for t in TABLES]
    return specs


@dataclass(frozen=True)
class ConfigMismatch:
    topic: str
    key: str
    expected: str
    found: str | None  # None: not set on the topic (the embedded broker lists only those)


@dataclass
class Provisioned:
    """What `provision` did: topics created (with their configuration), topics already
    there, and the configuration that differs on those (reported, or fixed)."""

    created: list[TopicSpec] = field(default_factory=list)
    present: list[str] = field(default_factory=list)
    mismatches: list[ConfigMismatch] = field(default_factory=list)
    fixed: list[ConfigMismatch] = field(default_factory=list)


def create_topics(
    bootstrap: str,
    specs: list[TopicSpec],
    replication_factor: int = 1,
    client_options: Mapping[str, Any] | None = None,
) -> list[str]:
    """Create the topics that do not exist yet; return the names created."""
    done = provision(bootstrap, specs, replication_factor, client_options)
    return [s.name for s in done.created]


def provision(
    bootstrap: str,
    specs: list[TopicSpec],
    replication_factor: int = 1,
    client_options: Mapping[str, Any] | None = None,
    fix: bool = False,
) -> Provisioned:
    """Create missing topics with their configuration; check the existing ones.

    Works against the embedded broker and a real Kafka cluster alike. An existing topic
    with a different partition count is an error: silently living with it would break
    co-partitioning of the join. A configuration value that differs is reported, and
    altered when `fix` is set. `client_options`: TLS/SASL (`kafka_clients.client_options`).
    """
    from kafka import KafkaAdminClient
    from kafka.admin import NewTopic
    from kafka.errors import KafkaError, TopicAlreadyExistsError

    try:
        admin = KafkaAdminClient(
            bootstrap_servers=bootstrap, request_timeout_ms=10_000, **(client_options or {})
        )
    except KafkaError as exc:
        raise TopicError(
            f"no Kafka broker answers at {bootstrap}: start it, or set "
            "SURVEILLANCE_KAFKA__BOOTSTRAP (and the TLS/SASL settings it needs)"
        ) from exc
    done = Provisioned()
    try:
        existing = partition_counts(admin)
        for spec in specs:
            if spec.name in existing:
                if existing[spec.name] != spec.partitions:
                    raise TopicError(
                        f"topic {spec.name} exists with {existing[spec.name]} partitions, "
                        f"expected {spec.partitions}: recreate it or set "
                        "SURVEILLANCE_KAFKA__PARTITIONS to match"
                    )
                done.present.append(spec.name)
                continue
            try:
                admin.create_topics(
                    [NewTopic(spec.name, spec.partitions, replication_factor,
                              topic_configs=dict(spec.config))],
                    validate_only=False,
                )
                done.created.append(spec)
            except TopicAlreadyExistsError:
                done.present.append(spec.name)
        checked = [s for s in specs if s.config]
        done.mismatches = config_mismatches(
            checked, topic_configs(admin, [s.name for s in checked]))
        if fix and done.mismatches:
            _alter(admin, done.mismatches)
            done.fixed, done.mismatches = done.mismatches, []
        return done
    except KafkaError as exc:
        raise TopicError(f"creating topics on {bootstrap} failed: {exc}") from exc
    finally:
        admin.close()


def config_mismatches(
    specs: list[TopicSpec], found: Mapping[str, Mapping[str, str | None]]
) -> list[ConfigMismatch]:
    """Every (topic, key) whose value on the broker is not the one the spec sets."""
    return [
        ConfigMismatch(spec.name, key, want, found.get(spec.name, {}).get(key))
        for spec in specs
        for key, want in sorted(spec.config.items())
        if found.get(spec.name, {}).get(key) != want
    ]


def topic_configs(admin: Any, names: list[str]) -> dict[str, dict[str, str | None]]:
    """Each topic's configuration as the broker reports it: Kafka lists every key
    (defaults included), the embedded Tansu broker only the keys set on the topic."""
    from kafka.admin import ConfigResource, ConfigResourceType

    if not names:
        return {}
    answer = admin.describe_configs(
        [ConfigResource(ConfigResourceType.TOPIC, n) for n in names], config_filter="all"
    )
    per_topic = answer.get("topic", {})
    return {
        n: {k: (v.get("value") if isinstance(v, dict) else v)
            for k, v in (per_topic.get(n) or {}).items()}
        for n in names
    }


def _alter(admin: Any, mismatches: list[ConfigMismatch]) -> None:
    from kafka.admin import ConfigResource, ConfigResourceType

    per_topic: dict[str, dict[str, str]] = {}
    for m in mismatches:
        per_topic.setdefault(m.topic, {})[m.key] = m.expected
    # The broker validates the keys; kafka-python's own check asks for the "dynamic"
    # configs, which some brokers (the embedded one) do not list.
    answer = admin.alter_configs(
        [ConfigResource(ConfigResourceType.TOPIC, t, configs=c) for t, c in per_topic.items()],
        raise_on_unknown=False,
    )
    failed = {t: r for t, r in answer.get("topic", {}).items() if r != "OK"}
    if failed:
        raise TopicError(f"altering topic configuration failed: {failed}")


def partition_counts(admin: object) -> dict[str, int]:
    """Partition count per existing topic (a kafka-python `KafkaAdminClient`)."""
    meta = admin.describe_topics()  # type: ignore[attr-defined]
    return {t["name"]: len(t["partitions"]) for t in meta if not t.get("error_code")}
