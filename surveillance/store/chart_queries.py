"""The stored CUSUM charts of a tool's model versions, for the quarterly review.

The worker stores each chart once per evaluated day (`metric_snapshots`, kind `cusum`:
`value` the statistic, `upper` the decision threshold, `n` the cases charted since the
chart last restarted). Rows stored before the threshold was recorded have none.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from psycopg.rows import class_row

from surveillance.store.queries import Quarter


@dataclass(frozen=True)
class ChartPoint:
    at: datetime
    software_version: str
    metric: str
    statistic: float | None
    threshold: float | None
    cases: int | None


def cusum_points(conn: psycopg.Connection[Any], tool: str, quarter: Quarter) -> list[ChartPoint]:
    query = """
    SELECT at, software_version, metric, value AS statistic, upper AS threshold, n AS cases
    FROM metric_snapshots
    WHERE kind = 'cusum' AND tool_id = %(tool)s AND at >= %(start)s AND at < %(end)s
      AND software_version IS NOT NULL
    ORDER BY software_version, metric, at"""
    params = {"tool": tool, "start": quarter.start_utc, "end": quarter.end_utc}
    with conn.cursor(row_factory=class_row(ChartPoint)) as cur:
        return cur.execute(query, params).fetchall()
