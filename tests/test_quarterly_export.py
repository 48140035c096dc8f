"""The quarterly export against an independent recomputation from the stored cases.

The oracle is plain Python over `SELECT * FROM cases`, statsmodels' Wilson interval and
Cohen's kappa, scipy's exact binomial test and numpy's business-day arithmetic: nothing
from surveillance.stats or the store's queries.
"""

from __future__ import annotations

import asyncio
import csv
import json
import subprocess
from collections import Counter
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import psycopg
import pytest
from psycopg.rows import dict_row
from scipy.stats import binomtest
from statsmodels.stats.inter_rater import cohens_kappa
from statsmodels.stats.proportion import proportion_confint

from surveillance.clinical.baselines import load_registry
from surveillance.contracts import Alert
from surveillance.report.quarterly import export_quarterly
from surveillance.store.batch import write_batch
from surveillance.store.errors import QueryError
from surveillance.store.event_queries import record_filing
from surveillance.store.migrate import migrate
from surveillance.store.rows import Decoder, Rows
from tests.store_fixtures import (
    corrected,
    make_adverse_events,
    make_alerts,
    make_cases,
    make_snapshots,
)

pytestmark = pytest.mark.integration

TOOL = "ich-triage"
Q3, Q4 = date(2026, 7, 1), date(2026, 10, 1)
TOL = 1e-12


def _store(url: str) -> None:
    q3 = make_cases(31, 2500, TOOL, Q3, 92)
    labelled = [c for c in q3 if c.label is not None and c.label != "indeterminate"]
    events: list[tuple[str, Any]] = [("c", c) for c in q3]
    events += [("c", corrected(c, 1)) for c in labelled[:60]]
    events += [("c", c) for c in make_cases(32, 400, TOOL, date(2026, 6, 1), 30, ("1.0",))]
    events += [("c", c) for c in make_cases(33, 150, TOOL, Q4, 20, ("1.1",))]
    events += [("c", c) for c in make_cases(34, 300, "ptx-triage", Q3, 92)]
    events += [("a", a) for a in make_alerts(TOOL, Q3)]
    # Raised in Q2, resolved in Q3 (belongs to the review), and one with hostile text.
    old = Alert(
        alert_id="old-1",
        kind="output_drift",
        severity="warning",
        raised_at=datetime(2026, 6, 20, tzinfo=UTC),
        tool_id=TOOL,
        metric="ai_result",
        summary="score distribution moved <script>alert(1)</script>",
    )
    fix = Alert(
        alert_id="old-1-ok",
        kind="output_drift",
        severity="info",
        raised_at=datetime(2026, 7, 3, tzinfo=UTC),
        tool_id=TOOL,
        metric="ai_result",
        summary="score distribution back",
        details={"resolves": "old-1"},
    )
    events += [("a", old), ("a", fix)]
    events += [("s", s) for s in make_snapshots(TOOL, Q3, 60)]
    events += [("ae", e) for e in make_adverse_events(TOOL, Q3)]

    async def write() -> None:
        decoder = Decoder("c", "a", "s", "ae")
        rows = Rows.empty()
        for offset, (topic, event) in enumerate(events):
            decoder.add(rows, topic, 0, offset, event.model_dump_json().encode())
        async with await psycopg.AsyncConnection.connect(url) as conn:
            await write_batch(conn, rows)

    asyncio.run(write())
    with psycopg.connect(url) as conn:
        record_filing(conn, f"{TOOL}-ae-0", "us_803:fda", datetime(2026, 7, 20, tzinfo=UTC))


def _wilson(k: int, n: int) -> tuple[float, float]:
    low, high = proportion_confint(k, n, alpha=0.05, method="wilson")
    return float(low), float(high)


def _check_proportion(got: dict[str, Any], k: int, n: int) -> None:
    assert (got["numerator"], got["denominator"]) == (k, n)
    if n == 0:
        assert got["value"] is None and got["lower"] is None
        return
    low, high = _wilson(k, n)
    assert got["value"] == pytest.approx(k / n, abs=TOL)
    assert got["lower"] == pytest.approx(low, abs=TOL)
    assert got["upper"] == pytest.approx(high, abs=TOL)


def _check_figures(got: dict[str, Any], cases: list[dict[str, Any]]) -> None:
    n = Counter(c["outcome"] for c in cases)
    tp, fp, tn, fn = n["TP"], n["FP"], n["TN"], n["FN"]
    _check_proportion(got["sensitivity"], tp, tp + fn)
    _check_proportion(got["specificity"], tn, tn + fp)
    _check_proportion(got["ppv"], tp, tp + fp)
    _check_proportion(got["npv"], tn, tn + fn)
    _check_proportion(got["prevalence"], tp + fn, tp + fp + tn + fn)
    if tp + fp + tn + fn and tp + fn and tn + fp:
        ref = cohens_kappa(np.array([[tp, fp], [fn, tn]]))
        assert got["kappa"]["value"] == pytest.approx(ref.kappa, abs=TOL)
        assert got["kappa"]["se"] == pytest.approx(ref.std_kappa, abs=TOL)
        assert got["kappa"]["lower"] == pytest.approx(max(-1.0, ref.kappa_low), abs=TOL)
        assert got["kappa"]["upper"] == pytest.approx(min(1.0, ref.kappa_upp), abs=TOL)


def _check_counts(got: dict[str, Any], cases: list[dict[str, Any]]) -> None:
    n = Counter(c["outcome"] for c in cases)
    expected = {
        "volume": len(cases),
        "tp": n["TP"],
        "fp": n["FP"],
        "tn": n["TN"],
        "fn": n["FN"],
        "indeterminate": n["indeterminate"],
        "pending": n["pending"],
        "unlabelled": n["unlabelled"],
    }
    assert {k: got[k] for k in expected} == expected


def _band(age: int | None) -> str:
    if age is None:
        return "unknown"
    return "0-17" if age < 18 else "18-39" if age < 40 else "40-64" if age < 65 else "65+"


@pytest.fixture
def exported(fresh_database: str, tmp_path: Path) -> tuple[str, Path, Path]:
    migrate(fresh_database)
    _store(fresh_database)
    first, second = tmp_path / "one", tmp_path / "two"
    as_of = datetime(2026, 10, 15, 9, tzinfo=UTC)  # the committee's export date
    export_quarterly(fresh_database, "2026Q3", TOOL, first, as_of=as_of)
    export_quarterly(fresh_database, "2026Q3", TOOL, second, as_of=as_of)
    return fresh_database, first, second


def test_every_number_matches_an_independent_recomputation(
    exported: tuple[str, Path, Path],
) -> None:
    url, out, _ = exported
    review = json.loads((out / f"{TOOL}-2026Q3.json").read_text())
    with psycopg.connect(url, row_factory=dict_row) as conn:
        everything = conn.execute("SELECT * FROM cases").fetchall()
        alerts = conn.execute("SELECT * FROM alerts").fetchall()
        snapshots = conn.execute("SELECT * FROM metric_snapshots").fetchall()
    mine = [c for c in everything if c["tool_id"] == TOOL]
    quarter = [c for c in mine if Q3 <= c["study_date"] < Q4]
    assert len(quarter) == 2500

    _check_counts(review["counts"], quarter)
    _check_figures(review["figures"], quarter)

    expected_groups: dict[tuple[str, str | None], list[dict[str, Any]]] = {}
    for c in quarter:
        expected_groups.setdefault((c["software_version"], None), []).append(c)
        expected_groups.setdefault((c["software_version"], c["site"]), []).append(c)
    got_groups = {(g["software_version"], g["site"]): g for g in review["by_version_site"]}
    assert sorted(got_groups, key=str) == sorted(expected_groups, key=str)
    for key, cases in expected_groups.items():
        _check_counts(got_groups[key], cases)
        _check_figures(got_groups[key]["figures"], cases)

    registry = load_registry()[TOOL]
    n = Counter(c["outcome"] for c in quarter)
    for b in review["baseline_comparison"]:
        k, total = (
            (n["TP"], n["TP"] + n["FN"])
            if b["metric"] == "sensitivity"
            else (n["TN"], n["TN"] + n["FP"])
        )
        baseline = getattr(registry.baseline, b["metric"]).value
        tolerance = getattr(registry.tolerance, b["metric"])
        p = binomtest(k, total, baseline - tolerance, alternative="less").pvalue
        assert b["baseline"] == baseline and b["tolerance"] == tolerance
        assert b["p_value"] == pytest.approx(p, rel=1e-9)
        min_n = getattr(
            registry.min_counts, "positives" if b["metric"] == "sensitivity" else "negatives"
        )
        expected = (
            "insufficient data"
            if total < min_n
            else "below baseline"
            if p < 0.05
            else "consistent with baseline"
        )
        assert b["verdict"] == expected

    weeks: dict[str, list[dict[str, Any]]] = {}
    for c in quarter:
        start = c["study_date"] - timedelta(days=c["study_date"].weekday())
        weeks.setdefault(start.isoformat(), []).append(c)
    assert [w["week_start"] for w in review["weekly"]] == sorted(weeks)
    for w in review["weekly"]:
        _check_counts(w, weeks[w["week_start"]])
        _check_figures(w["figures"], weeks[w["week_start"]])

    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for c in quarter:
        for dim, value in (
            ("site", c["site"]),
            ("scanner_manufacturer", c["scanner_manufacturer"]),
            ("sex", c["sex"]),
            ("age_band", _band(c["age"])),
        ):
            groups.setdefault((dim, value), []).append(c)
    got = {(s["dimension"], s["value"]): s for s in review["subgroups"]}
    assert set(got) == set(groups)
    assert review["subgroups"][0]["dimension"] == "site"
    for key, cases in groups.items():
        _check_counts(got[key], cases)
        _check_figures(got[key]["figures"], cases)

    versions = {v["software_version"]: v for v in review["model_versions"]}
    assert sorted(versions) == ["1.0", "1.1"]
    for version, v in versions.items():
        all_v = [c for c in mine if c["software_version"] == version]
        to_date = [c for c in all_v if c["study_date"] < Q4]
        cum = Counter(c["outcome"] for c in to_date)
        assert [v["cumulative"][k] for k in ("tp", "fp", "tn", "fn")] == [
            cum["TP"],
            cum["FP"],
            cum["TN"],
            cum["FN"],
        ]
        _check_counts(v, [c for c in quarter if c["software_version"] == version])
        assert v["first_seen"] == min(c["inference_date"] for c in all_v).isoformat()
        assert v["last_seen"] == max(c["inference_date"] for c in all_v).isoformat()
        acceptance = registry.acceptance
        positives, negatives = cum["TP"] + cum["FN"], cum["TN"] + cum["FP"]
        if positives < acceptance.min_positives or negatives < acceptance.min_negatives:
            assert v["validation"]["status"] == "insufficient evidence"
        elif (
            _wilson(cum["TP"], positives)[0] < acceptance.sensitivity
            or _wilson(cum["TN"], negatives)[0] < acceptance.specificity
        ):
            assert v["validation"]["status"] == "fails acceptance"
        else:
            # Subgroup floor on point estimates with >= 10 cases in the denominator.
            below = False
            for dim in ("site", "scanner_manufacturer", "sex", "age"):
                levels: dict[str, Counter[str]] = {}
                for c in to_date:
                    level = _band(c["age"]) if dim == "age" else c[dim]
                    levels.setdefault(level, Counter())[c["outcome"]] += 1
                for tally in levels.values():
                    for hit, miss in (("TP", "FN"), ("TN", "FP")):
                        if tally[hit] + tally[miss] >= 10:
                            below |= (
                                tally[hit] / (tally[hit] + tally[miss]) < acceptance.subgroup_floor
                            )
            assert v["validation"]["status"] == (
                "fails acceptance" if below else "meets acceptance"
            )
        assert v["lifecycle_state"] is None

    start, end = datetime(2026, 7, 1, tzinfo=UTC), datetime(2026, 10, 1, tzinfo=UTC)
    in_q = lambda t: t is not None and start <= t < end  # noqa: E731
    expected_alerts = sorted(
        (
            a
            for a in alerts
            if a["tool_id"] == TOOL and (in_q(a["raised_at"]) or in_q(a["resolved_at"]))
        ),
        key=lambda a: (a["raised_at"], a["alert_id"]),
    )
    assert [a["alert_id"] for a in review["alerts"]] == [a["alert_id"] for a in expected_alerts]
    assert review["alerts"][0]["alert_id"] == "old-1"
    assert review["alerts"][0]["resolved_at"] == "2026-07-03T00:00:00+00:00"

    drift = [s for s in snapshots if s["kind"] == "drift" and in_q(s["at"])]
    drift_alerts = [
        a
        for a in alerts
        if a["kind"] in ("input_drift", "output_drift")
        and in_q(a["raised_at"])
        and a["tool_id"] == TOOL
    ]
    assert len(review["drift"]) == len(drift) + len(drift_alerts)

    # Regulatory clocks: 10 US work days (no Federal holiday falls in these windows),
    # 10 calendar days EU; status as of the export date (2026-10-15); one report filed.
    by_id = {e["event_id"]: e for e in review["adverse_events"]}
    assert sorted(by_id) == [f"{TOOL}-ae-{i}" for i in range(3)]
    for event in make_adverse_events(TOOL, Q3):
        aware = event.aware_date
        us_due = np.busday_offset(np.datetime64(aware), 10, roll="backward").astype(object)
        got_regulatory = {
            o["obligation"]: (o["due"], o["status"]) for o in by_id[event.event_id]["regulatory"]
        }
        if event.event.outcome == "non_serious":
            assert got_regulatory == {}
            continue
        eu_due = aware + timedelta(days=10)
        expected_regulatory = {
            "us_803:manufacturer": (us_due.isoformat(), "overdue"),
            "eu_mdr:competent_authority": (eu_due.isoformat(), "overdue"),
        }
        if event.event.outcome == "death":
            filed = "done" if event.event_id == f"{TOOL}-ae-0" else "overdue"
            expected_regulatory["us_803:fda"] = (us_due.isoformat(), filed)
        assert got_regulatory == expected_regulatory

    # The CSV carries the same numbers as the JSON.
    with open(out / f"{TOOL}-2026Q3" / "performance.csv", newline="") as f:
        overall = next(csv.DictReader(f))
    assert int(overall["tp"]) == review["counts"]["tp"]
    assert float(overall["sensitivity_lower"]) == review["figures"]["sensitivity"]["lower"]


def test_export_is_deterministic_self_contained_and_renders(
    exported: tuple[str, Path, Path],
) -> None:
    _, first, second = exported
    stem = f"{TOOL}-2026Q3"
    assert (first / f"{stem}.json").read_bytes() == (second / f"{stem}.json").read_bytes()
    for name in sorted(p.name for p in (first / stem).glob("*.csv")):
        assert (first / stem / name).read_bytes() == (second / stem / name).read_bytes()
    assert sorted(p.name for p in (first / stem).glob("*.csv")) == [
        "adverse_events.csv",
        "ai_daily.csv",
        "alerts.csv",
        "baseline_comparison.csv",
        "cusum.csv",
        "drift.csv",
        "model_versions.csv",
        "performance.csv",
        "subgroups.csv",
        "weekly.csv",
    ]

    html = (first / f"{stem}.html").read_text()
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "<script" not in html
    assert "http://" not in html and "https://" not in html
    assert html.count('src="data:image/png;base64,') == 4  # trend, subgroups, CUSUM, drift

    pages = subprocess.run(
        ["pdfinfo", str(first / f"{stem}.pdf")], capture_output=True, text=True, check=True
    ).stdout
    count = int(next(line.split()[-1] for line in pages.splitlines() if line.startswith("Pages:")))
    render = subprocess.run(
        ["pdftoppm", "-r", "40", "-png", str(first / f"{stem}.pdf"), str(first / "page")],
        capture_output=True,
        text=True,
    )
    assert render.returncode == 0, render.stderr
    assert render.stderr == ""
    assert len(list(first.glob("page-*.png"))) == count >= 6


def test_unknown_tool_and_bad_quarter_are_clear_errors(fresh_database: str, tmp_path: Path) -> None:
    migrate(fresh_database)
    with pytest.raises(QueryError, match="not like 2026Q3"):
        export_quarterly(fresh_database, "2026-Q3", None, tmp_path)
    with pytest.raises(QueryError, match="not in the baseline registry"):
        export_quarterly(fresh_database, "2026Q3", "no-such-tool", tmp_path)
