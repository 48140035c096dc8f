"""End to end on the real embedded broker: simulator -> worker(s) -> exact counts.

Each test starts its own broker (memory storage, so a clean slate), creates the topics
explicitly, replays a seeded simulator stream with injected faults (2% duplicates, 1%
invalid events, reports before and after their AI results, corrections, late reports)
and compares what the worker counted with what the simulator knows it produced.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from surveillance.contracts import Alert
from surveillance.embedded import EmbeddedBroker
from surveillance.embedded.log_end import probe_log_end
from surveillance.simulate import (
    Faults,
    Scenario,
    SimEvent,
    ToolTruth,
    scenario_by_name,
    simulate,
)
from surveillance.stream.produce import produce
from surveillance.stream.runner import WorkerProcess, combined_counts, wait_for_counts
from surveillance.stream.topics import AI_RESULTS, REPORTS_FINAL, all_topics, create_topics
from tests.topic_read import read_records, read_topic

pytestmark = pytest.mark.integration

PARTITIONS = 4
OUTCOMES = ("TP", "FP", "TN", "FN", "indeterminate")


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[EmbeddedBroker]:
    with EmbeddedBroker(log_dir=tmp_path) as broker:
        create_topics(broker.bootstrap, all_topics("surveillance", PARTITIONS))
        yield broker


def faulty_stream() -> tuple[list[SimEvent], dict[str, ToolTruth]]:
    """About 21,000 events (42 days) with the faults the issue names."""
    return simulate(
        days=42,
        seed=11,
        scenario=Scenario(),
        faults=Faults(duplicate_rate=0.02, invalid_rate=0.01, correction_rate=0.01),
    )


def send(broker: EmbeddedBroker, events: list[SimEvent]) -> int:
    return produce(broker.bootstrap, ((e.topic, e.key, e.value) for e in events))


def expected_counts(truth: dict[str, ToolTruth]) -> dict[str, int]:
    return {tool: t.cases for tool, t in truth.items()}


def expected_outcomes(truth: dict[str, ToolTruth]) -> dict[str, dict[str, int]]:
    return {tool: {o: t.final_outcomes.get(o, 0) for o in OUTCOMES} for tool, t in truth.items()}


def assert_exact(truth: dict[str, ToolTruth], counts: dict[str, dict[str, int]]) -> None:
    for tool, t in truth.items():
        got = counts.get(tool, {})
        assert got.get("cases", 0) == t.cases, f"{tool}: cases {got} vs {t.cases}"
        for outcome in OUTCOMES:
            assert got.get(outcome, 0) == t.final_outcomes.get(outcome, 0), (
                f"{tool} {outcome}: counted {got.get(outcome, 0)}, "
                f"simulated {t.final_outcomes.get(outcome, 0)}"
            )


def read_dlq(
    bootstrap: str, expected: int, timeout: float = 120.0
) -> dict[tuple[str, int, int], dict[str, object]]:
    """Dead letters by source coordinates (at-least-once: a replay may write one twice).
    The worker counts a batch before its outputs are acknowledged, so the last letters
    may still be on their way: read again until `expected` are there (`timeout` bounds a
    hang only)."""
    deadline = time.monotonic() + timeout
    while True:
        letters: dict[tuple[str, int, int], dict[str, object]] = {}
        for msg in read_records(bootstrap, ["ai.results.dlq", "reports.final.dlq"]):
            letter = json.loads(msg.value)
            letters[(letter["source_topic"], letter["source_partition"],
                     letter["source_offset"])] = letter
        if len(letters) >= expected or time.monotonic() > deadline:
            return letters
        time.sleep(0.5)


def assert_no_crash(*workers: WorkerProcess) -> None:
    for w in workers:
        log = w.log_tail(200_000)
        assert "Crashed" not in log and "Traceback" not in log, log[-3000:]


def test_20k_mixed_events_counted_exactly_once_and_invalid_ones_dead_lettered(
    stack: EmbeddedBroker, tmp_path: Path
) -> None:
    events, truth = faulty_stream()
    invalid = [e for e in events if not e.valid]
    duplicates = len(events) - len(invalid) - len({e.event_id for e in events if e.valid})
    print(f"\n{len(events)} events: {len(invalid)} invalid, {duplicates} duplicates")
    assert len(events) >= 20_000 and len(invalid) >= 150 and duplicates >= 300

    worker = WorkerProcess(stack.bootstrap, tmp_path).start()
    try:
        started = time.monotonic()
        send(stack, events)
        counts = wait_for_counts([worker], expected_counts(truth), timeout=240,
                                 outcomes=expected_outcomes(truth))
        print(f"counted in {time.monotonic() - started:.1f}s: {counts}")
        assert_exact(truth, counts)
        letters = read_dlq(stack.bootstrap, len(invalid))
        assert len(letters) == len(invalid)
        originals = {e.value for e in invalid}
        for letter in letters.values():
            reason = str(letter["reason"]).split(":")[0]
            assert reason in {"oversize", "encoding", "invalid_json", "schema"}
            original = base64.b64decode(letter["original_b64"])
            if letter["original_size"] <= 64 * 1024:
                assert original in originals
        assert worker.alive()
        assert_no_crash(worker)
        assert_metrics_served(worker, len(invalid))
    finally:
        worker.stop()


Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(worker: WorkerProcess) -> Samples:
    """(name, sorted labels) -> value of the worker's /metrics, checked to be Prometheus
    text format."""
    import urllib.request

    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(worker.url + "/metrics", timeout=5) as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"].startswith("text/plain")
        text = resp.read().decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def assert_metrics_served(worker: WorkerProcess, dead_letters: int) -> None:
    """The worker's /metrics answers in Prometheus text format with the pipeline counters."""
    samples = scrape(worker)
    dlq = sum(v for (name, _), v in samples.items() if name == "surveillance_dlq_events_total")
    assert dlq >= dead_letters  # at-least-once: a replayed batch may count a letter twice
    assert any(name == "surveillance_ai_results_total" for name, _ in samples)
    for name, labels in samples:
        assert not any(k in {"accession", "patient", "patient_id"} for k, _ in labels), name


def metric_samples(worker: WorkerProcess, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    return {labels: v for (n, labels), v in scrape(worker).items() if n == name}


def test_producers_key_by_accession_so_the_join_needs_no_extra_hop(
    stack: EmbeddedBroker, tmp_path: Path
) -> None:
    """Where the broker put each keyed input event is where the worker expects it
    (`join_partition`, checked against the real producer's choice), and events that
    were not keyed by accession (a RIS bridge that sets no key) take one more hop through
    `cases.join` and are still counted exactly once."""
    from surveillance.stream.ingest import join_partition

    events, truth = simulate(
        days=14, seed=5, scenario=Scenario(),
        faults=Faults(duplicate_rate=0.02, invalid_rate=0.01, correction_rate=0.01),
    )
    unkeyed = [replace(e, key=b"") if e.topic == "reports.final" else e for e in events]
    valid_values = {e.value for e in events if e.valid}
    worker = WorkerProcess(stack.bootstrap, tmp_path).start()
    try:
        produce(stack.bootstrap, (
            (e.topic, e.key or None, e.value) for e in unkeyed
        ))
        counts = wait_for_counts([worker], expected_counts(truth), timeout=240,
                                 outcomes=expected_outcomes(truth))
        assert_exact(truth, counts)
        assert_no_crash(worker)
        rerouted = metric_samples(worker, "surveillance_join_rerouted_total")
    finally:
        worker.stop()

    # The broker's placement of every keyed (AI result) event vs our partition function.
    ai_checked, reports_off = 0, 0
    for msg in read_records(stack.bootstrap, ["ai.results", "reports.final"]):
        if msg.value not in valid_values:
            continue  # an injected invalid event: dead-lettered, never routed
        accession = json.loads(msg.value)["accession_number"]
        expected = join_partition(accession, PARTITIONS)
        if msg.topic == "ai.results":
            assert msg.partition == expected, (msg.partition, expected)
            ai_checked += 1
        elif msg.partition != expected:
            reports_off += 1
    print(f"\n{ai_checked} keyed AI results on their join partition; "
          f"{reports_off} unkeyed reports off it; rerouted metric {rerouted}")
    assert ai_checked > 3000 and reports_off > 1000
    assert rerouted.get((("topic", "ai.results"),), 0) == 0
    # At-least-once: a replayed batch could count a reroute twice, never fewer.
    assert rerouted.get((("topic", "reports.final"),), 0) >= reports_off


def test_sigkill_mid_stream_then_restart_gives_the_same_exact_counts(
    stack: EmbeddedBroker, tmp_path: Path
) -> None:
    events, truth = faulty_stream()
    half = len(events) // 2
    first = WorkerProcess(stack.bootstrap, tmp_path).start()
    send(stack, events[:half])
    # Let it get well into the first half, then crash it without any shutdown.
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        counts = combined_counts([first])
        if counts and sum(c.get("cases", 0) for c in counts.values()) > 2000:
            break
        time.sleep(0.2)
    first.kill()
    send(stack, events[half:])
    second = WorkerProcess(stack.bootstrap, tmp_path).start()
    try:
        counts = wait_for_counts([second], expected_counts(truth), timeout=240,
                                 outcomes=expected_outcomes(truth))
        assert_exact(truth, counts)
        assert_no_crash(second)
    finally:
        second.stop()


def inputs_not_committed(bootstrap: str, timeout: float = 90) -> dict[str, tuple[int, int]]:
    """The input partitions whose committed offset (the worker's group) has not reached
    their log end within `timeout`: "topic[p]" -> (committed, end). Empty once all have."""
    async def behind() -> dict[str, tuple[int, int]]:
        consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id="surveillance",
                                    enable_auto_commit=False)
        await consumer.start()
        try:
            tps = [TopicPartition(t, p) for t in (AI_RESULTS, REPORTS_FINAL)
                   for p in range(PARTITIONS)]
            ends = await probe_log_end(bootstrap, await consumer.end_offsets(tps))
            left: dict[str, tuple[int, int]] = {}
            deadline = time.monotonic() + timeout
            while True:
                left = {}
                for tp in tps:
                    at = await consumer.committed(tp) or 0
                    if at < ends[tp]:
                        left[f"{tp.topic}[{tp.partition}]"] = (at, ends[tp])
                if not left or time.monotonic() > deadline:
                    return left
                await asyncio.sleep(1)
        finally:
            await consumer.stop()

    return asyncio.run(behind())


@pytest.mark.parametrize("rewind", [False, True], ids=["replay", "case-rewind"])
def test_a_restarted_worker_rebuilds_drift_monitoring_and_sees_a_protocol_change(
    stack: EmbeddedBroker, tmp_path: Path, rewind: bool
) -> None:
    """Drift state is rebuilt from the case table, not restarted: a worker killed on day
    40 (reference period days 0-29 done) and restarted still flags the protocol change of
    day 45 against the original reference, dated from the change.

    With the case rewind on (`stream.case_rewind`), the restarted worker finds its tools'
    throttled snapshots behind the case table, rewinds it and reads `cases.adjudicated`
    again while the live 20 days arrive. Every input partition's committed offset must
    reach its log end: the rewind once read its committed offsets through Faust's
    `seek_to_committed`, which seeks every partition mid-recovery, and in 8 of ~43 runs one
    input partition's commit then stayed at the first worker's and a run of ~900 records
    after it never reached the join (some cases left pending, or totals short)."""
    from datetime import date

    from surveillance.demo import read_alerts
    from surveillance.engine.config import EngineConfig
    from surveillance.engine.local import revisions
    from tests.test_drift_scenarios import drift_alerts

    start = date(2026, 7, 1)
    events, truth = simulate(
        days=60, seed=7, scenario=scenario_by_name("protocol_change"), faults=Faults()
    )
    cut = next(i for i, e in enumerate(events) if (e.arrival.date() - start).days >= 40)
    before: dict[str, set[str]] = {}
    for _, _, case in revisions(EngineConfig.plain(1), events[:cut]):
        before.setdefault(case.tool_id, set()).add(case.case_id)
    # Set either way: an operator's environment (or a suite run with it on) is inherited.
    env = {"SURVEILLANCE_STREAM__CASE_REWIND": "true" if rewind else "false"}
    first = WorkerProcess(stack.bootstrap, tmp_path, env=env).start()
    send(stack, events[:cut])
    wait_for_counts([first], {t: len(c) for t, c in before.items()}, timeout=240)
    first.kill()
    second = WorkerProcess(stack.bootstrap, tmp_path, env=env).start()
    try:
        send(stack, events[cut:])
        counts = wait_for_counts([second], expected_counts(truth), timeout=240,
                                 outcomes=expected_outcomes(truth))
        assert_exact(truth, counts)
        assert_no_crash(second)
        assert inputs_not_committed(stack.bootstrap) == {}
        log = second.log_tail(10**8)
        # The path under test was taken: with the rewind on, the tools' snapshots (one per
        # 60 s) were behind the case table the first worker left, and it was rewound.
        assert ("case table rewound to its tools' snapshots" in log) == rewind, log[-3000:]
        # And /metrics tells the on-call which: rewound (exact), or replayed (approximate).
        how = {dict(labels)["status"] for name, labels in scrape(second)
               if name == "surveillance_tool_state_rebuilds_total"}
        assert ("rewound" in how, "replayed" in how) == (rewind, not rewind), how
    finally:
        second.stop()
    # The change starts on day 45, after the first worker died: only the second can see
    # it, and only against the original reference (a bank restarted on day 40 would still
    # be collecting a new reference when this 60-day stream ends).
    alerts = read_alerts(stack.bootstrap)
    kvp = [a for a in alerts if a.kind == "input_drift" and a.details.get("feature") == "kvp"]
    for a in kvp:
        print(f"\n{a.tool_id}: {a.summary}")
    head_ct = [a for a in kvp if a.tool_id in {"ich-triage", "lvo-triage"}]
    assert {a.tool_id for a in head_ct} == {"ich-triage", "lvo-triage"}
    for a in head_ct:
        assert "kvp mean 120 -> 100 kV" in a.summary
        assert "at site-b since 2026-08-15" in a.summary
        assert "reference 2026-07-01..2026-07-30" in a.summary
    # The whole stream went in unpaced (a backlog, read partition by partition), through
    # a SIGKILL and a rebuild: the drift alerts are those of the same events arriving in
    # order through one uninterrupted worker (the engine's path), no more and no fewer.
    expected = drift_alerts(events)
    kinds = {a.kind for a in expected}

    def described(alerts: list[Alert]) -> list[tuple[str, str, object, object]]:
        once = {a.alert_id: a for a in alerts if a.kind in kinds}  # at-least-once delivery
        return sorted((a.tool_id, a.kind, a.details.get("feature"), a.since.date())
                      for a in once.values())

    assert described(alerts) == described(expected)


def test_two_workers_share_partitions_and_one_stopping_moves_its_state(
    stack: EmbeddedBroker, tmp_path: Path
) -> None:
    events, truth = faulty_stream()
    a = WorkerProcess(stack.bootstrap, tmp_path).start()
    b = WorkerProcess(stack.bootstrap, tmp_path).start()
    try:
        third = len(events) // 3
        send(stack, events[:third])
        # Both must hold a share of the partitions before one goes away.
        deadline = time.monotonic() + 90
        shares: list[list[str]] = []
        while time.monotonic() < deadline:
            answers = [w.counts() for w in (a, b)]
            if all(x and x["ready"] and x["assigned"] for x in answers):
                # Standby changelog partitions overlap by design; stream topics must not.
                shares = [
                    [tp for tp in x["assigned"] if "changelog" not in tp]  # type: ignore[index]
                    for x in answers
                ]
                break
            time.sleep(0.3)
        assert shares and not set(shares[0]) & set(shares[1]), set(shares[0]) & set(shares[1])
        print(f"\nworker A holds {shares[0]}\nworker B holds {shares[1]}")
        send(stack, events[third : 2 * third])
        time.sleep(2)
        b.stop()
        send(stack, events[2 * third :])
        counts = wait_for_counts([a], expected_counts(truth), timeout=240,
                                 outcomes=expected_outcomes(truth))
        assert_exact(truth, counts)
        final = a.counts()
        assert final is not None
        held = {tp for tp in final["assigned"] if "changelog" not in tp}
        assert held == set(shares[0]) | set(shares[1])
        assert_no_crash(a, b)
    finally:
        a.stop()
        b.stop()


def test_adverse_event_is_linked_to_its_case_and_alerted_once(
    stack: EmbeddedBroker, tmp_path: Path
) -> None:
    from datetime import UTC, datetime

    from surveillance.clinical.labels import extract_labels
    from surveillance.contracts import (
        AdverseEvent,
        AEDevice,
        AEEvent,
        AEReporter,
        AIResult,
        DiscordanceType,
        Label,
        Outcome,
        ReportFinal,
    )
    from surveillance.privacy import pseudonymize
    from surveillance.settings import DEMO_PSEUDONYM_KEY

    events, truth = simulate(days=10, seed=5, scenario=Scenario())
    labels: dict[str, Label] = {}
    for e in events:
        if e.topic == "reports.final":
            r = ReportFinal.model_validate_json(e.value)
            found = ({f.finding_code: f.label for f in r.findings} if r.findings is not None
                     else extract_labels(r.report_text or "", ["pneumothorax"]))
            if "pneumothorax" in found:
                labels[r.accession_number] = found["pneumothorax"]
    missed = next(
        ai for ai in (AIResult.model_validate_json(e.value) for e in events
                      if e.topic == "ai.results")
        if ai.tool_id == "ptx-triage" and not ai.result_indicator
        and labels.get(ai.accession_number) is Label.PRESENT
    )
    key = DEMO_PSEUDONYM_KEY.encode()
    report = AdverseEvent(
        event_id=pseudonymize(key, "submission", "it-ae-1"),
        received_at=datetime.now(UTC),
        aware_date=datetime.now(UTC).date(),
        event=AEEvent(outcome=Outcome.HOSPITALIZATION, event_date=missed.study_date,
                      narrative="missed pneumothorax"),
        device=AEDevice(tool_id="ptx-triage", manufacturer="Milvue",
                        software_version=missed.software_version),
        reporter=AEReporter(name="QA", role="quality", contact="qa@example.org"),
        accession_number=pseudonymize(key, "accession", missed.accession_number),
        discordance_type=DiscordanceType.FALSE_NEGATIVE,
        pseudonymized=True,
    ).model_dump_json().encode()
    worker = WorkerProcess(stack.bootstrap, tmp_path).start()
    try:
        send(stack, events)
        # Every outcome too: the report links to the case's outcome (FN) only once the
        # case's report is joined, which can come after the case totals settle.
        counts = wait_for_counts([worker], expected_counts(truth), timeout=240,
                                 outcomes=expected_outcomes(truth))
        assert_exact(truth, counts)
        produce(stack.bootstrap, [("adverse.events", b"ptx-triage", report)] * 2)
        deadline = time.monotonic() + 120
        received: list[dict[str, object]] = []
        while time.monotonic() < deadline and not received:
            alerts = [json.loads(v) for v in read_topic(stack.bootstrap, "surveillance.alerts")]
            received = [a for a in alerts if a["kind"] == "adverse_event"]
            time.sleep(0.5)
        print(f"\n{received[0]['summary'] if received else 'no alert'}")
        assert len({a["alert_id"] for a in received}) == 1
        assert "linked case outcome FN (agrees with the report)" in str(received[0]["summary"])
        assert received[0]["severity"] == "warning"  # hospitalization: serious, not fatal
        assert_no_crash(worker)
    finally:
        worker.stop()
