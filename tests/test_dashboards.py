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
    committee = [q for q in queries if "FROM committee_series" in q]
    assert len(queries) == 3 + len(committee)
    assert all("$__timeFilter(period_end)" in q and "tool_id = '$tool'" in q for q in committee)


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


# --- the committee's figures (issue #20) ------------------------------------------------
# Every figure the committee reads has a panel on the tool drill-down: from Prometheus
# (what the worker counts) or from the stored series `committee_series` (what
# `surveillance committee --store` computes from the input streams).

#: Figures served from Prometheus: a panel title and the metric its query must use.
PROMETHEUS_FIGURES = {
    "coverage": ("Coverage per site (7 days) and floor", "surveillance_eligible_studies_total"),
    "coverage floor": ("Coverage per site (7 days) and floor",
                       "surveillance_coverage_floor_ratio"),
    "flags per site per day": ("Read flags per day by site (true and false)",
                               "surveillance_cases_total"),
    "false-positive share": (
        "Share of flags that were false positives (7 days), beside prevalence",
        "surveillance_cases_total"),
    "PPV beside prevalence": ("PPV and NPV, with prevalence", "surveillance_agreement_value"),
}
FIGURE_LITERALS = re.compile(r"figure\s*(?:=\s*'([^']*)'|IN\s*\(([^)]*)\))")


def committee_panels() -> dict[str, tuple[str, set[str]]]:
    """Panel title -> (SQL, figures it reads) for every committee_series panel."""
    out: dict[str, tuple[str, set[str]]] = {}
    for title, query in sql_queries(_load(ROOT / "dashboards/tool-drilldown.json")):
        if "committee_series" not in query:
            continue
        names: set[str] = set()
        for single, listed in FIGURE_LITERALS.findall(query):
            names |= {single} if single else set(re.findall(r"'([^']*)'", listed))
        out[title] = (query, names)
    return out


def check_figure_panels(panels: dict[str, tuple[str, set[str]]]) -> None:
    from surveillance.store.committee_series import Figure

    known = {f.value for f in Figure}
    for title, (_, names) in panels.items():
        assert names, f"panel {title!r} reads no figure"
        assert names <= known, f"panel {title!r} reads unknown figure(s) {names - known}"
    shown = set().union(*(names for _, names in panels.values()))
    assert known <= shown, f"stored figure(s) without a panel: {known - shown}"


def test_every_committee_figure_has_a_panel_and_every_panel_reads_a_real_figure() -> None:
    dashboard = _load(ROOT / "dashboards/tool-drilldown.json")
    by_title = {p["title"]: p for p in _panels(dashboard)}
    for figure, (title, metric) in PROMETHEUS_FIGURES.items():
        assert title in by_title, f"{figure}: no panel {title!r}"
        exprs = [t["expr"] for t in by_title[title]["targets"]]
        assert any(metric in _metric_names(e) for e in exprs), f"{figure}: {title} lacks {metric}"
    check_figure_panels(committee_panels())


def test_a_missing_panel_or_an_unknown_figure_is_caught() -> None:
    panels = committee_panels()
    dropped = dict(panels)
    title = next(t for t, (_, names) in panels.items() if "icc" in names)
    del dropped[title]
    with pytest.raises(AssertionError, match="without a panel"):
        check_figure_panels(dropped)
    typo = dict(panels)
    query, names = typo[title]
    typo[title] = (query, names | {"lins_ccc"})
    with pytest.raises(AssertionError, match="unknown figure"):
        check_figure_panels(typo)


def _numbers(figures: dict[str, Any], tool: str, figure: str) -> list[float]:
    """The oracle: a figure's numbers read straight from the `surveillance committee` JSON
    (value and interval ends where it has them), for every breakdown."""
    t = figures["tools"][tool]
    q = t.get("quantification")

    def limit(x: dict[str, Any] | None) -> list[Any]:
        return [] if x is None else [x["value"], x["lower"], x["upper"]]

    agreements = [q["overall"], *q["by_version"].values()] if q else []
    turnarounds = ([t["turnaround"], *t["turnaround_weekly"]] if "turnaround" in t else [])
    differences = [x["report_difference"] for x in turnarounds if x["report_difference"]]
    burden = t.get("alert_burden", [])
    v = t.get("value") or {}
    found: dict[str, list[Any]] = {
        "coverage": [x for c in t.get("coverage", []) for x in (c["share"], c["lower"],
                                                                c["upper"])],
        "minutes_to_ai_median": [x["median_minutes_to_ai"] for x in turnarounds],
        "minutes_to_report_median": [x for d in differences for x in (d["median_a"],
                                                                      d["median_b"])],
        "minutes_to_report_difference": [x for d in differences
                                         for x in (d["difference"], d["lower"], d["upper"])],
        "flags_per_day": [b["flags_per_day"] for b in burden],
        "flags_per_shift": [r for b in burden for r in b["flags_per_shift"].values()],
        "flag_ppv": [x for b in burden for x in (b["ppv"], b["ppv_lower"], b["ppv_upper"])],
        "prevalence": [b["prevalence"] for b in burden],
        "false_positive_share": [b["false_positive_share"] for b in burden],
        "false_flags_trend": [x for b in burden if b["fatigue_trend"]
                              for x in limit({"value": b["fatigue_trend"]["slope"],
                                              **b["fatigue_trend"]})],
        "period_cost": [v["period_cost"]] if v else [],
        "cost_per_study": [v["cost_per_study"]] if v else [],
        "cost_per_true_positive": [v["cost_per_true_positive"]] if v else [],
        "hours_brought_forward": [v["hours_brought_forward"], v["hours_lower"],
                                  v["hours_upper"]] if v else [],
        "bias": [x for a in agreements if a["bland_altman"]
                 for x in limit(a["bland_altman"]["bias"])],
        "loa_lower": [x for a in agreements if a["bland_altman"]
                      for x in limit(a["bland_altman"]["lower_loa"])],
        "loa_upper": [x for a in agreements if a["bland_altman"]
                      for x in limit(a["bland_altman"]["upper_loa"])],
        "icc": [x for a in agreements for x in limit(a["icc"])],
        "ccc": [x for a in agreements for x in limit(a["ccc"])],
        "weekly_bias": [w["bias"] for w in q["weeks"]] if q else [],
        "bias_cusum": [c["statistic"] for c in q["bias_chart"]] if q else [],
        "bias_cusum_threshold": [q["bias_threshold"]] if q else [],
    }
    return [x for x in found[figure] if x is not None]


@pytest.mark.integration
def test_committee_panels_show_exactly_the_figures_the_committee_command_printed(
    fresh_database: str,
) -> None:
    """Simulated triage stream with a site outage plus a quantification tool with a bias
    drift -> committee figures -> stored -> every committee panel, run as Grafana would,
    returns exactly the printed numbers; storing twice changes nothing."""
    from surveillance.clinical.baselines import load_registry
    from surveillance.report.committee_figures import committee_figures
    from surveillance.simulate import Scenario, simulate
    from surveillance.simulate.quantification import BiasDrift, simulate_quantification
    from surveillance.store.committee_series import series_rows, store_series
    from surveillance.store.migrate import migrate

    migrate(fresh_database)
    events, _ = simulate(days=22, scenario=Scenario(outage_day=9, outage_site="site-b"),
                         tools=["ich-triage"])
    volume = simulate_quantification(days=22, drift=BiasDrift(10, 4.0))
    figures = committee_figures(sorted(events + volume, key=lambda e: e.arrival),
                                load_registry())
    assert set(figures["tools"]) == {"ich-triage", "ich-volume"}
    weekly = figures["tools"]["ich-triage"]["turnaround_weekly"]
    assert {w["site"] for w in weekly} == {"site-a", "site-b", "site-c"} and len(weekly) > 6
    rows = series_rows(figures)
    at = datetime(2026, 12, 1, tzinfo=UTC)
    assert store_series(fresh_database, rows, at) == len(rows)
    assert store_series(fresh_database, rows, at) == len(rows)
    start, end = datetime(2026, 1, 1, tzinfo=UTC), datetime(2027, 1, 1, tzinfo=UTC)
    with psycopg.connect(fresh_database) as conn:
        assert conn.execute("SELECT count(*) FROM committee_series").fetchone() == (len(rows),)
        shown: set[str] = set()
        for title, (query, names) in committee_panels().items():
            tool = "ich-volume" if names & {"bias", "icc", "weekly_bias"} else "ich-triage"
            got = conn.execute(render_sql(query, tool).encode(),
                               {"start": start, "end": end}).fetchall()
            numbers = sorted(x for row in got for x in row[2:] if x is not None)
            expected = sorted(x for f in names for x in _numbers(figures, tool, f))
            assert expected, title
            assert numbers == pytest.approx(expected, rel=1e-12), title
            assert all(isinstance(row[1], str) and row[1] for row in got), title
            shown |= names
        # The outage shows on the coverage panel: below the floor at site-b only.
        coverage = figures["tools"]["ich-triage"]["coverage"]
        low = conn.execute("SELECT site, period_start FROM committee_series WHERE "
                           "figure = 'coverage' AND value < %s", (coverage[0]["floor"],))
        below = {(c["site"], c["week_start"]) for c in coverage if c["below_floor"]}
        assert {(s, p.date().isoformat()) for s, p in low.fetchall()} == below
        assert {s for s, _ in below} == {"site-b"}
    assert figures["tools"]["ich-volume"]["quantification"]["bias_signals"]


@pytest.mark.integration
def test_a_panel_reading_a_column_that_does_not_exist_fails(fresh_database: str) -> None:
    from surveillance.store.migrate import migrate

    migrate(fresh_database)
    query, _ = next(iter(committee_panels().values()))
    start, end = datetime(2026, 1, 1, tzinfo=UTC), datetime(2027, 1, 1, tzinfo=UTC)
    with psycopg.connect(fresh_database) as conn:
        conn.execute(render_sql(query, "ich-triage").encode(), {"start": start, "end": end})
        with pytest.raises(psycopg.errors.UndefinedColumn):
            conn.execute(render_sql(query.replace("value", "estimate"), "ich-triage").encode(),
                         {"start": start, "end": end})
