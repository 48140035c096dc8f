"""Ordinary and hostile values that used to crash-loop the worker, on the real broker.

Before (each on the unmodified worker): an AI result with `software_version` "5.2.1 build
7" or `site` "Main Campus" passed ingest and then raised in the case agent's metric call
(MetricLabelError, exit 70); a study in year 1 overflowed the monitor (OverflowError);
one junk record on `cases.join` or `cases.adjudicated` failed validation inside the agent
(ValidationError, exit 70); a `join-ai-watermark` header of 9999-12-31 overflowed the
drift bank and one of 9999-12-30 kept the event loop busy closing three million days.
Every restart re-read the same record and died again.

Now one worker reads a simulated stream with all of them mixed in, and must count the
valid cases exactly, dead-letter each bad record with its reason, count it, and keep
running. 200 unknown tool ids are counted under the `other` label, not as 200 series.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest

from surveillance.contracts import AdjudicatedCase, AIResult, CaseOutcome, Label, Scanner
from surveillance.embedded import EmbeddedBroker
from surveillance.simulate import simulate
from surveillance.stream.produce import produce
from surveillance.stream.runner import WorkerProcess, wait_for_counts
from surveillance.stream.topics import (
    AI_RESULTS,
    CASES_ADJUDICATED,
    CASES_JOIN,
    REPORTS_FINAL,
    all_topics,
    create_topics,
    dlq,
)
from tests.test_pipeline_integration import OUTCOMES, assert_no_crash, scrape
from tests.topic_read import read_records

pytestmark = pytest.mark.integration

PARTITIONS = 4
T = datetime(2026, 7, 2, 10, 0, tzinfo=UTC)


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[EmbeddedBroker]:
    with EmbeddedBroker(log_dir=tmp_path) as broker:
        create_topics(broker.bootstrap, all_topics("surveillance", PARTITIONS))
        yield broker


def ai(accession: str, **extra: Any) -> bytes:
    fields: dict[str, Any] = dict(
        event_id=f"ai-{accession}", tool_id="ich-triage", manufacturer="RapidAI",
        model="Rapid NCCT", software_version="5.2.1", finding_code="intracranial_hemorrhage",
        ai_result=0.91, operating_threshold=0.5, result_indicator=True, patient_id="MRN-9",
        accession_number=accession, study_instance_uid=f"1.2.9.{len(accession)}",
        study_date=date(2026, 7, 2), site="site-a", modality="CT", body_part_examined="HEAD",
        scanner=Scanner(manufacturer="GE", model="Revolution", software_version="r1"),
        inference_date=T,
    )
    fields.update(extra)
    return AIResult(**fields).model_dump_json().encode()


def report(accession: str, label: Label) -> bytes:
    return json.dumps({
        "event_id": f"rep-{accession}", "accession_number": accession, "site": "Main Campus",
        "finalized_at": "2026-07-02T14:00:00+00:00", "status": "final",
        "findings": [{"finding_code": "intracranial_hemorrhage", "label": label.value}],
    }).encode()


def forged_case(case_id: str) -> bytes:
    return AdjudicatedCase(
        case_id=case_id, revision=0, outcome=CaseOutcome.TP, label=Label.PRESENT,
        tool_id="ich-triage", software_version="5.2.1", finding_code="intracranial_hemorrhage",
        site="site-a", ai_result=0.9, operating_threshold=0.5, result_indicator=True,
        accession="a_forged", study_date=date(2026, 7, 2), inference_date=T, labelled_at=T,
        modality="CT", scanner_manufacturer="GE", scanner_model="Revolution",
        scanner_software_version="r1", ai_event_id=f"ai-{case_id}",
    ).model_dump_json().encode()


def send_with_headers(bootstrap: str, messages: list[tuple[str, bytes, bytes,
                                                         list[tuple[str, bytes]]]]) -> None:
    from kafka import KafkaProducer

    producer = KafkaProducer(bootstrap_servers=bootstrap, acks=1)
    try:
        for topic, key, value, headers in messages:
            producer.send(topic, key=key, value=value, headers=headers)
        producer.flush(timeout=60)
    finally:
        producer.close(timeout=10)


def read_letters(bootstrap: str, topics: list[str], expected: int) -> list[dict[str, Any]]:
    """The dead letters by source coordinates, read again until `expected` are there (the
    worker's outputs can land after its counts; 120 s bounds a hang only)."""
    deadline = time.monotonic() + 120
    while True:
        letters: dict[tuple[str, int, int], dict[str, Any]] = {}
        for msg in read_records(bootstrap, topics):
            letter = json.loads(msg.value)
            letters[(letter["source_topic"], letter["source_partition"],
                     letter["source_offset"])] = letter
        if len(letters) >= expected or time.monotonic() > deadline:
            return sorted(letters.values(), key=lambda x: (x["source_topic"], x["reason"]))
        time.sleep(0.5)


def test_ordinary_odd_values_and_forged_internal_records_never_stop_the_worker(
    stack: EmbeddedBroker, tmp_path: Path
) -> None:
    events, truth = simulate(days=3, seed=3)
    valid = [(e.topic, e.key, e.value) for e in events]
    odd = [  # valid: counted, under label-safe metric labels
        (AI_RESULTS, b"ACC-ODD-1", ai("ACC-ODD-1", software_version="5.2.1 build 7",
                                      site="Main Campus")),
        (REPORTS_FINAL, b"ACC-ODD-1", report("ACC-ODD-1", Label.PRESENT)),
    ]
    rogue = [(AI_RESULTS, f"ACC-R{i}".encode(),
              ai(f"ACC-R{i}", tool_id=f"rogue-tool-{i}", finding_code="made_up"))
             for i in range(200)]
    year_one = [(AI_RESULTS, b"ACC-Y1", ai("ACC-Y1", study_date=date(1, 1, 1)))]
    half = len(valid) // 2
    worker = WorkerProcess(stack.bootstrap, tmp_path).start()
    try:
        produce(stack.bootstrap, [*valid[:half], *odd, *year_one, *rogue])
        send_with_headers(stack.bootstrap, [
            (CASES_JOIN, b"junk", b"junk", []),
            (CASES_ADJUDICATED, b"ich-triage", b"{}", []),
            (CASES_ADJUDICATED, b"ich-triage", forged_case("forged-1"),
             [("join-partition", b"0"), ("join-ai-watermark", b"9999-12-31T00:00:00+00:00")]),
            (CASES_ADJUDICATED, b"ich-triage", forged_case("forged-2"),
             [("join-partition", b"1"), ("join-ai-watermark", b"9999-12-30T00:00:00+00:00")]),
        ])
        produce(stack.bootstrap, valid[half:])
        expected = {tool: t.cases + (tool == "ich-triage") for tool, t in truth.items()}
        counts = wait_for_counts([worker], expected, timeout=240)
        for tool, t in truth.items():
            got = counts.get(tool, {})
            assert got.get("cases", 0) == expected[tool], (tool, got)
            for outcome in OUTCOMES:
                extra = int(tool == "ich-triage" and outcome == "TP")
                assert got.get(outcome, 0) == t.final_outcomes.get(outcome, 0) + extra, (
                    tool, outcome, got)
        assert sum(counts.get(f"rogue-tool-{i}", {}).get("cases", 0) for i in range(200)) == 200

        letters = read_letters(stack.bootstrap, [dlq(AI_RESULTS), dlq(CASES_JOIN),
                                                 dlq(CASES_ADJUDICATED)], expected=5)
        reasons = [(x["source_topic"], x["reason"].split(":")[0]) for x in letters]
        print("\ndead letters:", [(x["source_topic"], x["reason"]) for x in letters])
        assert reasons == [
            (AI_RESULTS, "schema"), (CASES_ADJUDICATED, "header"),
            (CASES_ADJUDICATED, "header"), (CASES_ADJUDICATED, "schema"),
            (CASES_JOIN, "schema"),
        ]
        assert "study_date: is before 1980-01-01" in letters[0]["reason"]

        samples = scrape(worker)
        dlq_counts = {dict(labels)["topic"] + "/" + dict(labels)["reason"]: v
                      for (name, labels), v in samples.items()
                      if name == "surveillance_dlq_events_total"}
        assert dlq_counts["cases.adjudicated/header"] >= 2
        assert dlq_counts["cases.adjudicated/schema"] >= 1
        assert dlq_counts["cases.join/schema"] >= 1
        ai_results = {labels: v for (name, labels), v in samples.items()
                      if name == "surveillance_ai_results_total"}
        assert ai_results[(("site", "Main_Campus"), ("tool", "ich-triage"),
                           ("version", "5.2.1_build_7"))] == 1
        assert ai_results[(("site", "site-a"), ("tool", "other"), ("version", "other"))] >= 200
        assert not any("rogue" in v for (_, labels) in samples for _, v in labels)
        assert worker.alive()
        assert_no_crash(worker)
    finally:
        worker.stop()
