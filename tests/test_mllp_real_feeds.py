"""The MLLP listener over real TCP on a real broker, fed what hospital feeds send that the
simulator does not: a report time no event can have (year 1, 2099), no result status at
all, a hex-escaped CR inside the report text, frames cut across TCP reads, a FHS/BHS
batch in one frame (was AR for the whole batch, nothing read), ORM/OMI orders on the same
interface (AA, not used: was AR and a dead letter). Before, the
first two got AA and their reports were dead-lettered by the worker (or dropped unseen);
now the sender gets AE with the reason and a dead letter names it. About 10 s.
"""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Iterator

import pytest

from surveillance.embedded import EmbeddedBroker
from surveillance.interop.hl7_mapping import Mapping
from surveillance.interop.hl7_sink import ReportSink
from surveillance.interop.mllp_server import END, START, MllpListener
from surveillance.stream.topics import REPORTS_FINAL, TopicSpec, create_topics, dlq
from tests.hl7_samples import msg, obr
from tests.topic_read import read_topic

pytestmark = pytest.mark.integration


@pytest.fixture
def own_broker() -> Iterator[str]:
    with EmbeddedBroker() as broker:
        create_topics(broker.bootstrap, [TopicSpec(REPORTS_FINAL, 2),
                                         TopicSpec(dlq(REPORTS_FINAL), 1)])
        yield broker.bootstrap


def oru(control: str, f22: str, f25: str, text: str) -> bytes:
    return msg(
        f"MSH|^~\\&|PS360|MAIN|RIS|HOSP|20260815143000||ORU^R01|{control}|P|2.3",
        "PID|1||123456^^^MRN^MR",
        obr(f1="1", f3=f"ACC-{control}", f4="CTHEAD", f22=f22, f25=f25),
        f"OBX|1|TX|&GDT^Report||{text}||||||",
        "ZDS|1.2.840.113619.2.55.3.1^PACS^Application^DICOM",
    )


BATCH = (b"FHS|^~\\&|RIS|NORTH|||20260815\rBHS|^~\\&|RIS|NORTH|||20260815||||B-77\r"
         + oru("B1", "20260815142900", "F", "No pneumothorax.")
         + oru("B2", "00010101", "F", "No pneumothorax.")
         + oru("B3", "20260815143100", "C", "Small pneumothorax.")
         + b"BTS|3\rFTS|1\r")

FRAMES = {
    "year1": oru("Y1", "00010101", "F", "No acute hemorrhage."),
    "future": oru("F1", "20991231", "F", "No acute hemorrhage."),
    "no_status": oru("N1", "20260815142900", "", "No acute hemorrhage."),
    "cr_escape": oru("X1", "20260815142900", "F",
                     "FINDINGS: Hemorrhage is suspected.\\X0D\\IMPRESSION: No hemorrhage."),
    "batch": BATCH,
    "orm": msg("MSH|^~\\&|RIS|NORTH|PACS|NORTH|202608151100||ORM^O01|O1|P|2.3",
               "PID|1||X1", "ORC|NW|ORD1|ACC-ORM", obr(f1="1", f2="ORD1", f3="ACC-ORM")),
    "omi": msg("MSH|^~\\&|RIS|NORTH|PACS|NORTH|202608151100||OMI^O23^OMI_O23|O2|P|2.5",
               "PID|1||X1", "ORC|NW|ORD2|ACC-OMI", "TQ1|1", obr(f1="1", f3="ACC-OMI"),
               "IPC|ACC-OMI|SPS1|1.2.3.4|SPS1"),
    # The report with its PDF (OBX type ED, base64): 1.5 MB, over the default 1 MiB.
    "with_pdf": msg(
        "MSH|^~\\&|PS360|MAIN|RIS|HOSP|20260815143000||ORU^R01|P1|P|2.5",
        obr(f1="1", f3="ACC-PDF", f22="20260815142900", f25="F"),
        "OBX|1|TX|&GDT^Report||IMPRESSION: Small left pneumothorax.||||||F",
        "OBX|2|ED|PDF^Report PDF||^application^pdf^Base64^"
        + base64.b64encode(b"%PDF-1.4 " * 125_000).decode() + "||||||F"),
    "adt": msg("MSH|^~\\&|RIS|NORTH|PACS|NORTH|202608151100||ADT^A08|A1|P|2.5", "PID|1||X1"),
}


async def exchange(port: int, frames: list[bytes]) -> list[bytes]:
    """All frames on one connection, each cut in three writes, a LF after each (a relay's
    habit); the ACKs in order."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    for raw in frames:
        framed = START + raw + END + b"\n"
        for part in (framed[:7], framed[7:-3], framed[-3:]):
            writer.write(part)
            await writer.drain()
            await asyncio.sleep(0.01)
    acks = [(await reader.readuntil(END))[1:-2] for _ in frames]
    writer.close()
    await writer.wait_closed()
    return acks


def msa(ack: bytes) -> list[str]:
    """The MSA fields of a single ACK; of a batch's ACKs, their codes, control ids and the
    batch trailer."""
    lines = [s for s in ack.decode().split("\r") if s]
    found = [s.split("|") for s in lines if s.startswith("MSA")]
    if len(found) == 1:
        return found[0]
    return [line[:3] for line in lines if line[:3] in ("FHS", "BHS", "BTS", "FTS")] + [
        f"{m[1]} {m[2]}" for m in found] + [lines[-2]]


async def listen_and_send(bootstrap: str, frames: list[bytes],
                          max_message_bytes: int = 1 << 20) -> list[bytes]:
    """A listener with the default mapping on `bootstrap`, sent `frames` (`exchange`);
    their ACKs, once the listener and its producer are stopped."""
    sink = await ReportSink(bootstrap, timeout_seconds=20).start()
    listener = MllpListener(sink, Mapping(), max_message_bytes=max_message_bytes)
    server = await listener.serve("127.0.0.1", 0)
    try:
        return await exchange(server.sockets[0].getsockname()[1], frames)
    finally:
        server.close()
        await server.wait_closed()
        await sink.stop()


async def test_real_feed_oddities_get_the_right_ack(own_broker: str) -> None:
    acks = await listen_and_send(own_broker, list(FRAMES.values()), 4 * 1024 * 1024)
    got = dict(zip(FRAMES, map(msa, acks), strict=True))
    report_time = "OBR group 1: the report time (OBR-22, OBR-7, OBX-14, MSH-7)"
    assert got == {
        "year1": ["MSA", "AE", "Y1",
                  f"{report_time} is before 1980-01-01 (stream.earliest_event_date)"],
        "future": ["MSA", "AE", "F1", f"{report_time} is in the future"],
        "no_status": ["MSA", "AE", "N1", got["no_status"][3]],
        "cr_escape": ["MSA", "AA", "X1", ""],
        # A batch in one frame: one ACK per message, in a batch of its own.
        "batch": ["FHS", "BHS", "BTS", "FTS", "AA B1", "AE B2", "AA B3", "BTS|3"],
        # Orders on the results interface: AA, not used, no dead letter (was AR and a
        # dead letter holding the order's identifiers); other types are still refused.
        "orm": ["MSA", "AA", "O1", ""],
        "omi": ["MSA", "AA", "O2", ""],
        "with_pdf": ["MSA", "AA", "P1", ""],
        "adt": ["MSA", "AR", "A1", got["adt"][3]],
    }
    assert got["adt"][3].startswith("MSH-9 message type 'ADT\\S\\A08' is not accepted")
    orm_ack = acks[list(FRAMES).index("orm")].decode().split("\r")[0].split("|")
    assert orm_ack[8] == "ACK^O01^ACK"
    batch_ack = acks[list(FRAMES).index("batch")].decode()
    bhs = next(line for line in batch_ack.split("\r") if line.startswith("BHS"))
    assert bhs.split("|")[11] == "B-77"  # BHS-12 names the batch it answers
    assert got["no_status"][3].startswith("OBR group 1: no result status in OBR-25 or OBX-11")

    reports = {(r := json.loads(v))["accession_number"]: r
               for v in read_topic(own_broker, REPORTS_FINAL)}
    assert sorted(reports) == ["ACC-B1", "ACC-B3", "ACC-PDF", "ACC-X1"]
    assert reports["ACC-PDF"]["report_text"] == "IMPRESSION: Small left pneumothorax."
    assert reports["ACC-X1"]["report_text"] == (
        "FINDINGS: Hemorrhage is suspected.\nIMPRESSION: No hemorrhage.")
    assert (reports["ACC-B3"]["status"], reports["ACC-B3"]["report_text"]) == (
        "corrected", "Small pneumothorax.")
    letters = [json.loads(v) for v in read_topic(own_broker, dlq(REPORTS_FINAL))]
    assert sorted(letter["reason"][:31] for letter in letters) == sorted(
        ["hl7 listen: AE 102: OBR group 1"] * 3 + ["hl7 listen: AE 101: OBR group 1"]
        + ["hl7 listen: AR 200: MSH-9 messa"])
