"""Capture the plan of every statement a store query runs (for the EXPLAIN tests).

`PlanCapture` is a psycopg cursor class: each `execute` first runs the same statement
under `EXPLAIN (FORMAT JSON)` with the same parameters, keeps the plan, then runs it. The
queries under test are thus the exact SQL of `store/queries.py`, not copies of it.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import psycopg

PLANS: list[tuple[str, dict[str, Any]]] = []


class PlanCapture(psycopg.Cursor[Any]):
    def execute(
        self, query: Any, params: Any = None, **kwargs: Any
    ) -> PlanCapture:
        if isinstance(query, bytes):
            text = query.decode()
        elif isinstance(query, str):
            text = query
        else:
            text = query.as_string(self.connection)
        with psycopg.Cursor(self.connection) as plain:
            row = plain.execute(b"EXPLAIN (FORMAT JSON) " + text.encode(), params).fetchone()
        assert row is not None
        PLANS.append((text, row[0][0]["Plan"]))
        super().execute(query, params, **kwargs)
        return self


def nodes(plan: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield plan
    for child in plan.get("Plans", []):
        yield from nodes(child)


def scans(plan: dict[str, Any]) -> list[dict[str, Any]]:
    """Every node that reads a table (or, on TimescaleDB, a chunk)."""
    return [n for n in nodes(plan) if "Relation Name" in n]


def index_condition(plan: dict[str, Any], node: dict[str, Any]) -> str | None:
    """The index condition a table scan uses: its own, or its bitmap index scans'."""
    if "Index Cond" in node:
        return str(node["Index Cond"])
    conds = [str(n["Index Cond"]) for n in nodes(node) if "Index Cond" in n]
    return " OR ".join(conds) if conds else None
