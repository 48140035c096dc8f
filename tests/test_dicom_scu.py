"""The storage SCU keeps every C-STORE response for the call waiting for it.

Under CPU load, pynetdicom's association reactor could wake up during an exchange and take
the response off the DIMSE queue (`dicom_scu`'s docstring); with 4 benchmark senders on 2
busy cores one association in a few runs then hung for its timeouts and was aborted. Here
the scheduling that load produced is forced on a real association to our SCP: the reactor
thread, released after an exchange, is held back until the next response has arrived, and
the sending thread is held back between sending a request and reading its response. With
pynetdicom's own association every second C-STORE loses its response.
"""

from __future__ import annotations

import threading
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from pynetdicom import AE, _config
from pynetdicom.acse import ACSE
from pynetdicom.association import Association
from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]

from surveillance.clinical.baselines import load_registry
from surveillance.embedded import EmbeddedBroker
from surveillance.interop.dicom_scu import associate, refusal
from surveillance.interop.dicom_service import DicomConfig, DicomService
from surveillance.stream.topics import TopicSpec, create_topics, dlq
from tests.dicom_corpus import build
from tests.test_dicom_network import IMAGE_CLASSES

pytestmark = pytest.mark.integration


class _LateReactorCheckpoint(threading.Event):
    """The association's pause checkpoint; the reactor thread, once released, resumes
    only when a message is waiting on the DIMSE queue (or after a second)."""

    def __init__(self, assoc: Association) -> None:
        super().__init__()
        self.set()
        self._assoc = assoc

    def wait(self, timeout: float | None = None) -> bool:
        released = super().wait(timeout)
        if threading.current_thread() is self._assoc:
            deadline = time.monotonic() + 1.0
            while not self._assoc.dimse.msg_queue.qsize() and time.monotonic() < deadline:
                time.sleep(0.002)
        return released


def _slow_reader(assoc: Association) -> None:
    """The sending thread is descheduled between sending a request and reading."""
    send_msg = assoc.dimse.send_msg

    def send_then_stall(*args: Any, **kwargs: Any) -> None:
        send_msg(*args, **kwargs)
        time.sleep(0.3)

    assoc.dimse.send_msg = send_then_stall  # type: ignore[method-assign]


def test_a_late_reactor_does_not_take_c_store_responses(
    broker: EmbeddedBroker, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_config, "STORE_SEND_CHUNKED_DATASET", True)
    topic = f"ai.results.dicom-{uuid.uuid4().hex[:8]}"
    create_topics(broker.bootstrap, [TopicSpec(topic, 1), TopicSpec(dlq(topic), 1)])
    corpus = build(n_studies=3, sites={"PACS": "default"}, work=tmp_path, seed=3)
    config = DicomConfig(bootstrap=broker.bootstrap, spool_path=tmp_path / "spool.sqlite",
                         port=0, topic=topic)
    svc = DicomService(config, load_registry()).start()
    try:
        # A lost response waits this long; a loaded machine answers late, never this late.
        assoc = associate("127.0.0.1", svc.port, "PACS", IMAGE_CLASSES, dimse_timeout=30)
        assert assoc.is_established
        assoc._reactor_checkpoint = _LateReactorCheckpoint(assoc)
        _slow_reader(assoc)
        statuses = []
        try:
            for item in corpus.items:
                status = assoc.send_c_store(item.path)
                statuses.append(int(status.Status) if "Status" in status else None)
        finally:
            if assoc.is_established:
                assoc.release()
    finally:
        svc.stop()
    assert statuses == [0] * len(corpus.items)


def _stalled_requestor(monkeypatch: pytest.MonkeyPatch) -> None:
    """The requesting thread is descheduled right after queuing its A-ASSOCIATE-RQ, as a
    loaded machine can: the refusal arrives and the SCP closes the socket before the
    requestor checks that it is still connected."""
    send_request = ACSE.send_request

    def send_then_stall(self: ACSE) -> None:
        send_request(self)
        time.sleep(0.5)

    monkeypatch.setattr(ACSE, "send_request", send_then_stall)


@pytest.mark.parametrize("stall", [False, True])
def test_a_refusal_is_reported_as_a_refusal_with_its_reason(
    broker: EmbeddedBroker, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, stall: bool
) -> None:
    topic = f"ai.results.dicom-{uuid.uuid4().hex[:8]}"
    create_topics(broker.bootstrap, [TopicSpec(topic, 1), TopicSpec(dlq(topic), 1)])
    config = DicomConfig(bootstrap=broker.bootstrap, spool_path=tmp_path / "spool.sqlite",
                         port=0, topic=topic, allowed_calling_aets=("PACS",))
    svc = DicomService(config, load_registry()).start()
    try:
        if stall:
            _stalled_requestor(monkeypatch)
            # The race is forced: pynetdicom's own requestor takes this refusal for an abort.
            ae = AE(ae_title="INTRUDER")
            ae.add_requested_context(Verification)
            bare = ae.associate("127.0.0.1", svc.port, ae_title="SURVEILLANCE")
            assert bare.is_aborted and not bare.is_rejected
        assoc = associate("127.0.0.1", svc.port, "INTRUDER", [Verification])
        assert not assoc.is_established and not assoc.is_aborted and assoc.is_rejected
        rj = assoc.acceptor.primitive
        assert rj is not None
        # Rejected permanently by the service user: calling AE title not recognised.
        assert (rj.result, rj.result_source, rj.diagnostic) == (1, 1, 3)
        assert refusal(assoc) == ("Rejected Permanent, by the Service User: "
                                  "Calling AE title not recognised")
        # A listed AE associates through the same (stalled) requestor.
        ok = associate("127.0.0.1", svc.port, "PACS", [Verification])
        assert ok.is_established and refusal(ok) is None
        assert ok.send_c_echo().Status == 0
        ok.release()
    finally:
        svc.stop()
