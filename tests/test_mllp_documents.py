"""MDM^T02 documents over MLLP on real TCP, onto a real broker: the variations dictation
systems and RIS send (with and without an order group, v2.3 and v2.5.1, TXA-17 LA / AU /
DO, an addendum naming its parent, several OBX, a resend), each ACKed as an ACK^T02 with
the right code; the final ones on `reports.final` as an ORU's would be, the rest not; no
report text in a dead letter's reason or in the log. About 10 s."""

from __future__ import annotations

import json
import logging

import pytest

from surveillance.stream.topics import REPORTS_FINAL, dlq
from tests.mdm_samples import mdm, obx, txa
from tests.test_mllp_real_feeds import listen_and_send, msa
from tests.test_mllp_real_feeds import own_broker as own_broker  # the fixture
from tests.topic_read import read_topic

pytestmark = pytest.mark.integration

ORDER = ("ORC|RE|ORD1|ACC-EPIC", "OBR|1|ORD1|ACC-EPIC|CTHEAD^CT HEAD|||20260815101500")
EPIC = mdm("E1", *ORDER, txa("LA"),
           obx(1, "TX", "FINDINGS: Acute subdural hemorrhage, 6 mm."),
           obx(2, "FT", "IMPRESSION:\\.br\\Acute subdural hematoma.", raw=True))
FRAMES = {
    "epic": EPIC,
    "resend": EPIC,
    # A dictation system on v2.3 with no order group: the study is TXA-15's.
    "dictation": mdm("P1", txa("AU", filler="ACC-DICT", document="PS-9"),
                     obx(1, "TX", "Chest radiograph: no pneumothorax."),
                     obx(2, "TX", "Lines and tubes unchanged."), version="2.3"),
    "preliminary": mdm("P2", txa("DO", filler="ACC-PRELIM"),
                       obx(1, "TX", "Preliminary: possible small pneumothorax.")),
    "addendum": mdm("E2", *ORDER, txa("LA", document="DOC-2", parent="DOC-1"),
                    obx(1, "TX", "Addendum: compared with the outside CT, new.")),
    "no_status": mdm("E3", *ORDER, txa(""), obx(1, "TX", "Secret words of the report.")),
    "notification": mdm("E4", *ORDER, txa("LA"), obx(1, "TX", "No hemorrhage."),
                        event="MDM^T01^MDM_T01"),
}
WORDS = ("subdural", "pneumothorax", "Secret", "hemorrhage", "outside CT")


async def test_documents_over_mllp_are_acked_and_read_as_reports(
        own_broker: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    acks = await listen_and_send(own_broker, list(FRAMES.values()))
    got = {name: msa(ack)[:3] for name, ack in zip(FRAMES, acks, strict=True)}
    assert got == {
        "epic": ["MSA", "AA", "E1"], "resend": ["MSA", "AA", "E1"],
        "dictation": ["MSA", "AA", "P1"], "preliminary": ["MSA", "AA", "P2"],
        "addendum": ["MSA", "AA", "E2"], "no_status": ["MSA", "AE", "E3"],
        "notification": ["MSA", "AR", "E4"],
    }
    # The ACK's MSH-9 answers the document's trigger event.
    assert acks[0].decode().split("\r")[0].split("|")[8] == "ACK^T02^ACK"

    reports = [json.loads(v) for v in read_topic(own_broker, REPORTS_FINAL)]
    by = {(r["accession_number"], r["status"]): r for r in reports}
    assert len(reports) == 3 and sorted(by) == [
        ("ACC-DICT", "final"), ("ACC-EPIC", "addendum"), ("ACC-EPIC", "final")]
    assert by["ACC-EPIC", "final"]["report_text"] == (
        "FINDINGS: Acute subdural hemorrhage, 6 mm.\nIMPRESSION:\nAcute subdural hematoma.")
    assert by["ACC-EPIC", "final"]["finalized_at"].startswith("2026-08-15T14:00:00")
    assert by["ACC-DICT", "final"]["report_text"] == (
        "Chest radiograph: no pneumothorax.\nLines and tubes unchanged.")
    assert by["ACC-DICT", "final"]["patient_id"] == "123456"

    letters = [json.loads(v) for v in read_topic(own_broker, dlq(REPORTS_FINAL))]
    assert sorted(letter["reason"][:34] for letter in letters) == [
        "hl7 listen: AE 101: TXA-17 (docume", "hl7 listen: AR 200: MSH-9 message "]
    # Our own log lines, at every level (the Kafka clients' DEBUG lines print the records
    # they send; they are off unless an operator turns them on).
    logged = "\n".join(r.getMessage() for r in caplog.records
                       if r.name.startswith("surveillance"))
    assert "HL7 message rejected (AE 101): TXA-17" in logged
    for text in [*(letter["reason"] for letter in letters), logged]:
        assert not any(word in text for word in WORDS), text
