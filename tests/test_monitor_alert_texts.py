"""Every monitor alert fits the `Alert` contract whatever the names and however many sites.

Tool, version, site and scanner names are as long as the contracts allow (ids 128
characters, scanner names 256) and a health system may run a tool at dozens of sites. Each
of the monitor's four alert kinds is built from such a state, through the monitor where
that is quick (version change, baseline deviation with its subgroup concentration) and from
its parts where the real path needs weeks of data (a CUSUM signal on a designed chart, a
label-free test): built without ValidationError, summary within 1,000 characters, id
within 128, the full names kept in the alert's own fields.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from functools import cache

from hypothesis import example, given, settings
from hypothesis import strategies as st

from surveillance.clinical.baselines import load_registry
from surveillance.clinical.label_free import LabelFreeTest
from surveillance.clinical.monitor import PerformanceMonitor
from surveillance.clinical.monitor_alerts import cusum_alert, label_free_alert
from surveillance.clinical.monitor_state import ALL_SITES
from surveillance.clinical.verdicts import chart_design
from surveillance.clinical.version_charts import Chart, Signal
from surveillance.contracts import AdjudicatedCase, Alert, CaseOutcome, Label, Sex
from surveillance.stats.cusum import BernoulliCUSUM, ChartDesign

BASELINE = load_registry()["ptx-triage"]
T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
SUMMARY_CHARS = 1_000
ID_CHARS = 128


def ids(max_size: int = ID_CHARS) -> st.SearchStrategy[str]:
    """Names a contract accepts as ids: no surrounding whitespace (it would be stripped)."""
    return st.text(alphabet=st.characters(blacklist_categories=("Cs", "Cc", "Zs", "Zl", "Zp")),
                   min_size=1, max_size=max_size)


long_ids = st.one_of(ids(), st.integers(100, ID_CHARS).map(lambda n: "t" * n))
site_lists = st.lists(long_ids.filter(lambda s: s != ALL_SITES), min_size=1, max_size=40,
                      unique=True)


@cache
def design() -> ChartDesign:
    return chart_design(BASELINE, "sensitivity", 20.0, 0.5)


def case(n: int, tool: str, version: str, site: str, scanner: str, outcome: CaseOutcome,
         at: datetime) -> AdjudicatedCase:
    positive = outcome in (CaseOutcome.TP, CaseOutcome.FP)
    return AdjudicatedCase(
        case_id=f"acc{n}", revision=0, outcome=outcome,
        label=Label.PRESENT if outcome in (CaseOutcome.TP, CaseOutcome.FN) else Label.ABSENT,
        tool_id=tool, software_version=version, finding_code="pneumothorax", site=site,
        ai_result=0.9 if positive else 0.1, operating_threshold=0.5,
        result_indicator=positive, accession=f"acc{n}", study_date=at.date(),
        inference_date=at, labelled_at=at + timedelta(hours=6), modality="DX",
        scanner_manufacturer=scanner, scanner_model="m", scanner_software_version="s",
        age=50, sex=Sex.FEMALE, ai_event_id=f"ai{n}",
    )


def check(alert: Alert, tool: str) -> None:
    assert len(alert.summary) <= SUMMARY_CHARS, (len(alert.summary), alert.summary)
    assert len(alert.alert_id) <= ID_CHARS
    assert alert.tool_id == tool  # the full name stays in the structured fields
    # What goes on the wire validates again (as the store writer and consumers read it).
    assert Alert.model_validate_json(alert.model_dump_json()).summary == alert.summary


@settings(max_examples=25, deadline=None, derandomize=True, database=None)
@given(long_ids, long_ids, long_ids, site_lists, ids(256))
# Every name at its longest, with 5 sites (all listed) and with 40 (the lowest 5 listed).
@example("T" * ID_CHARS, "V" * ID_CHARS, "W" * ID_CHARS,
         [f"{i:02d}" + "S" * (ID_CHARS - 2) for i in range(5)], "X" * 256)
@example("T" * ID_CHARS, "V" * ID_CHARS, "W" * ID_CHARS,
         [f"{i:02d}" + "S" * (ID_CHARS - 2) for i in range(40)], "X" * 256)
def test_every_monitor_alert_fits_the_contract(
    tool: str, version: str, new_version: str, sites: list[str], scanner: str
) -> None:
    monitor = PerformanceMonitor({tool: BASELINE})
    n = 0
    # Misses concentrated on one scanner (so the alert names it), across every site.
    for day in range(3):
        for i, site in enumerate(sites):
            for outcome, on in ((CaseOutcome.FN, scanner), (CaseOutcome.TP, "other"),
                                (CaseOutcome.TP, "other"), (CaseOutcome.TN, "other")):
                n += 1
                at = T0 + timedelta(days=day, minutes=i)
                assert monitor.on_case(None, case(n, tool, version, site, on, outcome, at)) == []
    for extra in range(40):  # enough read-positives at the first site for its verdict
        n += 1
        outcome = CaseOutcome.FN if extra % 2 else CaseOutcome.TP
        monitor.on_case(None, case(n, tool, version, sites[0], scanner, outcome,
                                   T0 + timedelta(days=2, hours=1)))
    alerts, snapshots = monitor.evaluate(T0 + timedelta(days=3))
    deviations = [a for a in alerts if a.kind == "baseline_deviation"]
    assert deviations  # sensitivity far below 0.927 - 0.05
    assert all(len(s.snapshot_id) <= ID_CHARS for s in snapshots)
    if new_version != version:
        n += 1
        changes = monitor.on_case(None, case(n, tool, new_version, sites[-1], scanner,
                                             CaseOutcome.TP, T0 + timedelta(days=3)))
        assert [a.kind for a in changes] == ["version_change"]
        alerts += changes
    record = monitor.state.versions[tool][version]
    chart = Chart(design(), BernoulliCUSUM(design().p0, design().p1, design().h), signals=1)
    alerts.append(cusum_alert(monitor.state, record,
                              Signal("sensitivity", chart, T0 + timedelta(days=3), T0)))
    for feature in ("positive_rate", "score"):
        test = LabelFreeTest(feature, 0.123456, 0.654321, -0.5, 1e-12, True, 10**6, 10**6,
                             T0.toordinal(), T0.toordinal() + 27)
        alerts.append(label_free_alert(monitor.state, record, test, T0 + timedelta(days=40)))
    assert {a.kind for a in alerts} >= {"baseline_deviation", "cusum_signal",
                                        "label_free_warning"}
    for alert in alerts:
        check(alert, tool)
    if len(sites) > 1:
        assert any("by site" in a.summary for a in alerts)
