"""Windowed drift of a categorical distribution against a reference distribution.

Events are counted per window (a day or a week, chosen by the caller); when the caller
closes a window, its counts are compared with the reference counts by PSI,
Jensen-Shannon distance and the chi-square homogeneity test (over the reference's own
categories: see `close`), each against its own
calibrated threshold (see `drift_calibration`). The feature enters drift on a window
where any test crosses its threshold (`raised`: the tests that crossed); it stays in
drift, and later crossings are reported as `crossed` but not `raised`, until
`clear_after` consecutive tested windows cross nothing. A lasting shift whose statistics
hover around the thresholds therefore pages once, not every few days; raised alarms
are a subset of crossings, so the calibrated false-alarm rate still bounds them.
Windows with fewer than `min_window_events` events are not tested, and a window whose
share of moved probability mass (total variation distance) is below
`min_total_variation` does not cross: a statistically clear but tiny shift (huge
windows), or any odd value against a reference with a single category (kVp is 120 on
every head CT, so the calibrated null threshold is ~0), is not worth a page.

A category never seen in the reference is reported once, by the update that first sees
it, with the time it was seen (`new_category`). It is a fact, not a statistical alarm,
so it is outside the false-alarm budget.

Numeric features use `WindowedDistributionTest` directly on reference-quantile bins.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Literal, Self

import numpy as np

from surveillance.stats.chi_square import chi_square_homogeneity
from surveillance.stats.jensen_shannon import jensen_shannon_distance
from surveillance.stats.numeric_drift import DriftParameterError
from surveillance.stats.psi import FloatArray, psi

WindowTestName = Literal["psi", "jensen_shannon", "chi_square"]
WINDOW_TESTS: tuple[WindowTestName, ...] = ("psi", "jensen_shannon", "chi_square")
#: Category recorded for a missing value, so that missingness shifts are seen too.
MISSING = "<missing>"


@dataclass(frozen=True)
class WindowThresholds:
    """Drift when PSI > psi, JS distance > jensen_shannon, or chi-square p < chi_square_p."""

    psi: float
    jensen_shannon: float
    chi_square_p: float

    def __post_init__(self) -> None:
        if not self.psi > 0:
            raise DriftParameterError(f"psi threshold must be > 0 (inf: never), got {self.psi}")
        if not 0 < self.jensen_shannon <= 1:
            raise DriftParameterError(
                f"jensen_shannon threshold must be in (0, 1], got {self.jensen_shannon}"
            )
        if not 0 < self.chi_square_p < 1:
            raise DriftParameterError(
                f"chi_square_p threshold must be in (0, 1), got {self.chi_square_p}"
            )

    def value(self, test: WindowTestName) -> float:
        if test == "psi":
            return self.psi
        if test == "jensen_shannon":
            return self.jensen_shannon
        return self.chi_square_p


@dataclass(frozen=True)
class WindowResult:
    """One closed window compared with the reference (nan for tests not enabled)."""

    n: int
    labels: tuple[str, ...]
    reference_counts: tuple[float, ...]
    current_counts: tuple[float, ...]
    psi: float
    jensen_shannon: float
    chi_square: float
    p_value: float
    dof: int
    crossed: tuple[WindowTestName, ...]
    raised: tuple[WindowTestName, ...]

    @property
    def drift_detected(self) -> bool:
        return bool(self.raised)

    def statistic(self, test: WindowTestName) -> float:
        if test == "psi":
            return self.psi
        if test == "jensen_shannon":
            return self.jensen_shannon
        return self.p_value

    @property
    def total_variation(self) -> float:
        """Share of probability mass that moved: half the L1 distance of the proportions."""
        return _total_variation(self.reference_counts, self.current_counts)


def _total_variation(reference: Sequence[float], current: Sequence[float]) -> float:
    ref = np.asarray(reference, dtype=np.float64)
    cur = np.asarray(current, dtype=np.float64)
    return float(0.5 * np.abs(ref / ref.sum() - cur / cur.sum()).sum())


@dataclass(frozen=True)
class NewCategory:
    feature: str
    category: str
    first_seen: datetime


class WindowedDistributionTest:
    """Compares window counts over fixed labels with reference counts; edge-triggered."""

    def __init__(
        self,
        labels: Sequence[str],
        reference_counts: Sequence[float] | FloatArray,
        thresholds: WindowThresholds,
        tests: Sequence[WindowTestName] = WINDOW_TESTS,
        min_window_events: int = 20,
        clear_after: int = 7,
        min_total_variation: float = 0.0,
    ) -> None:
        ref = np.asarray(reference_counts, dtype=np.float64)
        if ref.ndim != 1 or ref.size != len(labels) or ref.size == 0:
            raise DriftParameterError("reference_counts needs one count per label")
        if np.any(ref < 0) or ref.sum() <= 0:
            raise DriftParameterError("reference_counts must be non-negative with a positive total")
        if not tests or any(t not in WINDOW_TESTS for t in tests):
            raise DriftParameterError(
                f"tests must be a non-empty subset of {WINDOW_TESTS}, got {tests}"
            )
        if min_window_events < 1:
            raise DriftParameterError(f"min_window_events must be >= 1, got {min_window_events}")
        self.labels = tuple(labels)
        self.reference_counts = ref
        self._reference_list = [float(x) for x in ref]
        self.thresholds = thresholds
        self.tests = tuple(tests)
        if clear_after < 1:
            raise DriftParameterError(f"clear_after must be >= 1, got {clear_after}")
        if not 0 <= min_total_variation < 1:
            raise DriftParameterError(
                f"min_total_variation must be in [0, 1), got {min_total_variation}"
            )
        self.min_total_variation = min_total_variation
        self.min_window_events = min_window_events
        self.clear_after = clear_after
        self._in_drift = False
        self._quiet = 0

    @property
    def in_drift(self) -> bool:
        return self._in_drift

    def close(
        self, current_counts: Sequence[float], extra: Mapping[str, float] | None = None
    ) -> WindowResult | None:
        """Test one window's counts (one per label, then `extra` labels absent from the
        reference); None when the window is too small to test."""
        extra = extra or {}
        n = int(sum(current_counts) + sum(extra.values()))
        if n < self.min_window_events:
            return None
        labels = self.labels + tuple(extra)
        ref = [*self._reference_list, *([0.0] * len(extra))]
        cur = [*current_counts, *extra.values()]
        used = [i for i in range(len(ref)) if ref[i] + cur[i] > 0]
        labels = tuple(labels[i] for i in used)
        ref = [ref[i] for i in used]
        cur = [cur[i] for i in used]
        # Only the enabled tests are computed; the others are reported as nan. Chi-square
        # compares the reference's own categories: a category the reference never saw has
        # an expected window count near 0 (one such study: p ~ 1e-7, the chi-square
        # approximation does not hold there), and it is reported as a new category
        # anyway; PSI and Jensen-Shannon still weigh its share.
        seen = [i for i in range(len(ref)) if ref[i] > 0]
        chi = (
            chi_square_homogeneity([ref[i] for i in seen], [cur[i] for i in seen])
            if "chi_square" in self.tests else None
        )
        values: dict[WindowTestName, float] = {
            "psi": psi(ref, cur) if "psi" in self.tests else math.nan,
            "jensen_shannon": (
                jensen_shannon_distance(ref, cur) if "jensen_shannon" in self.tests else math.nan
            ),
            "chi_square": chi.p_value if chi else math.nan,
        }
        crossed = tuple(t for t in self.tests if _crosses(t, values[t], self.thresholds))
        if crossed and _total_variation(ref, cur) < self.min_total_variation:
            crossed = ()
        raised: tuple[WindowTestName, ...] = ()
        if crossed:
            raised = () if self._in_drift else crossed
            self._in_drift, self._quiet = True, 0
        elif self._in_drift:
            self._quiet += 1
            self._in_drift = self._quiet < self.clear_after
        return WindowResult(
            n=n,
            labels=labels,
            reference_counts=tuple(ref),
            current_counts=tuple(cur),
            psi=values["psi"],
            jensen_shannon=values["jensen_shannon"],
            chi_square=chi.statistic if chi else math.nan,
            p_value=values["chi_square"],
            dof=chi.dof if chi else 0,
            crossed=crossed,
            raised=raised,
        )


def _crosses(test: WindowTestName, value: float, thresholds: WindowThresholds) -> bool:
    if test == "chi_square":
        return value < thresholds.chi_square_p
    return value > thresholds.value(test)


class CategoricalDriftDetector:
    """Counts one categorical feature per window and tests each closed window.

    >>> from datetime import UTC
    >>> t = datetime(2024, 1, 1, tzinfo=UTC)
    >>> det = CategoricalDriftDetector(
    ...     "protocol_name", {"HEAD ROUTINE": 90, "HEAD TRAUMA": 10},
    ...     WindowThresholds(psi=0.2, jensen_shannon=0.2, chi_square_p=0.001),
    ... )
    >>> det.update("HEAD STROKE", t).new_category.category
    'HEAD STROKE'
    >>> det.update("HEAD STROKE", t).new_category is None
    True
    """

    def __init__(
        self,
        feature: str,
        reference_counts: Mapping[str, int],
        thresholds: WindowThresholds,
        tests: Sequence[WindowTestName] = WINDOW_TESTS,
        min_window_events: int = 20,
        clear_after: int = 7,
        min_total_variation: float = 0.0,
    ) -> None:
        labels = [k for k, v in reference_counts.items() if v > 0]
        self.feature = feature
        self._test = WindowedDistributionTest(
            labels,
            [reference_counts[k] for k in labels],
            thresholds,
            tests,
            min_window_events,
            clear_after,
            min_total_variation,
        )
        self._index = {k: i for i, k in enumerate(labels)}
        self._known: set[str] = set(labels)
        self._counts = [0.0] * len(labels)
        self._extra: dict[str, float] = {}
        self._new: NewCategory | None = None
        self.first_seen: dict[str, datetime] = {}

    @property
    def reference(self) -> WindowedDistributionTest:
        return self._test

    @property
    def new_category(self) -> NewCategory | None:
        """The category first seen by the last update, else None."""
        return self._new

    @property
    def window_size(self) -> int:
        return int(sum(self._counts) + sum(self._extra.values()))

    def update(self, category: str, at: datetime) -> Self:
        i = self._index.get(category)
        if i is not None:
            self._counts[i] += 1
            self._new = None
            return self
        self._extra[category] = self._extra.get(category, 0.0) + 1
        if category in self._known:
            self._new = None
        else:
            self._known.add(category)
            self.first_seen[category] = at
            self._new = NewCategory(self.feature, category, at)
        return self

    def update_many(
        self, categories: Sequence[str], ats: Sequence[datetime]
    ) -> list[tuple[int, NewCategory]]:
        """`update` for each category in order (`ats`: their times); the categories first
        seen, each with its index. Counts per distinct category: the same counts, and
        the same order of categories outside the reference, as one update per event."""
        new: list[tuple[int, NewCategory]] = []
        for category, count in Counter(categories).items():
            i = self._index.get(category)
            if i is not None:
                self._counts[i] += count
                continue
            self._extra[category] = self._extra.get(category, 0.0) + count
            if category not in self._known:
                self._known.add(category)
                first = categories.index(category)
                self.first_seen[category] = ats[first]
                new.append((first, NewCategory(self.feature, category, ats[first])))
        self._new = None
        return sorted(new, key=lambda found: found[0])

    def close_window(self) -> WindowResult | None:
        """Test the window's counts against the reference and start a new window."""
        result = self._test.close(self._counts, self._extra)
        self._counts = [0.0] * len(self._counts)
        self._extra = {}
        return result
