"""Grafana dashboards: every PromQL query parses and uses only metrics we export; every SQL
query (the long-range panels on the store) reads `tool_daily` and returns exactly what a
GROUP BY over `ai_results` returns (here on plain PostgreSQL; on TimescaleDB in
tests/test_store_timescale.py)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import promql_parser
import psycopg
import pytest
import yaml

from surveillance.observe.metrics import Window, exposed_sample_names

ROOT = Path(__file__).resolve().parents[1]
DASHBOARDS = sorted((ROOT / "dashboards").glob("*.json"))
DATASOURCES = ROOT / "deploy" / "grafana" / "provisioning" / "datasources" / "prometheus.yaml"
STORE_DATASOURCE = DATASOURCES.with_name("store.yaml")
# Series Prometheus itself creates: target health and the alerts it evaluates.
PROMETHEUS_SERIES = {"up", "ALERTS"}
# Grafana replaces these before sending a query; any valid duration stands in for them.
GRAFANA_RANGES = {"$__rate_interval": "5m", "$__interval": "1m", "$__range": "1h"}
LABEL_VALUES = re.compile(r"^label_values\((?P<selector>.+),\s*(?P<label>\w+)\)$")


def _load(path: Path) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(path.read_text())
    return loaded


def _panels(dashboard: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for panel in dashboard["panels"]:
        yield panel
        yield from panel.get("panels", [])


def _queries(dashboard: dict[str, Any]) -> Iterator[tuple[str, str]]:
    """(where, PromQL) for every panel target, annotation and template variable."""
    for panel in _panels(dashboard):
        for target in panel.get("targets", []):
            if "rawSql" not in target:
                yield f"panel {panel['title']!r} {target['refId']}", target["expr"]
    for annotation in dashboard["annotations"]["list"]:
        yield f"annotation {annotation['name']!r}", annotation["expr"]
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "query":
            match = LABEL_VALUES.match(variable["query"]["query"])
            assert match is not None, variable["query"]
            yield f"variable {variable['name']}", match.group("selector")


def _metric_names(expr: str) -> set[str]:
    for variable, duration in GRAFANA_RANGES.items():
        expr = expr.replace(variable, duration)
    names: set[str] = set()

    def visit(node: object) -> None:
        if isinstance(node, promql_parser.VectorSelector):
            assert node.name, f"selector without a metric name in {expr!r}"
            names.add(node.name)

    promql_parser.walk(promql_parser.parse(expr), visit)
    return names


def test_the_three_dashboards_exist_with_unique_uids() -> None:
    assert [p.name for p in DASHBOARDS] == [
        "fleet-overview.json",
        "pipeline-health.json",
        "tool-drilldown.json",
    ]
    uids = [_load(p)["uid"] for p in DASHBOARDS]
    assert len(set(uids)) == len(uids)


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.stem)
def test_every_query_parses_and_uses_exported_metrics(path: Path) -> None:
    exported = exposed_sample_names() | PROMETHEUS_SERIES
    queries = list(_queries(_load(path)))
    assert len(queries) >= 10
    for where, expr in queries:
        names = _metric_names(expr)
        assert names, f"{path.name} {where}: no metric in {expr!r}"
        assert names <= exported, f"{path.name} {where}: unknown {names - exported}"


def test_a_query_with_an_unknown_metric_is_caught() -> None:
    # The check above is only as good as this parser walk; make sure it sees through
    # functions, aggregations, ranges and binary operators.
    expr = (
        "histogram_quantile(0.95, sum by (le) (rate(a_bucket[$__rate_interval]))) "
        "/ on (tool) group_left () max_over_time(b[1h]) + label_replace(c, 'x', 'y', 'z', '.*')"
    )
    assert _metric_names(expr) == {"a_bucket", "b", "c"}


def sql_queries(dashboard: dict[str, Any]) -> Iterator[tuple[str, str]]:
    """(panel title, SQL) of every store panel target."""
    for panel in _panels(dashboard):
        for target in panel.get("targets", []):
            if "rawSql" in target:
                yield panel["title"], target["rawSql"]


def render_sql(query: str, tool: str) -> str:
    """What Grafana's PostgreSQL data source sends: `$__timeFilter(col)` becomes a BETWEEN
    on the dashboard range (given here as the parameters `start` and `end`), `$tool` the
    selected tool."""
    query = re.sub(r"\$__timeFilter\((\w+)\)", r"\1 BETWEEN %(start)s AND %(end)s", query)
    return query.replace("$tool", tool)


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.stem)
def test_panels_use_the_provisioned_datasource_and_unique_ids(path: Path) -> None:
    provisioned = {
        d["uid"]: d
        for f in (DATASOURCES, STORE_DATASOURCE)
        for d in yaml.safe_load(f.read_text())["datasources"]
    }
    dashboard = _load(path)
    ids = [p["id"] for p in _panels(dashboard)]
    assert len(ids) == len(set(ids))
    for panel in _panels(dashboard):
        if panel["type"] == "row":
            continue
        source = provisioned[panel["datasource"]["uid"]]
        assert panel["datasource"] == {"type": source["type"], "uid": source["uid"]}
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target.get("datasource", panel["datasource"]) == panel["datasource"]
        grid = panel["gridPos"]
        assert grid["x"] >= 0 and grid["x"] + grid["w"] <= 24, panel["title"]


def test_fleet_overview_shows_every_status_the_committee_asks_for() -> None:
    exprs = " ".join(e for _, e in _queries(_load(ROOT / "dashboards/fleet-overview.json")))
    for needle in (
        'surveillance_agreement_value{metric="sensitivity"',
        'surveillance_agreement_value{metric="specificity"',
        "surveillance_agreement_lower",
        "surveillance_agreement_upper",
        "surveillance_baseline_value",
        "surveillance_ai_results_total",
        "surveillance_drift_detected",
        "surveillance_adverse_events_open",
        "surveillance_unvalidated_version_cases_total",
        "surveillance_last_event_timestamp_seconds",
    ):
        assert needle in exprs, needle


def test_tool_drilldown_is_driven_by_the_tool_variable() -> None:
    dashboard = _load(ROOT / "dashboards/tool-drilldown.json")
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert set(variables) == {"tool", "version", "site", "window"}
    windows = [o["value"] for o in variables["window"]["options"]]
    assert set(windows) <= {w.value for w in Window}
    for where, expr in _queries(dashboard):
        if where.startswith("panel"):
            assert 'tool="$tool"' in expr, where
    titles = {p["title"] for p in _panels(dashboard)}
    for title in (
        "Sensitivity with 95% interval and clearance baseline",
        "Specificity with 95% interval and clearance baseline",
        "CUSUM statistic and decision threshold",
        "Drift statistic per feature",
        "Version timeline",
        "Coverage per site (7 days) and floor",
    ):
        assert title in titles, title


def test_long_range_panels_read_the_daily_aggregate_over_the_dashboard_range() -> None:
    found = {
        path.stem: [title for title, query in sql_queries(_load(path))
                    if "FROM tool_daily" in query and "$__timeFilter(day)" in query]
        for path in DASHBOARDS
    }  # fmt: skip
    assert found == {
        "fleet-overview": [
            "AI results per day by tool (store)",
            "Positive-call rate per day by tool (store)",
        ],
        "pipeline-health": [],
        "tool-drilldown": ["AI results and positive calls per day (store)"],
    }
    queries = [q for path in DASHBOARDS for _, q in sql_queries(_load(path))]
    assert len(queries) == 3


DayCounts = dict[tuple[datetime, str], tuple[int, int]]


def group_by_day(conn: Any, start: datetime, end: datetime) -> DayCounts:
    """The oracle: (UTC day, tool) -> (results, positive calls) straight from ai_results."""
    rows = conn.execute(
        """SELECT date_trunc('day', inference_date AT TIME ZONE 'UTC') AT TIME ZONE 'UTC',
                  tool_id, count(*), count(*) FILTER (WHERE result_indicator)
           FROM ai_results GROUP BY 1, 2""",
    ).fetchall()
    return {(d, t): (n, p) for d, t, n, p in rows if start <= d <= end}


def panel_values(conn: Any, tool: str, start: datetime, end: datetime) -> dict[str, Any]:
    """Each store panel's rows, rendered and run as Grafana would."""
    out: dict[str, Any] = {}
    for path in DASHBOARDS:
        for title, query in sql_queries(_load(path)):
            out[title] = conn.execute(
                render_sql(query, tool).encode(), {"start": start, "end": end}
            ).fetchall()
    return out


def check_panels_against_base_tables(conn: Any, tool: str, start: datetime, end: datetime) -> int:
    """Assert every store panel equals the GROUP BY oracle; return the days compared."""
    truth = group_by_day(conn, start, end)
    panels = panel_values(conn, tool, start, end)
    assert panels["AI results per day by tool (store)"] == sorted(
        (d, t, n) for (d, t), (n, _) in truth.items()
    )
    rates = panels["Positive-call rate per day by tool (store)"]
    assert [(d, t) for d, t, _ in rates] == sorted(truth)
    for d, t, rate in rates:
        n, positive = truth[(d, t)]
        assert rate == pytest.approx(positive / n, rel=1e-12)
    assert panels["AI results and positive calls per day (store)"] == sorted(
        (d, n, p) for (d, t), (n, p) in truth.items() if t == tool
    )
    return len(truth)


@pytest.mark.integration
async def test_store_panels_equal_a_group_by_on_plain_postgresql(fresh_database: str) -> None:
    from surveillance.store.migrate import migrate
    from tests.test_store_upserts import _events, _write

    migrate(fresh_database)
    messages, _ = _events(seed=8)
    await _write(fresh_database, messages, chunk=1000)
    start = datetime(2026, 7, 10, tzinfo=UTC)
    end = datetime(2026, 9, 20, tzinfo=UTC)
    with psycopg.connect(fresh_database) as conn:
        days = check_panels_against_base_tables(conn, "ich-triage", start, end)
    assert days > 2 * 60  # two tools over ~72 days: the range cuts the quarter on both ends
