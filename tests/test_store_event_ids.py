"""Event ids are unique in the store: a replay changes nothing, and the same id with an
inference date one second off (or other content) is dead-lettered, never a second row.
Pure conflict rules with hypothesis; the writer's SQL against the real embedded PostgreSQL.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import psycopg
import pytest
from hypothesis import given
from hypothesis import strategies as st

from surveillance.contracts import AdjudicatedCase
from surveillance.store.event_ids import AiKey, StoredKey, digest, split_conflicts
from surveillance.store.migrate import migrate
from surveillance.store.rows import case_rows
from tests.store_fixtures import corrected, make_cases
from tests.test_store_upserts import _write

T0 = datetime(2026, 8, 3, 14, 0, tzinfo=UTC)


def _key(i: int, event: str, seconds: int, content: str) -> AiKey:
    return AiKey("c", 0, i, event, T0 + timedelta(seconds=seconds), content)


keys = st.lists(
    st.tuples(st.sampled_from("abc"), st.integers(0, 2), st.sampled_from(["x", "y"])),
    max_size=30,
)


@given(keys)
def test_each_id_keeps_its_first_version_and_every_other_version_is_rejected(
    drawn: list[tuple[str, int, str]],
) -> None:
    batch = [_key(i, e, s, c) for i, (e, s, c) in enumerate(drawn)]
    dropped, rejects = split_conflicts(batch, {})
    first: dict[str, AiKey] = {}
    for k in batch:
        first.setdefault(k.ai_event_id, k)
    expected = {
        i for i, k in enumerate(batch)
        if (k.inference_date, k.digest) != (first[k.ai_event_id].inference_date,
                                            first[k.ai_event_id].digest)
    }  # fmt: skip
    assert dropped == expected
    assert [r.offset for r in rejects] == sorted(expected)
    kept = {(batch[i].ai_event_id, batch[i].inference_date) for i in range(len(batch))
            if i not in dropped}  # fmt: skip
    assert len(kept) == len({k.ai_event_id for k in batch})


def test_a_stored_id_wins_over_the_batch_and_a_legacy_row_is_judged_by_its_date() -> None:
    stored = {"a": StoredKey(T0, "x"), "b": StoredKey(T0, None)}
    batch = [
        _key(0, "a", 0, "x"),  # replay
        _key(1, "a", 1, "x"),  # one second off
        _key(2, "a", 0, "y"),  # other content, same date
        _key(3, "b", 0, "z"),  # legacy row, same date: a replay
        _key(4, "b", 1, "z"),  # legacy row, other date
    ]
    dropped, rejects = split_conflicts(batch, stored)
    assert dropped == {1, 2, 4}
    assert [r.reason.split(":")[0] for r in rejects] == [
        "ai_event_id already stored with another inference_date",
        "ai_event_id already stored with other AI-result content",
        "ai_event_id already stored with another inference_date",
    ]
    assert all("2026" not in r.reason for r in rejects)  # reasons name fields, not values


def test_digest_ignores_the_utc_offset_but_not_the_instant() -> None:
    row = ("id", T0, 0.7)
    assert digest(row) == digest(("id", T0.astimezone(UTC).replace(tzinfo=UTC), 0.7))
    plus2 = T0.astimezone(__import__("zoneinfo").ZoneInfo("Europe/Berlin"))
    assert digest(("id", plus2, 0.7)) == digest(row)
    assert digest(("id", T0 + timedelta(seconds=1), 0.7)) != digest(row)


@pytest.mark.integration
async def test_same_event_id_one_second_apart_is_one_row_and_one_dead_letter(
    fresh_database: str,
) -> None:
    migrate(fresh_database)
    case = make_cases(5, 1, "ich-triage", date(2026, 8, 3), 1)[0]
    moved = AdjudicatedCase.model_validate(
        {**case.model_dump(), "inference_date": case.inference_date + timedelta(seconds=1),
         "revision": 1}
    )  # fmt: skip
    correction = corrected(case, 2)  # same AI result, new label: not a conflict
    messages = [("c", c.model_dump_json().encode()) for c in (case, moved, case, correction)]
    await _write(fresh_database, messages[:2], chunk=1)  # the conflict in a later batch
    await _write(fresh_database, messages, chunk=4)  # and again inside one batch (a replay)
    with psycopg.connect(fresh_database) as conn:
        ai = conn.execute("SELECT ai_event_id, inference_date FROM ai_results").fetchall()
        rejects = conn.execute('SELECT "offset", reason FROM store_rejects').fetchall()
        stored = conn.execute("SELECT revision, inference_date, outcome FROM cases").fetchall()
    assert ai == [(case.ai_event_id, case.inference_date)]
    assert rejects == [
        (1, "ai_event_id already stored with another inference_date: conflict, not stored")
    ]
    # The conflicting message changed nothing else either: its revision 1 was not applied,
    # the correction (revision 2, same AI result) was.
    assert stored == [(2, case.inference_date, correction.outcome.value)]
    assert case_rows(case)[1] == case_rows(correction)[1]
