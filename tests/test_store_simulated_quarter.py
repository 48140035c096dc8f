"""A replayed simulator quarter lands in PostgreSQL with exact row counts; a replay changes
nothing. Simulator -> ingest -> case join (the worker's pure code) -> real broker ->
store writer -> real PostgreSQL; expected counts come from the simulator's ground truth.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from surveillance.clinical import join
from surveillance.contracts import wire
from surveillance.embedded import EmbeddedBroker
from surveillance.simulate import Scenario, simulate
from surveillance.store.migrate import migrate
from surveillance.store.writer import WriterSettings
from surveillance.stream.ingest import Ingest, Rejected
from tests.test_store_writer import _dump, _produce, _run_until_stored, _topics

pytestmark = pytest.mark.integration

HORIZON = timedelta(days=14)


def adjudicated_quarter() -> tuple[list[bytes], dict[str, int], dict[str, dict[str, int]]]:
    """Every case revision the worker would emit for 92 simulated days, and the truth."""
    events, truth = simulate(days=92, seed=3, scenario=Scenario(model_update_day=40),
                             volume_scale=0.5)
    ingest = Ingest(b"k", ["intracranial_hemorrhage", "large_vessel_occlusion",
                           "pneumothorax", "mtm_diabetic_retinopathy"], 64 * 1024)
    states: dict[str, join.JoinState] = {}
    out: list[bytes] = []
    now = datetime(2027, 1, 1, tzinfo=UTC)
    for e in events:
        item = ingest(e.topic, e.value, now)
        assert not isinstance(item, Rejected)
        state, cases = join.apply(states.get(item.accession), item, 0, HORIZON, None)
        states[item.accession] = state
        out += [wire.encode(c) for c in cases]
    cases_per_tool = {tool: t.cases for tool, t in truth.items()}
    outcomes = {tool: dict(t.final_outcomes) for tool, t in truth.items()}
    return out, cases_per_tool, outcomes


async def test_simulated_quarter_lands_exactly_and_a_replay_changes_nothing(
    broker: EmbeddedBroker, fresh_database: str
) -> None:
    migrate(fresh_database)
    names = _topics(broker)
    revisions, cases_per_tool, outcomes = adjudicated_quarter()
    messages = [(names.cases, str(uuid.uuid4()), value) for value in revisions]
    await _produce(broker.bootstrap, messages)
    settings = WriterSettings(group_id=f"store-{uuid.uuid4().hex[:6]}", batch_size=1000)
    await _run_until_stored(broker.bootstrap, fresh_database, names, settings, len(messages))

    with psycopg.connect(fresh_database) as conn:
        stored = dict(conn.execute(
            "SELECT tool_id, count(*) FROM cases GROUP BY tool_id").fetchall())
        by_outcome = conn.execute(
            "SELECT tool_id, outcome, count(*) FROM cases GROUP BY 1, 2").fetchall()
        ai_rows = conn.execute("SELECT count(*) FROM ai_results").fetchone()
    print(f"\n{len(revisions)} case revisions -> {sum(stored.values())} cases stored")
    assert stored == cases_per_tool
    assert ai_rows is not None and ai_rows[0] == sum(cases_per_tool.values())
    for tool, outcome, n in by_outcome:
        if outcome in ("TP", "FP", "TN", "FN", "indeterminate"):
            assert outcomes[tool].get(outcome, 0) == n, (tool, outcome)
    first = _dump(fresh_database)

    # The same revisions again (a replay upstream): nothing changes.
    await _produce(broker.bootstrap, messages)
    await _run_until_stored(broker.bootstrap, fresh_database, names, settings, len(messages))
    assert _dump(fresh_database) == first
