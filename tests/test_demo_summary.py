"""The demo's per-tool table: every case lands in exactly one column, and a case still
waiting for its report (pending, or unlabelled past the horizon) is shown, not lost."""

from __future__ import annotations

from collections import Counter

from hypothesis import given
from hypothesis import strategies as st

from surveillance.demo import summary_table
from surveillance.simulate.events import ToolTruth

SIM_OUTCOMES = ("TP", "FP", "TN", "FN", "indeterminate", "no_report")


def truth_of(**outcomes: int) -> ToolTruth:
    return ToolTruth(cases=sum(outcomes.values()), final_outcomes=Counter(outcomes))


def test_the_table_shows_pending_cases_and_its_columns_add_up() -> None:
    truth = {"ptx-triage": truth_of(TP=3, FP=1, TN=10, FN=2, indeterminate=1, no_report=4)}
    counts = {"ptx-triage": {"cases": 21, "TP": 3, "FP": 1, "TN": 10, "FN": 2,
                             "indeterminate": 1, "pending": 3, "unlabelled": 1}}
    lines, ok = summary_table(truth, counts)
    assert ok
    assert lines[0].split() == ["tool", "cases", "sim", "counted",
                                "TP", "FP", "TN", "FN", "indet", "pending"]
    assert lines[2].split() == ["ptx-triage", "21", "21",
                                "3/3", "1/1", "10/10", "2/2", "1/1", "4/4"]
    assert "16 labelled cases" in lines[3]
    assert lines[-1] == "RESULT: all counts equal"


def test_a_pending_case_the_worker_does_not_have_is_a_difference() -> None:
    truth = {"ich-triage": truth_of(TP=5, no_report=2)}
    counts = {"ich-triage": {"cases": 7, "TP": 6, "pending": 1}}
    lines, ok = summary_table(truth, counts)
    assert not ok
    assert lines[2].split()[-1] == "2/1"
    assert lines[-1] == "RESULT: COUNTS DIFFER"


def test_a_tool_the_worker_never_counted_shows_zeros() -> None:
    lines, ok = summary_table({"dr-screen": truth_of(TN=2)}, {})
    assert not ok
    assert lines[2].split()[:3] == ["dr-screen", "2", "0"]


@given(
    sim=st.lists(st.integers(0, 10_000), min_size=6, max_size=6),
    unlabelled_share=st.floats(0, 1),
    changed=st.sampled_from(["TP", "FP", "TN", "FN", "indeterminate", "pending", None]),
)
def test_equal_counts_agree_and_any_changed_cell_disagrees(
    sim: list[int], unlabelled_share: float, changed: str | None
) -> None:
    truth = truth_of(**dict(zip(SIM_OUTCOMES, sim, strict=True)))
    got = dict(zip(("TP", "FP", "TN", "FN", "indeterminate"), sim[:5], strict=True))
    unlabelled = int(sim[5] * unlabelled_share)
    got |= {"pending": sim[5] - unlabelled, "unlabelled": unlabelled, "cases": truth.cases}
    if changed is not None:
        got[changed] += 1
        got["cases"] += 1
    lines, ok = summary_table({"t": truth}, {"t": got})
    assert ok is (changed is None)
    cells = [tuple(map(int, c.split("/"))) for c in lines[2].split()[3:]]
    assert sum(s for s, _ in cells) == truth.cases
    assert sum(g for _, g in cells) == got["cases"]
