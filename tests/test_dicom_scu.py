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
from pynetdicom import _config
from pynetdicom.association import Association

from surveillance.clinical.baselines import load_registry
from surveillance.embedded import EmbeddedBroker
from surveillance.interop.dicom_scu import associate
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
