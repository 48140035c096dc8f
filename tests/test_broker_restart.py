"""The embedded broker killed and started again, empty, under a running worker.

Before: the worker logged "Heartbeat failed ... re-joining group" and then waited for ever
(90 s: no error, no exit). Now its broker watch sees the logs' ends go back, logs one line
and exits 3. The decision itself (`LogEndWatch`) is tested apart: a log that grows, or a
topic that is unreachable for a while, is never taken for a lost log.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from surveillance.embedded import EmbeddedBroker
from surveillance.simulate import simulate
from surveillance.stream.broker_watch import EXIT_BROKER_LOST_DATA, LogEndWatch, Loss
from surveillance.stream.produce import produce
from surveillance.stream.runner import WorkerProcess, wait_for_counts
from surveillance.stream.topics import all_topics, create_topics
from tests.test_pipeline_integration import assert_no_crash, expected_counts

PARTITIONS = 4  # the settings' default
LOST = "restarted without its data"

#: Per look at the broker: log ends that grew by these amounts, or None for a partition
#: the broker did not answer for (topic unknown for now, broker away).
_looks = st.lists(
    st.lists(st.one_of(st.none(), st.integers(0, 1_000)), min_size=3, max_size=3),
    min_size=1, max_size=30,
)


def _ends(growth: list[list[int | None]]) -> list[dict[tuple[str, int], int]]:
    """The answers of a broker whose logs only grow (some partitions missing at times)."""
    totals = [0, 0, 0]
    answers = []
    for look in growth:
        answer = {}
        for p, grown in enumerate(look):
            if grown is not None:
                totals[p] += grown
                answer[("t", p)] = totals[p]
        answers.append(answer)
    return answers


@given(_looks)
def test_logs_that_grow_or_go_unanswered_are_never_a_loss(
        growth: list[list[int | None]]) -> None:
    watch = LogEndWatch()
    assert [watch.observe(a) for a in _ends(growth)] == [None] * len(growth)


@given(_looks, st.integers(0, 2), st.data())
def test_any_log_end_below_one_seen_before_is_a_loss(
        growth: list[list[int | None]], p: int, data: st.DataObject) -> None:
    answers = _ends([*growth, [1, 1, 1]])  # the last look sees every partition at >= 1
    watch = LogEndWatch()
    for a in answers:
        watch.observe(a)
    seen = answers[-1][("t", p)]
    now = data.draw(st.integers(0, seen - 1))
    # The broker is away for a look, then answers with the lower end.
    assert watch.observe({}) is None
    assert watch.observe({**answers[-1], ("t", p): now}) == Loss("t", p, seen, now)


def test_a_topic_answered_again_after_an_absence_is_judged_against_before() -> None:
    watch = LogEndWatch()
    assert watch.observe({("a", 0): 5, ("b", 0): 7}) is None
    assert watch.observe({("a", 0): 6}) is None  # b unknown for now
    assert watch.observe({("a", 0): 6, ("b", 0): 7}) is None
    assert watch.observe({("a", 0): 9, ("b", 0): 0}) == Loss("b", 0, 7, 0)


@pytest.mark.integration
def test_worker_says_in_one_line_that_the_broker_restarted_empty_and_exits(
    tmp_path: Path,
) -> None:
    events, truth = simulate(days=2, seed=11)
    specs = all_topics("surveillance", PARTITIONS)
    broker = EmbeddedBroker(log_dir=tmp_path / "first").start()
    worker = WorkerProcess(broker.bootstrap, tmp_path)
    fresh: EmbeddedBroker | None = None
    try:
        create_topics(broker.bootstrap, specs)
        worker.start()
        produce(broker.bootstrap, [(e.topic, e.key, e.value) for e in events])
        # Settle past two looks of the watch, so it has seen the changelogs with records.
        counts = wait_for_counts([worker], expected_counts(truth), timeout=180, settle=8)
        assert {t: c.get("cases", 0) for t, c in counts.items()} == expected_counts(truth)
        assert worker.alive()

        broker.stop()
        restarted = time.monotonic()
        fresh = EmbeddedBroker(port=broker.port, log_dir=tmp_path / "second").start()
        create_topics(fresh.bootstrap, specs)
        assert worker.proc is not None
        try:
            code = worker.proc.wait(timeout=90)
        except subprocess.TimeoutExpired:
            pytest.fail("the worker did not exit after the broker restarted empty:\n"
                        + worker.log_tail())
        log = worker.log_tail(200_000)
        print(f"\nexit {code} {time.monotonic() - restarted:.1f} s after the broker restart:")
        print("\n".join(line for line in log.splitlines() if LOST in line))
        assert code == EXIT_BROKER_LOST_DATA, log[-3000:]
        lines = [line for line in log.splitlines() if LOST in line]
        assert len(lines) == 1, log[-3000:]
        assert f"the broker at {broker.bootstrap} restarted without its data" in lines[0]
        # The evidence named is one of the service's topics, now behind where it was.
        assert any(f" {s.name}[" in lines[0] for s in specs), lines[0]
        assert_no_crash(worker)
    finally:
        worker.stop()
        if fresh is not None:
            fresh.stop()
        broker.stop()

