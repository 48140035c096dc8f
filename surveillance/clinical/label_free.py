"""Label-free early warning: has a version's output changed since its reference period?

Reports arrive hours to days after the AI call, and a drop in sensitivity shows in the
agreement windows only once enough read-positive cases are labelled. The AI output itself
is known at once, so two tests compare every case of a version (pending ones included)
over the last `recent_days` with the version's own first `reference_days`:

- positive-call rate: Fisher's exact test on the 2x2 table (positive / negative calls,
  recent / reference), two-sided (scipy's p-value, computed without its array
  machinery: `stats.fisher_exact`);
- score distribution: the two-sample Kolmogorov-Smirnov test (scipy `ks_2samp`).

A change in either is an ESTIMATE of a change in performance, not a confirmation: case
mix shifts move both without the tool getting worse.

Calibration. Each test is run once per day, so with per-test level `alpha` the expected
number of days on which either test rejects on a stable stream is at most
2 * 365.25 * alpha per year (linearity of expectation; it holds whatever the dependence
between overlapping windows). A warning is raised only when a test enters rejection, so
the expected count of warnings per tool-year is at most that too. `alpha_for_budget` sets
alpha from a budget of false warnings per year. The tests are valid level-alpha tests
under a stable stream: Fisher's is exact (conservative), the KS p-value is exact for small
samples and asymptotic otherwise. Scores are kept at 1e-4 resolution (the vendors'
payload precision); ties only make the KS test more conservative.

Memory: one day bucket per day of the recent window (a positive-call count and a
histogram of scores at 1e-4), plus the reference totals and histogram.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Literal

import numpy as np
from scipy.stats import ks_2samp

from surveillance.stats.cusum import DAYS_PER_YEAR
from surveillance.stats.fisher_exact import fisher_two_sided
from surveillance.stats.intervals import StatsParameterError

Feature = Literal["positive_rate", "score"]
FEATURES: tuple[Feature, Feature] = ("positive_rate", "score")

#: Score histogram resolution: 1e-4, the precision of the vendors' JSON payloads.
_SCORE_SCALE = 10_000


def alpha_for_budget(false_warnings_per_year: float, tests_per_day: int = 2) -> float:
    """Per-test level that keeps expected false warnings per year within the budget."""
    if not false_warnings_per_year > 0:
        raise StatsParameterError(
            f"false warnings per year must be > 0, got {false_warnings_per_year}"
        )
    return min(0.5, false_warnings_per_year / (DAYS_PER_YEAR * tests_per_day))


@dataclass(frozen=True, slots=True)
class LabelFreeTest:
    """One feature of one version: recent window against the reference period."""

    feature: Feature
    recent_value: float  # positive-call rate, or median score
    reference_value: float
    statistic: float  # recent minus reference rate, or the KS distance D
    p_value: float
    rejected: bool
    n_recent: int
    n_reference: int
    reference_first_day: int
    reference_last_day: int


@dataclass
class _Day:
    cases: int = 0
    positives: int = 0
    scores: Counter[int] | None = None


#: `ks_2samp` without scipy's array-API and NaN-policy wrapper, which costs about as
#: much as the test on a week of cases: the two samples here are 1-d float64 arrays
#: without NaN, the one case where the wrapper only passes them on
#: (`tests/test_label_free_speed.py` holds the results equal to the wrapped function's).
_KS_2SAMP = getattr(ks_2samp, "__wrapped__", ks_2samp)


def _scores(histogram: Counter[int]) -> np.ndarray:
    keys = np.fromiter(histogram.keys(), dtype=np.float64, count=len(histogram))
    counts = np.fromiter(histogram.values(), dtype=np.int64, count=len(histogram))
    return np.repeat(keys / _SCORE_SCALE, counts)


class LabelFreeMonitor:
    """Positive-call rate and score distribution of one version against its first days.

    Parameters
    ----------
    reference_days
        Length of the reference period, from the first case day of the version.
    recent_days
        Length of the recent window tested each day.
    alpha
        Per-test level; see `alpha_for_budget`.
    min_recent
        Fewest recent cases worth testing (the KS asymptotics need a few dozen).
    """

    def __init__(
        self, reference_days: int, recent_days: int = 7, alpha: float = 0.001,
        min_recent: int = 50,
    ) -> None:
        if reference_days < 1 or recent_days < 1:
            raise StatsParameterError(
                f"reference_days and recent_days must be >= 1, got {reference_days}, "
                f"{recent_days}"
            )
        if not 0.0 < alpha < 1.0:
            raise StatsParameterError(f"alpha must be in (0, 1), got {alpha}")
        self.reference_days = reference_days
        self.recent_days = recent_days
        self.alpha = alpha
        self.min_recent = min_recent
        self._first_day: int | None = None
        self._reference = _Day(scores=Counter())
        self._recent: dict[int, _Day] = {}
        self._watermark: int | None = None
        self.__restore_derived__()

    #: Not state: made again from the reference when read (`engine.state_codec`).
    __derived__ = ("_reference_sample",)

    def __restore_derived__(self) -> None:
        #: The reference's scores and their median, kept between the daily tests: the
        #: reference period is over before the first test and rarely changes after (a
        #: late case of it), when `add` drops them.
        self._reference_sample: tuple[np.ndarray, float] | None = None

    @property
    def reference_end(self) -> int | None:
        """First day after the reference period (None before the first case)."""
        return None if self._first_day is None else self._first_day + self.reference_days

    def add(self, day: int, positive: bool, score: float) -> None:
        """Count one case (its first revision only) by the UTC day ordinal of its AI call."""
        first = self._first_day
        if first is None:
            first = self._first_day = day
        key = round(score * _SCORE_SCALE)
        if day < first + self.reference_days:
            bucket = self._reference
            self._reference_sample = None
        else:
            watermark = self._watermark
            if watermark is None or day > watermark:
                self._watermark = watermark = day
                for old in [d for d in self._recent if d <= day - self.recent_days]:
                    del self._recent[old]
            elif day <= watermark - self.recent_days:
                return  # too late for any recent window still to be tested
            found = self._recent.get(day)
            if found is None:
                found = self._recent[day] = _Day(scores=Counter())
            bucket = found
        bucket.cases += 1
        if positive:
            bucket.positives += 1
        scores = bucket.scores
        assert scores is not None
        # Most keys are new to their day: `get` avoids Counter's Python-level __missing__.
        scores[key] = scores.get(key, 0) + 1

    def test(self, today: int) -> list[LabelFreeTest]:
        """Both tests over the `recent_days` ending on `today`; [] when not yet testable.

        Testable once the recent window lies wholly after the reference period and holds
        at least `min_recent` cases.
        """
        end = self.reference_end
        first = today - self.recent_days + 1
        if end is None or first < end or self._reference.cases == 0:
            return []
        days = [b for d, b in self._recent.items() if first <= d <= today]
        cases = sum(b.cases for b in days)
        if cases < self.min_recent:
            return []
        positives = sum(b.positives for b in days)
        histogram: Counter[int] = Counter()
        for b in days:
            assert b.scores is not None
            histogram.update(b.scores)
        ref = self._reference
        assert ref.scores is not None
        rate_p = fisher_two_sided(positives, cases - positives,
                                  ref.positives, ref.cases - ref.positives)
        sample = self._reference_sample
        if sample is None:
            scores = _scores(ref.scores)
            sample = self._reference_sample = (scores, float(np.median(scores)))
        recent = _scores(histogram)  # the KS test's sample and the median's, made once
        ks = _KS_2SAMP(recent, sample[0])
        assert self._first_day is not None
        first_day, last_day = self._first_day, end - 1
        recent_rate, ref_rate = positives / cases, ref.positives / ref.cases
        ks_p = float(ks.pvalue)
        return [
            LabelFreeTest(
                "positive_rate", recent_rate, ref_rate, recent_rate - ref_rate, rate_p,
                rate_p < self.alpha, cases, ref.cases, first_day, last_day,
            ),
            LabelFreeTest(
                "score", float(np.median(recent)), sample[1], float(ks.statistic), ks_p,
                ks_p < self.alpha, cases, ref.cases, first_day, last_day,
            ),
        ]
