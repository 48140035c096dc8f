"""Coverage: eligible studies (by ordered exam) vs studies the tool produced a result for.

The scenario test runs the simulator with `ich-triage` stopped on site-b's main scanner
for one ISO week, then (1) the pure weekly coverage and (2) the real alert rule, run by
promtool on counter series built from the same simulated stream, must both single out
that tool, site and week.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from collections import Counter
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
import yaml

from surveillance.clinical.baselines import load_registry
from surveillance.clinical.coverage import eligible_tools, weekly_coverage
from surveillance.contracts import AIResult, Exam, ReportFinal
from surveillance.simulate import Scenario, simulate
from surveillance.simulate.events import SimEvent

ROOT = Path(__file__).resolve().parents[1]
RULES = ROOT / "deploy" / "prometheus" / "rules" / "coverage.yml"
REGISTRY = load_registry()
#: The scenario simulates ich-triage alone (lvo-triage's head CTs would count as missed).
ICH_ONLY = {"ich-triage": REGISTRY["ich-triage"]}
START = date(2026, 7, 1)  # a Wednesday
OUTAGE_DAY = 12  # Monday 2026-07-13
DAYS = 26  # ends on a Monday: the week after the outage is whole


def test_eligibility_follows_the_registry_rule() -> None:
    head = Exam(modality="CT", body_part_examined="HEAD", exam_code="70450")
    assert eligible_tools(head, REGISTRY) == ["ich-triage", "lvo-triage"]
    # A head CT with contrast (CPT 70460) is not what the triage tools are cleared for.
    assert eligible_tools(Exam(modality="CT", body_part_examined="HEAD",
                               exam_code="70460"), REGISTRY) == []
    # No exam code on the order: the body part decides, case-insensitively.
    assert eligible_tools(Exam(modality="ct", body_part_examined="head"), REGISTRY) == [
        "ich-triage", "lvo-triage"]
    assert eligible_tools(Exam(modality="MR", body_part_examined="HEAD"), REGISTRY) == []
    assert eligible_tools(Exam(modality="DX", body_part_examined="CHEST",
                               exam_code="71045"), REGISTRY) == ["ptx-triage"]
    assert eligible_tools(None, REGISTRY) == []


def _report(event_id: str, accession: str, hour: int, status: str = "final",
            exam_code: str | None = "70450") -> ReportFinal:
    return ReportFinal.model_validate({
        "event_id": event_id, "accession_number": accession, "site": "site-a",
        "finalized_at": f"2026-07-06T{hour:02d}:00:00Z", "status": status,
        "findings": [], "exam": {"modality": "CT", "body_part_examined": "HEAD",
                                 "exam_code": exam_code},
    })


def _result(event_id: str, accession: str, tool: str = "ich-triage") -> AIResult:
    return AIResult.model_validate({
        "event_id": event_id, "tool_id": tool, "manufacturer": "V", "model": "M",
        "software_version": "1", "finding_code": "x", "ai_result": 0.2,
        "operating_threshold": 0.5, "result_indicator": False, "patient_id": "P",
        "accession_number": accession, "study_instance_uid": "1.2",
        "study_date": "2026-07-06", "site": "site-a", "modality": "CT",
        "body_part_examined": "HEAD",
        "scanner": {"manufacturer": "GE", "model": "X", "software_version": "1"},
        "inference_date": "2026-07-06T09:00:00Z",
    })


def test_weekly_coverage_counts_each_study_once() -> None:
    reports = [
        _report("r1", "A1", 10),
        _report("r1c", "A1", 14, status="corrected"),  # a correction is not a new study
        _report("r2", "A2", 11),
        _report("r3", "A3", 12, exam_code="70460"),  # not eligible
    ]
    results = [_result("e1", "A1"), _result("e1", "A1"), _result("e9", "A3"),
               _result("e2", "A2", tool="lvo-triage")]
    rows = {(r.tool_id, r.site): r for r in weekly_coverage(reports, results, REGISTRY)}
    ich, lvo = rows[("ich-triage", "site-a")], rows[("lvo-triage", "site-a")]
    assert (ich.week_start, ich.eligible, ich.covered, ich.share) == (date(2026, 7, 6), 2, 1,
                                                                     0.5)
    assert (lvo.eligible, lvo.covered) == (2, 1)
    assert ich.lower < 0.5 < ich.upper
    assert not ich.below_floor  # 2 studies are too few to judge


@pytest.fixture(scope="module")
def outage_stream() -> list[SimEvent]:
    scenario = Scenario(outage_day=OUTAGE_DAY, outage_site="site-b", outage_tool="ich-triage")
    events, _ = simulate(days=DAYS, start=START, scenario=scenario, tools=["ich-triage"])
    return events


def test_the_outage_week_is_below_the_floor_and_nothing_else(
    outage_stream: list[SimEvent],
) -> None:
    reports = [ReportFinal.model_validate_json(e.value) for e in outage_stream
               if e.topic == "reports.final"]
    results = [AIResult.model_validate_json(e.value) for e in outage_stream
               if e.topic == "ai.results"]
    rows = weekly_coverage(reports, results, ICH_ONLY)
    below = {(r.tool_id, r.site, r.week_start) for r in rows if r.below_floor}
    assert below == {("ich-triage", "site-b", date(2026, 7, 13))}
    outage = next(r for r in rows if (r.tool_id, r.site, r.week_start) in below)
    print(f"outage week: {outage.covered}/{outage.eligible} = {outage.share:.3f} "
          f"[{outage.lower:.3f}, {outage.upper:.3f}]")
    # The main scanner takes 70% of site-b's head CTs: about 30% stay covered (plus the
    # previous Sunday's studies reported on Monday).
    assert 0.2 < outage.share < 0.5
    assert outage.upper < outage.floor


def _promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        pytest.fail("promtool not found on PATH: install it (`apt-get install prometheus`)")
    return path


def _hourly_series(stream: list[SimEvent], hours: int) -> dict[str, list[float]]:
    """Cumulative counters, sampled hourly, as the worker would count the stream."""
    t0 = datetime(START.year, START.month, START.day, tzinfo=UTC)
    increments: dict[str, Counter[int]] = {}
    for event in stream:
        doc = json.loads(event.value)
        hour = int((event.arrival - t0) / timedelta(hours=1)) + 1
        if event.topic == "ai.results":
            name = (f'surveillance_ai_results_total{{tool="{doc["tool_id"]}",'
                    f'version="{doc["software_version"]}",site="{doc["site"]}"}}')
            increments.setdefault(name, Counter())[hour] += 1
        elif doc["status"] == "final":
            exam = Exam.model_validate(doc["exam"]) if doc.get("exam") else None
            for tool in eligible_tools(exam, ICH_ONLY):
                name = f'surveillance_eligible_studies_total{{tool="{tool}",site="{doc["site"]}"}}'
                increments.setdefault(name, Counter())[hour] += 1
    series: dict[str, list[float]] = {}
    for name, counts in increments.items():
        total, values = 0.0, []
        for h in range(hours + 1):
            total += counts[h]
            values.append(total)
        series[name] = values
    return series


def test_the_alert_rule_fires_for_the_outage_on_the_simulated_stream(
    outage_stream: list[SimEvent], tmp_path: Path
) -> None:
    rule = yaml.safe_load(RULES.read_text())
    for group in rule["groups"]:
        for r in group["rules"]:
            r.pop("annotations")  # their wording is tested in deploy/prometheus/tests
    (tmp_path / "rules.yml").write_text(yaml.safe_dump(rule))
    hours = DAYS * 24
    series = _hourly_series(outage_stream, hours)
    floor = REGISTRY["ich-triage"].coverage
    assert floor is not None
    series['surveillance_coverage_floor_ratio{tool="ich-triage"}'] = [floor.floor] * (hours + 1)
    firing = {"alertname": "CoverageBelowFloor", "exp_alerts": [{"exp_labels": {
        "tool": "ich-triage", "site": "site-b", "severity": "warning",
        "category": "availability"}}]}
    quiet = {"alertname": "CoverageBelowFloor", "exp_alerts": []}
    tests = {
        "rule_files": ["rules.yml"],
        "evaluation_interval": "1h",
        "tests": [{
            "interval": "1h",
            "input_series": [{"series": name, "values": " ".join(f"{v:g}" for v in values)}
                             for name, values in series.items()],
            "alert_rule_test": [
                {"eval_time": f"{OUTAGE_DAY * 24 - 1}h", **quiet},  # the day before
                {"eval_time": f"{(OUTAGE_DAY + 7) * 24}h", **firing},  # end of the week
            ],
        }],
    }
    (tmp_path / "test.yml").write_text(yaml.safe_dump(tests))
    result = subprocess.run([_promtool(), "test", "rules", "test.yml"], cwd=tmp_path,
                            capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr


@pytest.mark.integration
def test_the_real_worker_counts_what_the_alert_rule_was_tested_on(
    outage_stream: list[SimEvent], tmp_path: Path
) -> None:
    """The promtool test above feeds the rule the counters the worker would export for the
    outage stream; here the real worker reads that stream from the broker and its /metrics
    must end at exactly those counters, per site (so the rule sees what was tested)."""
    from surveillance.embedded import EmbeddedBroker
    from surveillance.stream.produce import produce
    from surveillance.stream.runner import WorkerProcess, wait_for_counts
    from surveillance.stream.topics import all_topics, create_topics
    from tests.test_pipeline_integration import metric_samples

    scenario = Scenario(outage_day=OUTAGE_DAY, outage_site="site-b", outage_tool="ich-triage")
    _, truth = simulate(days=DAYS, start=START, scenario=scenario, tools=["ich-triage"])
    model = {name: values[-1] for name, values in _hourly_series(outage_stream, DAYS * 24).items()}
    with EmbeddedBroker(log_dir=tmp_path) as broker:
        create_topics(broker.bootstrap, all_topics("surveillance", 4))
        produce(broker.bootstrap, ((e.topic, e.key, e.value) for e in outage_stream))
        worker = WorkerProcess(broker.bootstrap, tmp_path).start()
        try:
            wait_for_counts([worker], {t: x.cases for t, x in truth.items()}, timeout=240)
            counted: dict[str, float] = {}
            for metric in ("surveillance_ai_results_total", "surveillance_eligible_studies_total"):
                for labels, value in metric_samples(worker, metric).items():
                    tags = dict(labels)
                    if tags.get("tool") != "ich-triage":
                        continue
                    if metric == "surveillance_ai_results_total":
                        name = (f'{metric}{{tool="ich-triage",version="{tags["version"]}",'
                                f'site="{tags["site"]}"}}')
                    else:
                        name = f'{metric}{{tool="ich-triage",site="{tags["site"]}"}}'
                    counted[name] = value
        finally:
            worker.stop()
    print(f"\nworker /metrics: {sorted(counted.items())}")
    assert counted == model
    eligible_b = model['surveillance_eligible_studies_total{tool="ich-triage",site="site-b"}']
    covered_b = sum(v for k, v in model.items() if "results" in k and 'site="site-b"' in k)
    assert covered_b < 0.95 * eligible_b  # the outage is in what the worker counted
