"""The C-STORE SCP over TCP with pynetdicom's SCU, into the real embedded broker.

2,000 objects (SRs and images, shuffled so SRs often come before their study's images,
2% resent, 1% unsupported, corrupt or unmapped): every usable SR's results on the topic
exactly once with its study's scanner and acquisition, every bad object refused with its
failure status and dead-lettered, and no pixel data on the topics or on the SCP's disk.
"""

from __future__ import annotations

import base64
import json
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from pynetdicom import AE, _config, evt
from pynetdicom.association import Association
from pynetdicom.pdu import A_ASSOCIATE_RJ
from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]

from surveillance.clinical.baselines import load_registry
from surveillance.contracts import AIResult, DeadLetter
from surveillance.embedded import EmbeddedBroker, free_port
from surveillance.interop.dicom_scu import associate
from surveillance.interop.dicom_service import DicomConfig, DicomService
from surveillance.observe.metrics import REGISTRY
from surveillance.stream.runner import WorkerProcess
from surveillance.stream.topics import TopicSpec, create_topics, dlq
from tests.dicom_corpus import PIXEL_MARK, ULTRASOUND, Corpus, Item, build
from tests.topic_read import read_topic

pytestmark = pytest.mark.integration

SITES = {"PACS": "site-a", "ORCH": "site-b"}
SR_CLASS = "1.2.840.10008.5.1.4.1.1.88.34"
IMAGE_CLASSES = ["1.2.840.10008.5.1.4.1.1.2", "1.2.840.10008.5.1.4.1.1.1.1",
                 "1.2.840.10008.5.1.4.1.1.7", ULTRASOUND, SR_CLASS]


def wait_for(bootstrap: str, topic: str, n: int, timeout: float) -> list[bytes]:
    deadline = time.monotonic() + timeout
    values: list[bytes] = []
    while time.monotonic() < deadline:
        values = read_topic(bootstrap, topic)
        if len(values) >= n:
            time.sleep(1.5)  # anything extra (a duplicate) would show up now
            return read_topic(bootstrap, topic)
        time.sleep(1.0)
    return values


@dataclass
class Listener:
    """`surveillance dicom listen` in its own process, on its own topic."""

    process: WorkerProcess
    port: int
    topic: str

    @property
    def stow(self) -> str:
        return self.process.url

    def metric(self, name: str, **labels: str) -> float:
        text = httpx.get(f"{self.stow}/metrics", timeout=10).text
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name == name and all(sample.labels.get(k) == v
                                               for k, v in labels.items()):
                    return float(sample.value)
        return 0.0

    def objects(self, status: str) -> float:
        text = httpx.get(f"{self.stow}/metrics", timeout=10).text
        return sum(sample.value for family in text_string_to_metric_families(text)
                   for sample in family.samples
                   if sample.name == "surveillance_dicom_objects_total"
                   and sample.labels["status"] == status)


@pytest.fixture(scope="module")
def listener(broker: EmbeddedBroker, tmp_path_factory: pytest.TempPathFactory
             ) -> Iterator[Listener]:
    topic = f"ai.results.dicom-{uuid.uuid4().hex[:8]}"
    create_topics(broker.bootstrap, [TopicSpec(topic, 2), TopicSpec(dlq(topic), 1)])
    port = free_port()
    process = WorkerProcess(
        broker.bootstrap, tmp_path_factory.mktemp("listener"), command="dicom",
        args=("listen",), env={
            "SURVEILLANCE_DICOM__HOST": "127.0.0.1",
            "SURVEILLANCE_DICOM__PORT": str(port),
            "SURVEILLANCE_DICOM__ALLOWED_CALLING_AETS": json.dumps(sorted(SITES)),
            "SURVEILLANCE_DICOM__SITES": json.dumps(SITES),
            "SURVEILLANCE_DICOM__DEFAULT_SITE": "site-z",
            "SURVEILLANCE_DICOM__TOPIC": topic,
        })
    process._env["SURVEILLANCE_DICOM__STOW_PORT"] = str(process.web_port)
    process.start()
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{process.url}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.3)
        else:
            pytest.fail("dicom listen did not start: " + process.log_tail())
        yield Listener(process, port, topic)
    finally:
        process.stop()


def send(port: int, sender: str, items: list[Item], statuses: list[tuple[Item, int]]) -> None:
    # A loaded 2-core CI machine: slow is not lost.
    assoc = associate("127.0.0.1", port, sender, IMAGE_CLASSES, dimse_timeout=120)
    assert assoc.is_established
    try:
        for item in items:
            assert item.path is not None
            status = assoc.send_c_store(item.path)
            statuses.append((item, int(status.Status) if "Status" in status else -1))
    finally:
        assoc.release()


def test_two_thousand_objects_over_c_store(
    listener: Listener, broker: EmbeddedBroker, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Files go as they are, undecoded (corrupt ones included).
    monkeypatch.setattr(_config, "STORE_SEND_CHUNKED_DATASET", True)
    # 970 studies: 1,940 objects, 39 of them resent (2%), and 21 bad (1%).
    corpus: Corpus = build(n_studies=970, sites=SITES, work=tmp_path, bad=21, resent=39)
    assert len(corpus.items) == 2000
    duplicates_before = listener.objects("duplicate")
    statuses: list[tuple[Item, int]] = []
    # One association per sending AE, one after the other.
    for sender in SITES:
        send(listener.port, sender, [i for i in corpus.items if i.sender == sender], statuses)
    assert len(statuses) == 2000

    # Every object got the status its kind calls for (resends of good ones: success).
    by_kind = Counter((item.kind, status) for item, status in statuses)
    assert {k: v for k, v in by_kind.items() if k[0] in ("image", "sr")} == {
        ("image", 0): sum(i.kind == "image" for i in corpus.items),
        ("sr", 0): sum(i.kind == "sr" for i in corpus.items),
    }
    wrong = Counter((i.kind, hex(s)) for i, s in statuses if s != i.status)
    assert not wrong
    assert {k for k in by_kind if k[0] not in ("image", "sr")} == {
        ("unsupported", 0x0122), ("corrupt", 0xC000), ("unmapped", 0xC001)}

    values = wait_for(broker.bootstrap, listener.topic, len(corpus.expected), 120)
    results = [AIResult.model_validate_json(v) for v in values]
    assert len(results) == len({r.event_id for r in results}) == len(corpus.expected)
    got = {(r.accession_number, r.tool_id): r for r in results}
    assert set(got) == set(corpus.expected)
    for key, want in corpus.expected.items():
        r = got[key]
        assert (r.software_version, r.result_indicator, r.scanner, r.acquisition, r.site) == (
            want.software_version, want.result_indicator, want.scanner, want.acquisition,
            want.site), key
        assert r.ai_result == pytest.approx(want.ai_result, abs=1e-12)
    assert listener.metric("surveillance_dicom_pending_results") == 0

    letters = [DeadLetter.model_validate_json(v)
               for v in read_topic(broker.bootstrap, dlq(listener.topic))]
    assert len(letters) == corpus.bad
    assert Counter(letter.reason.split(":")[0] for letter in letters) == Counter(
        {"unsupported_sop_class": 7, "cannot_understand": 7, "unmapped": 7})
    assert all(letter.source_topic == "dicom.c-store" for letter in letters)

    # No pixel data anywhere: topics (raw and the dead letters' kept bytes) and disk.
    for value in values + read_topic(broker.bootstrap, dlq(listener.topic)):
        assert PIXEL_MARK not in value
    for letter in letters:
        assert PIXEL_MARK not in base64.b64decode(letter.original_b64)
    files = [p for p in listener.process.state_dir.rglob("*") if p.is_file()]
    assert any(p.name.startswith("dicom-spool") for p in files)
    for path in files:
        assert PIXEL_MARK not in path.read_bytes(), path
    assert listener.objects("duplicate") - duplicates_before == corpus.resent


def test_an_sr_whose_images_never_come_is_published_after_the_wait_with_acquisition_unknown(
    broker: EmbeddedBroker, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_config, "STORE_SEND_CHUNKED_DATASET", True)
    topic = f"ai.results.dicom-{uuid.uuid4().hex[:8]}"
    create_topics(broker.bootstrap, [TopicSpec(topic, 1), TopicSpec(dlq(topic), 1)])
    config = DicomConfig(bootstrap=broker.bootstrap, spool_path=tmp_path / "spool.sqlite",
                         port=0, wait_for_images_seconds=1.0, poll_seconds=0.2, topic=topic)
    corpus = build(n_studies=3, sites={"PACS": "default"}, work=tmp_path)
    without = REGISTRY.get_sample_value(
        "surveillance_dicom_results_without_images_total", {"tool": "ptx-triage"}) or 0.0
    svc = DicomService(config, load_registry()).start()
    try:
        srs = [i for i in corpus.items if i.kind == "sr"]
        statuses: list[tuple[Item, int]] = []
        send(svc.port, "PACS", srs, statuses)
        assert [s for _, s in statuses] == [0] * len(srs)
        values = wait_for(broker.bootstrap, topic, len(corpus.expected), 30)
    finally:
        svc.stop()
    results = [AIResult.model_validate_json(v) for v in values]
    assert len(results) == len(corpus.expected)
    for r in results:
        assert (r.scanner.manufacturer, r.scanner.model, r.acquisition.kvp,
                r.acquisition.protocol_name, r.contrast_indication) == ("", "", None, None, None)
    after = REGISTRY.get_sample_value(
        "surveillance_dicom_results_without_images_total", {"tool": "ptx-triage"}) or 0.0
    assert after - without == sum(r.tool_id == "ptx-triage" for r in results)


def refusals_of(calling_ae: str, port: int, stall: float) -> tuple[Association, list[Any]]:
    """Ask for an association as `calling_ae`; the A-ASSOCIATE-RJ PDUs the requestor's
    socket received. `stall` holds the requesting thread back right after its request
    is queued, as a loaded machine can.

    The PDUs, not `is_rejected`: pynetdicom's requestor (3.0.4) checks that its socket is
    still connected after queuing the request, and a refusal that has arrived and closed
    the socket by then is taken for a failed connection (`is_aborted`, `is_rejected`
    False). A stall of a few ms between those lines on a loaded CI machine did that."""
    received: list[Any] = []

    def hold(event: Any) -> None:
        time.sleep(stall)

    ae = AE(ae_title=calling_ae)
    ae.acse_timeout = 120  # bounds a hang only: the answer ends the wait
    ae.add_requested_context(Verification)
    assoc = ae.associate(
        "127.0.0.1", port, ae_title="SURVEILLANCE",
        evt_handlers=[(evt.EVT_REQUESTED, hold),
                      (evt.EVT_PDU_RECV, lambda event: received.append(event.pdu))])
    return assoc, [pdu for pdu in received if isinstance(pdu, A_ASSOCIATE_RJ)]


@pytest.mark.parametrize("stall", [0.0, 0.5])
def test_a_calling_ae_not_on_the_list_cannot_associate(listener: Listener, stall: float
                                                       ) -> None:
    assoc, refusals = refusals_of("INTRUDER", listener.port, stall)
    assert not assoc.is_established
    # Rejected permanently by the service user: calling AE title not recognised.
    assert [(r.result, r.source, r.reason_diagnostic) for r in refusals] == [(1, 1, 3)]
    # A listed AE on the same listener associates and is answered (our SCU: pynetdicom's
    # own association reactor can take a response off the queue under load, dicom_scu).
    ok = associate("127.0.0.1", listener.port, "PACS", [Verification], dimse_timeout=120)
    assert ok.is_established
    assert ok.send_c_echo().Status == 0
    ok.release()


def multipart(paths: list[Path], boundary: str = "b0undary-7f3a") -> tuple[bytes, str]:
    body = b"".join(
        b"--" + boundary.encode() + b"\r\nContent-Type: application/dicom\r\n\r\n"
        + p.read_bytes() + b"\r\n" for p in paths
    ) + b"--" + boundary.encode() + b"--\r\n"
    return body, f'multipart/related; type="application/dicom"; boundary={boundary}'


def sequence(answer: dict, tag: str) -> list[dict]:  # type: ignore[type-arg]
    return list(answer.get(tag, {}).get("Value", []))


def test_stow_rs_stores_the_mix_and_answers_with_the_standard_datasets(
    listener: Listener, broker: EmbeddedBroker, tmp_path: Path
) -> None:
    corpus = build(n_studies=60, sites={"STOW": "site-z"}, work=tmp_path, bad=6, resent=3,
                   seed=9)
    referenced: list[str] = []
    failed: list[int] = []
    with httpx.Client(base_url=listener.stow, timeout=120) as client:
        for start in range(0, len(corpus.items), 25):
            chunk = corpus.items[start : start + 25]
            body, content_type = multipart([i.path for i in chunk])  # type: ignore[misc]
            response = client.post("/studies", content=body,
                                   headers={"Content-Type": content_type})
            bad_here = sum(i.status != 0 for i in chunk)
            assert response.status_code == (200 if bad_here == 0 else 202)
            assert response.headers["content-type"] == "application/dicom+json"
            answer = response.json()
            referenced += [item["00081155"]["Value"][0]
                           for item in sequence(answer, "00081199")]
            failed += [item["00081197"]["Value"][0] for item in sequence(answer, "00081198")]
        # Every part failed: 409; not multipart/related of DICOM: 415.
        bad_only = [i.path for i in corpus.items if i.kind == "unsupported"]
        body, content_type = multipart(bad_only)  # type: ignore[arg-type]
        assert client.post("/studies", content=body,
                           headers={"Content-Type": content_type}).status_code == 409
        assert client.post("/studies", content=b"{}",
                           headers={"Content-Type": "application/json"}).status_code == 415

    good = [i for i in corpus.items if i.status == 0]
    assert len(referenced) == len(good)
    assert sorted(failed) == sorted(
        i.status for i in corpus.items if i.status != 0)
    values = wait_for_accessions(broker.bootstrap, listener.topic,
                                 {a for a, _ in corpus.expected}, 60)
    results = [r for r in values if r.accession_number in {a for a, _ in corpus.expected}]
    assert len(results) == len({r.event_id for r in results}) == len(corpus.expected)
    for r in results:
        want = corpus.expected[(r.accession_number, r.tool_id)]
        assert (r.scanner, r.acquisition, r.site, r.result_indicator) == (
            want.scanner, want.acquisition, "site-z", want.result_indicator)
    for value in read_topic(broker.bootstrap, dlq(listener.topic)):
        assert PIXEL_MARK not in value


def wait_for_accessions(bootstrap: str, topic: str, accessions: set[str], timeout: float
                        ) -> list[AIResult]:
    deadline = time.monotonic() + timeout
    while True:
        results = [AIResult.model_validate_json(v) for v in read_topic(bootstrap, topic)]
        if {r.accession_number for r in results} >= accessions or time.monotonic() > deadline:
            time.sleep(1.5)
            return [AIResult.model_validate_json(v) for v in read_topic(bootstrap, topic)]
        time.sleep(1.0)
