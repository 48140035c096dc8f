"""The intake under attack and behind a proxy, over real HTTP: uvicorn serving the app as
`surveillance intake` does (`server_config`), httpx as the client, the real broker.

Sign-in lockouts, NUL, NaN/Infinity, security headers on every status, the form's origin
check behind a TLS-terminating proxy, HSTS, who may read a report and the audit of every
read, and the store file's mode and sealed text. The rate-limit clock is injected and
moved by the tests, so nothing here waits for a lockout to run out.
"""

from __future__ import annotations

import asyncio
import base64
import ipaddress
import json
import logging
import os
import re
import sqlite3
import ssl
import stat
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from hypothesis import given
from hypothesis import settings as settings_h
from hypothesis import strategies as st
from pydantic import SecretStr, ValidationError

from surveillance.clinical.baselines import load_registry
from surveillance.contracts import AdverseEvent
from surveillance.embedded import EmbeddedBroker
from surveillance.intake import IntakeSettings, KafkaPublisher, create_app, store_path
from surveillance.intake.middleware import CSP
from surveillance.intake.ratelimit import Lockout
from surveillance.intake.server import server_config
from surveillance.intake.submission import AdverseEventSubmission, to_event
from surveillance.settings import get_settings
from surveillance.store.batch import write_batch
from surveillance.store.migrate import migrate
from surveillance.store.rows import Decoder, Rows
from surveillance.stream.topics import ADVERSE_EVENTS, TopicSpec, create_topics
from tests.served_in_thread import served
from tests.topic_read import read_records, read_topic

pytestmark = pytest.mark.integration

TOKEN = "hardening-token-" + "d" * 32
AUTH = {"Authorization": f"Bearer {TOKEN}"}
ALICE = ("alice", "alice-pw")  # the reviewer
BOB = ("bob", "bob-pw")
CAROL = ("carol", "carol-pw")
NOW = datetime(2025, 3, 10, 12, tzinfo=UTC)
MRN = "MRN-HARDEN-4242"
NARRATIVE = "Hemorrhage missed; patient Jane Roe called back."
CONTACT = "ext-7311 pager"
STORE_KEY = base64.b64encode(b"k" * 32).decode()
PROXY_HEADERS = {
    "Host": "intake:8080",  # the proxy rewrites Host to its upstream...
    "X-Forwarded-Host": "intake.hospital.example",  # ...and says what the browser used
    "X-Forwarded-Proto": "https",
}
ORIGIN = "https://intake.hospital.example"


class Clock:
    """The limits' monotonic clock, moved by the test."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class ExplodingPublisher(KafkaPublisher):
    """The real publisher, with a bug planted: it raises on one narrative."""

    def publish(self, key: bytes, value: bytes) -> None:
        if b"EXPLODE" in value:
            raise RuntimeError(f"bug while publishing {value.decode()}")
        super().publish(key, value)


def settings(**changes: Any) -> IntakeSettings:
    base: dict[str, Any] = {
        "api_tokens": {"ris": SecretStr(TOKEN)},
        "basic_users": {
            "alice": SecretStr("alice-pw"),
            "bob": SecretStr("bob-pw"),
            "carol": SecretStr("carol-pw"),
        },
        "viewers": ["user:alice"],
        "csrf_secret": SecretStr("csrf-hardening"),
        "store_key": SecretStr(STORE_KEY),
        "rate_per_minute": 10_000,
        "rate_burst": 10_000,
        "client_rate_per_minute": 10_000,
        "client_rate_burst": 10_000,
    }
    return IntakeSettings(**{**base, **changes})


@pytest.fixture(scope="module")
def bootstrap(broker: EmbeddedBroker) -> str:
    create_topics(broker.bootstrap, [TopicSpec(ADVERSE_EVENTS, get_settings().kafka.partitions)])
    return broker.bootstrap


@contextmanager
def serving(
    bootstrap: str,
    state_dir: Path,
    clock: Clock | None = None,
    tls: tuple[Path, Path] | None = None,
    **changes: Any,
) -> Iterator[httpx.Client]:
    """The intake on a free port, and an httpx client for it (no keep-alive); over HTTPS
    with `tls` (certificate, key), the client trusting that certificate."""
    # Bounds a hang only: a short one timed out writes on a loaded machine.
    publisher = ExplodingPublisher(bootstrap, ADVERSE_EVENTS, attempts=2, timeout_seconds=30)
    app = create_app(
        publisher=publisher,
        pseudonym_key=b"hardening-key",
        state_dir=state_dir,
        intake=settings(**changes),
        clock=lambda: NOW,
        monotonic=clock or Clock(),
    )
    config = server_config(app, "127.0.0.1", 0, log_level="warning", tls=tls)
    if _capture.handler is not None:  # uvicorn's logging set-up just replaced its handlers
        for name in _UVICORN_LOGGERS:
            logging.getLogger(name).addHandler(_capture.handler)
    limits = httpx.Limits(max_keepalive_connections=0)
    scheme = "https" if tls else "http"
    verify: Any = ssl.create_default_context(cafile=str(tls[0])) if tls else True
    with served(config, "the intake app") as port, httpx.Client(
        base_url=f"{scheme}://127.0.0.1:{port}", limits=limits, verify=verify
    ) as client:
        yield client


_UVICORN_LOGGERS = ("uvicorn", "uvicorn.error", "uvicorn.access")


class _Capture:
    handler: logging.Handler | None = None


_capture = _Capture()


@pytest.fixture
def logs() -> Iterator[list[str]]:
    """Every log line of the process (root and uvicorn's own loggers, which do not
    propagate), formatted with their tracebacks."""
    lines: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(logging.Formatter().format(record))

    handler = Keep(level=logging.DEBUG)
    _capture.handler = handler
    root = logging.getLogger()
    root.addHandler(handler)
    old = root.level
    root.setLevel(logging.INFO)
    yield lines
    root.setLevel(old)
    _capture.handler = None
    for name in ("", *_UVICORN_LOGGERS):
        logging.getLogger(name).removeHandler(handler)


def body(sid: str | None = None, **changes: Any) -> dict[str, Any]:
    b: dict[str, Any] = {
        "submission_id": sid or f"h-{uuid.uuid4().hex}",
        "aware_date": "2025-03-07",
        "patient": {"patient_id": MRN, "age": 71, "sex": "F"},
        "event": {"outcome": "hospitalization", "event_date": "2025-03-06", "narrative": NARRATIVE},
        "device": {"tool_id": "ich-triage", "software_version": "2.1.0"},
        "reporter": {"name": "Dr. Ada Q", "role": "radiologist", "contact": CONTACT},
        "accession_number": "ACC-HARDEN-1",
        "ai_output": 0.31,
        "ai_threshold": 0.5,
        "discordance_type": "false_negative",
    }
    b.update(changes)
    return b


def raw_post(client: httpx.Client, text: str) -> httpx.Response:
    """POST a JSON text as is (json.dumps could not write NaN or a lone surrogate)."""
    headers = {**AUTH, "Content-Type": "application/json"}
    return client.post(
        "/api/v1/adverse-events", content=text.encode("utf-8", "surrogatepass"), headers=headers
    )


def open_form(
    client: httpx.Client, auth: tuple[str, str], headers: dict[str, str] | None = None
) -> dict[str, str]:
    page = client.get("/adverse-events/new", auth=auth, headers=headers or {})
    assert page.status_code == 200, page.text
    sid = re.search(r'name="submission_id" value="([^"]+)"', page.text)
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert sid and token
    return {
        "submission_id": sid.group(1),
        "csrf_token": token.group(1),
        "patient_id": MRN,
        "outcome": "non_serious",
        "event_date": "2025-03-06",
        "aware_date": "2025-03-07",
        "narrative": NARRATIVE,
        "tool_id": "ich-triage",
        "software_version": "2.1",
        "discordance_type": "other",
        "reporter_name": "Dr B",
        "reporter_role": "radiologist",
        "reporter_contact": CONTACT,
    }


def topic_ids(bootstrap: str) -> list[str]:
    return [AdverseEvent.model_validate_json(v).event_id
            for v in read_topic(bootstrap, ADVERSE_EVENTS)]


def assert_security_headers(r: httpx.Response) -> None:
    assert r.headers.get("content-security-policy") == CSP, (r.status_code, dict(r.headers))
    assert r.headers["x-content-type-options"] == "nosniff"
    assert r.headers["x-frame-options"] == "DENY"
    assert r.headers["cache-control"] == "no-store" or r.status_code == 200


# --- brute force ---------------------------------------------------------------------


def test_lockout_unit_backoff_and_forgetting() -> None:
    now = [0.0]
    lock = Lockout(
        threshold=3, base_seconds=30, max_seconds=100, forget_seconds=600, clock=lambda: now[0]
    )
    assert [lock.failed("a") for _ in range(3)] == [0.0, 0.0, 30.0]
    assert lock.retry_after("a") == 30.0 and lock.retry_after("b") == 0.0
    now[0] = 31.0
    assert lock.retry_after("a") == 0.0
    assert lock.failed("a") == 60.0  # each failure after a lockout doubles it...
    now[0] = 100.0
    assert lock.failed("a") == 100.0  # ...up to the maximum
    lock.succeeded("a")
    assert lock.retry_after("a") == 0.0 and lock.failed("a") == 0.0
    now[0] = 2000.0  # more than forget_seconds after the last failure: a clean slate
    assert [lock.failed("a"), lock.failed("a")] == [0.0, 0.0]
    with pytest.raises(ValueError):
        Lockout(threshold=0, base_seconds=1, max_seconds=1, forget_seconds=1)


def test_300_wrong_passwords_lock_the_account_even_for_the_right_one(
    bootstrap: str, tmp_path: Path
) -> None:
    clock = Clock()
    # Every guess from another address (through the trusted proxy), so only the
    # per-account lockout can stop them.
    with serving(bootstrap, tmp_path, clock, trusted_proxies=["127.0.0.1/32"]) as client:

        def attempt(password: str, i: int, user: str = "bob") -> httpx.Response:
            headers = {"X-Forwarded-For": f"10.9.{i // 250}.{i % 250}"}
            return client.get("/adverse-events/new", auth=(user, password), headers=headers)

        replies = [attempt(f"guess-{i}", i) for i in range(300)]
        codes = [r.status_code for r in replies]
        assert codes == [401] * 5 + [429] * 295
        assert replies[-1].headers["retry-after"] == "30"
        assert "Too many failed sign-ins for this account" in replies[-1].text
        assert_security_headers(replies[-1])
        right = attempt("bob-pw", 300)
        assert right.status_code == 429  # the right password does not get in while locked
        assert attempt("carol-pw", 301, "carol").status_code == 200  # other accounts do

        clock.now += 29
        assert attempt("bob-pw", 302).status_code == 429
        clock.now += 2  # the 30 s lockout has run out
        assert attempt("bob-pw", 303).status_code == 200  # and a success clears the count
        # Backoff: five more failures lock for 30 s, the next failure after that for 60 s.
        assert [attempt("x", 400 + i).status_code for i in range(6)] == [401] * 5 + [429]
        clock.now += 31
        assert attempt("x", 410).status_code == 401
        second = attempt("bob-pw", 411)
        assert (second.status_code, second.headers["retry-after"]) == (429, "60")
        clock.now += 59
        assert attempt("bob-pw", 412).status_code == 429
        clock.now += 2
        assert attempt("bob-pw", 413).status_code == 200


def test_per_client_limits_apply_before_authentication(bootstrap: str, tmp_path: Path) -> None:
    clock = Clock()
    with serving(
        bootstrap,
        tmp_path / "a",
        clock,
        trusted_proxies=["127.0.0.1/32"],
        client_lockout_after_failures=20,
    ) as client:
        spray = {"X-Forwarded-For": "10.0.0.9"}
        # One address trying one password on many accounts: locked after 20 failures.
        codes = [
            client.get(
                "/adverse-events/new", auth=(f"user{i}", "Winter2025!"), headers=spray
            ).status_code
            for i in range(25)
        ]
        assert codes == [401] * 20 + [429] * 5
        locked = client.get("/adverse-events/new", auth=ALICE, headers=spray)
        assert locked.status_code == 429
        assert "from your address" in locked.text
        # Wrong API tokens count against the address too.
        api = client.post("/api/v1/adverse-events", json=body(), headers={**AUTH, **spray})
        assert api.status_code == 429 and api.json()["detail"].startswith("Too many failed")
        # Alice from her own address is not affected.
        assert (
            client.get(
                "/adverse-events/new", auth=ALICE, headers={"X-Forwarded-For": "10.0.0.10"}
            ).status_code
            == 200
        )

    # Without a trusted proxy, X-Forwarded-For is ignored: varying it does not evade.
    with serving(bootstrap, tmp_path / "b", Clock(), client_lockout_after_failures=20) as client:
        codes = [
            client.get(
                "/adverse-events/new",
                auth=(f"user{i}", "x"),
                headers={"X-Forwarded-For": f"10.1.1.{i}"},
            ).status_code
            for i in range(21)
        ]
        assert codes == [401] * 20 + [429]

    # The request rate per address is checked before any credential is looked at.
    with serving(
        bootstrap, tmp_path / "c", Clock(), client_rate_per_minute=1, client_rate_burst=5
    ) as client:
        codes = [client.get("/adverse-events/new").status_code for _ in range(6)]
        assert codes == [401] * 5 + [429]
        limited = client.get("/adverse-events/new", auth=ALICE)
        assert limited.status_code == 429 and "www-authenticate" not in limited.headers
        assert limited.headers["retry-after"] == "60"


# --- NUL, NaN, security headers --------------------------------------------------------


def test_nul_is_refused_and_whatever_is_accepted_is_stored_by_postgresql(
    bootstrap: str, tmp_path: Path, fresh_database: str
) -> None:
    nul_sids = []
    with serving(bootstrap, tmp_path) as client:
        for where in (
            {"device": {"tool_id": "ich-triage", "software_version": "2.1\u0000evil"}},
            {"event": {"outcome": "death", "event_date": "2025-03-06", "narrative": "a\u0000b"}},
            {"reporter": {"name": "A", "role": "radio\u0000logist", "contact": "c"}},
            {"patient": {"patient_id": "MRN\u0000-1"}},
            {"accession_number": "\u0000ACC"},
        ):
            b = body(**where)
            nul_sids.append(b["submission_id"])
            r = raw_post(client, json.dumps(b))
            assert r.status_code == 422, r.text
            (detail,) = r.json()["detail"]
            assert detail["msg"] == (
                "This text contains a NUL character (U+0000), which cannot be stored; remove it."
            )
            assert_security_headers(r)
        # The form says the same, next to the field.
        data = {**open_form(client, BOB), "narrative": "before\x00after"}
        page = client.post("/adverse-events/new", data=data, auth=BOB)
        assert page.status_code == 422
        assert 'id="narrative-error"' in page.text and "NUL character" in page.text
        nul_sids.append(data["submission_id"])

        # Odd but valid text is accepted, and everything accepted can be stored.
        odd = body(
            device={"tool_id": "ich-triage", "software_version": "5.2.1 build 7 \u2028β"},
            reporter={"name": "Dr. Ünal \U0001f600", "role": "radio\x01logist", "contact": "c"},
        )
        assert raw_post(client, json.dumps(odd)).status_code == 201
    on_topic = topic_ids(bootstrap)
    assert not set(nul_sids) & set(on_topic)
    assert on_topic.count(odd["submission_id"]) == 1

    rows = Rows.empty()
    decoder = Decoder("c", "a", "s", ADVERSE_EVENTS)
    for m in read_records(bootstrap, [ADVERSE_EVENTS]):
        decoder.add(rows, m.topic, m.partition, m.offset, m.value)
    assert rows.rejects == []
    migrate(fresh_database)

    async def write() -> None:
        async with await psycopg.AsyncConnection.connect(fresh_database) as conn:
            await write_batch(conn, rows)

    asyncio.run(write())
    with psycopg.connect(fresh_database) as conn:
        stored = conn.execute(
            "SELECT software_version, reporter_role FROM adverse_events WHERE event_id = %s",
            (odd["submission_id"],),
        ).fetchall()
    assert stored == [("5.2.1 build 7 \u2028β", "radio\x01logist")]


def test_nan_and_infinity_are_422_with_headers_and_no_patient_id_logged(
    bootstrap: str, tmp_path: Path, logs: list[str]
) -> None:
    good = json.dumps(body())
    with serving(bootstrap, tmp_path) as client:
        for bad in (
            good.replace('"ai_output": 0.31', '"ai_output": NaN'),
            good.replace('"ai_output": 0.31', '"ai_output": Infinity'),
            good.replace('"ai_threshold": 0.5', '"ai_threshold": -Infinity'),
            good.replace('"age": 71', '"age": NaN'),
            good[:-1] + ', "extra": [NaN]}',
        ):
            assert bad != good
            r = raw_post(client, bad)
            assert r.status_code == 422, (bad, r.text)
            assert "is not a number JSON allows" in r.json()["detail"][0]["msg"]
            assert_security_headers(r)
        # Several errors at once, one of them carrying the patient id: a 422 that echoes
        # no submitted value, and no log line with it.
        long_id = MRN + "9" * 130
        both = body(patient={"patient_id": long_id}, ai_output=2.0)
        r = raw_post(client, json.dumps(both))
        assert r.status_code == 422
        assert {tuple(d["loc"]) for d in r.json()["detail"]} == {
            ("body", "patient", "patient_id"),
            ("body", "ai_output"),
        }
        assert MRN not in r.text
        # A lone surrogate (not storable as UTF-8) is a 422, not a crash.
        lone = good.replace(NARRATIVE, "text \\ud800 here")
        r = raw_post(client, lone)
        assert r.status_code == 422 and r.json()["detail"][0]["loc"] == [
            "body",
            "event",
            "narrative",
        ]
        # The form: "NaN" typed into the AI output field.
        data = {**open_form(client, BOB), "ai_output": "NaN", "ai_threshold": "inf"}
        page = client.post("/adverse-events/new", data=data, auth=BOB)
        assert page.status_code == 422
        assert 'id="ai_output-error"' in page.text and 'id="ai_threshold-error"' in page.text
    assert not [line for line in logs if MRN in line or NARRATIVE in line]


def test_every_status_has_the_security_headers(
    bootstrap: str, tmp_path: Path, logs: list[str]
) -> None:
    with serving(bootstrap, tmp_path, max_body_bytes=4096, rate_burst=3) as client:
        seen = {}
        seen[200] = client.get("/adverse-events/new", auth=BOB)
        seen[201] = client.post("/api/v1/adverse-events", json=body(), headers=AUTH)
        seen[401] = client.get("/adverse-events/new")
        seen[404] = client.get("/no/such/page")
        seen[405] = client.delete("/api/v1/adverse-events")
        big = body(event={"outcome": "death", "event_date": "2025-03-06", "narrative": "x" * 5000})
        seen[413] = client.post("/api/v1/adverse-events", json=big, headers=AUTH)
        seen[422] = client.post("/api/v1/adverse-events", json={"x": 1}, headers=AUTH)
        exploding = body(
            event={
                "outcome": "death",
                "event_date": "2025-03-06",
                "narrative": f"EXPLODE {NARRATIVE}",
            }
        )
        seen[500] = client.post("/api/v1/adverse-events", json=exploding, headers=AUTH)
        seen[429] = client.post("/api/v1/adverse-events", json=body(), headers=AUTH)
        for status, r in seen.items():
            assert r.status_code == status, (status, r.text)
            assert_security_headers(r)
        assert "strict-transport-security" not in seen[200].headers  # plain HTTP, no proxy
        assert seen[500].json() == {
            "detail": "An unexpected error occurred and the report may not have been recorded. "
            "Submit it again with the same submission id: it is recorded once."
        }
    unexpected = [line for line in logs if "unexpected RuntimeError" in line]
    assert len(unexpected) == 1 and "POST /api/v1/adverse-events" in unexpected[0]
    assert not [line for line in logs if MRN in line or NARRATIVE in line or "EXPLODE" in line]


# --- proxy -------------------------------------------------------------------------------


def test_https_form_behind_a_trusted_tls_proxy(bootstrap: str, tmp_path: Path) -> None:
    with serving(bootstrap, tmp_path / "trusted", trusted_proxies=["127.0.0.0/8"]) as client:
        data = open_form(client, BOB, PROXY_HEADERS)
        ok = client.post(
            "/adverse-events/new", data=data, auth=BOB, headers={**PROXY_HEADERS, "Origin": ORIGIN}
        )
        assert ok.status_code == 200, ok.text
        assert 'id="reference"' in ok.text
        assert ok.headers["strict-transport-security"] == "max-age=31536000; includeSubDomains"
        # The default port written out is the same origin; another site is not.
        again = client.post(
            "/adverse-events/new",
            data=data,
            auth=BOB,
            headers={**PROXY_HEADERS, "Origin": ORIGIN + ":443"},
        )
        assert again.status_code == 200 and 'id="duplicate"' in again.text
        evil = client.post(
            "/adverse-events/new",
            data=data,
            auth=BOB,
            headers={**PROXY_HEADERS, "Origin": "https://evil.example"},
        )
        assert evil.status_code == 403
        # Plain HTTP through the proxy: no HSTS.
        plain = client.get(
            "/adverse-events/new", auth=BOB, headers={**PROXY_HEADERS, "X-Forwarded-Proto": "http"}
        )
        assert "strict-transport-security" not in plain.headers

    # The same headers from an address that is not a trusted proxy are ignored: the form
    # is refused (its origin is not this server's) and no HSTS is claimed.
    with serving(bootstrap, tmp_path / "untrusted", trusted_proxies=["10.0.0.1/32"]) as client:
        data = open_form(client, BOB, PROXY_HEADERS)
        refused = client.post(
            "/adverse-events/new", data=data, auth=BOB, headers={**PROXY_HEADERS, "Origin": ORIGIN}
        )
        assert refused.status_code == 403
        assert "strict-transport-security" not in refused.headers


def self_signed(folder: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and its key, as PEM files."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


def test_served_over_tls_directly_sends_hsts_and_takes_its_https_form(
    bootstrap: str, tmp_path: Path
) -> None:
    with serving(bootstrap, tmp_path, tls=self_signed(tmp_path)) as client:
        data = open_form(client, BOB)
        origin = str(client.base_url).rstrip("/")
        assert origin.startswith("https://127.0.0.1:")
        ok = client.post("/adverse-events/new", data=data, auth=BOB, headers={"Origin": origin})
        assert ok.status_code == 200 and 'id="reference"' in ok.text
        assert ok.headers["strict-transport-security"] == "max-age=31536000; includeSubDomains"
        missing = client.get("/no/such/page")
        assert missing.status_code == 404 and "strict-transport-security" in missing.headers


def test_proxy_user_header_only_from_a_trusted_proxy(bootstrap: str, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="TRUSTED_PROXIES"):
        settings(trust_proxy_user_header=True)
    with serving(
        bootstrap, tmp_path / "a", trust_proxy_user_header=True, trusted_proxies=["127.0.0.1/32"]
    ) as client:
        assert (
            client.get("/adverse-events", headers={"X-Forwarded-User": "alice"}).status_code == 200
        )
        assert client.get("/adverse-events").status_code == 401
        # The reviewer role is by identity: proxy user carol is user:carol, not a reviewer.
        carol = client.get("/adverse-events", headers={"X-Forwarded-User": "carol"})
        assert carol.status_code == 200 and "reports you submitted" in carol.text
    with serving(
        bootstrap, tmp_path / "b", trust_proxy_user_header=True, trusted_proxies=["10.0.0.1/32"]
    ) as client:
        assert (
            client.get("/adverse-events", headers={"X-Forwarded-User": "alice"}).status_code == 401
        )


# --- who reads what ------------------------------------------------------------------------


def test_reports_are_read_by_their_submitter_and_reviewers_and_every_read_is_audited(
    bootstrap: str, tmp_path: Path, logs: list[str]
) -> None:
    with serving(bootstrap, tmp_path) as client:
        data = open_form(client, BOB)
        page = client.post("/adverse-events/new", data=data, auth=BOB)
        bob_ref = re.search(r'id="reference">([^<]+)<', page.text)
        assert bob_ref
        bobs = bob_ref.group(1)
        api = client.post("/api/v1/adverse-events", json=body(), headers=AUTH)
        systems = api.json()["reference"]

        # Listings: the reviewer sees both, Bob his own, Carol none; no narrative in a list.
        listed = {}
        for who in (ALICE, BOB, CAROL):
            r = client.get("/adverse-events", auth=who)
            assert r.status_code == 200
            listed[who[0]] = set(re.findall(r'href="/adverse-events/(AE-[^"]+)"', r.text))
            assert NARRATIVE not in r.text and CONTACT not in r.text
        assert listed == {"alice": {bobs, systems}, "bob": {bobs}, "carol": set()}

        # One report: its submitter and the reviewer read it in full; others get a 404
        # that does not even say it exists.
        for who, ref, status in (
            (BOB, bobs, 200),
            (ALICE, bobs, 200),
            (ALICE, systems, 200),
            (CAROL, bobs, 404),
            (BOB, systems, 404),
            (BOB, "AE-00000000-00000000", 404),
        ):
            r = client.get(f"/adverse-events/{ref}", auth=who)
            assert r.status_code == status, (who, ref)
            if status == 200:
                assert NARRATIVE in r.text and CONTACT in r.text
            else:
                assert NARRATIVE not in r.text
                assert "no report with this reference that you may read" in r.text
        mine = client.get(f"/api/v1/adverse-events/{systems}", headers=AUTH)
        assert mine.status_code == 200
        event = AdverseEvent.model_validate(mine.json())
        assert (event.event.narrative, event.reporter.contact) == (NARRATIVE, CONTACT)
        assert event.patient.patient_id != MRN  # pseudonymized, as on the topic
        assert client.get(f"/api/v1/adverse-events/{bobs}", headers=AUTH).status_code == 404

    from surveillance.intake import ReportStore

    trail = [
        (who, ref, action)
        for _, who, ref, action in ReportStore(store_path(tmp_path)).audit_trail()
    ]
    assert sorted(trail) == sorted(
        [
            ("user:alice", bobs, "list"),
            ("user:alice", systems, "list"),
            ("user:bob", bobs, "list"),
            ("user:bob", bobs, "read"),
            ("user:alice", bobs, "read"),
            ("user:alice", systems, "read"),
            ("user:carol", bobs, "read-refused"),
            ("user:bob", systems, "read-refused"),
            ("system:ris", systems, "read"),
            ("system:ris", bobs, "read-refused"),
        ]
    )
    audit_lines = [line for line in logs if line.startswith("report ")]
    assert "report read by=user:alice" in "\n".join(audit_lines)
    assert len([line for line in audit_lines if " read by=" in line]) == 4
    assert not [line for line in logs if NARRATIVE in line or CONTACT in line or MRN in line]


# --- the store file ---------------------------------------------------------------------


def test_store_file_is_private_and_holds_no_narrative_or_contact(
    bootstrap: str, tmp_path: Path
) -> None:
    old_umask = os.umask(0o022)
    try:
        with serving(bootstrap, tmp_path) as client:
            r = client.post("/api/v1/adverse-events", json=body(), headers=AUTH)
            assert r.status_code == 201
            ref = r.json()["reference"]
    finally:
        os.umask(old_umask)
    path = store_path(tmp_path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    raw = path.read_bytes()
    for secret in (NARRATIVE, CONTACT, "Dr. Ada Q", MRN):
        assert secret.encode() not in raw

    # Another key cannot open it; no key: the text is not there to show.
    other = base64.b64encode(b"o" * 32).decode()
    with serving(bootstrap, tmp_path, store_key=SecretStr(other)) as client:
        page = client.get(f"/adverse-events/{ref}", auth=ALICE)
        assert page.status_code == 200 and NARRATIVE not in page.text
        assert "sealed with another key" in page.text
    with serving(bootstrap, tmp_path / "nokey", store_key=None) as client:
        r = client.post("/api/v1/adverse-events", json=body(), headers=AUTH)
        page = client.get(f"/adverse-events/{r.json()['reference']}", auth=ALICE)
        assert "not kept by this intake" in page.text
    raw = store_path(tmp_path / "nokey").read_bytes()
    assert NARRATIVE.encode() not in raw and CONTACT.encode() not in raw


def test_a_store_written_in_clear_is_sealed_at_start_up(bootstrap: str, tmp_path: Path) -> None:
    # A file as the intake wrote it before sealing: 0644, narrative in clear.
    with serving(bootstrap, tmp_path) as client:
        ref = client.post("/api/v1/adverse-events", json=body(), headers=AUTH).json()["reference"]
    path = store_path(tmp_path)
    with sqlite3.connect(path) as db:
        (key, event_json) = db.execute("SELECT submission_key, event_json FROM reports").fetchone()
        clear = json.loads(event_json)
        clear["event"]["narrative"] = NARRATIVE
        clear["reporter"]["contact"] = CONTACT
        db.execute(
            "UPDATE reports SET event_json = ?, sealed = NULL WHERE submission_key = ?",
            (json.dumps(clear), key),
        )
    db.close()
    os.chmod(path, 0o644)
    assert NARRATIVE.encode() in path.read_bytes()

    with serving(bootstrap, tmp_path) as client:
        page = client.get(f"/adverse-events/{ref}", auth=ALICE)
        assert NARRATIVE in page.text and CONTACT in page.text
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    raw = path.read_bytes()
    assert NARRATIVE.encode() not in raw and CONTACT.encode() not in raw


# --- the edge is the only validation ---------------------------------------------------

_any_text = st.text(st.characters(codec="utf-8"), min_size=1, max_size=40)  # NUL included
_REGISTRY = load_registry()


@settings_h(max_examples=300, deadline=None, derandomize=True, database=None)
@given(
    narrative=_any_text,
    version=_any_text,
    role=_any_text,
    name=_any_text,
    contact=_any_text,
    patient=_any_text,
    accession=_any_text,
)
def test_every_report_the_intake_accepts_the_store_writer_can_store(
    narrative: str, version: str, role: str, name: str, contact: str, patient: str, accession: str
) -> None:
    raw = body(
        event={"outcome": "death", "event_date": "2025-03-06", "narrative": narrative},
        device={"tool_id": "ich-triage", "software_version": version},
        reporter={"name": name, "role": role, "contact": contact},
        patient={"patient_id": patient},
        accession_number=accession,
    )
    try:
        sub = AdverseEventSubmission.model_validate(raw)
    except ValidationError as exc:
        # Refused at the edge, with a reason a person can act on.
        assert all(e["msg"] for e in exc.errors(include_input=False))
        return
    event = to_event(sub, sub.submission_id or "x" * 8, NOW, b"k", _REGISTRY)
    rows = Rows.empty()
    Decoder("c", "a", "s", "ae").add(rows, "ae", 0, 0, event.model_dump_json().encode())
    assert rows.rejects == [] and len(rows.adverse_events) == 1
