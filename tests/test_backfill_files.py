"""`surveillance backfill FILE...`: JSON lines and HL7 files through the bulk runner.

Unit tests of the line parser (what the simulator writes, and what it never writes), then
the real command on the real embedded broker: a simulated week as JSON lines (with its
duplicates and invalid events) plus its reports again as an HL7 batch file (as a RIS
archive holds them: new events for reports already in, so no count may move), with bad
lines and a malformed HL7 message among them. The case table the backfill leaves (read
back from its changelog) must count each tool's outcomes as the simulator made them; the
bad lines must be dead letters with their reason; and a re-run, with the checkpoint
(nothing is sent again) and without it (everything is sent again, and the join counts an
event id once), must change no count.
"""

from __future__ import annotations

import asyncio
import base64
import json
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from surveillance.bulk import changelog
from surveillance.bulk.files import ACCEPTED, FileFormatError, kind_of, parse_line
from surveillance.clinical.ledger import CaseRecord
from surveillance.contracts import DeadLetter, ReportFinal
from surveillance.embedded import EmbeddedBroker
from surveillance.interop.hl7_demo import render_oru
from surveillance.simulate import Faults, Scenario, SimEvent, ToolTruth, simulate
from surveillance.simulate.output import write_jsonl
from surveillance.stream import topics
from surveillance.stream.runner import WorkerProcess
from tests.test_pipeline_integration import PARTITIONS
from tests.topic_read import read_records

APP = "surveillance"


@given(topic=st.sampled_from(sorted(ACCEPTED)), key=st.binary(max_size=64),
       value=st.binary(max_size=512))
def test_every_line_the_simulator_writes_parses_to_its_topic_key_and_value(
    tmp_path_factory: pytest.TempPathFactory, topic: str, key: bytes, value: bytes,
) -> None:
    path = tmp_path_factory.mktemp("lines") / "one.jsonl"
    write_jsonl([SimEvent(topic, key, value, datetime(2026, 7, 1, tzinfo=UTC), False, "x")],
                path)
    (line,) = path.read_bytes().splitlines()
    assert parse_line(line) == (topic, key or None, value)
    assert kind_of(path) == "jsonl"


@given(st.one_of(st.binary(max_size=200), st.text(max_size=200).map(str.encode),
                 st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=8),
                              lambda inner: st.lists(inner, max_size=3)
                              | st.dictionaries(st.sampled_from(
                                  ["topic", "key", "value_b64", "x"]), inner, max_size=4),
                              max_leaves=8).map(lambda v: json.dumps(v).encode())))
def test_any_line_is_an_event_or_a_reason_never_an_exception(line: bytes) -> None:
    parsed = parse_line(line)
    assert isinstance(parsed, str) or (parsed[0] in ACCEPTED and isinstance(parsed[2], bytes))


@pytest.mark.parametrize(("line", "reason"), [
    (b"not json at all", "invalid_json"),
    (b"\xff\xfe{", "invalid_json"),
    (b"[1, 2]", "not_an_object"),
    (b'"a string"', "not_an_object"),
    (b'{"topic": "cases.adjudicated", "key": "", "value_b64": "e30="}', "unknown_topic"),
    (b'{"key": "", "value_b64": "e30="}', "unknown_topic"),
    (b'{"topic": ["ai.results"], "value_b64": "e30="}', "unknown_topic"),
    (b'{"topic": "ai.results", "key": ""}', "missing_value"),
    (b'{"topic": "ai.results", "key": "", "value_b64": "not base64!"}', "bad_base64"),
    (b'{"topic": "ai.results", "key": 7, "value_b64": "e30="}', "bad_base64"),
    (b'{"topic": "ai.results", "key": "", "value_b64": null}', "bad_base64"),
])
def test_a_line_that_is_not_an_event_says_why(line: bytes, reason: str) -> None:
    assert parse_line(line) == reason


def test_the_format_is_read_from_the_content(tmp_path: Path) -> None:
    hl7 = tmp_path / "reports.txt"
    hl7.write_bytes(b"MSH|^~\\&|RIS|site-a|||20260701||ORU^R01|1|P|2.5.1\rPID|1\r")
    batch = tmp_path / "batch.dat"
    batch.write_bytes(b"\xef\xbb\xbfFHS|^~\\&|RIS\rBHS|^~\\&\rMSH|^~\\&|RIS\r")
    dicom = tmp_path / "study.bin"
    dicom.write_bytes(b"\0" * 128 + b"DICM" + b"\x02\x00")
    pdf = tmp_path / "report.jsonl"  # the name says JSON lines; the content does not
    pdf.write_bytes(b"%PDF-1.7\n")
    assert (kind_of(hl7), kind_of(batch), kind_of(dicom)) == ("hl7", "hl7", "dicom")
    with pytest.raises(FileFormatError, match="neither JSON lines"):
        kind_of(pdf)
    with pytest.raises(FileFormatError, match="cannot read"):
        kind_of(tmp_path / "missing.jsonl")


def tool_outcomes(bootstrap: str) -> dict[str, Counter[str]]:
    """Per tool, the outcome of each case in the case table the backfill wrote."""
    tables = asyncio.run(changelog.restore({"bootstrap_servers": bootstrap}, APP, PARTITIONS))
    out: dict[str, Counter[str]] = {}
    for raw in tables["case_state"].values():
        record = CaseRecord.from_dict(raw)
        out.setdefault(record.tool, Counter())[record.outcome] += 1
    return out


def assert_counts(truth: dict[str, ToolTruth], counted: dict[str, Counter[str]]) -> None:
    for tool, t in truth.items():
        assert sum(counted[tool].values()) == t.cases, tool
        for outcome in ("TP", "FP", "TN", "FN", "indeterminate"):
            assert counted[tool][outcome] == t.final_outcomes[outcome], (tool, outcome)


def input_ends(bootstrap: str) -> dict[str, int]:
    """Records on each input topic (partitions summed)."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    from surveillance.embedded.log_end import probe_log_end

    async def ends() -> dict[TopicPartition, int]:
        consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
        await consumer.start()
        try:
            tps = [TopicPartition(t, p) for t in (topics.AI_RESULTS, topics.REPORTS_FINAL)
                   for p in range(PARTITIONS)]
            # The embedded broker reports the base offset of a partition's last batch.
            return await probe_log_end(bootstrap, await consumer.end_offsets(tps))
        finally:
            await consumer.stop()

    found = asyncio.run(ends())
    return {t: sum(n for tp, n in found.items() if tp.topic == t)
            for t in (topics.AI_RESULTS, topics.REPORTS_FINAL)}


def dead_letters(bootstrap: str) -> list[DeadLetter]:
    """Every dead letter on the input topics' DLQs (those of files have no offset)."""
    return [DeadLetter.model_validate_json(m.value) for m in read_records(
        bootstrap, [topics.dlq(topics.AI_RESULTS), topics.dlq(topics.REPORTS_FINAL)])]


def backfill(broker: EmbeddedBroker, tmp_path: Path, *args: str) -> str:
    runner = WorkerProcess(broker.bootstrap, tmp_path, command="backfill",
                           args=(*args, "--idle-seconds", "1")).start()
    assert runner.proc is not None
    assert runner.proc.wait(timeout=300) == 0, runner.log_tail()
    log = runner.log_tail(10_000_000)
    assert "Traceback" not in log, log
    return log


@pytest.mark.integration
def test_json_lines_and_hl7_files_are_backfilled_once_with_bad_lines_dead_lettered(
    tmp_path: Path,
) -> None:
    events, truth = simulate(
        days=7, seed=3, scenario=Scenario(),
        faults=Faults(duplicate_rate=0.02, invalid_rate=0.01, correction_rate=0.01))
    given = tmp_path / "in"
    given.mkdir()
    lines = given / "history.jsonl"
    write_jsonl(events, lines)
    bad = [b"{truncated", b'{"topic": "ris.feed", "key": "", "value_b64": "e30="}',
           b'{"topic": "ai.results", "key": "", "value_b64": "%%%"}']
    with lines.open("ab") as fh:
        fh.write(b"\n".join(bad) + b"\n")
    reports = [ReportFinal.model_validate_json(e.value) for e in events
               if e.valid and e.topic == topics.REPORTS_FINAL]
    reports = [r for r in reports if r.report_text or r.findings]
    archive = given / "ris-archive.hl7"
    archive.write_bytes(b"".join(render_oru(r, f"ARC{i}") + b"\n" for i, r in enumerate(reports))
                        + b"MSH|^~\\&|RIS|site-a|||20260701||ADT^A01|BAD1|P|2.5.1\rPID|1\r\n")
    invalid = sum(not e.valid for e in events)

    with EmbeddedBroker(log_dir=tmp_path) as broker:
        topics.create_topics(broker.bootstrap, topics.all_topics(APP, PARTITIONS))
        first = backfill(broker, tmp_path, str(lines), str(archive), "--checkpoint",
                         str(tmp_path / "checkpoint.json"))
        print(f"\n{len(events)} events ({invalid} invalid) and {len(reports)} HL7 reports:\n"
              + "\n".join(line for line in first.splitlines() if "event" in line
                          or "HL7" in line or "dead" in line))
        assert (f"{len(events) + len(bad)} lines: {len(events)} events loaded, "
                f"0 already loaded, {len(bad)} dead-lettered") in first
        assert f"{len(reports) + 1} messages: {len(reports)} accepted" in first
        assert "backfill done" in first
        assert_counts(truth, tool_outcomes(broker.bootstrap))

        letters = dead_letters(broker.bootstrap)
        assert len(letters) == invalid + len(bad) + 1
        files = [x for x in letters if x.reason.startswith("backfill file")]
        assert sorted(x.reason for x in files) == sorted(
            f"backfill file: {why}: history.jsonl line {len(events) + i + 1}"
            for i, why in enumerate(("invalid_json", "unknown_topic", "bad_base64")))
        assert {base64.b64decode(x.original_b64) for x in files} == set(bad)
        assert {x.source_topic for x in files} == {topics.REPORTS_FINAL, topics.AI_RESULTS}
        assert sum(x.reason.startswith("hl7 import") for x in letters) == 1
        ends = input_ends(broker.bootstrap)
        on_topics = Counter(e.topic for e in events)
        assert ends == {topics.AI_RESULTS: on_topics[topics.AI_RESULTS],
                        topics.REPORTS_FINAL: on_topics[topics.REPORTS_FINAL] + len(reports)}

        # Again with the checkpoint (the directory, walked): nothing is sent or changed.
        again = backfill(broker, tmp_path, str(given), "--checkpoint",
                         str(tmp_path / "checkpoint.json"))
        assert f"0 events loaded, {len(events) + len(bad)} already loaded" in again
        assert f"{len(reports) + 1} already imported" in again
        assert input_ends(broker.bootstrap) == ends
        assert_counts(truth, tool_outcomes(broker.bootstrap))

        # Without it (lost, or another machine): everything is sent again, and the join
        # takes each event id once.
        resent = backfill(broker, tmp_path, str(lines), str(archive), "--checkpoint",
                          str(tmp_path / "elsewhere.json"))
        assert f"{len(events)} events loaded" in resent
        after = input_ends(broker.bootstrap)
        assert after == {t: 2 * n for t, n in ends.items()}
        assert_counts(truth, tool_outcomes(broker.bootstrap))
        print(json.dumps({"inputs before": ends, "after the re-sent run": after}))


def test_a_file_in_no_known_format_is_one_clear_line_and_exit_2(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from surveillance.cli import app

    pdf = tmp_path / "report.pdf"
    pdf.write_bytes(b"%PDF-1.7\n")
    for args, message in (([str(pdf)], "neither JSON lines"),
                          ([str(tmp_path / "gone.jsonl")], "no such file or directory")):
        result = CliRunner().invoke(app, ["backfill", *args])
        assert result.exit_code == 2, result.output
        assert message in result.output and "Traceback" not in result.output
        assert len([line for line in result.output.splitlines() if "error" in line]) == 1


@pytest.mark.integration
def test_dicom_srs_and_images_are_backfilled_once_and_an_unreadable_file_dead_lettered(
    tmp_path: Path,
) -> None:
    """Studies as a PACS archive holds them (a header-only image and a TID 1500 SR each,
    `dicom parse`'s path): each SR's results become cases, once, whatever is re-run."""
    from surveillance.interop.dicom_demo import write_studies

    events, _ = simulate(days=2, seed=3, scenario=Scenario(), faults=Faults())
    given = tmp_path / "pacs"
    sent = write_studies(events, given, studies=40)
    broken = given / "broken.dcm"
    broken.write_bytes(b"\0" * 128 + b"DICM" + b"\x02\x00\x10\x00UI\xff\xff" + b"x" * 64)
    n_files = len(list(given.iterdir()))
    checkpoint = str(tmp_path / "checkpoint.json")

    def cases() -> dict[str, int]:
        return {t: sum(c.values()) for t, c in tool_outcomes(broker.bootstrap).items()}

    with EmbeddedBroker(log_dir=tmp_path) as broker:
        topics.create_topics(broker.bootstrap, topics.all_topics(APP, PARTITIONS))
        first = backfill(broker, tmp_path, str(given), "--checkpoint", checkpoint)
        print(f"\n{n_files} files, results per tool {dict(sent)}:\n"
              + "\n".join(line for line in first.splitlines() if "DICOM" in line))
        assert (f"DICOM: {n_files} files: 0 already loaded, {sum(sent.values())} AI results "
                "loaded, 1 dead-lettered") in first
        assert cases() == dict(sent)
        (letter,) = dead_letters(broker.bootstrap)
        assert letter.reason.startswith("backfill file: cannot_understand")
        assert letter.reason.endswith("broken.dcm") and letter.source_topic == topics.AI_RESULTS
        assert base64.b64decode(letter.original_b64) == broken.read_bytes()

        again = backfill(broker, tmp_path, str(given), "--checkpoint", checkpoint)
        assert f"DICOM: {n_files} files: {n_files} already loaded, 0 AI results" in again
        resent = backfill(broker, tmp_path, str(given), "--checkpoint",
                          str(tmp_path / "elsewhere.json"))
        assert f"0 already loaded, {sum(sent.values())} AI results loaded" in resent
        assert cases() == dict(sent)  # the same event ids: counted once
