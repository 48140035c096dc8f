"""The DICOM receiver over real C-STORE, on a real broker, fed odd but valid SRs: a site
named "Main Campus", an algorithm version "5.2.1 build 7", and the year-1 dates some
modalities write for "unknown". A year-1 date is refused at the door (0xA900, a dead
letter naming the field): before, the SCP answered success and the worker's ingest
dead-lettered the results, so the PACS never learned. About 10 s.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest
from pydicom.sr.coding import Code

from surveillance.clinical.baselines import load_registry
from surveillance.contracts import AIResult
from surveillance.embedded import EmbeddedBroker
from surveillance.interop.dicom_scu import associate
from surveillance.interop.dicom_service import DicomConfig, DicomService
from surveillance.stream.topics import TopicSpec, create_topics, dlq
from tests import dicom_samples as S
from tests.test_dicom_network import wait_for
from tests.topic_read import read_topic

pytestmark = pytest.mark.integration

ICH_SCORE = Code("ICH-P", "99RAPID", "ICH probability")
SR_CLASS = "1.2.840.10008.5.1.4.1.1.88.34"


def sr(n: int, content_day: str = "20260812", **header: str) -> object:
    return S.report([S.group(("Rapid ICH", "5.2.1 build 7"), S.ICH,
                             (ICH_SCORE, 0.73, S.UNITLESS))],
                    sop_instance_uid=f"1.2.826.0.1.3680043.10.511.1.100.99.{n}",
                    content=(content_day, "103015.250", "+0200"), **header)


def test_odd_but_valid_values_and_year_one_dates_over_c_store(
    broker: EmbeddedBroker, tmp_path: Path
) -> None:
    topic = f"ai.results.odd-{uuid.uuid4().hex[:8]}"
    create_topics(broker.bootstrap, [TopicSpec(topic, 1), TopicSpec(dlq(topic), 1)])
    config = DicomConfig(bootstrap=broker.bootstrap, spool_path=tmp_path / "spool.sqlite",
                         port=0, sites={"MAINPACS": "Main Campus"},
                         wait_for_images_seconds=1, poll_seconds=0.2, topic=topic)
    service = DicomService(config, load_registry()).start()
    objects = {
        "good": sr(1, AccessionNumber="A-GOOD"),
        "study_year_1": sr(2, AccessionNumber="A-Y1", StudyDate="00010101"),
        "content_year_1": sr(3, "00010101", AccessionNumber="A-C1"),
    }
    try:
        assoc = associate("127.0.0.1", service.port, "MAINPACS", [SR_CLASS],
                          dimse_timeout=120)
        assert assoc.is_established
        try:
            statuses = {name: int(assoc.send_c_store(ds).Status)
                        for name, ds in objects.items()}
        finally:
            assoc.release()
        values = wait_for(broker.bootstrap, topic, 1, 60)
    finally:
        service.stop()
    assert statuses == {"good": 0x0000, "study_year_1": 0xA900, "content_year_1": 0xA900}
    (result,) = [AIResult.model_validate_json(v) for v in values]
    assert (result.accession_number, result.site, result.software_version, result.tool_id) == (
        "A-GOOD", "Main Campus", "5.2.1 build 7", "ich-triage")
    reasons = sorted(json.loads(v)["reason"] for v in read_topic(broker.bootstrap, dlq(topic)))
    assert reasons == [
        "invalid: the SR's inference_date: is before 1980-01-01 (stream.earliest_event_date)",
        "invalid: the SR's study_date: is before 1980-01-01 (stream.earliest_event_date)",
    ]
