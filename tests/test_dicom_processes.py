"""`dicom listen` with two C-STORE processes on one port (SO_REUSEPORT, one shared spool).

Images go over many associations (the kernel spreads them over both processes); then the
first process stops accepting, so every SR arrives at the other one, which only stores
it: the first process must publish each result exactly once with the scanner of its
study, whichever process took the image, and SRs resent after publishing (to the other
process) must not be published again.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from pynetdicom import _config

from surveillance.clinical.baselines import load_registry
from surveillance.contracts import AIResult
from surveillance.embedded import EmbeddedBroker
from surveillance.interop.dicom_service import DicomConfig, DicomService
from surveillance.stream.topics import TopicSpec, create_topics, dlq
from tests.dicom_corpus import Item, build
from tests.test_dicom_network import send, wait_for
from tests.topic_read import read_topic

pytestmark = pytest.mark.integration


def test_two_processes_on_one_port_share_the_wait_for_images_and_publish_once(
    broker: EmbeddedBroker, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_config, "STORE_SEND_CHUNKED_DATASET", True)
    topic = f"ai.results.dicom-{uuid.uuid4().hex[:8]}"
    create_topics(broker.bootstrap, [TopicSpec(topic, 2), TopicSpec(dlq(topic), 1)])
    corpus = build(n_studies=40, sites={"PACS": "default"}, work=tmp_path, seed=11)
    images = [i for i in corpus.items if i.kind == "image"]
    srs = [i for i in corpus.items if i.kind == "sr"]
    config = DicomConfig(bootstrap=broker.bootstrap, spool_path=tmp_path / "spool.sqlite",
                         port=0, wait_for_images_seconds=3600, poll_seconds=0.2,
                         topic=topic, processes=2)
    svc = DicomService(config, load_registry()).start()
    port = svc.port
    statuses: list[tuple[Item, int]] = []
    try:
        assert len(svc._others) == 1 and svc._others[0].is_alive()
        for start in range(0, len(images), 4):  # 10 associations
            send(port, "PACS", images[start : start + 4], statuses)
        # Only the other process accepts from now on.
        svc._server.shutdown()
        svc._server = None
        send(port, "PACS", srs, statuses)
        values = wait_for(broker.bootstrap, topic, len(corpus.expected), 60)
        send(port, "PACS", srs[:5], statuses)  # resent after publishing
        assert svc.spool.pending_count() == 0
    finally:
        svc.stop()
    assert [s for _, s in statuses] == [0] * (len(corpus.items) + 5)
    assert sorted(read_topic(broker.bootstrap, topic)) == sorted(values)  # no more after resend
    results = [AIResult.model_validate_json(v) for v in values]
    assert len(results) == len({r.event_id for r in results}) == len(corpus.expected)
    got = {(r.accession_number, r.tool_id): r for r in results}
    assert set(got) == set(corpus.expected)
    for key, want in corpus.expected.items():
        assert (got[key].scanner, got[key].acquisition) == (want.scanner, want.acquisition)
    assert not svc._others
