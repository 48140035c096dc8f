"""FHIR R4 DiagnosticReport in: the pure mapping (exact values), then the service over real
HTTP (uvicorn on a free port, httpx) on the session broker, then schemathesis on its
OpenAPI document (no 5xx)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
import schemathesis
import uvicorn
from hypothesis import HealthCheck, given, settings
from pydantic import SecretStr
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error

from surveillance.contracts import Label, ReportFinal, ReportStatus, StructuredFinding
from surveillance.embedded import EmbeddedBroker
from surveillance.intake.config import IntakeSettings
from surveillance.interop.fhir_app import create_fhir_app
from surveillance.interop.fhir_parse import FhirRejection, FhirSkipped, parse_resource
from surveillance.stream.topics import REPORTS_FINAL, TopicSpec, create_topics
from tests import fhir_samples as f
from tests.served_in_thread import served
from tests.topic_read import read_topic

TOKEN = "fhir-token-" + "d" * 30
ISSUED = datetime(2024, 5, 2, 8, 30, tzinfo=UTC)


def one(resource: dict[str, Any], system: str = "ris") -> Any:
    (result,) = parse_resource(json.dumps(resource).encode(), system)
    return result


def test_final_report_with_acsn_identifier_and_conclusion() -> None:
    got = one(f.report())
    assert isinstance(got, ReportFinal)
    assert got.model_dump(exclude={"event_id"}) == ReportFinal(
        event_id="x", accession_number="ACC-F100", patient_id="MRN-F1", site="site-north",
        finalized_at=ISSUED, status=ReportStatus.FINAL,
        report_text="Large right pneumothorax.",
    ).model_dump(exclude={"event_id"})
    assert got.event_id.startswith("fhir-") and got.event_id == one(f.report()).event_id


def test_conclusion_code_and_presented_form() -> None:
    got = one(f.CODED)
    assert got.findings == [StructuredFinding(finding_code="pneumothorax",
                                              label=Label.PRESENT)]
    assert got.report_text == "FINDINGS: Large right pneumothorax.\nIMPRESSION: Pneumothorax."


def test_accession_from_the_contained_service_request_and_site_from_the_system() -> None:
    got = one(f.report(**{**f.BASED_ON, "performer": []}), system="ris")
    assert (got.accession_number, got.site) == ("ACC-F200", "ris")


@pytest.mark.parametrize(("status", "expected"), [
    ("final", ReportStatus.FINAL), ("amended", ReportStatus.CORRECTED),
    ("corrected", ReportStatus.CORRECTED), ("appended", ReportStatus.ADDENDUM),
    ("cancelled", ReportStatus.CANCELLED), ("entered-in-error", ReportStatus.CANCELLED),
])
def test_statuses(status: str, expected: ReportStatus) -> None:
    got = one(f.report(status=status))
    assert got.status is expected
    if expected is ReportStatus.CANCELLED:
        assert (got.findings, got.report_text) == ([], None)


@pytest.mark.parametrize("status", ["registered", "partial", "preliminary"])
def test_unfinished_statuses_are_skipped(status: str) -> None:
    assert one(f.report(status=status)) == FhirSkipped(f"status {status} not used")


@pytest.mark.parametrize(("resource", "code", "says"), [
    (f.report(identifier=[]), "required", "no accession"),
    (f.report(status="bogus"), "value", "status"),
    (f.report(issued=None), "required", "issued"),
    (f.report(code=None), "structure", "code"),
    (f.report(conclusion=None), "required", "no report text"),
    (f.report(presentedForm=[{"contentType": "text/plain", "data": "***"}]), "value",
     "presentedForm[0]"),
    ({"resourceType": "Patient"}, "not-supported", "resourceType"),
])
def test_rejections(resource: dict[str, Any], code: str, says: str) -> None:
    clean = {k: v for k, v in resource.items() if v is not None}
    got = one(clean)
    assert isinstance(got, FhirRejection) and got.code == code and says in got.reason, got
    assert "MRN-F1" not in got.reason and "pneumothorax" not in got.reason.lower()


def test_transaction_bundle_resolves_the_service_request_entry() -> None:
    results = parse_resource(json.dumps(f.bundle("transaction", [
        f.SERVICE_REQUEST_ENTRY, f.REPORT_ENTRY])).encode(), "ris")
    assert isinstance(results[0], FhirSkipped)
    assert isinstance(results[1], ReportFinal) and results[1].accession_number == "ACC-F300"


# --- the service over real HTTP ------------------------------------------------------


@pytest.fixture(scope="module")
def service(broker: EmbeddedBroker) -> Iterator[str]:
    create_topics(broker.bootstrap, [TopicSpec(REPORTS_FINAL, 1)])
    app = create_fhir_app(IntakeSettings(api_tokens={"ris": SecretStr(TOKEN)}),
                          broker.bootstrap)
    config = uvicorn.Config(app, log_level="warning", lifespan="on")
    with served(config, "the FHIR app") as port:
        yield f"http://127.0.0.1:{port}"


def _post(url: str, body: Any, token: str | None = TOKEN,
          kind: str = "application/fhir+json") -> httpx.Response:
    headers = {"Content-Type": kind}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    return httpx.post(url, content=data, headers=headers, timeout=30)


def _topic_ids(bootstrap: str) -> dict[str, dict[str, Any]]:
    return {(v := json.loads(raw))["event_id"]: v for raw in read_topic(bootstrap, REPORTS_FINAL)}


@pytest.mark.integration
def test_service_creates_refuses_and_answers_bundles(service: str,
                                                     broker: EmbeddedBroker) -> None:
    meta = httpx.get(f"{service}/fhir/metadata", timeout=10)
    assert meta.status_code == 200 and meta.json()["resourceType"] == "CapabilityStatement"
    assert meta.json()["fhirVersion"] == "4.0.1"

    created = _post(f"{service}/fhir/DiagnosticReport", f.CODED)
    assert created.status_code == 201, created.text
    event = one(f.CODED)
    assert created.headers["location"] == f"/fhir/DiagnosticReport/{event.event_id}"

    no_token = _post(f"{service}/fhir/DiagnosticReport", f.CODED, token=None)
    assert no_token.status_code == 401
    assert no_token.json()["issue"][0]["code"] == "security"
    wrong_type = _post(f"{service}/fhir/DiagnosticReport", f.CODED, kind="text/plain")
    assert wrong_type.status_code == 415
    not_json = _post(f"{service}/fhir/DiagnosticReport", b"{not json")
    assert not_json.status_code == 400
    assert not_json.json()["resourceType"] == "OperationOutcome"
    no_acc = _post(f"{service}/fhir/DiagnosticReport", f.report(identifier=[]))
    assert no_acc.status_code == 422
    assert "no accession" in no_acc.json()["issue"][0]["diagnostics"]
    prelim = _post(f"{service}/fhir/DiagnosticReport", f.report(status="preliminary"))
    assert prelim.status_code == 200 and prelim.json()["issue"][0]["severity"] == "information"

    batch = _post(f"{service}/fhir", f.bundle("batch", [
        f.SERVICE_REQUEST_ENTRY, f.REPORT_ENTRY, f.BAD_ENTRY]))
    assert batch.status_code == 200
    assert [e["response"]["status"] for e in batch.json()["entry"]] == [
        "200 OK", "201 Created", "422 Unprocessable Entity"]
    assert batch.json()["type"] == "batch-response"

    tx_only = {**f.REPORT_ENTRY, "resource": {**f.REPORT_ENTRY["resource"],
                                              "conclusion": "tx only"}}
    failed_tx = _post(f"{service}/fhir", f.bundle("transaction", [
        f.SERVICE_REQUEST_ENTRY, tx_only, f.BAD_ENTRY]))
    assert failed_tx.status_code == 422

    on_topic = _topic_ids(broker.bootstrap)
    assert on_topic[event.event_id]["accession_number"] == "ACC-F100"
    assert on_topic[event.event_id]["findings"] == [
        {"finding_code": "pneumothorax", "label": "present"}]
    accessions = [v["accession_number"] for v in on_topic.values()]
    # The batch's good entry was written; nothing of the failed transaction was.
    assert "ACC-F300" in accessions
    assert not any(v.get("report_text") == "tx only" for v in on_topic.values())
    assert "ACC-F200" not in accessions


@pytest.mark.integration
def test_service_takes_a_report_with_its_observations_and_refuses_year_one(
        service: str, broker: EmbeddedBroker) -> None:
    """What report systems send beside the simulator's resources: a transaction with the
    report's Observation and Patient (was a 422 for the whole bundle), and an `issued`
    of year 1 (was 201, then a dead letter at the worker's ingest)."""
    observation = {"fullUrl": "urn:uuid:7c0e6a52-0000-4000-8000-0000000000a1",
                   "resource": {"resourceType": "Observation", "status": "final",
                                "code": {"text": "Impression"},
                                "valueString": "Small left pneumothorax."},
                   "request": {"method": "POST", "url": "Observation"}}
    patient = {"fullUrl": "urn:uuid:7c0e6a52-0000-4000-8000-0000000000a2",
               "resource": {"resourceType": "Patient", "id": "p1"},
               "request": {"method": "POST", "url": "Patient"}}
    report = {**f.REPORT_ENTRY, "resource": {**f.REPORT_ENTRY["resource"],
                                             "conclusion": "with its observation"}}
    tx = _post(f"{service}/fhir", f.bundle("transaction", [
        patient, f.SERVICE_REQUEST_ENTRY, observation, report]))
    assert tx.status_code == 200, tx.text
    assert [e["response"]["status"] for e in tx.json()["entry"]] == [
        "200 OK", "200 OK", "200 OK", "201 Created"]

    year_one = _post(f"{service}/fhir/DiagnosticReport",
                     f.report(issued="0001-01-01T00:00:00Z"))
    assert year_one.status_code == 422
    assert year_one.json()["issue"][0]["diagnostics"] == (
        "DiagnosticReport.issued: is before 1980-01-01 (stream.earliest_event_date)")
    texts = [v.get("report_text") for v in _topic_ids(broker.bootstrap).values()]
    assert "with its observation" in texts


# --- schemathesis on the OpenAPI document -------------------------------------------


@pytest.mark.integration
@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_openapi_fuzz_finds_no_server_error(broker: EmbeddedBroker,
                                            mode: GenerationMode) -> None:
    create_topics(broker.bootstrap, [TopicSpec(REPORTS_FINAL, 1)])
    app = create_fhir_app(IntakeSettings(api_tokens={"ris": SecretStr(TOKEN)}),
                          broker.bootstrap)
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert sorted((op.method.upper(), op.path) for op in operations) == [
        ("GET", "/fhir/metadata"), ("POST", "/fhir"), ("POST", "/fhir/DiagnosticReport")]
    seen: list[int] = []
    for operation in operations:
        if mode is GenerationMode.NEGATIVE and operation.method.upper() == "GET":
            continue  # no parameters: nothing to make invalid

        @given(case=operation.as_strategy(generation_mode=mode))
        @settings(max_examples=25, deadline=None, derandomize=True, database=None,
                  suppress_health_check=list(HealthCheck))
        def run(case: Any) -> None:
            response = case.call_and_validate(
                headers={"Authorization": f"Bearer {TOKEN}"}, checks=[not_a_server_error])
            seen.append(response.status_code)

        run()
    assert 422 in seen or 400 in seen
