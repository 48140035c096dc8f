"""The bulk runner's parts for speed: its processes' partitions, their common stop, the
batched sends, and no runner left behind by a killed backfill.

The end-to-end proof that several runner processes count exactly and continue where a
crash left them is `test_backfill_crashes.py` (it runs the default, two processes)."""

from __future__ import annotations

import asyncio
import ctypes
import os
import signal
import time
import uuid
from multiprocessing.sharedctypes import RawArray
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.partitioner import DefaultPartitioner
from hypothesis import given
from hypothesis import strategies as st

from surveillance.bulk.backfill import JOIN_NICENESS
from surveillance.bulk.batches import BatchSender, default_partition
from surveillance.bulk.ownership import CASE_TOPICS, JOIN_TOPICS, Ownership, plan
from surveillance.bulk.processes import CHECKED_AT, FIELDS, QUIET_SINCE, all_caught_up
from surveillance.embedded import EmbeddedBroker
from surveillance.simulate import Faults, Scenario, simulate
from surveillance.stream.runner import WorkerProcess
from surveillance.stream.topics import TopicSpec, all_topics, create_topics
from tests.test_pipeline_integration import send


@given(st.integers(1, 12), st.integers(1, 40))
def test_the_processes_own_every_partition_of_both_stages_once(processes: int,
                                                               partitions: int) -> None:
    owners = plan(processes, partitions)
    assert 1 <= len(owners) <= processes
    for stage in ("join", "cases"):
        shares = [getattr(o, stage) for o in owners]
        assert sorted(p for share in shares for p in share) == list(range(partitions))
    assert all(o.join or o.cases for o in owners)  # no process started for nothing
    if processes == 1:
        assert owners == [Ownership.everything(partitions)]
    else:  # split by stage: a process runs the join or the case stage, never both
        assert all(not (o.join and o.cases) for o in owners)
        assert any(o.join for o in owners) and any(o.cases for o in owners)


@given(st.integers(1, 12), st.integers(1, 40), st.data())
def test_with_tools_two_processes_share_the_case_stage_by_tool(
        processes: int, partitions: int, data: st.DataObject) -> None:
    tools = data.draw(st.lists(st.integers(0, partitions - 1), min_size=1, max_size=12))
    owners = plan(processes, partitions, tools)
    for stage in ("join", "cases"):
        shares = [getattr(o, stage) for o in owners]
        assert sorted(p for share in shares for p in share) == list(range(partitions))
    if processes != 2:
        assert owners == plan(processes, partitions)  # the tools change only two
        return
    first, second = owners
    assert first.join == frozenset(range(partitions)) and not second.join
    # The second process holds at least half of the tools' cases, and no fewer partitions
    # would do: dropping any of its partitions leaves it under half.
    mine = [p for p in tools if p in second.cases]
    assert 2 * len(mine) >= len(tools)
    for p in second.cases:
        assert 2 * sum(1 for q in mine if q != p) < len(tools)


def test_the_shipped_registry_puts_the_join_beside_the_lighter_half_of_the_tools() -> None:
    """Six tools on four partitions (dr-screen and ad-triage 0, ich-triage 1, lvo-triage
    and ptx-triage 2, pe-triage 3): the case-only process takes partitions 0 and 2, four
    tools; the join process partitions 1 and 3, one tool each."""
    from surveillance.clinical.baselines import load_registry

    tools = {tool: default_partition(tool.encode(), 4) for tool in load_registry()}
    assert tools == {"ich-triage": 1, "lvo-triage": 2, "ptx-triage": 2, "dr-screen": 0,
                     "pe-triage": 3, "ad-triage": 0}
    every = frozenset(range(4))
    assert plan(2, 4, list(tools.values())) == [
        Ownership(every, frozenset({1, 3})), Ownership(frozenset(), frozenset({0, 2}))]


def test_a_process_reads_its_stages_topics_on_its_partitions_only() -> None:
    owned = Ownership(frozenset({1, 3}), frozenset({0}))
    assert sorted(owned.topic_partitions()) == sorted(
        [(t, p) for t in JOIN_TOPICS for p in (1, 3)] + [(t, 0) for t in CASE_TOPICS])


@given(st.binary(min_size=0, max_size=64), st.integers(1, 64))
def test_unpartitioned_records_go_where_the_producer_would_put_them(key: bytes,
                                                                    partitions: int) -> None:
    every = list(range(partitions))
    assert default_partition(key, partitions) == DefaultPartitioner()(key, every, every)


def _state(quiet: list[float], checked: list[float]) -> object:
    shared = RawArray(ctypes.c_double, len(quiet) * FIELDS)
    for i, (q, c) in enumerate(zip(quiet, checked, strict=True)):
        shared[i * FIELDS + QUIET_SINCE], shared[i * FIELDS + CHECKED_AT] = q, c
    return shared


@pytest.mark.parametrize(("quiet", "checked", "stop"), [
    ([5.0, 0.0], [6.0, 6.0], False),  # one still busy
    ([5.0, 7.0], [6.0, 8.0], False),  # the first checked before the second went quiet
    ([5.0, 7.0], [7.5, 8.0], True),  # both checked after the last went quiet
    ([5.0, 7.0], [7.0, 8.0], False),  # a check begun the moment the other went quiet
    ([3.0], [3.5], True),
])
def test_all_stop_only_once_every_check_came_after_the_last_went_quiet(
    quiet: list[float], checked: list[float], stop: bool,
) -> None:
    assert all_caught_up(_state(quiet, checked), len(quiet)) is stop


@pytest.mark.integration
def test_batched_sends_land_where_and_as_the_producer_would_send_them(tmp_path: Path) -> None:
    """Keyed records without a partition on the partitioner's partition, explicit ones on
    theirs, headers kept, each partition in the order added; batches too full for the
    next record sent and new ones started, a record larger than a batch sent alone."""
    topic = f"batched-{uuid.uuid4().hex[:8]}"
    sent: list[tuple[int, bytes, bytes, list[tuple[str, bytes]]]] = []

    async def run(bootstrap: str) -> dict[int, list[tuple[bytes, bytes, list[tuple[str, bytes]]]]]:
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all",
                                    max_batch_size=4096)
        await producer.start()
        try:
            sender = BatchSender(producer)
            for i in range(600):
                key = f"tool-{i % 7}".encode()
                value = (b"v%05d-" % i) * (2000 if i == 300 else 3)  # one over 4 KiB
                partition = 2 if i % 5 == 0 else None
                headers = [("n", str(i).encode())] if i % 2 else []
                await sender.add(topic, key, value, partition, headers)
                if i % 100 == 99:
                    await sender.send_open({topic})
                elif i % 50 == 49:
                    await sender.send_open({"another-topic"})  # leaves this one's open
                sent.append((default_partition(key, 3) if partition is None else partition,
                             key, value, headers))
            await sender.flush()
        finally:
            await producer.stop()
        consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, auto_offset_reset="earliest",
                                    enable_auto_commit=False)
        await consumer.start()
        got: dict[int, list[tuple[bytes, bytes, list[tuple[str, bytes]]]]] = {}
        try:
            consumer.assign([TopicPartition(topic, p) for p in range(3)])
            deadline = time.monotonic() + 60
            while sum(map(len, got.values())) < len(sent) and time.monotonic() < deadline:
                for tp, messages in (await consumer.getmany(timeout_ms=500)).items():
                    got.setdefault(tp.partition, []).extend(
                        (m.key, m.value, list(m.headers)) for m in messages)
        finally:
            await consumer.stop()
        return got

    with EmbeddedBroker(log_dir=tmp_path) as broker:
        create_topics(broker.bootstrap, [TopicSpec(topic, 3)])
        got = asyncio.run(run(broker.bootstrap))
    expected: dict[int, list[tuple[bytes, bytes, list[tuple[str, bytes]]]]] = {}
    for partition, key, value, headers in sent:
        expected.setdefault(partition, []).append((key, value, headers))
    assert got == expected


@pytest.mark.integration
def test_a_killed_backfill_leaves_no_runner_process_behind(tmp_path: Path) -> None:
    events, _ = simulate(days=10, seed=2, scenario=Scenario(), faults=Faults())
    with EmbeddedBroker(log_dir=tmp_path) as broker:
        create_topics(broker.bootstrap, all_topics("surveillance", 4))
        send(broker, events)
        runner = WorkerProcess(broker.bootstrap, tmp_path, command="backfill",
                               args=("--processes", "2", "--idle-seconds", "30")).start()
        assert runner.proc is not None
        deadline = time.monotonic() + 120
        while len(children := _children(runner.proc.pid)) < 2:
            assert runner.alive() and time.monotonic() < deadline, runner.log_tail()
            time.sleep(0.05)
        os.kill(runner.proc.pid, signal.SIGKILL)
        runner.proc.wait()
        deadline = time.monotonic() + 60  # bounds a hang only
        while (left := [c for c in children if _running(c)]) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not left, f"runner processes left running: {left}"


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
    return found


def _running(pid: int) -> bool:
    """Alive and not a zombie (a killed child reparented to init is reaped by it)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_the_join_process_runs_below_the_case_stage_and_the_calibrations(
        tmp_path: Path) -> None:
    """The case stage is the critical path (`bulk.backfill.JOIN_NICENESS`): the process
    that owns only join partitions runs at a lower priority, every other child (the case
    stage, the calibration processes) at the backfill's own."""
    events, _ = simulate(days=10, seed=2, scenario=Scenario(), faults=Faults())
    with EmbeddedBroker(log_dir=tmp_path) as broker:
        create_topics(broker.bootstrap, all_topics("surveillance", 4))
        send(broker, events)
        runner = WorkerProcess(broker.bootstrap, tmp_path, command="backfill",
                               args=("--processes", "2", "--idle-seconds", "30")).start()
        assert runner.proc is not None
        try:
            own = os.getpriority(os.PRIO_PROCESS, runner.proc.pid)
            lower = own + JOIN_NICENESS
            assert lower <= 19, f"run at niceness {own}: no lower priority to see"
            deadline = time.monotonic() + 120
            # Two runners and a calibration process per core (at most 4); each child sets
            # its priority as it starts.
            expected = 2 + min(os.cpu_count() or 1, 4)
            while True:
                niceness = sorted(_niceness(runner.proc.pid).values())
                if len(niceness) == expected and niceness[-1] == lower:
                    break
                assert runner.alive() and time.monotonic() < deadline, (niceness,
                                                                         runner.log_tail())
                time.sleep(0.05)
        finally:
            os.kill(runner.proc.pid, signal.SIGKILL)
            runner.proc.wait()
    assert niceness == [own] * (expected - 1) + [lower]


def _niceness(pid: int) -> dict[int, int]:
    found = {}
    for child in _children(pid):
        try:
            found[child] = os.getpriority(os.PRIO_PROCESS, child)
        except OSError:
            continue
    return found
