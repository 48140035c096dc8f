"""Fuzz the JSON API against its own OpenAPI document: no input may cause a server error.

Runs the ASGI app in process with the real publisher on the session broker, so accepted
reports really go to `adverse.events`. Bounded and derandomized (seeded by the test).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from pydantic import SecretStr
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error

from surveillance.embedded import EmbeddedBroker
from surveillance.intake import IntakeSettings, KafkaPublisher, create_app
from surveillance.settings import get_settings
from surveillance.stream.topics import ADVERSE_EVENTS, TopicSpec, create_topics

TOKEN = "fuzz-token-" + "c" * 30


@pytest.fixture(scope="module")
def api_schema(broker: EmbeddedBroker, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    create_topics(broker.bootstrap, [TopicSpec(ADVERSE_EVENTS, get_settings().kafka.partitions)])
    # Bounds a hang only: a short one timed out writes on a loaded machine.
    publisher = KafkaPublisher(broker.bootstrap, ADVERSE_EVENTS, attempts=2, timeout_seconds=30)
    state: Path = tmp_path_factory.mktemp("fuzz")
    app = create_app(
        publisher=publisher,
        pseudonym_key=b"fuzz-key",
        state_dir=state,
        intake=IntakeSettings(
            api_tokens={"fuzzer": SecretStr(TOKEN)}, rate_per_minute=100_000, rate_burst=100_000
        ),
        clock=lambda: datetime(2025, 3, 10, 12, tzinfo=UTC),
    )
    yield schemathesis.openapi.from_asgi("/openapi.json", app)
    publisher.close()


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_api_has_no_server_errors(api_schema: Any, mode: GenerationMode) -> None:
    # schemathesis' own pytest decorator does not run under pytest 9, so each operation's
    # case strategy is driven with hypothesis directly; the checks are schemathesis'.
    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert sorted((op.method.upper(), op.path) for op in operations) == [
        ("GET", "/api/v1/adverse-events/{reference}"),
        ("POST", "/api/v1/adverse-events"),
    ]
    seen: list[int] = []
    for operation in operations:

        @given(case=operation.as_strategy(generation_mode=mode))
        @settings(
            max_examples=50,
            deadline=None,
            derandomize=True,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        def run(case: Any) -> None:
            response = case.call_and_validate(
                headers={"Authorization": f"Bearer {TOKEN}"}, checks=[not_a_server_error]
            )
            seen.append(response.status_code)

        run()
    # The fuzzer reached the handler (not only auth or body-size refusals).
    assert 422 in seen
    if mode is GenerationMode.POSITIVE:
        assert {201, 200} & set(seen), sorted(set(seen))


def test_openapi_document_describes_the_report(api_schema: Any) -> None:
    raw = api_schema.raw_schema
    post = raw["paths"]["/api/v1/adverse-events"]["post"]
    assert set(post["responses"]) == {"200", "201", "401", "409", "413", "422", "429", "503"}
    sub = raw["components"]["schemas"]["AdverseEventSubmission"]
    assert set(sub["required"]) == {"aware_date", "event", "device", "reporter", "discordance_type"}
    assert raw["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"
