"""The label-free tests (`clinical.label_free`) against scipy's public functions on the
cases themselves: every test result, field by field and bit for bit, equals Fisher's exact
test, the two-sample Kolmogorov-Smirnov test and the medians computed directly on the
cases of the window and of the reference period (no histograms, no kept reference
sample, no unwrapped `ks_2samp`), whatever the order the cases come in, late reference
cases included.
"""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import fisher_exact, ks_2samp

from surveillance.clinical.label_free import LabelFreeMonitor

REFERENCE_DAYS, RECENT_DAYS = 5, 3

_case = st.tuples(st.integers(0, 11), st.booleans(),
                  st.integers(0, 10_000).map(lambda k: k / 10_000)
                  | st.sampled_from([0.1, 0.5, 0.9]))  # ties
#: The first case opens the reference period (day 0 or 1); a few dozen to a few hundred.
_cases = st.tuples(st.tuples(st.integers(0, 1), st.booleans(), st.just(0.5)),
                   st.lists(_case, min_size=40, max_size=400)).map(lambda t: [t[0], *t[1]])


def _expected(cases: list[tuple[int, bool, float]], today: int) -> list[tuple[object, ...]]:
    """The two tests on the cases as `add` received them, computed from scratch."""
    first = cases[0][0]
    reference = [c for c in cases if c[0] < first + REFERENCE_DAYS]
    # A later case's day moves the recent window on: the days that left it are gone
    # (a case of such a day, arriving late, too).
    after = [c for c in cases if c[0] >= first + REFERENCE_DAYS]
    latest = max((c[0] for c in after), default=0)
    recent = [c for c in after if c[0] > latest - RECENT_DAYS]
    window = [c for c in recent if today - RECENT_DAYS < c[0] <= today]
    if today - RECENT_DAYS + 1 < first + REFERENCE_DAYS or len(window) < 5:
        return []
    positives = sum(c[1] for c in window)
    ref_positives = sum(c[1] for c in reference)
    table = [[positives, len(window) - positives],
             [ref_positives, len(reference) - ref_positives]]
    # Scores at the histogram's 1e-4 resolution, as `add` keeps them.
    scores = np.array([round(c[2] * 10_000) / 10_000 for c in window])
    ref_scores = np.array([round(c[2] * 10_000) / 10_000 for c in reference])
    rate_p = float(fisher_exact(table).pvalue)
    ks = ks_2samp(scores, ref_scores)
    rate, ref_rate = positives / len(window), ref_positives / len(reference)
    return [
        ("positive_rate", rate, ref_rate, rate - ref_rate, rate_p, rate_p < 0.05,
         len(window), len(reference), first, first + REFERENCE_DAYS - 1),
        ("score", float(np.median(scores)), float(np.median(ref_scores)),
         float(ks.statistic), float(ks.pvalue), float(ks.pvalue) < 0.05, len(window),
         len(reference), first, first + REFERENCE_DAYS - 1),
    ]


@given(_cases, st.lists(st.integers(6, 12), min_size=1, max_size=4))
@settings(max_examples=200)
def test_each_test_equals_scipy_on_the_cases_themselves(
        cases: list[tuple[int, bool, float]], days: list[int]) -> None:
    monitor = LabelFreeMonitor(REFERENCE_DAYS, RECENT_DAYS, alpha=0.05, min_recent=5)
    seen: list[tuple[int, bool, float]] = []
    # Tests between additions too: a kept reference sample must follow late reference
    # cases, and the windows must follow the cases added since.
    chunks = np.array_split(np.arange(len(cases)), len(days))
    for day, chunk in zip(days, chunks, strict=True):
        for i in chunk:
            monitor.add(*cases[i])
            seen.append(cases[i])
        for today in (day, day + 1):
            got = [(t.feature, t.recent_value, t.reference_value, t.statistic, t.p_value,
                    t.rejected, t.n_recent, t.n_reference, t.reference_first_day,
                    t.reference_last_day) for t in monitor.test(today)]
            assert got == _expected(seen, today)
