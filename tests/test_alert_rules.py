"""Prometheus alert rules: promtool accepts and unit-tests them, and each is complete.

Needs `promtool` on PATH (Debian package `prometheus`); the Makefile/CI installs it. The
tests fail, not skip, without it: untested alert rules are what this file prevents.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import promql_parser
import pytest
import yaml

from surveillance.observe.metrics import exposed_sample_names

ROOT = Path(__file__).resolve().parents[1]
PROM = ROOT / "deploy" / "prometheus"
RULE_FILES = sorted((PROM / "rules").glob("*.yml"))
TEST_FILES = sorted((PROM / "tests").glob("*.yml"))
RUNBOOKS = ROOT / "docs" / "runbooks"
# Series Prometheus itself creates, which rules may use besides ours.
PROMETHEUS_SERIES = {"up"}
SEVERITIES = {"critical", "warning", "info"}
CATEGORIES = {
    "performance",
    "drift",
    "availability",
    "version",
    "adverse_event",
    "regulatory",
    "pipeline",
}


def _promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        pytest.fail(
            "promtool not found on PATH: install it (`apt-get install prometheus`, or the "
            "Prometheus release tarball) — `make` and CI provide it"
        )
    return path


def _rules() -> list[dict[str, Any]]:
    rules: list[dict[str, Any]] = []
    for path in RULE_FILES:
        for group in yaml.safe_load(path.read_text())["groups"]:
            rules.extend(group["rules"])
    return rules


def _alert_tests() -> list[dict[str, Any]]:
    cases: list[dict[str, Any]] = []
    for path in TEST_FILES:
        for test in yaml.safe_load(path.read_text())["tests"]:
            cases.extend(test.get("alert_rule_test", []))
    return cases


def _metric_names(expr: str) -> set[str]:
    names: set[str] = set()

    def visit(node: object) -> None:
        if isinstance(node, promql_parser.VectorSelector):
            assert node.name, f"selector without a metric name in {expr!r}"
            names.add(node.name)

    promql_parser.walk(promql_parser.parse(expr), visit)
    return names


ALERTS = [rule for rule in _rules() if "alert" in rule]
ALERT_NAMES = [rule["alert"] for rule in ALERTS]


def test_there_are_rule_files_and_test_files() -> None:
    assert [p.name for p in RULE_FILES] == [
        "adverse_events.yml",
        "coverage.yml",
        "drift.yml",
        "performance.yml",
        "pipeline.yml",
        "versions.yml",
    ]
    assert {p.name for p in TEST_FILES} == {p.stem + "_test.yml" for p in RULE_FILES}


def test_promtool_check_rules() -> None:
    result = subprocess.run(
        [_promtool(), "check", "rules", *map(str, RULE_FILES)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    found = [int(n) for n in re.findall(r"SUCCESS: (\d+) rules found", result.stdout)]
    assert len(found) == len(RULE_FILES)
    assert sum(found) == len(_rules())


def test_promtool_test_rules() -> None:
    result = subprocess.run(
        [_promtool(), "test", "rules", *map(str, TEST_FILES)],
        capture_output=True,
        text=True,
        check=False,
        cwd=PROM,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("SUCCESS") == len(TEST_FILES)


def test_every_rule_file_is_loaded_by_a_test_file() -> None:
    loaded: set[Path] = set()
    for path in TEST_FILES:
        for rule_file in yaml.safe_load(path.read_text())["rule_files"]:
            resolved = (path.parent / rule_file).resolve()
            assert resolved.is_file(), f"{path.name} loads missing {rule_file}"
            loaded.add(resolved)
    assert loaded == {p.resolve() for p in RULE_FILES}


def test_alert_names_are_unique() -> None:
    assert len(ALERT_NAMES) == len(set(ALERT_NAMES)) == 20


@pytest.mark.parametrize("name", ALERT_NAMES)
def test_every_alert_has_a_firing_and_a_not_firing_test(name: str) -> None:
    cases = [c for c in _alert_tests() if c["alertname"] == name]
    assert any(c.get("exp_alerts") for c in cases), f"{name}: no test where it fires"
    assert any(not c.get("exp_alerts") for c in cases), f"{name}: no test where it is silent"


@pytest.mark.parametrize("rule", ALERTS, ids=ALERT_NAMES)
def test_every_alert_is_complete(rule: dict[str, Any]) -> None:
    name = rule["alert"]
    assert rule["labels"]["severity"] in SEVERITIES
    assert rule["labels"]["category"] in CATEGORIES
    annotations = rule["annotations"]
    assert set(annotations) == {"summary", "description", "runbook_url"}
    assert annotations["runbook_url"] == f"docs/runbooks/{name}.md"
    assert (ROOT / annotations["runbook_url"]).is_file()
    # The description carries clinical context through templates, not fixed text.
    assert "{{" in annotations["description"]
    if rule["labels"]["category"] != "pipeline":
        assert "$labels.tool" in annotations["description"]


@pytest.mark.parametrize(
    "rule",
    [r for r in ALERTS if r["labels"]["category"] == "performance"],
    ids=lambda r: r["alert"],
)
def test_performance_alerts_name_version_site_and_baseline(rule: dict[str, Any]) -> None:
    description = rule["annotations"]["description"]
    for needle in ("$labels.version", "$labels.site", "surveillance_baseline_value"):
        assert needle in description, needle


def test_adverse_event_severity_follows_seriousness() -> None:
    by_name = {r["alert"]: r for r in ALERTS}
    expected = {
        "AdverseEventLifeThreatening": ("critical", {"death", "life_threatening"}),
        "AdverseEventSerious": (
            "warning",
            {"hospitalization", "disability", "required_intervention", "other_serious"},
        ),
        "AdverseEventNonSerious": ("info", {"non_serious"}),
    }
    covered: set[str] = set()
    for name, (severity, outcomes) in expected.items():
        rule = by_name[name]
        assert rule["labels"]["severity"] == severity
        matcher = re.search(r'seriousness=~?"([^"]+)"', rule["expr"])
        assert matcher is not None
        assert set(matcher.group(1).split("|")) == outcomes
        covered |= outcomes
    from surveillance.contracts import Outcome

    assert covered == {o.value for o in Outcome}


@pytest.mark.parametrize("rule", _rules(), ids=lambda r: r.get("alert", r.get("record")))
def test_rules_query_only_exported_metrics(rule: dict[str, Any]) -> None:
    exported = exposed_sample_names() | PROMETHEUS_SERIES
    assert _metric_names(rule["expr"]) <= exported
    # Queries inside annotation templates too.
    for text in rule.get("annotations", {}).values():
        assert set(re.findall(r"surveillance_[a-z_]+", text)) <= exported


def test_every_runbook_belongs_to_an_alert_and_says_whom_to_tell() -> None:
    assert {p.stem for p in RUNBOOKS.glob("*.md")} == set(ALERT_NAMES)
    for name in ALERT_NAMES:
        text = (RUNBOOKS / f"{name}.md").read_text()
        assert text.startswith(f"# {name}\n"), name
        for section in ("## What it means", "## What to check", "## Who to tell"):
            assert section in text, (name, section)
