"""Shared fixtures: the real embedded broker and PostgreSQL server, started once per run.

Both are stopped at the end of the session whatever happened (context managers), and a
test that needs a clean slate takes `fresh_database` / unique topic names instead.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, settings

from surveillance.embedded import EmbeddedBroker, EmbeddedPostgres

# The suite runs on simulated data with the public demo key; production refuses it.
os.environ.setdefault("SURVEILLANCE_MODE", "test")

# Hypothesis's two wall-clock limits assume an idle machine: the 200 ms deadline per example
# (a timing assertion, which this suite does not make) and the too_slow health check on
# generation time. On a loaded 2-core CI machine either fails a correct test. Every test
# gets neither, unless its own @settings says otherwise; loaded here, before the test
# modules' decorators read the defaults.
settings.register_profile("suite", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("suite")


@pytest.fixture(scope="session")
def broker() -> Iterator[EmbeddedBroker]:
    with EmbeddedBroker() as b:
        yield b


@pytest.fixture(scope="session")
def postgres() -> Iterator[EmbeddedPostgres]:
    with EmbeddedPostgres() as pg:
        yield pg


@pytest.fixture
def fresh_database(postgres: EmbeddedPostgres) -> Iterator[str]:
    """A new, empty database on the shared server; returns its URL; dropped afterwards."""
    import psycopg

    name = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(postgres.admin_url, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    yield f"postgresql://postgres@127.0.0.1:{postgres.port}/{name}"
    with psycopg.connect(postgres.admin_url, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
