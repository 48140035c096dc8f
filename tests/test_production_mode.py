"""Production mode refuses a pseudonym key anyone could know or guess: the real commands,
as an operator starts them, end in one line and exit code 2 before touching anything."""

from __future__ import annotations

import base64
import os
import random
import secrets
import subprocess
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from surveillance.embedded import EmbeddedBroker
from surveillance.privacy_key import KeyRefused, check_key, estimated_bits
from surveillance.settings import DEMO_PSEUDONYM_KEY

# Reachable nowhere: a command that got past the key check would fail on this instead.
NOWHERE = {"SURVEILLANCE_KAFKA__BOOTSTRAP": "127.0.0.1:9",
           "SURVEILLANCE_DATABASE__URL": "postgresql://nobody@127.0.0.1:9/none"}


def run(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items()
            if k not in ("SURVEILLANCE_MODE", "SURVEILLANCE_PSEUDONYM_KEY")}
    return subprocess.run([sys.executable, "-m", "surveillance.cli", *args],
                          capture_output=True, text=True, timeout=120,
                          env={**base, **NOWHERE, **env})


def assert_one_line_refusal(result: subprocess.CompletedProcess[str], message: str) -> None:
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], result.stderr


@pytest.mark.parametrize("command", [("worker",), ("intake",), ("shadow",),
                                     ("hl7", "parse", "README.md"),
                                     ("fhir", "parse", "README.md"),
                                     ("dicom", "parse", "README.md")])
def test_every_service_that_pseudonymizes_refuses_to_start_without_a_key(
    command: tuple[str, ...],
) -> None:
    """No SURVEILLANCE_MODE: production is the default, and the demo key is refused."""
    assert_one_line_refusal(run(*command, env={}),
                            "SURVEILLANCE_PSEUDONYM_KEY is not set (or is the public demo key)")


@pytest.mark.integration
def test_the_store_writer_needs_no_key(no_topics: dict[str, str]) -> None:
    """It only stores pseudonyms and is never given the key (deploy/k8s/store-writer.yaml):
    production mode does not ask it for one; it goes on to its broker check."""
    assert_one_line_refusal(run("store-writer", env=no_topics), "topics missing on")


@pytest.mark.parametrize(("key", "message"), [
    ("", "SURVEILLANCE_PSEUDONYM_KEY is empty"),
    (DEMO_PSEUDONYM_KEY, "is the public demo key"),
    ("k3y-0f-31-bytes-is-one-too-few!", "is 31 bytes; production needs at least 32"),
    ("password" * 4, "looks far from random (about 88 bits"),
])
def test_worker_refuses_an_empty_public_short_or_repetitive_key(key: str, message: str) -> None:
    assert_one_line_refusal(
        run("worker", env={"SURVEILLANCE_MODE": "production",
                           "SURVEILLANCE_PSEUDONYM_KEY": key}), message)


@pytest.fixture
def no_topics(broker: EmbeddedBroker) -> dict[str, str]:
    """A live broker without this app's topics: past the key check, the worker stops at
    its next check ("topics missing") at once."""
    return {"SURVEILLANCE_KAFKA__BOOTSTRAP": broker.bootstrap,
            "SURVEILLANCE_STREAM__APP_ID": f"prodmode-{secrets.token_hex(4)}"}


@pytest.mark.integration
def test_a_good_key_passes_the_check_and_the_worker_goes_on(no_topics: dict[str, str]) -> None:
    result = run("worker", env={**no_topics,
                                "SURVEILLANCE_PSEUDONYM_KEY": secrets.token_urlsafe(48)})
    assert_one_line_refusal(result, "topics missing on")


@pytest.mark.integration
def test_demo_mode_runs_with_the_demo_key_but_says_so(no_topics: dict[str, str]) -> None:
    result = run("worker", env={**no_topics, "SURVEILLANCE_MODE": "demo"})
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert lines[0].startswith("warning: running in demo mode with the public demo pseudonym")
    assert "topics missing on" in lines[1] and len(lines) == 2


def test_an_empty_key_is_refused_in_demo_and_test_too() -> None:
    for mode in ("demo", "test"):
        with pytest.raises(KeyRefused, match="is empty"):
            check_key("", mode)  # type: ignore[arg-type]


@settings(max_examples=300, deadline=None)
@given(st.integers(min_value=32, max_value=96), st.integers(min_value=0, max_value=2**64))
def test_keys_of_32_random_bytes_or_more_are_accepted(n: int, seed: int) -> None:
    """What the advised generator makes (url-safe base64 of random bytes) always passes
    (a seeded PRNG: hypothesis's own `randoms()` would shrink to all-zero bytes)."""
    key = base64.urlsafe_b64encode(random.Random(seed).randbytes(n)).decode().rstrip("=")
    assert check_key(key, "production") is None


@given(st.text(min_size=1).filter(lambda k: len(k.encode()) < 32 and k != DEMO_PSEUDONYM_KEY))
def test_every_key_shorter_than_32_bytes_is_refused_in_production(key: str) -> None:
    with pytest.raises(KeyRefused, match="production needs at least 32"):
        check_key(key, "production")


def test_entropy_estimate_against_hand_computed_values() -> None:
    assert estimated_bits(b"") == 0.0
    assert estimated_bits(b"a" * 64) == 0.0
    assert estimated_bits(b"ab" * 32) == pytest.approx(64.0)  # 1 bit per byte
    assert estimated_bits(bytes(range(256))) == pytest.approx(2048.0)  # 8 bits per byte
