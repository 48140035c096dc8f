"""Topic names and explicit provisioning (`surveillance topics create`).

Every topic the service reads or writes is created up front with its partition count,
including the Faust table changelogs: we never rely on broker auto-creation (on the
embedded broker an auto-created source topic made a Faust `group_by` count twice).
"""

from __future__ import annotations

from dataclasses import dataclass

from surveillance.errors import SurveillanceError

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
TABLES = ("join_state", "case_state", "adverse_state")


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


def all_topics(app_id: str, partitions: int) -> list[TopicSpec]:
    names = [
        *INPUT_TOPICS,
        *(dlq(t) for t in DEAD_LETTERED),
        CASES_JOIN,
        CASES_ADJUDICATED,
        ALERTS,
        SNAPSHOTS,
        *(changelog(app_id, t) for t in TABLES),
    ]
    return [TopicSpec(n, partitions) for n in names]


def create_topics(
    bootstrap: str, specs: list[TopicSpec], replication_factor: int = 1
) -> list[str]:
    """Create the topics that do not exist yet; return the names created.

    Works against the embedded broker and a real Kafka cluster alike. An existing topic
    with a different partition count is an error: silently living with it would break
    co-partitioning of the join.
    """
    from kafka import KafkaAdminClient
    from kafka.admin import NewTopic
    from kafka.errors import KafkaError, TopicAlreadyExistsError

    try:
        admin = KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=10_000)
    except KafkaError as exc:
        raise TopicError(
            f"no Kafka broker answers at {bootstrap}: start it, or set "
            "SURVEILLANCE_KAFKA__BOOTSTRAP"
        ) from exc
    try:
        existing = partition_counts(admin)
        created: list[str] = []
        for spec in specs:
            if spec.name in existing:
                if existing[spec.name] != spec.partitions:
                    raise TopicError(
                        f"topic {spec.name} exists with {existing[spec.name]} partitions, "
                        f"expected {spec.partitions}: recreate it or set "
                        "SURVEILLANCE_KAFKA__PARTITIONS to match"
                    )
                continue
            try:
                admin.create_topics(
                    [NewTopic(spec.name, spec.partitions, replication_factor)],
                    validate_only=False,
                )
                created.append(spec.name)
            except TopicAlreadyExistsError:
                continue
        return created
    except KafkaError as exc:
        raise TopicError(f"creating topics on {bootstrap} failed: {exc}") from exc
    finally:
        admin.close()


def partition_counts(admin: object) -> dict[str, int]:
    """Partition count per existing topic (a kafka-python `KafkaAdminClient`)."""
    meta = admin.describe_topics()  # type: ignore[attr-defined]
    return {t["name"]: len(t["partitions"]) for t in meta if not t.get("error_code")}
