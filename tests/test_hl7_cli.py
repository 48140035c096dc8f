"""`surveillance hl7 parse|import` and `surveillance fhir parse`, as an analyst runs them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from surveillance.cli import app
from surveillance.embedded import EmbeddedBroker
from surveillance.privacy import pseudonymize
from surveillance.settings import DEMO_PSEUDONYM_KEY
from surveillance.stream.topics import REPORTS_FINAL, TopicSpec, create_topics, dlq
from tests import fhir_samples as f
from tests import hl7_samples as s
from tests.topic_read import read_topic

runner = CliRunner()
KEY = DEMO_PSEUDONYM_KEY.encode()


def test_hl7_parse_prints_pseudonymized_reports_and_exits_2_on_rejects(tmp_path: Path) -> None:
    mapping = s.write_mapping(tmp_path)
    good = tmp_path / "good.hl7"
    good.write_bytes(s.POWERSCRIBE_FINAL + s.EPIC_TWO_EXAMS + s.STATUS_MESSAGES["P"])
    result = runner.invoke(app, ["hl7", "parse", str(good), "--mapping", str(mapping)])
    assert result.exit_code == 0, result.output
    lines = [json.loads(x) for x in result.stdout.splitlines()]
    assert [x["accession_number"] for x in lines] == [
        pseudonymize(KEY, "accession", a) for a in ("ACC-1001", "ACC-2001", "ACC-2002")]
    assert lines[0]["patient_id"] == pseudonymize(KEY, "patient", "4455667")
    assert "4455667" not in result.stdout and "ACC-1001" not in result.stdout
    assert "good.hl7#3: OBR group 1 skipped: result status P not used" in result.stderr

    bad = tmp_path / "bad.hl7"
    bad.write_bytes(s.POWERSCRIBE_FINAL + s.REJECTED["adt"][0] + s.REJECTED["no_accession"][0])
    result = runner.invoke(app, ["hl7", "parse", str(bad), "--mapping", str(mapping)])
    assert result.exit_code == 2
    assert len(result.stdout.splitlines()) == 1
    # the public demo key is named in a warning (test mode); production refuses it
    assert result.stderr.splitlines()[0].startswith("warning: running in test mode")
    assert result.stderr.splitlines()[1:] == [
        "bad.hl7#2: rejected (AR 200): MSH-9 message type 'ADT^A01' is not accepted "
        "(only ORU^R01 and MDM^T02; orders are answered AA and not used)",
        "bad.hl7#3: rejected (AE 101): OBR group 1: no accession number in OBR-3",
    ]


def test_bad_mapping_and_missing_file_are_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "m.yaml"
    bad.write_text("facilities: [1, 2]\n")
    result = runner.invoke(app, ["hl7", "parse", str(bad), "--mapping", str(bad)])
    assert result.exit_code == 2 and len(result.stderr.splitlines()) == 1
    result = runner.invoke(app, ["hl7", "parse", str(tmp_path / "nope.hl7")])
    assert result.exit_code == 2 and "cannot read" in result.stderr


def test_fhir_parse(tmp_path: Path) -> None:
    path = tmp_path / "bundle.json"
    path.write_text(json.dumps(f.bundle("batch", [f.SERVICE_REQUEST_ENTRY, f.REPORT_ENTRY,
                                                  f.BAD_ENTRY])))
    result = runner.invoke(app, ["fhir", "parse", str(path)])
    assert result.exit_code == 2
    (line,) = result.stdout.splitlines()
    assert json.loads(line)["accession_number"] == pseudonymize(KEY, "accession", "ACC-F300")
    assert "bundle.json#3: rejected: entry[2]: no accession" in result.stderr


def _count(bootstrap: str, topic: str) -> int:
    return len(read_topic(bootstrap, topic))


@pytest.mark.integration
def test_import_is_resumable_and_summarizes(broker: EmbeddedBroker, tmp_path: Path) -> None:
    create_topics(broker.bootstrap, [TopicSpec(REPORTS_FINAL, 1), TopicSpec(dlq(REPORTS_FINAL), 1)])
    before = _count(broker.bootstrap, REPORTS_FINAL), _count(broker.bootstrap, dlq(REPORTS_FINAL))
    history = tmp_path / "history"
    history.mkdir()
    (history / "2019.hl7").write_bytes(
        b"FHS|^~\\&\rBHS|^~\\&\r" + s.POWERSCRIBE_FINAL + s.EPIC_TWO_EXAMS
        + s.POWERSCRIBE_FINAL + s.STATUS_MESSAGES["P"] + b"BTS|4\rFTS|1\r")
    (history / "2020.hl7").write_bytes(s.REJECTED["garbage"][0] + s.MIRTH_RELAYED)
    args = ["hl7", "import", str(history), "--bootstrap", broker.bootstrap,
            "--mapping", str(s.write_mapping(tmp_path)),
            "--checkpoint", str(tmp_path / "ckpt.json")]
    first = runner.invoke(app, args)
    assert first.exit_code == 0, first.output
    assert first.stdout.splitlines()[:3] == [
        "2 files, 6 messages: 4 accepted (4 reports), 0 already imported, 1 duplicates, "
        "1 rejected",
        "  skipped group: result status P not used: 1",
        "  rejected: AR 100 segment sequence: 1",
    ]
    after = _count(broker.bootstrap, REPORTS_FINAL), _count(broker.bootstrap, dlq(REPORTS_FINAL))
    assert (after[0] - before[0], after[1] - before[1]) == (4, 1)

    again = runner.invoke(app, args)
    assert again.exit_code == 0
    assert again.stdout.splitlines()[0] == (
        "2 files, 6 messages: 0 accepted (0 reports), 6 already imported, 0 duplicates, "
        "0 rejected")
    assert (_count(broker.bootstrap, REPORTS_FINAL),
            _count(broker.bootstrap, dlq(REPORTS_FINAL))) == after


@pytest.mark.integration
def test_an_interrupted_import_resumes_after_the_last_confirmed_message(
        broker: EmbeddedBroker, tmp_path: Path) -> None:
    import hashlib

    create_topics(broker.bootstrap, [TopicSpec(REPORTS_FINAL, 1), TopicSpec(dlq(REPORTS_FINAL), 1)])
    data = s.POWERSCRIBE_FINAL.replace(b"PS-000123", b"R-1") + s.MIRTH_RELAYED.replace(
        b"M-42", b"R-2") + s.EPIC_TWO_EXAMS.replace(b"E9000011", b"R-3")
    path = tmp_path / "2021.hl7"
    path.write_bytes(data)
    checkpoint = tmp_path / "ckpt.json"
    # As a run killed after the broker confirmed the first message leaves it.
    checkpoint.write_text(json.dumps({hashlib.sha256(data).hexdigest(): 1}))
    result = runner.invoke(app, ["hl7", "import", str(path), "--bootstrap", broker.bootstrap,
                                 "--mapping", str(s.write_mapping(tmp_path)),
                                 "--checkpoint", str(checkpoint), "--workers", "1"])
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[0] == (
        "1 files, 3 messages: 2 accepted (3 reports), 1 already imported, 0 duplicates, "
        "0 rejected")
    assert json.loads(checkpoint.read_text()) == {hashlib.sha256(data).hexdigest(): 3}


def test_listen_and_import_fail_in_one_line(tmp_path: Path) -> None:
    bad_yaml = tmp_path / "m.yaml"
    bad_yaml.write_text("facilities: [\n")
    for args in (["hl7", "listen", "--mapping", str(bad_yaml)],
                 ["hl7", "listen", "--bootstrap", "127.0.0.1:1", "--port", "1"],
                 ["hl7", "import", str(tmp_path / "missing"), "--bootstrap", "127.0.0.1:1"]):
        result = runner.invoke(app, args)
        assert result.exit_code == 2, result.output
        assert len(result.stderr.splitlines()) == 1, result.stderr
        assert result.stderr.startswith("error: ")
