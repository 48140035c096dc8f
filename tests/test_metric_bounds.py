"""Identifier labels are bounded and mapped, never refused (observe/metrics.py).

Before: 2,000 unknown tool ids added 10,000 series to /metrics, and a version "5.2.1 build
7" or a site "Main Campus" (accepted by ingest) raised in the case agent's metric call and
crash-looped the worker.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator

import pytest
from prometheus_client.parser import text_string_to_metric_families

from surveillance.contracts import CaseOutcome
from surveillance.observe import metrics as m


@pytest.fixture
def bounds() -> Iterator[None]:
    """Bounds set by a test are undone after it (the registry is one per process)."""
    saved = copy.deepcopy(m._bounds.__dict__)
    yield
    m._bounds.__dict__.update(saved)


def series(name: str) -> dict[tuple[tuple[str, str], ...], float]:
    """Label sets -> value of one sample name, parsed from the /metrics text."""
    body, _ = m.render()
    return {
        tuple(sorted(s.labels.items())): s.value
        for family in text_string_to_metric_families(body.decode())
        for s in family.samples
        if s.name == name
    }


@pytest.mark.parametrize(("value", "label"), [
    ("5.2.1 build 7", "5.2.1_build_7"),
    ("Main Campus", "Main_Campus"),
    ("  v2 (beta) ", "v2_beta_"),
    ("-lead", "lead"),
    ("Clínica Norte", "Cl_nica_Norte"),
    ("日本語", "other"),
    ("x" * 100, "x" * 64),
    ("4.2.1", "4.2.1"),
])
def test_values_are_made_label_safe(value: str, label: str) -> None:
    assert m.label_safe(value) == label
    assert m.identifier("version", m.label_safe(value))


def test_two_thousand_unknown_tools_add_no_series_and_are_counted_under_other(
    bounds: None,
) -> None:
    m.register_tool("t-bounded", "CT")
    m.bound_labels(["north", "Main_Campus"], max_sites=0, max_versions_per_tool=2)
    before_ai = series("surveillance_ai_results_total")
    before_cases = series("surveillance_cases_total")
    before_other = before_ai.get((("site", "other"), ("tool", "other"), ("version", "other")), 0)
    for i in range(2000):
        m.record_ai_result(f"rogue-{i}", f"{i}.0 build {i}", f"Site {i}", "CT")
        m.record_case(f"rogue-{i}", f"{i}.0", f"Site {i}", CaseOutcome.TP)
    after_ai = series("surveillance_ai_results_total")
    new = set(after_ai) - set(before_ai)
    assert new <= {(("site", "other"), ("tool", "other"), ("version", "other"))}
    assert after_ai[(("site", "other"), ("tool", "other"), ("version", "other"))] == (
        before_other + 2000)
    assert len(set(series("surveillance_cases_total")) - set(before_cases)) <= 1
    assert not any(v.startswith("rogue") for labels in after_ai for _, v in labels)


def test_registered_tools_keep_their_first_versions_and_configured_sites(
    bounds: None,
) -> None:
    m.register_tool("t-versions", "CT")
    m.bound_labels(["north", "Main_Campus"], max_sites=0, max_versions_per_tool=2)
    for version, site in [("1.0", "north"), ("1.1", "Main Campus"), ("2.0 rc", "south")]:
        m.record_ai_result("t-versions", version, site, "MR")
    got = {dict(labels)["version"]: dict(labels)["site"]
           for labels in series("surveillance_ai_results_total")
           if dict(labels)["tool"] == "t-versions"}
    assert got == {"1.0": "north", "1.1": "Main_Campus", "other": "other"}
    m.set_cusum("t-versions", "1.0", "all", m.AgreementMetric.SENSITIVITY, 1.0, 4.0)
    assert m.REGISTRY.get_sample_value("surveillance_cusum_statistic", {
        "tool": "t-versions", "version": "1.0", "site": "all", "metric": "sensitivity"}) == 1.0
    modality = series("surveillance_modality_studies_total")
    assert (("modality", "other"),) in modality  # MR: no registered tool reads it


def test_without_configured_sites_the_first_ones_seen_are_kept(bounds: None) -> None:
    m.register_tool("t-firstsites", "CT")
    m.bound_labels([], max_sites=2, max_versions_per_tool=16)
    for site in ("fs-1", "fs-2", "fs-3", "fs-1"):
        m.record_ai_result("t-firstsites", "1.0", site, "CT")
    got = {dict(labels)["site"]: value
           for labels, value in series("surveillance_ai_results_total").items()
           if dict(labels)["tool"] == "t-firstsites"}
    assert got == {"fs-1": 2.0, "fs-2": 1.0, "other": 1.0}
