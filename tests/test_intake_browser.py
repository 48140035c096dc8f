"""The form in a real headless Chromium (Debian's), served by uvicorn with the real broker.

Screenshots are written to tests/artifacts/ (intake_form.png, intake_form_errors.png,
intake_result.png, intake_listing.png, intake_report.png) on every run.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from pydantic import SecretStr

from surveillance.contracts import AdverseEvent
from surveillance.embedded import EmbeddedBroker
from surveillance.intake import IntakeSettings, KafkaPublisher, create_app
from surveillance.settings import get_settings
from surveillance.stream.topics import ADVERSE_EVENTS, TopicSpec, create_topics
from tests.served_in_thread import served
from tests.topic_read import read_topic

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(__file__).parent / "artifacts"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
NOW = datetime(2025, 3, 10, 12, tzinfo=UTC)
XSS_SCRIPT = "<script>alert(1)</script>"
XSS_IMG = '"><img src=x onerror=alert(1)>'
SQLI = "'; DROP TABLE reports; --"


@pytest.fixture(scope="module")
def base_url(broker: EmbeddedBroker, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    create_topics(broker.bootstrap, [TopicSpec(ADVERSE_EVENTS, get_settings().kafka.partitions)])
    # Bounds a hang only: a short one timed out writes on a loaded machine.
    publisher = KafkaPublisher(broker.bootstrap, ADVERSE_EVENTS, attempts=2, timeout_seconds=30)
    app = create_app(
        publisher=publisher,
        pseudonym_key=b"browser-key",
        state_dir=tmp_path_factory.mktemp("browser"),
        intake=IntakeSettings(
            basic_users={"alice": SecretStr("alice-pw")},
            viewers=["user:alice"],
            store_key=SecretStr(base64.b64encode(b"b" * 32).decode()),
            rate_per_minute=600,
            rate_burst=200,
        ),
        clock=lambda: NOW,
    )
    with served(uvicorn.Config(app, log_level="warning"), "the intake app") as port:
        yield f"http://127.0.0.1:{port}"


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail("Playwright for Python is missing: `.venv/bin/pip install playwright`")
    if not CHROMIUM.exists():
        pytest.fail(
            f"{CHROMIUM} is missing: `DEBIAN_FRONTEND=noninteractive apt-get install -y chromium`"
        )
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture
def page(browser: Any, base_url: str) -> Iterator[Any]:
    context = browser.new_context(
        base_url=base_url,
        http_credentials={"username": "alice", "password": "alice-pw"},
        viewport={"width": 900, "height": 1000},
    )
    p = context.new_page()
    p.dialogs = []  # every JavaScript dialog that fires would be an XSS
    p.on("dialog", lambda d: (p.dialogs.append(d.message), d.dismiss()))
    yield p
    context.close()


def fill_valid(page: Any, narrative: str = "ICH missed by the AI; read 3 h later.") -> None:
    page.fill("#patient_id", "MRN-5555")
    page.fill("#patient_age", "64")
    page.select_option("#patient_sex", "M")
    page.check("#outcome-hospitalization")
    page.fill("#event_date", "2025-03-06")
    page.fill("#aware_date", "2025-03-07")
    page.fill("#narrative", narrative)
    page.select_option("#tool_id", "ich-triage")
    page.fill("#software_version", "2.1.0")
    page.fill("#accession_number", "ACC-5555")
    page.fill("#ai_output", "0.12")
    page.fill("#ai_threshold", "0.5")
    page.select_option("#radiologist_read", "present")
    page.check("#discordance_type-false_negative")
    page.fill("#reporter_name", "Dr. Lin")
    page.fill("#reporter_role", "radiologist")
    page.fill("#reporter_contact", "lin@example.org")


def consume_ids(bootstrap: str) -> list[str]:
    return [AdverseEvent.model_validate_json(v).event_id
            for v in read_topic(bootstrap, ADVERSE_EVENTS)]


def test_form_renders_labelled_and_keyboard_reachable(page: Any) -> None:
    page.goto("/adverse-events/new")
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "intake_form.png"), full_page=True)
    unlabelled = page.evaluate(
        """() => [...document.querySelectorAll('input:not([type=hidden]), select, textarea')]
              .filter(el => el.labels.length === 0).map(el => el.id || el.name)"""
    )
    assert unlabelled == []
    legends = page.locator("fieldset > legend").all_inner_texts()
    assert [t.removesuffix(" (required)") for t in legends] == [
        "A. Patient",
        "B. Adverse event",
        "Outcome attributed to the event",
        "D. Device (AI tool)",
        "AI result on the study",
        "Discordance between AI and radiologist",
        "E. Reporter",
    ]
    # Keyboard: skip link, the two navigation links, then the first field.
    focused = []
    for _ in range(4):
        page.keyboard.press("Tab")
        focused.append(
            page.evaluate("document.activeElement.id || document.activeElement.textContent")
        )
    assert focused == ["Skip to main content", "New report", "Reports", "patient_id"]
    assert page.evaluate("document.scripts.length") == 0


def test_submit_shows_reference_and_is_on_the_topic_once(page: Any, broker: EmbeddedBroker) -> None:
    page.goto("/adverse-events/new")
    sid = page.locator("input[name=submission_id]").input_value()
    fill_valid(page)
    page.locator("button[type=submit]").focus()
    page.keyboard.press("Enter")  # submitted from the keyboard
    reference = page.locator("#reference")
    assert re.fullmatch(r"AE-[0-9A-F]{8}-[0-9A-F]{8}", reference.inner_text())
    assert page.locator("h1").inner_text() == "Report recorded"
    page.screenshot(path=str(ARTIFACTS / "intake_result.png"), full_page=True)
    assert consume_ids(broker.bootstrap).count(sid) == 1
    assert page.dialogs == []


def test_bad_input_shows_an_error_beside_each_field(page: Any) -> None:
    page.goto("/adverse-events/new")
    fill_valid(page)
    page.fill("#patient_age", "200")
    page.fill("#event_date", "2025-04-01")  # after "today" (2025-03-10)
    page.fill("#narrative", "")
    page.select_option("#tool_id", "")
    page.fill("#ai_output", "1.5")
    page.locator("button[type=submit]").click()

    expected = {
        "patient_age": "Input should be less than or equal to 130",
        "event_date": "The event date cannot be in the future.",
        # aware 2025-03-07 is now before the (bad) event date
        "aware_date": "The facility cannot have become aware before the event date.",
        "narrative": "This field is required.",
        "tool_id": "This field is required.",
        "ai_output": "Input should be less than or equal to 1",
    }
    for field, message in expected.items():
        error = page.locator(f"#{field}-error")
        assert " ".join(error.inner_text().split()) == f"Error: {message}", field
        described = page.locator(f"#{field}").get_attribute("aria-describedby") or ""
        assert f"{field}-error" in described.split(), field
        assert page.locator(f"#{field}").get_attribute("aria-invalid") == "true", field
    summary = page.locator(".error-summary a")
    assert summary.count() == len(expected)
    assert page.locator("#software_version").get_attribute("aria-invalid") is None
    # The person's input is kept.
    assert page.locator("#patient_age").input_value() == "200"
    assert page.locator("#reporter_name").input_value() == "Dr. Lin"
    page.screenshot(path=str(ARTIFACTS / "intake_form_errors.png"), full_page=True)
    assert page.locator("#reference").count() == 0


def test_hostile_text_is_shown_inert(page: Any) -> None:
    narrative = f"{XSS_SCRIPT}\n{XSS_IMG}\n{SQLI}"
    page.goto("/adverse-events/new")
    fill_valid(page, narrative=narrative)
    page.fill("#reporter_name", XSS_IMG)
    page.locator("button[type=submit]").click()
    reference = page.locator("#reference").inner_text()

    page.goto("/adverse-events")
    page.screenshot(path=str(ARTIFACTS / "intake_listing.png"), full_page=True)
    page.get_by_role("link", name=reference, exact=True).click()
    assert page.locator("#reference").inner_text() == reference
    assert page.locator(".narrative").inner_text() == narrative
    assert XSS_IMG in page.locator(".reporter").inner_text()
    assert page.locator("img").count() == 0
    assert page.evaluate("document.scripts.length") == 0
    page.screenshot(path=str(ARTIFACTS / "intake_report.png"), full_page=True)
    assert page.dialogs == []
