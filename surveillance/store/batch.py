"""Write one batch of rows in one transaction: COPY into temporary tables, then upsert.

Idempotence is in the SQL, so a batch may be written any number of times:
- `cases`: the highest revision per `case_id` wins (`WHERE excluded.revision >
  cases.revision`); an equal or lower revision changes nothing.
- `ai_results`: one row per event id, kept by `ai_event_ids` (store/event_ids.py): a
  replay does nothing; the same id with another inference date or content is a conflict,
  dead-lettered into `store_rejects` with none of its rows written (the case row neither).
  The insert is also joined to `ai_event_ids`, so two writers racing with one id in two
  partitions still store one row (the loser is dead-lettered by the same statement).
- `metric_snapshots`, `alerts`, `store_rejects`: immutable events keyed by their id,
  `ON CONFLICT DO NOTHING` (target-less, so the TimescaleDB primary keys that include the
  time column need no other statement).
- `adverse_events`: the latest `received_at` per `event_id` wins (a resubmission).
- `model_versions`: first/last seen via LEAST/GREATEST.
- alert resolution is re-derived from the stored alerts for every alert the batch touched.

`INSERT ... ON CONFLICT DO UPDATE` may not touch one row twice in a statement, so rows
that share a key inside the batch are reduced first (`latest`).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from psycopg import AsyncConnection, sql
from psycopg.types.json import Jsonb

from surveillance.store.event_ids import AiKey, StoredKey, digest, split_conflicts
from surveillance.store.rows import (
    ADVERSE_EVENT_COLUMNS,
    AI_RESULT_COLUMNS,
    ALERT_COLUMNS,
    CASE_COLUMNS,
    SNAPSHOT_COLUMNS,
    Reject,
    Row,
    Rows,
)

_JSONB = frozenset({"subgroup", "details"})
_ID, _INFERENCE_DATE = (
    AI_RESULT_COLUMNS.index("ai_event_id"),
    AI_RESULT_COLUMNS.index("inference_date"),
)


def latest(rows: Iterable[Row], key: int, order: int) -> list[Row]:
    """One row per `row[key]`: the greatest `row[order]`; on a tie the later row."""
    best: dict[Any, Row] = {}
    for row in rows:
        kept = best.get(row[key])
        if kept is None or row[order] >= kept[order]:
            best[row[key]] = row
    return list(best.values())


def _upsert_clause(columns: Sequence[str], key: str, newer: str, extra: str = "") -> sql.Composed:
    updates = sql.SQL(", ").join(
        sql.SQL("{c} = excluded.{c}").format(c=sql.Identifier(c)) for c in columns if c != key
    )
    return sql.SQL("ON CONFLICT ({key}) DO UPDATE SET {updates}{extra} WHERE {cond}").format(
        key=sql.Identifier(key),
        updates=updates,
        extra=sql.SQL(extra),
        cond=sql.SQL(newer),
    )


_CASES_CONFLICT = _upsert_clause(
    CASE_COLUMNS, "case_id", "excluded.revision > cases.revision", ", stored_at = now()"
)
_AE_CONFLICT = _upsert_clause(
    ADVERSE_EVENT_COLUMNS, "event_id", "excluded.received_at > adverse_events.received_at"
)
_DO_NOTHING = sql.SQL("ON CONFLICT DO NOTHING")

_MODEL_VERSIONS = sql.SQL(
    """INSERT INTO model_versions (tool_id, software_version, first_seen, last_seen)
    SELECT tool_id, software_version, min(inference_date), max(inference_date)
    FROM {staged} GROUP BY tool_id, software_version
    ON CONFLICT (tool_id, software_version) DO UPDATE SET
        first_seen = LEAST(model_versions.first_seen, excluded.first_seen),
        last_seen = GREATEST(model_versions.last_seen, excluded.last_seen)
    WHERE excluded.first_seen < model_versions.first_seen
       OR excluded.last_seen > model_versions.last_seen"""
)

# The earliest alert that says it resolves an alert closes it; re-deriving this from the
# stored rows (not from the batch) is what makes arrival order irrelevant.
_RESOLVE_ALERTS = """
WITH first_resolution AS (
    SELECT DISTINCT ON (details ->> 'resolves')
        details ->> 'resolves' AS target, raised_at, alert_id
    FROM alerts
    WHERE details ->> 'resolves' = ANY(%(ids)s)
    ORDER BY details ->> 'resolves', raised_at, alert_id
)
UPDATE alerts AS a
SET resolved_at = f.raised_at, resolved_by = f.alert_id
FROM first_resolution AS f
WHERE a.alert_id = f.target
  AND (a.resolved_at, a.resolved_by) IS DISTINCT FROM (f.raised_at, f.alert_id)
"""


async def _stage_and_insert(
    conn: AsyncConnection[Any],
    table: str,
    columns: Sequence[str],
    rows: Sequence[Row],
    conflict: sql.Composable,
) -> sql.Identifier | None:
    """COPY `rows` into a temporary copy of `table`'s columns, then INSERT ... SELECT."""
    if not rows:
        return None
    staged = sql.Identifier(f"_staged_{table}")
    cols = sql.SQL(", ").join(sql.Identifier(c) for c in columns)
    jsonb = [i for i, c in enumerate(columns) if c in _JSONB]
    async with conn.cursor() as cur:
        await cur.execute(
            sql.SQL(
                "CREATE TEMP TABLE {staged} ON COMMIT DROP AS SELECT {cols} FROM {table} "
                "WITH NO DATA"
            ).format(staged=staged, cols=cols, table=sql.Identifier(table))
        )
        copy_sql = sql.SQL("COPY {staged} ({cols}) FROM STDIN").format(staged=staged, cols=cols)
        async with cur.copy(copy_sql) as copy:
            for row in rows:
                if jsonb:
                    row = tuple(
                        Jsonb(v) if i in jsonb and v is not None else v for i, v in enumerate(row)
                    )
                await copy.write_row(row)
        await cur.execute(
            sql.SQL("INSERT INTO {table} ({cols}) SELECT {cols} FROM {staged} {conflict}").format(
                table=sql.Identifier(table), cols=cols, staged=staged, conflict=conflict
            )
        )
    return staged


_AI_COLS = sql.SQL(", ").join(sql.Identifier(c) for c in AI_RESULT_COLUMNS)
_AI_STAGE = sql.SQL(
    "CREATE TEMP TABLE _staged_ai_results ON COMMIT DROP AS "
    "SELECT {cols}, ''::text AS _digest, ''::text AS _topic, 0 AS _partition, "
    "0::bigint AS _offset FROM ai_results WITH NO DATA"
).format(cols=_AI_COLS)
_AI_COPY = sql.SQL(
    "COPY _staged_ai_results ({cols}, _digest, _topic, _partition, _offset) FROM STDIN"
).format(cols=_AI_COLS)
_AI_IDS = """
INSERT INTO ai_event_ids (ai_event_id, inference_date, digest)
SELECT DISTINCT ON (ai_event_id) ai_event_id, inference_date, _digest
FROM _staged_ai_results ORDER BY ai_event_id
ON CONFLICT DO NOTHING"""
# Rows whose id is kept with this very content; anything else lost a race to another writer.
_AI_KEPT = """
FROM _staged_ai_results s JOIN ai_event_ids e
  ON e.ai_event_id = s.ai_event_id AND e.inference_date = s.inference_date
 AND (e.digest IS NULL OR e.digest = s._digest)"""
_AI_INSERT = sql.SQL(
    "INSERT INTO ai_results ({cols}) SELECT {s_cols} " + _AI_KEPT + " ON CONFLICT DO NOTHING"
).format(
    cols=_AI_COLS, s_cols=sql.SQL(", ").join(sql.Identifier("s", c) for c in AI_RESULT_COLUMNS)
)
_AI_RACE_LOST = """
INSERT INTO store_rejects (topic, "partition", "offset", reason)
SELECT _topic, _partition, _offset,
       'ai_event_id stored concurrently with another inference_date or content: '
       || 'conflict, not stored'
FROM _staged_ai_results s
WHERE NOT EXISTS (
    SELECT 1 FROM ai_event_ids e
    WHERE e.ai_event_id = s.ai_event_id AND e.inference_date = s.inference_date
      AND (e.digest IS NULL OR e.digest = s._digest))
ON CONFLICT DO NOTHING"""


async def _stored_keys(conn: AsyncConnection[Any], ids: list[str]) -> dict[str, StoredKey]:
    if not ids:
        return {}
    cur = await conn.execute(
        "SELECT ai_event_id, inference_date, digest FROM ai_event_ids WHERE ai_event_id = ANY(%s)",
        (ids,),
    )
    return {r[0]: StoredKey(r[1], r[2]) for r in await cur.fetchall()}


async def _insert_ai_results(conn: AsyncConnection[Any], rows: Sequence[tuple[Row, AiKey]]) -> None:
    if not rows:
        return
    async with conn.cursor() as cur:
        await cur.execute(_AI_STAGE)
        async with cur.copy(_AI_COPY) as copy:
            for row, key in rows:
                await copy.write_row((*row, key.digest, key.topic, key.partition, key.offset))
        await cur.execute(_AI_IDS)
        await cur.execute(_AI_INSERT)
        await cur.execute(_AI_RACE_LOST)


async def write_batch(conn: AsyncConnection[Any], rows: Rows) -> list[Reject]:
    """Write `rows` atomically: after this returns, all of them are committed.

    Returns the event-id conflicts found (also stored in `store_rejects`).
    """
    keys = [
        AiKey(topic, partition, offset, row[_ID], row[_INFERENCE_DATE], digest(row))
        for row, (topic, partition, offset) in zip(rows.ai_results, rows.ai_sources, strict=True)
    ]
    async with conn.transaction():
        stored = await _stored_keys(conn, sorted({k.ai_event_id for k in keys}))
        dropped, conflicts = split_conflicts(keys, stored)
        cases = [r for i, r in enumerate(rows.cases) if i not in dropped]
        pairs = enumerate(zip(rows.ai_results, keys, strict=True))
        ai_rows = [pair for i, pair in pairs if i not in dropped]
        staged_cases = await _stage_and_insert(
            conn, "cases", CASE_COLUMNS, latest(cases, 0, 1), _CASES_CONFLICT
        )
        if staged_cases is not None:
            await conn.execute(_MODEL_VERSIONS.format(staged=staged_cases))
        await _insert_ai_results(conn, ai_rows)
        await _stage_and_insert(
            conn, "metric_snapshots", SNAPSHOT_COLUMNS, rows.snapshots, _DO_NOTHING
        )
        await _stage_and_insert(conn, "alerts", ALERT_COLUMNS, rows.alerts, _DO_NOTHING)
        if rows.alerts_touched:
            await conn.execute(_RESOLVE_ALERTS, {"ids": sorted(rows.alerts_touched)})
        await _stage_and_insert(
            conn,
            "adverse_events",
            ADVERSE_EVENT_COLUMNS,
            latest(rows.adverse_events, 0, 1),
            _AE_CONFLICT,
        )
        rejects = [*rows.rejects, *conflicts]
        if rejects:
            async with conn.cursor() as cur:
                await cur.executemany(
                    'INSERT INTO store_rejects (topic, "partition", "offset", reason) '
                    "VALUES (%s, %s, %s, %s) ON CONFLICT DO NOTHING",
                    [(r.topic, r.partition, r.offset, r.reason) for r in rejects],
                )
    return conflicts
