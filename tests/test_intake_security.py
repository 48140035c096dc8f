"""Who may submit and view, CSRF, size and rate limits, escaping and security headers.

These tests are about the web layer, so the publisher records what it was given instead
of talking to a broker (test_intake_api.py covers the broker).
"""

from __future__ import annotations

import base64
import re
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr

from surveillance.contracts import AdverseEvent
from surveillance.intake import IntakeSettings, create_app
from surveillance.intake.auth import Identity, bearer_identity, person_identity
from surveillance.intake.csrf import check_token, make_token
from surveillance.intake.middleware import CSP
from surveillance.intake.ratelimit import RateLimiter

TOKEN = "sys-token-" + "b" * 30
AUTH = {"Authorization": f"Bearer {TOKEN}"}
ALICE = ("alice", "alice-pw")
BOB = ("bob", "bob-pw")
CSRF_SECRET = "csrf-secret-for-tests"
XSS_SCRIPT = "<script>alert(1)</script>"
XSS_IMG = '"><img src=x onerror=alert(1)>'
SQLI = "'; DROP TABLE reports; --"


class RecordingPublisher:
    def __init__(self) -> None:
        self.sent: list[tuple[bytes, bytes]] = []

    def publish(self, key: bytes, value: bytes) -> None:
        self.sent.append((key, value))

    def close(self) -> None:
        return None


def settings(**changes: Any) -> IntakeSettings:
    base: dict[str, Any] = {
        "api_tokens": {"ris": SecretStr(TOKEN)},
        "basic_users": {"alice": SecretStr("alice-pw"), "bob": SecretStr("bob-pw")},
        "viewers": ["user:alice"],
        "csrf_secret": SecretStr(CSRF_SECRET),
        "store_key": SecretStr(base64.b64encode(b"s" * 32).decode()),
        "rate_per_minute": 600,
        "rate_burst": 200,
        "max_body_bytes": 16 * 1024,
    }
    return IntakeSettings(**{**base, **changes})


def build(tmp_path: Path, **changes: Any) -> tuple[TestClient, RecordingPublisher]:
    pub = RecordingPublisher()
    app = create_app(
        publisher=pub,
        pseudonym_key=b"k",
        state_dir=tmp_path,
        intake=settings(**changes),
        clock=lambda: datetime(2025, 3, 10, 12, tzinfo=UTC),
    )
    return TestClient(app), pub


@pytest.fixture
def app(tmp_path: Path) -> Iterator[tuple[TestClient, RecordingPublisher]]:
    client, pub = build(tmp_path)
    with client:
        yield client, pub


def body(**changes: Any) -> dict[str, Any]:
    b: dict[str, Any] = {
        "aware_date": "2025-03-07",
        "event": {"outcome": "death", "event_date": "2025-03-06", "narrative": "n"},
        "device": {"tool_id": "ich-triage", "software_version": "2.1"},
        "reporter": {"name": "Dr A", "role": "radiologist", "contact": "x1"},
        "discordance_type": "false_negative",
    }
    b.update(changes)
    return b


def form_fields(client: TestClient, auth: tuple[str, str] = ALICE) -> dict[str, str]:
    page = client.get("/adverse-events/new", auth=auth)
    sid = re.search(r'name="submission_id" value="([^"]+)"', page.text)
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert sid and token
    return {
        "submission_id": sid.group(1),
        "csrf_token": token.group(1),
        "outcome": "non_serious",
        "event_date": "2025-03-06",
        "aware_date": "2025-03-07",
        "narrative": "n",
        "tool_id": "ich-triage",
        "software_version": "2.1",
        "discordance_type": "other",
        "reporter_name": "A",
        "reporter_role": "r",
        "reporter_contact": "c",
    }


def test_api_refuses_anonymous_and_wrong_tokens(app: tuple[TestClient, RecordingPublisher]) -> None:
    client, pub = app
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {TOKEN}"}):
        r = client.post("/api/v1/adverse-events", json=body(), headers=headers)
        assert r.status_code == 401
        assert r.headers["www-authenticate"] == "Bearer"
    # A person's basic credentials are for the form, not the API.
    assert client.post("/api/v1/adverse-events", json=body(), auth=ALICE).status_code == 401
    assert pub.sent == []
    assert client.post("/api/v1/adverse-events", json=body(), headers=AUTH).status_code == 201


def test_form_refuses_anonymous_wrong_password_and_system_tokens(
    app: tuple[TestClient, RecordingPublisher],
) -> None:
    client, _ = app
    r = client.get("/adverse-events/new")
    assert r.status_code == 401
    assert r.headers["www-authenticate"].startswith("Basic ")
    assert client.get("/adverse-events/new", auth=("alice", "nope")).status_code == 401
    assert client.get("/adverse-events/new", auth=("mallory", "alice-pw")).status_code == 401
    assert client.get("/adverse-events/new", headers=AUTH).status_code == 401
    # The proxy header is ignored unless the settings trust it.
    assert (
        client.get("/adverse-events/new", headers={"X-Forwarded-User": "alice"}).status_code == 401
    )


def test_identity_helpers() -> None:
    cfg = settings()
    assert bearer_identity(f"Bearer {TOKEN}", cfg) == Identity("system", "ris")
    assert bearer_identity(f"bearer  {TOKEN} ", cfg) == Identity("system", "ris")
    assert bearer_identity("Bearer ", cfg) is None
    assert bearer_identity(None, cfg) is None
    assert person_identity({"authorization": "Basic !!!"}, cfg) is None
    assert person_identity({"authorization": "Basic YWxpY2U="}, cfg) is None  # "alice", no ":"


def test_csrf_token_must_match_person_form_and_age(
    app: tuple[TestClient, RecordingPublisher],
) -> None:
    client, pub = app
    data = form_fields(client)
    missing = {k: v for k, v in data.items() if k != "csrf_token"}
    assert client.post("/adverse-events/new", data=missing, auth=ALICE).status_code == 403
    # Alice's token replayed by Bob.
    assert client.post("/adverse-events/new", data=data, auth=BOB).status_code == 403
    # The token of one form on another form (another submission id).
    other = {**data, "submission_id": "abcdefgh12345678"}
    assert client.post("/adverse-events/new", data=other, auth=ALICE).status_code == 403
    # Expired: issued 9 hours ago with the right secret (max age 8 h).
    old = make_token(
        CSRF_SECRET.encode(), "user:alice", data["submission_id"], int(time.time()) - 9 * 3600
    )
    r = client.post("/adverse-events/new", data={**data, "csrf_token": old}, auth=ALICE)
    assert r.status_code == 403
    assert "expired" in r.text
    # A cross-site Origin is refused even with a valid token.
    cross = client.post(
        "/adverse-events/new", data=data, auth=ALICE, headers={"Origin": "https://evil.example"}
    )
    assert cross.status_code == 403
    assert pub.sent == []
    ok = client.post("/adverse-events/new", data=data, auth=ALICE)
    assert ok.status_code == 200 and 'id="reference"' in ok.text
    assert len(pub.sent) == 1


def test_csrf_unit() -> None:
    secret = b"s"
    tok = make_token(secret, "user:a", "sid12345", 1000)
    assert check_token(secret, tok, "user:a", "sid12345", 1000 + 60, max_age=60)
    assert not check_token(secret, tok, "user:a", "sid12345", 1000 + 61, max_age=60)
    assert not check_token(secret, tok, "user:a", "sid12345", 999, max_age=60)  # from the future
    assert not check_token(b"other", tok, "user:a", "sid12345", 1000, max_age=60)
    assert not check_token(secret, "x." + tok.split(".")[1], "user:a", "sid12345", 1000, 60)


def test_request_size_limit_413(app: tuple[TestClient, RecordingPublisher]) -> None:
    client, pub = app
    big = body(event={"outcome": "death", "event_date": "2025-03-06", "narrative": "x" * 20_000})
    r = client.post("/api/v1/adverse-events", json=big, headers=AUTH)
    assert r.status_code == 413
    assert r.json()["detail"] == (
        "The request is larger than 16384 bytes and was not accepted. "
        "Shorten the narrative and submit again."
    )

    # Without a Content-Length (chunked) the limit still holds.
    def chunks() -> Iterator[bytes]:
        for _ in range(40):
            yield b"a" * 1024

    r = client.post(
        "/adverse-events/new",
        content=chunks(),
        auth=ALICE,
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert r.status_code == 413
    assert "larger than 16384 bytes" in r.text
    assert r.headers["content-security-policy"] == CSP
    assert pub.sent == []


def test_rate_limit_per_identity_429(tmp_path: Path) -> None:
    client, _ = build(tmp_path, rate_per_minute=1, rate_burst=3)
    with client:
        codes = [client.get("/adverse-events/new", auth=ALICE).status_code for _ in range(4)]
        assert codes == [200, 200, 200, 429]
        limited = client.get("/adverse-events/new", auth=ALICE)
        assert limited.headers["retry-after"] == "60"
        assert "Too many requests" in limited.text
        # Another person is not affected.
        assert client.get("/adverse-events/new", auth=BOB).status_code == 200
        api = [
            client.post("/api/v1/adverse-events", json=body(), headers=AUTH).status_code
            for _ in range(4)
        ]
        assert api == [201, 201, 201, 429]


def test_rate_limiter_refills() -> None:
    now = [0.0]
    limiter = RateLimiter(per_minute=60, burst=2, clock=lambda: now[0])
    assert [limiter.allow("a") for _ in range(3)] == [True, True, False]
    now[0] = 1.0  # one token back after one second at 60/min
    assert [limiter.allow("a"), limiter.allow("a")] == [True, False]
    with pytest.raises(ValueError):
        RateLimiter(per_minute=0, burst=1)


def test_listing_shows_other_peoples_reports_only_to_reviewers(
    app: tuple[TestClient, RecordingPublisher],
) -> None:
    client, _ = app
    ref = client.post("/api/v1/adverse-events", json=body(), headers=AUTH).json()["reference"]
    assert client.get("/adverse-events").status_code == 401
    r = client.get("/adverse-events", auth=BOB)
    assert r.status_code == 200 and ref not in r.text and "No reports yet" in r.text
    assert ref in client.get("/adverse-events", auth=ALICE).text


def test_xss_and_sql_payloads_are_stored_and_shown_inert(
    app: tuple[TestClient, RecordingPublisher],
) -> None:
    client, pub = app
    narrative = f"{XSS_SCRIPT} {XSS_IMG} {SQLI}"
    evil = body(
        event={"outcome": "death", "event_date": "2025-03-06", "narrative": narrative},
        reporter={"name": XSS_IMG, "role": SQLI, "contact": XSS_SCRIPT},
        device={"tool_id": "ich-triage", "software_version": SQLI[:60]},
    )
    created = client.post("/api/v1/adverse-events", json=evil, headers=AUTH)
    assert created.status_code == 201
    # The SQL text did nothing: the store still answers and holds a second report too.
    assert client.post("/api/v1/adverse-events", json=body(), headers=AUTH).status_code == 201
    assert client.get("/adverse-events", auth=ALICE).text.count('class="report"') == 2
    page = client.get(f"/adverse-events/{created.json()['reference']}", auth=ALICE)
    html = page.text
    assert "<script" not in html and "<img" not in html and "onerror=alert(1)>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "&#34;&gt;&lt;img src=x onerror=alert(1)&gt;" in html
    assert "&#39;; DROP TABLE reports; --" in html
    assert page.headers["content-security-policy"] == CSP
    # Stored as given (the event on the topic carries the text unchanged).
    sent = AdverseEvent.model_validate_json(pub.sent[0][1])
    assert (sent.event.narrative, sent.reporter.name) == (narrative, XSS_IMG)


def test_form_errors_echo_input_escaped(app: tuple[TestClient, RecordingPublisher]) -> None:
    client, pub = app
    data = {
        **form_fields(client),
        "narrative": XSS_SCRIPT,
        "reporter_name": XSS_IMG,
        "event_date": "not-a-date",
        "patient_age": "200",
    }
    r = client.post("/adverse-events/new", data=data, auth=ALICE)
    assert r.status_code == 422
    assert "<script" not in r.text and "<img" not in r.text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;</textarea>" in r.text
    assert 'id="event_date-error"' in r.text and 'id="patient_age-error"' in r.text
    assert pub.sent == []


def test_every_page_has_security_headers_and_no_scripts(
    app: tuple[TestClient, RecordingPublisher],
) -> None:
    client, _ = app
    for path, kw in (
        ("/adverse-events/new", {"auth": ALICE}),
        ("/adverse-events", {"auth": ALICE}),
        ("/adverse-events/new", {}),
        ("/openapi.json", {}),
    ):
        r = client.get(path, **kw)
        assert r.headers["content-security-policy"] == CSP, path
        assert r.headers["x-content-type-options"] == "nosniff"
        assert r.headers["x-frame-options"] == "DENY"
        assert "<script" not in r.text
    assert "script-src" not in CSP and "unsafe-inline" not in CSP
    assert client.get("/docs").status_code == 404  # hosted docs would need CDN scripts
