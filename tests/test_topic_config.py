"""Topic configuration: changelogs compacted, raw-PHI topics with a retention, and
`surveillance topics create` checking (and with `--fix` mending) a cluster made earlier.

The embedded Tansu 0.6 broker stores the configuration given at creation, reports it
through DescribeConfigs (filter "all") and applies IncrementalAlterConfigs, so the
whole check-and-fix path runs here against a real broker; it does not enforce
compaction or retention itself (memory storage), which only a real Kafka cluster does.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import timedelta

import pytest

from surveillance.embedded import EmbeddedBroker
from surveillance.settings import KafkaSettings
from surveillance.stream.topics import (
    ConfigMismatch,
    Retention,
    TopicSpec,
    all_topics,
    config_mismatches,
    create_topics,
)

DAY_MS = timedelta(days=1) // timedelta(milliseconds=1)


def test_every_changelog_is_compacted_and_every_phi_topic_has_a_retention() -> None:
    specs = {s.name: s for s in all_topics("surveillance", 4)}
    assert len(specs) == 16 and all(s.partitions == 4 for s in specs.values())
    for table in ("join_state", "case_state", "adverse_state", "case_snapshots"):
        assert specs[f"surveillance-{table}-changelog"].config == {"cleanup.policy": "compact"}
    for topic in ("ai.results.dlq", "reports.final.dlq", "adverse.events.dlq",
                  "cases.join.dlq", "cases.adjudicated.dlq"):
        assert specs[topic].config == {"cleanup.policy": "delete",
                                       "retention.ms": str(14 * DAY_MS)}
    assert specs["adverse.events"].config == {"cleanup.policy": "delete",
                                              "retention.ms": str(30 * DAY_MS)}
    for topic in ("ai.results", "reports.final", "cases.join", "cases.adjudicated",
                  "surveillance.alerts", "surveillance.snapshots"):
        assert specs[topic].config == {}, topic


def test_retention_follows_the_settings() -> None:
    kafka = KafkaSettings(dlq_retention_hours=36, adverse_retention_days=90)
    specs = {s.name: s for s in all_topics("x", 1, Retention.of(kafka))}
    assert specs["reports.final.dlq"].config["retention.ms"] == str(36 * 3_600_000)
    assert specs["adverse.events"].config["retention.ms"] == str(90 * DAY_MS)


def test_mismatches_name_every_differing_or_missing_value() -> None:
    specs = [TopicSpec("a", 1, {"cleanup.policy": "compact"}),
             TopicSpec("b", 1, {"cleanup.policy": "delete", "retention.ms": "100"}),
             TopicSpec("c", 1, {"cleanup.policy": "compact"})]
    found = {"a": {"cleanup.policy": "compact"},
             "b": {"cleanup.policy": "delete", "retention.ms": "604800000"},
             "c": {}}
    assert config_mismatches(specs, found) == [
        ConfigMismatch("b", "retention.ms", "100", "604800000"),
        ConfigMismatch("c", "cleanup.policy", "compact", None),
    ]


def cli(bootstrap: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "surveillance.cli", "topics", "create", *args],
        capture_output=True, text=True, timeout=120,
        env={**os.environ, "SURVEILLANCE_KAFKA__BOOTSTRAP": bootstrap,
             "SURVEILLANCE_KAFKA__PARTITIONS": "2"})


@pytest.fixture
def old_cluster() -> Iterator[EmbeddedBroker]:
    """Topics as the service created them before: right partitions, no configuration."""
    with EmbeddedBroker() as broker:
        create_topics(broker.bootstrap,
                      [TopicSpec(s.name, 2) for s in all_topics("surveillance", 2)])
        yield broker


@pytest.mark.integration
def test_topics_create_reports_then_fixes_an_old_cluster(old_cluster: EmbeddedBroker) -> None:
    checked = cli(old_cluster.bootstrap)
    assert checked.returncode == 2
    mismatches = [x for x in checked.stdout.splitlines() if x.startswith("MISMATCH")]
    assert len(mismatches) == 4 + 6 * 2  # 4 changelogs; 5 DLQs + adverse.events x 2 keys
    assert ("MISMATCH surveillance-case_state-changelog: cleanup.policy is unset, "
            "expected compact") in mismatches
    assert ("MISMATCH ai.results.dlq: retention.ms is unset, expected 1209600000"
            in mismatches)
    assert "run `surveillance topics create --fix`" in checked.stderr
    assert "Traceback" not in checked.stderr

    fixed = cli(old_cluster.bootstrap, "--fix")
    assert fixed.returncode == 0, fixed.stderr
    lines = fixed.stdout.splitlines()
    assert sum(x.startswith("fixed ") for x in lines) == 16
    assert "fixed surveillance-join_state-changelog: cleanup.policy unset -> compact" in lines

    again = cli(old_cluster.bootstrap)
    assert again.returncode == 0, again.stdout + again.stderr
    assert again.stdout.splitlines() == ["0 topics created, 16 already present"]
