"""The quarterly review's first page: one verdict per tool, human column names.

Pure rules first (a review dict in, the verdict out), then the export of a demo-style
store with four tools: every tool's HTML and PDF open with its verdict, the PDF renders
(pdftoppm), and Chromium finds each tool's verdict in its HTML.
"""

from __future__ import annotations

import asyncio
import csv
import json
import re
import subprocess
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import psycopg
import pytest

from surveillance.clinical.baselines import load_registry
from surveillance.clinical.monitor import PerformanceMonitor
from surveillance.contracts import MetricSnapshot
from surveillance.report.column_labels import human_feature, human_label
from surveillance.report.quarterly import export_quarterly
from surveillance.report.quarterly_plots import cusum_figure, drift_figure
from surveillance.report.quarterly_tables import cusum_summary, tables
from surveillance.report.quarterly_verdict import TOPICS, tool_verdict
from surveillance.store.batch import write_batch
from surveillance.store.rows import Decoder, Rows
from tests.store_fixtures import make_adverse_events, make_alerts, make_cases

CHROMIUM = Path("/usr/bin/chromium")
Q3 = date(2026, 7, 1)


def _estimate(value: float, n: int) -> dict[str, Any]:
    return {"value": value, "lower": value - 0.05, "upper": min(value + 0.03, 1.0),
            "numerator": round(value * n), "denominator": n}


def _review(**overrides: Any) -> dict[str, Any]:
    review: dict[str, Any] = {
        "tool": {"tool_id": "ich-triage", "display_name": "ICH triage"},
        "baseline_comparison": [
            {"metric": "sensitivity", "baseline": 0.962, "tolerance": 0.05, "min_count": 25,
             "observed": _estimate(0.95, 120), "verdict": "consistent with baseline"},
            {"metric": "specificity", "baseline": 0.995, "tolerance": 0.02, "min_count": 100,
             "observed": _estimate(0.99, 1500), "verdict": "consistent with baseline"},
        ],
        "alerts": [],
        "drift": [],
        "cusum": [],
        "adverse_events": [],
        "ai_daily": [],
        "model_versions": [{"software_version": "5.2.1", "volume": 1620,
                            "flagged_unvalidated": False,
                            "validation": {"status": "meets acceptance"}}],
    }
    review.update(overrides)
    return review


def _levels(review: dict[str, Any], coverage: list[dict[str, Any]] | None = None
            ) -> dict[str, str]:
    return {r.topic: r.level for r in tool_verdict(review, coverage).reasons}


def test_a_tool_meeting_everything_is_kept_with_one_sentence_per_topic() -> None:
    verdict = tool_verdict(_review())
    assert verdict.level == "keep"
    assert tuple(r.topic for r in verdict.reasons) == TOPICS
    assert all(r.sentence.endswith(".") and r.sentence.count(". ") == 0
               for r in verdict.reasons)
    assert "Sensitivity 95.0% and specificity 99.0%" in verdict.reasons[0].sentence


def test_below_baseline_means_act() -> None:
    review = _review()
    review["baseline_comparison"][0] = {**review["baseline_comparison"][0],
                                        "observed": _estimate(0.84, 130),
                                        "verdict": "below baseline"}
    verdict = tool_verdict(review)
    assert verdict.level == "act"
    assert verdict.reasons[0].sentence.startswith("Sensitivity 84.0% (95% CI 79.0% to 87.0%")


def test_each_topic_raises_the_verdict_on_its_own() -> None:
    assert _levels(_review(alerts=[{"kind": "cusum_signal", "raised_at":
                                    "2026-08-02T10:00:00+00:00"}]))["drift"] == "watch"
    assert _levels(_review(adverse_events=[{"outcome": "non_serious"}]))[
        "adverse events"] == "watch"
    assert _levels(_review(adverse_events=[{"outcome": "death"}]))["adverse events"] == "act"
    flagged = [{"software_version": "5.3.0", "volume": 40, "flagged_unvalidated": True,
                "validation": {"status": "insufficient evidence"}}]
    assert _levels(_review(model_versions=flagged))["unvalidated versions"] == "act"
    failed = [{**flagged[0], "flagged_unvalidated": False,
               "validation": {"status": "fails acceptance"}}]
    failed_reason = tool_verdict(_review(model_versions=failed)).reasons[4]
    assert (failed_reason.level, failed_reason.sentence) == (
        "act", "Version(s) 5.3.0 failed local acceptance.")
    pending = [{**flagged[0], "flagged_unvalidated": False}]
    assert _levels(_review(model_versions=pending))["unvalidated versions"] == "watch"
    short = _review()
    short["baseline_comparison"][0]["verdict"] = "insufficient data"
    assert _levels(short)["baseline"] == "watch"
    low = [{"site": "site-b", "week_start": "2026-07-13", "eligible": 208, "covered": 79,
            "share": 0.38, "floor": 0.9, "below_floor": True}]
    assert _levels(_review(), low)["coverage"] == "act"
    assert tool_verdict(_review(), low).level == "act"
    assert "38.0% of eligible studies at site-b" in tool_verdict(_review(), low).reasons[2].sentence


def test_every_table_column_has_a_human_label_with_no_field_names() -> None:
    review = _review(by_version_site=[], weekly=[], subgroups=[], subgroup_floor=0.8,
                     counts=None, figures={m: {"value": None, "lower": None, "upper": None}
                                          for m in ("sensitivity", "specificity", "ppv", "npv",
                                                    "prevalence", "kappa")})
    review["baseline_comparison"] = [{**b, "baseline_ci95_lower": None,
                                      "baseline_ci95_upper": None, "reference": 0.9,
                                      "p_value": 0.5} for b in review["baseline_comparison"]]
    review["model_versions"] = []
    for table in tables(review):
        for column in table.columns:
            label = human_label(column)
            assert "_" not in label and label[0].isupper(), (table.name, column, label)
    assert human_label("sensitivity_lower") == "Sensitivity 95% CI low (%)"
    assert human_label("baseline_ci95_lower") == "Baseline 95% CI low (%)"
    with pytest.raises(KeyError, match=r"column_labels\.py"):
        human_label("no_such_column")


# --- the export of a demo-style store ------------------------------------------------

TOOLS = ("ich-triage", "lvo-triage", "ptx-triage", "dr-screen")


def cusum_snapshots() -> list[MetricSnapshot]:
    """The CUSUM snapshots the real monitor stores for ich-triage's cases of the fixture
    (same seed), evaluated at the end of each day as the worker does."""
    cases = sorted(make_cases(40, 2500, "ich-triage", Q3, 92), key=lambda c: c.inference_date)
    monitor = PerformanceMonitor(load_registry())
    out: list[MetricSnapshot] = []
    day: date | None = None
    for case in cases:
        if day is not None and case.inference_date.date() != day:
            end = datetime(day.year, day.month, day.day, 23, 59, tzinfo=UTC)
            out += [s for s in monitor.evaluate(end, tools=["ich-triage"])[1]
                    if s.kind == "cusum"]
        day = case.inference_date.date()
        monitor.on_case(None, case)
    return out


@pytest.fixture(scope="module")
def exported(postgres: Any, tmp_path_factory: pytest.TempPathFactory) -> Path:
    name = "t_verdict"
    with psycopg.connect(postgres.admin_url, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        conn.execute(f"CREATE DATABASE {name}")
    url = f"postgresql://postgres@127.0.0.1:{postgres.port}/{name}"
    from surveillance.store.migrate import migrate

    migrate(url)
    events: list[tuple[str, Any]] = []
    for seed, (tool, n) in enumerate(zip(TOOLS, (2500, 200, 3000, 2000), strict=True)):
        events += [("c", c) for c in make_cases(40 + seed, n, tool, Q3, 92)]
    events += [("s", s) for s in cusum_snapshots()]
    events += [("a", a) for a in make_alerts("ich-triage", Q3)]
    events += [("ae", e) for e in make_adverse_events("ich-triage", Q3)]

    async def write() -> None:
        decoder = Decoder("c", "a", "s", "ae")
        rows = Rows.empty()
        for offset, (topic, event) in enumerate(events):
            decoder.add(rows, topic, 0, offset, event.model_dump_json().encode())
        async with await psycopg.AsyncConnection.connect(url) as conn:
            await write_batch(conn, rows)

    asyncio.run(write())
    out = tmp_path_factory.mktemp("quarterly")
    export_quarterly(url, "2026Q3", None, out)
    return out


def _verdict(out: Path, tool: str) -> dict[str, Any]:
    review = json.loads((out / f"{tool}-2026Q3.json").read_text())
    verdict: dict[str, Any] = review["verdict"]
    return verdict


@pytest.mark.integration
def test_every_tool_leads_with_its_verdict(exported: Path) -> None:
    levels = {t: _verdict(exported, t)["level"] for t in TOOLS}
    for tool in TOOLS:
        print(f"\n{tool}: {levels[tool]}")
        for reason in _verdict(exported, tool)["reasons"]:
            print(f"  {reason['topic']} ({reason['level']}): {reason['sentence']}")
    assert levels["ich-triage"] == "act"  # a death and a hospitalization were reported
    lvo = {r["topic"]: r for r in _verdict(exported, "lvo-triage")["reasons"]}
    assert lvo["baseline"]["level"] == "watch"  # 200 studies: too few positives
    for tool in TOOLS:
        html = (exported / f"{tool}-2026Q3.html").read_text()
        first_section = html.index('<section class="verdict"')
        assert first_section < html.index("<h2>", first_section + 30) < html.index("<table")
        assert f'data-level="{levels[tool]}"' in html
        headers = re.findall(r"<th>([^<]*)</th>", html)
        assert headers and not any("_" in h for h in headers)
        with open(exported / f"{tool}-2026Q3" / "baseline_comparison.csv") as f:
            assert "baseline_ci95_lower" in next(csv.reader(f))  # machines keep their names


@pytest.mark.integration
def test_the_pdf_opens_with_the_verdict_and_renders(exported: Path) -> None:
    for tool in TOOLS:
        pdf = exported / f"{tool}-2026Q3.pdf"
        first = subprocess.run(["pdftotext", "-f", "1", "-l", "1", "-layout", str(pdf), "-"],
                               capture_output=True, text=True, check=True).stdout
        level = _verdict(exported, tool)["level"]
        assert f"VERDICT FOR THE COMMITTEE: {level.upper()}" in first
        assert all(f"{t.capitalize()} (" in first for t in TOPICS)
        render = subprocess.run(["pdftoppm", "-r", "30", "-f", "1", "-l", "2", "-png", str(pdf),
                                 str(exported / f"{tool}-page")], capture_output=True, text=True)
        assert render.returncode == 0 and render.stderr == "", render.stderr
        assert len(list(exported.glob(f"{tool}-page-*.png"))) == 2


@pytest.mark.integration
def test_chromium_finds_each_tools_verdict(exported: Path) -> None:
    from playwright.sync_api import sync_playwright

    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: `apt-get install -y chromium`")
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM),
                                     args=["--headless", "--no-sandbox", "--disable-gpu"])
        try:
            page = browser.new_page()
            for tool in TOOLS:
                verdict = _verdict(exported, tool)
                page.goto((exported / f"{tool}-2026Q3.html").as_uri())
                section = page.locator("section#verdict")
                assert section.get_attribute("data-level") == verdict["level"]
                heading = section.locator("h2").inner_text()
                assert heading.endswith(verdict["level"].upper())
                items = section.locator("li").all_inner_texts()
                assert [i.split(" (")[0] for i in items] == [t.capitalize() for t in TOPICS]
                assert [i.split(": ", 1)[1] for i in items] == [
                    r["sentence"] for r in verdict["reasons"]]
                # The verdict is on the first screen, before any table.
                box = section.bounding_box()
                assert box is not None and box["y"] < 600
        finally:
            browser.close()


@pytest.mark.integration
def test_each_version_has_its_cusum_chart_and_the_drift_timeline_what_was_detected(
    exported: Path,
) -> None:
    review = json.loads((exported / "ich-triage-2026Q3.json").read_text())
    snapshots = cusum_snapshots()
    stored = {(s.software_version, s.metric, s.at.isoformat(), s.value, s.upper)
              for s in snapshots}
    assert {(c["software_version"], c["metric"], c["at"], c["statistic"], c["threshold"])
            for c in review["cusum"]} == stored
    versions = sorted({v for v, *_ in stored})
    assert versions == ["1.0", "1.1"]
    html = (exported / "ich-triage-2026Q3.html").read_text()
    assert "<h2>CUSUM chart of each model version</h2>" in html
    assert '<img alt="CUSUM charts per model version" src="data:image/png;base64,' in html
    with open(exported / "ich-triage-2026Q3" / "cusum.csv") as f:
        rows = list(csv.DictReader(f))
    assert [(r["software_version"], r["metric"]) for r in rows] == [
        (v, m) for v in versions for m in ("sensitivity", "specificity")]
    signals = {(r["software_version"], r["metric"]): int(r["signals"]) for r in rows}
    assert signals[("1.1", "sensitivity")] == 1 and sum(signals.values()) == 1
    for r in rows:  # the highest daily value, and when, straight from the monitor
        mine = [s for s in snapshots
                if (s.software_version, s.metric) == (r["software_version"], r["metric"])]
        top = max(mine, key=lambda s: s.value or 0.0)
        assert float(r["highest_statistic"]) == top.value
        assert r["highest_on"] == top.at.date().isoformat()
        assert float(r["threshold"]) == mine[-1].upper
    # The drift timeline carries the drift alert, under its human name, in HTML and PDF.
    assert {d["feature"] for d in review["drift"] if d["source"] == "alert"} == {
        "scanner_manufacturer"}
    assert '<img alt="drift timeline"' in html
    text = subprocess.run(["pdftotext", "-layout", str(exported / "ich-triage-2026Q3.pdf"),
                           "-"], capture_output=True, text=True, check=True).stdout
    assert "CUSUM charts per model version" in text
    assert "version 1.0" in text and "version 1.1" in text
    assert human_feature("scanner_manufacturer") in text


def test_cusum_summary_and_empty_figures_say_so() -> None:
    chart = [{"at": f"2026-07-0{d}T23:59:00+00:00", "software_version": "2.0",
              "metric": "sensitivity", "statistic": s, "threshold": 4.0, "cases": d}
             for d, s in ((1, 0.5), (2, 3.1), (3, 1.0))]
    alerts = [{"kind": "cusum_signal", "software_version": "2.0", "metric": "sensitivity"},
              {"kind": "input_drift", "software_version": None, "metric": "kvp"}]
    assert cusum_summary({"cusum": chart, "alerts": alerts}) == [
        ("2.0", "sensitivity", 3, 3.1, "2026-07-02", 4.0, 1)]
    period = {"start": "2026-07-01", "end": "2026-09-30"}
    empty = {"cusum": [], "alerts": [], "drift": [], "period": period}
    for figure, words in ((cusum_figure(empty), "No CUSUM chart was stored"),
                          (drift_figure(empty), "No drift was detected")):
        assert any(words in t.get_text() for ax in figure.axes for t in ax.texts)
    assert human_feature("kvp:psi") == "Tube voltage (kV), PSI"
    assert human_feature("future_feature:new_test") == "future_feature, new_test"
