"""The intake against the real embedded broker: reports consumed back from `adverse.events`."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr

from surveillance.clinical.baselines import load_registry
from surveillance.clinical.regulatory_clock import ObligationStatus
from surveillance.contracts import AdverseEvent
from surveillance.embedded import EmbeddedBroker
from surveillance.intake import (
    IntakeSettings,
    KafkaPublisher,
    ReportStore,
    create_app,
    list_open_reports,
    store_path,
)
from surveillance.privacy import pseudonymize
from surveillance.settings import get_settings
from surveillance.stream.topics import ADVERSE_EVENTS, TopicSpec, create_topics
from tests.topic_read import read_topic

KEY = b"test-pseudonym-key"
TOKEN = "tok-" + "a" * 40
AUTH = {"Authorization": f"Bearer {TOKEN}"}
NOW = datetime(2025, 3, 10, 12, tzinfo=UTC)  # Monday
SETTINGS = IntakeSettings(
    api_tokens={"ris": SecretStr(TOKEN)},
    basic_users={"alice": SecretStr("alice-pw")},
    viewers=["user:alice"],
    csrf_secret=SecretStr("csrf-test-secret"),
    rate_per_minute=600,
    rate_burst=100,
)


def body(sid: str | None = None, **changes: Any) -> dict[str, Any]:
    b: dict[str, Any] = {
        "aware_date": "2025-03-07",  # Friday
        "patient": {"patient_id": "MRN-0042", "age": 71, "sex": "F"},
        "event": {
            "outcome": "hospitalization",
            "event_date": "2025-03-06",
            "narrative": "ICH not flagged; treatment delayed by 3 h.",
        },
        "device": {"tool_id": "ich-triage", "software_version": "2.1.0"},
        "reporter": {"name": "Dr. Ada Q", "role": "radiologist", "contact": "x4242"},
        "accession_number": "ACC-778899",
        "ai_output": 0.31,
        "ai_threshold": 0.5,
        "radiologist_read": "present",
        "discordance_type": "false_negative",
    }
    if sid is not None:
        b["submission_id"] = sid
    b.update(changes)
    return b


def consume(bootstrap: str) -> list[AdverseEvent]:
    return [AdverseEvent.model_validate_json(v) for v in read_topic(bootstrap, ADVERSE_EVENTS)]


def ensure_topic(bootstrap: str) -> None:
    create_topics(bootstrap, [TopicSpec(ADVERSE_EVENTS, get_settings().kafka.partitions)])


def make_client(bootstrap: str, state_dir: Path,
                publisher: KafkaPublisher | None = None) -> TestClient:
    # The broker answers at once; the time-out bounds a hang only. A short one on a loaded
    # machine timed out writes that then landed: a retry duplicated them on the topic
    # (`publisher`'s docstring), or all attempts failed (503).
    publisher = publisher or KafkaPublisher(bootstrap, ADVERSE_EVENTS, timeout_seconds=30)
    app = create_app(
        publisher=publisher,
        pseudonym_key=KEY,
        state_dir=state_dir,
        intake=SETTINGS,
        registry=load_registry(),
        clock=lambda: NOW,
    )
    return TestClient(app)


@pytest.fixture
def client(broker: EmbeddedBroker, tmp_path: Path) -> Iterator[TestClient]:
    ensure_topic(broker.bootstrap)
    with make_client(broker.bootstrap, tmp_path) as c:
        yield c


def open_form(client: TestClient) -> tuple[str, str]:
    page = client.get("/adverse-events/new", auth=("alice", "alice-pw"))
    assert page.status_code == 200
    sid = re.search(r'name="submission_id" value="([^"]+)"', page.text)
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert sid and token
    return sid.group(1), token.group(1)


FORM = {
    "patient_id": "MRN-0042",
    "patient_age": "71",
    "patient_sex": "F",
    "outcome": "death",
    "event_date": "2025-03-06",
    "aware_date": "2025-03-07",
    "narrative": "Missed hemorrhage.",
    "tool_id": "ich-triage",
    "software_version": "2.1.0",
    "accession_number": "ACC-1",
    "discordance_type": "false_negative",
    "reporter_name": "Dr. B",
    "reporter_role": "radiologist",
    "reporter_contact": "x1",
}


def test_api_resubmission_is_on_the_topic_once_with_the_same_reference(
    client: TestClient, broker: EmbeddedBroker
) -> None:
    sid = f"api-{uuid.uuid4().hex}"
    first = client.post("/api/v1/adverse-events", json=body(sid), headers=AUTH)
    second = client.post("/api/v1/adverse-events", json=body(sid), headers=AUTH)
    assert first.status_code == 201, first.text
    assert second.status_code == 200, second.text
    assert first.json()["reference"] == second.json()["reference"]
    assert (first.json()["duplicate"], second.json()["duplicate"]) == (False, True)
    assert first.json()["recorded"] is True
    # Hospitalization, aware Fri 2025-03-07: manufacturer by the 10th work day, Fri 03-21;
    # EU serious deterioration +10 calendar days, Mon 03-17.
    assert [(o["recipient"], o["due"]) for o in first.json()["obligations"]] == [
        ("manufacturer", "2025-03-21"),
        ("competent_authority", "2025-03-17"),
    ]

    mine = [e for e in consume(broker.bootstrap) if e.event_id == sid]
    assert len(mine) == 1
    event = mine[0]
    assert event.pseudonymized is True
    assert event.patient.patient_id == pseudonymize(KEY, "patient", "MRN-0042")
    assert event.accession_number == pseudonymize(KEY, "accession", "ACC-778899")
    entry = load_registry()["ich-triage"]
    assert (event.device.manufacturer, event.device.clearance_number) == (
        entry.manufacturer,
        entry.clearance.submission,
    )
    assert event.received_at == NOW


def test_api_without_submission_id_gets_one_and_raw_ids_never_stored(
    client: TestClient, broker: EmbeddedBroker, tmp_path: Path
) -> None:
    r = client.post("/api/v1/adverse-events", json=body(), headers=AUTH)
    assert r.status_code == 201
    sid = r.json()["submission_id"]
    assert [e.event_id for e in consume(broker.bootstrap)].count(sid) == 1
    raw = store_path(tmp_path).read_bytes()
    assert b"MRN-0042" not in raw and b"ACC-778899" not in raw
    assert pseudonymize(KEY, "patient", "MRN-0042").encode() in raw


def test_form_resubmission_is_on_the_topic_once(client: TestClient, broker: EmbeddedBroker) -> None:
    sid, token = open_form(client)
    data = {**FORM, "submission_id": sid, "csrf_token": token}
    first = client.post("/adverse-events/new", data=data, auth=("alice", "alice-pw"))
    second = client.post("/adverse-events/new", data=data, auth=("alice", "alice-pw"))
    assert first.status_code == 200 and second.status_code == 200
    ref1 = re.search(r'id="reference">([^<]+)<', first.text)
    ref2 = re.search(r'id="reference">([^<]+)<', second.text)
    assert ref1 and ref2 and ref1.group(1) == ref2.group(1)
    assert 'id="duplicate"' in second.text and 'id="duplicate"' not in first.text
    assert [e.event_id for e in consume(broker.bootstrap)].count(sid) == 1


def test_same_submission_id_with_other_content_is_a_conflict(client: TestClient) -> None:
    sid = f"api-{uuid.uuid4().hex}"
    assert client.post("/api/v1/adverse-events", json=body(sid), headers=AUTH).status_code == 201
    other = body(sid, discordance_type="other")
    r = client.post("/api/v1/adverse-events", json=other, headers=AUTH)
    assert r.status_code == 409
    assert "already used" in r.json()["detail"]


def test_api_field_errors(client: TestClient) -> None:
    bad = body(aware_date="2025-03-05")  # before the event date 03-06
    bad["device"] = {"tool_id": "ich-triage", "software_version": "2", "clearance_number": "K1"}
    bad["event"] = {**bad["event"], "event_date": "2025-03-05"}
    bad["aware_date"] = "2025-03-04"
    r = client.post("/api/v1/adverse-events", json=bad, headers=AUTH)
    assert r.status_code == 422
    locs = {tuple(d["loc"]): d["msg"] for d in r.json()["detail"]}
    assert locs == {
        ("body", "device", "clearance_number"): "This tool's clearance number is K222884; "
        "correct it or leave it blank.",
        ("body", "aware_date"): "The facility cannot have become aware before the event date.",
    }
    future = body(aware_date="2025-03-11")
    future["device"] = {"tool_id": "nope", "software_version": "1"}
    r = client.post("/api/v1/adverse-events", json=future, headers=AUTH)
    assert {tuple(d["loc"]) for d in r.json()["detail"]} == {
        ("body", "device", "tool_id"),
        ("body", "aware_date"),
    }
    missing = body()
    del missing["discordance_type"]
    r = client.post("/api/v1/adverse-events", json=missing, headers=AUTH)
    assert r.status_code == 422
    assert [d["loc"] for d in r.json()["detail"]] == [["body", "discordance_type"]]


def test_broker_down_says_not_recorded_and_a_retry_records_once(tmp_path: Path) -> None:
    own = EmbeddedBroker().start()
    try:
        ensure_topic(own.bootstrap)
        # Short attempts while the broker is away (each waits the whole time-out).
        publisher = KafkaPublisher(own.bootstrap, ADVERSE_EVENTS, attempts=2,
                                   timeout_seconds=1.5, backoff_seconds=0.2)
        with make_client(own.bootstrap, tmp_path, publisher) as c:
            ok = c.post("/api/v1/adverse-events", json=body(), headers=AUTH)
            assert ok.status_code == 201
            own.stop()

            sid = f"api-{uuid.uuid4().hex}"
            down = c.post("/api/v1/adverse-events", json=body(sid), headers=AUTH)
            assert down.status_code == 503
            assert down.json()["recorded"] is False
            assert down.json()["submission_id"] == sid
            assert down.json()["detail"].startswith("NOT recorded")

            form_sid, token = open_form(c)
            data = {**FORM, "submission_id": form_sid, "csrf_token": token}
            page = c.post("/adverse-events/new", data=data, auth=("alice", "alice-pw"))
            assert page.status_code == 503
            assert "Your report was NOT recorded" in page.text
            assert "Report recorded" not in page.text and 'id="reference"' not in page.text
            # The person's answers are kept for the retry, under the same submission id.
            assert f'value="{form_sid}"' in page.text and "Missed hemorrhage." in page.text

            stored = [r.event.event_id for r in ReportStore(store_path(tmp_path)).recent()]
            assert sid not in stored and form_sid not in stored

            # The broker comes back (memory storage: an empty one on the same port).
            own = EmbeddedBroker(port=own.port).start()
            ensure_topic(own.bootstrap)
            # It answers now: the next producer waits as long as a healthy broker needs.
            publisher.timeout_seconds = 30
            again = c.post("/api/v1/adverse-events", json=body(sid), headers=AUTH)
            assert again.status_code == 201 and again.json()["duplicate"] is False
            assert [e.event_id for e in consume(own.bootstrap)].count(sid) == 1
    finally:
        own.stop()


def test_list_open_reports_tracks_status_and_done(client: TestClient, tmp_path: Path) -> None:
    serious = client.post("/api/v1/adverse-events", json=body(), headers=AUTH).json()
    minor = body()
    minor["event"] = {**minor["event"], "outcome": "non_serious"}
    assert client.post("/api/v1/adverse-events", json=minor, headers=AUTH).status_code == 201

    # 2025-03-16: EU due 03-17 (1 day: due soon), US manufacturer due 03-21 (open).
    rows = list_open_reports(tmp_path, datetime(2025, 3, 16, 9, tzinfo=UTC))
    assert [r.reference for r in rows] == [serious["reference"]]  # non-serious opens nothing
    assert [(o.recipient, o.due, o.status) for o in rows[0].obligations] == [
        ("manufacturer", date(2025, 3, 21), ObligationStatus.OPEN),
        ("competent_authority", date(2025, 3, 17), ObligationStatus.DUE_SOON),
    ]
    store = ReportStore(store_path(tmp_path))
    assert store.mark_done(serious["reference"], "eu_mdr:competent_authority", date(2025, 3, 16))
    assert not store.mark_done("AE-NOPE", "us_803:fda", date(2025, 3, 16))
    rows = list_open_reports(tmp_path, datetime(2025, 3, 25, 9, tzinfo=UTC))
    assert [(o.recipient, o.status) for o in rows[0].obligations] == [
        ("manufacturer", ObligationStatus.OVERDUE),
        ("competent_authority", ObligationStatus.DONE),
    ]
    store.mark_done(serious["reference"], "us_803:manufacturer", date(2025, 3, 25))
    assert list_open_reports(tmp_path, datetime(2025, 3, 25, 9, tzinfo=UTC)) == []
    assert list_open_reports(tmp_path / "nothing-here", NOW) == []
