"""The consumer-lag gauge's arithmetic (`stream.consumer_lag`), against counts by hand."""

from __future__ import annotations

import logging
from typing import NamedTuple

import pytest

from surveillance.stream.consumer_lag import lag_by_topic, measure
from surveillance.stream.topics import AI_RESULTS, REPORTS_FINAL

CHANGELOG = "surveillance-case_table-changelog"  # a topic the gauge has no label for


class TP(NamedTuple):
    topic: str
    partition: int


def test_lag_sums_each_topics_partitions_from_the_offset_after_the_last_read() -> None:
    read = {TP(AI_RESULTS, 0): 9, TP(AI_RESULTS, 1): 99, TP(REPORTS_FINAL, 0): None}
    high = {TP(AI_RESULTS, 0): 25, TP(AI_RESULTS, 1): 100, TP(REPORTS_FINAL, 0): 7}
    # ai.results: 25 - 10 = 15 and 100 - 100 = 0; reports: nothing read yet, 7 behind.
    assert lag_by_topic(list(high), read, high.get) == {AI_RESULTS: 15, REPORTS_FINAL: 7}


def test_an_unfetched_partition_is_unknown_and_a_topic_without_a_label_is_left_out() -> None:
    assignment = [TP(AI_RESULTS, 0), TP(AI_RESULTS, 1), TP(CHANGELOG, 0)]
    high = {TP(AI_RESULTS, 0): 5, TP(CHANGELOG, 0): 1_000}
    # Partition 1 has no high watermark (not fetched since its assignment): not 0 behind,
    # not counted; a table's changelog is no topic of the gauge.
    assert lag_by_topic(assignment, {TP(AI_RESULTS, 0): 2}, high.get) == {AI_RESULTS: 2}


def test_a_read_offset_past_the_watermark_counts_as_caught_up() -> None:
    # A fetch's watermark can be older than the last record read from a later fetch.
    tp = TP(AI_RESULTS, 3)
    assert lag_by_topic([tp], {tp: 40}, {tp: 30}.get) == {AI_RESULTS: 0}


def test_a_failed_measurement_is_logged_not_raised(caplog: pytest.LogCaptureFixture) -> None:
    class NotStarted:
        def assignment(self) -> set[TP]:
            raise RuntimeError("the consumer has not started")

    with caplog.at_level(logging.ERROR, "surveillance.stream.consumer_lag"):
        measure(NotStarted())  # a timer's exception would stop the whole worker
    assert "consumer lag measurement failed" in caplog.text
