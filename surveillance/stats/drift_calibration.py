"""Drift thresholds chosen from a false-alarm budget on simulated stable streams.

Budget. The drift bank's budget is the `drift` family's share of the tool's yearly
false-alarm budget (`stats.alarm_budget`), in alarms per quarter across ALL of the tool's
features. It is split Bonferroni-style: each of the tool's F configured features gets
alarms_per_quarter / F (features the reference cannot support, e.g. kVp on fundus
photographs, keep their share unused: conservative, and the split does not depend on
the data). By linearity of expectation the tool's expected false alarms per quarter is
then at most the budget whatever the dependence between features.

Within one feature:
- categorical: PSI, Jensen-Shannon and chi-square run on the same windows and are highly
  correlated, so they share the feature's budget jointly: each gets the same per-window
  tail rate r, and r is the largest rate whose UNION (any of the tests alarms) stays at
  or below the feature's per-window rate share / W, W = windows per quarter (91 daily,
  13 weekly windows). The chi-square p threshold is never above the nominal rate. The
  rate is counted as the detector counts it: only windows whose moved mass passes its
  `min_total_variation` gate can alarm, and no threshold is one a single odd study could
  cross (`resolution_floor`); both are applied inside the search, so budget a bounded
  test cannot use goes to the others. The search aims at GATED_AIM of the rate.
- numeric: half the share goes to the per-event river detector (a rate per quarter) and
  half to PSI on reference-quantile bins (per window, share / 2 / W).

Stable streams. Nothing in the null is assumed Gaussian: streams are resampled from the
tool's own reference period at the tool's volume (the reference's mean events per day).
- Windowed tests: per tool, on its own reference. Each simulated window is compared with
  the tool's ACTUAL reference counts (what the detector compares with in operation), and
  its counts are drawn from the posterior predictive of that reference: category (or bin)
  probabilities p ~ Dirichlet(reference counts + 1/2) (Jeffreys), then counts ~
  Multinomial(n, p). A value the reference happened to miss (a rare kVp, an empty tail
  bin of a numeric feature) therefore turns up in simulated windows about as often as a
  reference of that size allows, instead of never (plugging in the reference proportions)
  or as in an average reference (simulating references, which gave a tool whose reference
  lacks a rare value 3-12 times its share). The window size
  n is resampled from the reference's own window sizes when the caller gives them (the
  weekday/weekend rhythm: small weekend windows have the widest null spread, and a
  Poisson(mean) size misses them), else drawn Poisson(events per window). Windows below
  the bank's minimum size are simulated at that size (in operation they are not tested,
  so the real rate is at most the target).
- River detectors: `stream_calibration`.

How many windows, and which thresholds: `window_bound` (the expected rate of a fresh
stable window within the aim, exactly, by exchangeability, from about as many windows as
the point estimate read).

What the simulation does not see: seasonal structure, and dependence
between consecutive studies; real stable streams with such structure alarm more often
than the budget. Reproducible: everything is drawn from numpy's PCG64 seeded by `seed`.

Seeds. Each calibration has a seed of its own, `calibration_seed`: a stable hash of the
configured base seed and what identifies the calibration (tool, role and software
version, feature, detector). The bound above holds for each calibration in expectation
over its seed; with one seed for all, features with near-identical references drew the
same windows and shared one draw's luck (at seed 0 the 11 numeric PSI calibrations of the
worker's configuration ran at 1.58x their aim together), so a tool's total false alarms
varied far more than independent calibrations' would. The hash, not Python's `hash()`,
so that every process (the bulk runner's calibration processes, the live worker's
child) derives the same seed and the same thresholds.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt

from surveillance.stats.categorical_drift import (
    WINDOW_TESTS,
    WindowTestName,
    WindowThresholds,
)
from surveillance.stats.chi_square import chi_square_rows
from surveillance.stats.jensen_shannon import jensen_shannon_of_proportions, jensen_shannon_rows
from surveillance.stats.numeric_drift import DriftParameterError
from surveillance.stats.psi import (
    FloatArray,
    proportions,
    psi_of_proportions,
    psi_rows,
)
from surveillance.stats.window_bound import (
    _thresholds_at,
    expected_rate_bound,
    windows_needed,
)
from surveillance.stats.window_shortcuts import distinct_rows, psi_by_terms

WindowKind = Literal["daily", "weekly"]
DAYS_PER_QUARTER = 91
WINDOW_DAYS: dict[WindowKind, int] = {"daily": 1, "weekly": 7}
#: Smallest thresholds returned, so that a degenerate null (one category) stays valid.
MIN_DIVERGENCE_THRESHOLD = 1e-6
#: Dirichlet prior count per category of the posterior predictive null (Jeffreys).
PRIOR_COUNT = 0.5
#: Share of the rate the categorical (gated) search aims at. The posterior predictive null
#: is right to first order only: judged on fresh stable windows over a fleet of references
#: (tests/test_categorical_false_alarm_rates.py), thresholds aimed at the full rate ran
#: at 1.01-1.04x of it (2 to 20 categories; exactly 1.03x for two categories 93/7).
GATED_AIM = 0.9


def calibration_seed(base: int, *identity: str | None) -> int:
    """The seed of one calibration: a 64-bit BLAKE2b hash of the base seed and the
    calibration's identity (e.g. tool, role, software version, feature, detector), the
    same in every process and run. Each part is length-prefixed (no two identities
    share an encoding); None is not "" ."""
    h = hashlib.blake2b(digest_size=8, person=b"drift-calib")
    h.update(int(base).to_bytes(16, "big", signed=True))
    for part in identity:
        data = b"\x00" if part is None else b"\x01" + part.encode()
        h.update(len(data).to_bytes(8, "big") + data)
    return int.from_bytes(h.digest(), "big")


@dataclass(frozen=True)
class FalseAlarmBudget:
    """Expected false alarms per tool per quarter, split over `n_features`."""

    n_features: int
    alarms_per_quarter: float = 1.0
    window: WindowKind = "daily"

    def __post_init__(self) -> None:
        if self.n_features < 1:
            raise DriftParameterError(f"n_features must be >= 1, got {self.n_features}")
        if not 0 < self.alarms_per_quarter <= 100:
            raise DriftParameterError(
                f"alarms_per_quarter must be in (0, 100], got {self.alarms_per_quarter}"
            )
        if self.window not in WINDOW_DAYS:
            raise DriftParameterError(f"window must be daily or weekly, got {self.window!r}")

    @property
    def per_feature(self) -> float:
        return self.alarms_per_quarter / self.n_features

    @property
    def windows_per_quarter(self) -> int:
        return DAYS_PER_QUARTER // WINDOW_DAYS[self.window]

    def per_window_rate(self, share: float) -> float:
        """Per-window false-alarm probability for a test holding `share` of the budget."""
        return share / self.windows_per_quarter


def resolution_floor(
    reference_counts: Sequence[float] | FloatArray, events_per_window: float,
    test: WindowTestName,
) -> float:
    """The statistic of a window that differs from the reference by one event.

    A window of `events_per_window` events in the reference proportions, with one event
    moved from the most common category to the least common one. A threshold below this
    would alarm on a single odd study, a resolution no window test has; thresholds are
    never set below it (for chi-square: its p-value, and the p threshold is never above).
    """
    ref = np.asarray(reference_counts, dtype=np.float64)
    n = max(float(events_per_window), 1.0)
    window = ref / ref.sum() * n
    window[int(np.argmax(ref))] -= 1.0
    window[int(np.argmin(ref))] += 1.0
    window = np.maximum(window, 0.0)
    if test == "psi":
        return float(psi_rows(ref, window))
    if test == "chi_square":
        # Chi-square reads the reference's own categories only (`categorical_drift`).
        seen = ref > 0
        inside = ref / ref.sum() * n
        inside[int(np.argmax(ref))] -= 1.0
        inside[int(np.argmin(np.where(seen, ref, np.inf)))] += 1.0
        return float(chi_square_rows(ref[seen], np.maximum(inside[seen], 0.0))[1])
    return float(jensen_shannon_rows(ref[None, :], window[None, :])[0])


def simulate_windows(
    reference_counts: Sequence[float] | FloatArray,
    events_per_window: float,
    n_windows: int,
    seed: int,
    min_window_events: int = 20,
    window_sizes: Sequence[int] | None = None,
) -> FloatArray:
    """Counts of simulated stable windows, one row each (see module doc).

    Windows smaller than `min_window_events` are simulated at that size (conservative:
    in operation they are not tested). `window_sizes`: observed window sizes to resample
    (else Poisson).
    """
    ref = np.asarray(reference_counts, dtype=np.float64)
    if ref.ndim != 1 or ref.size == 0 or np.any(ref < 0) or ref.sum() <= 0:
        raise DriftParameterError("reference_counts must be non-negative with a positive total")
    if events_per_window <= 0:
        raise DriftParameterError(f"events_per_window must be > 0, got {events_per_window}")
    rng = np.random.default_rng(seed)
    if window_sizes is not None and len(window_sizes) > 0:
        sizes = rng.choice(np.asarray(window_sizes, dtype=np.int64), size=n_windows)
    else:
        sizes = rng.poisson(events_per_window, size=n_windows)
    # Every simulated window is tested, the small ones at the smallest tested size: a
    # threshold from a null where most windows go untested (a low-volume tool) would sit
    # at ~0 and alarm on every window that does reach the minimum.
    sizes = np.maximum(sizes, min_window_events)
    # `standard_gamma` is `gamma` at scale 1 (the same draws, without the multiply).
    p_windows = rng.standard_gamma(np.broadcast_to(ref + PRIOR_COUNT, (n_windows, ref.size)))
    p_windows /= p_windows.sum(axis=1, keepdims=True)
    windows: FloatArray = rng.multinomial(sizes, p_windows).astype(np.float64)
    return windows


def window_statistics(
    reference_counts: Sequence[float] | FloatArray,
    windows: FloatArray,
    tests: Sequence[WindowTestName] = WINDOW_TESTS,
) -> dict[WindowTestName, FloatArray]:
    """PSI, JS distance and chi-square p-value of each window row (only `tests`)."""
    ref = np.asarray(reference_counts, dtype=np.float64)
    return _statistics(ref, windows, proportions(ref), proportions(windows), tests)


def _statistics(
    ref: FloatArray, windows: FloatArray, ref_share: FloatArray, window_shares: FloatArray,
    tests: Sequence[WindowTestName],
) -> dict[WindowTestName, FloatArray]:
    """`window_statistics`, with both sides' proportions given (computed once for all
    the statistics and the gate; the same values as each computing its own)."""
    # The reference as one row that broadcasts: its proportions and empty-bin floors are
    # computed once, not once per simulated window (the same values either way).
    stats: dict[WindowTestName, FloatArray] = {}
    if "psi" in tests:
        by_terms = psi_by_terms(ref_share, windows)
        stats["psi"] = (psi_of_proportions(ref_share, window_shares) if by_terms is None
                        else by_terms)
    if "jensen_shannon" in tests:
        stats["jensen_shannon"] = jensen_shannon_of_proportions(ref_share, window_shares)
    if "chi_square" in tests:
        seen = ref > 0
        stats["chi_square"] = chi_square_rows(ref[seen], windows[:, seen])[1]
    return stats


def simulate_window_statistics(
    reference_counts: Sequence[float] | FloatArray,
    events_per_window: float,
    n_windows: int,
    seed: int,
    min_window_events: int = 20,
    tests: Sequence[WindowTestName] = WINDOW_TESTS,
    window_sizes: Sequence[int] | None = None,
) -> dict[WindowTestName, FloatArray]:
    """PSI, JS distance and chi-square p-value of simulated stable windows."""
    windows = simulate_windows(reference_counts, events_per_window, n_windows, seed,
                               min_window_events, window_sizes)
    return window_statistics(reference_counts, windows, tests)


def total_variation_rows(reference_counts: npt.ArrayLike, windows: FloatArray) -> FloatArray:
    """Share of probability mass moved between the reference and each window row (the
    detector's `min_total_variation` gate)."""
    return _moved(proportions(reference_counts), proportions(windows))


def _moved(ref_share: FloatArray, window_shares: FloatArray) -> FloatArray:
    result: FloatArray = 0.5 * np.abs(ref_share - window_shares).sum(axis=-1)
    return result


def calibrate_window_thresholds(
    reference_counts: Sequence[float] | FloatArray,
    events_per_window: float,
    per_window_rate: float,
    *,
    seed: int,
    tests: Sequence[WindowTestName] = WINDOW_TESTS,
    min_window_events: int = 20,
    window_sizes: Sequence[int] | None = None,
    min_total_variation: float = 0.0,
) -> WindowThresholds:
    """Thresholds whose union false-alarm rate per stable window is <= per_window_rate.

    `window_sizes`: the reference's observed window sizes, resampled for the simulated
    windows (else their size is Poisson(events_per_window)). `min_total_variation`: the
    detector's gate (a window whose moved mass is below it does not cross); the rate is
    counted as the detector counts it, on the windows the gate lets cross. Without it
    the thresholds were set by windows the detector can never raise on: with the
    null's one-event windows of a never-seen category (about n / 2N of the windows, three
    times a daily window's budget at a 30-day reference) a two-category feature was
    calibrated against them and alarmed ~20x less often than its budget.
    """
    if not 0 < per_window_rate < 0.5:
        raise DriftParameterError(f"per_window_rate must be in (0, 0.5), got {per_window_rate}")
    if not tests or any(t not in WINDOW_TESTS for t in tests):
        raise DriftParameterError(f"tests must be a non-empty subset of {WINDOW_TESTS}")
    if not 0 <= min_total_variation < 1:
        raise DriftParameterError(
            f"min_total_variation must be in [0, 1), got {min_total_variation}"
        )
    aim = per_window_rate if min_total_variation <= 0 else per_window_rate * GATED_AIM
    n_windows = windows_needed(aim, len(tests))
    windows = simulate_windows(reference_counts, events_per_window, n_windows, seed,
                               min_window_events, window_sizes)
    ref = np.asarray(reference_counts, dtype=np.float64)
    ref_share = proportions(ref)
    # Each distinct window's statistics once (a few categories and tens of events per
    # window repeat the same counts thousands of times), then one value per window again.
    rows, back = distinct_rows(windows)
    row_shares = proportions(rows)
    stats = {t: v[back] for t, v in _statistics(ref, rows, ref_share, row_shares,
                                                tests).items()}
    gate = (
        _moved(ref_share, row_shares)[back] >= min_total_variation
        if min_total_variation > 0 else None
    )
    typical = max(float(np.median(window_sizes)) if window_sizes else events_per_window,
                  float(min_window_events))
    floors = {t: resolution_floor(reference_counts, typical, t) for t in tests}

    def bounded(chosen: dict[WindowTestName, float]) -> dict[WindowTestName, float]:
        # No threshold a single odd study could cross, and chi-square's p threshold never
        # above the nominal rate; applied inside the search, so the budget a bounded test
        # cannot use goes to the others.
        out = dict(chosen)
        if "psi" in out:
            out["psi"] = max(out["psi"], floors["psi"], MIN_DIVERGENCE_THRESHOLD)
        if "jensen_shannon" in out:
            out["jensen_shannon"] = min(
                max(out["jensen_shannon"], floors["jensen_shannon"], MIN_DIVERGENCE_THRESHOLD),
                1.0,
            )
        if "chi_square" in out:
            below_one_study = float(np.nextafter(floors["chi_square"], 0.0))
            out["chi_square"] = max(
                min(out["chi_square"], per_window_rate, below_one_study), 1e-300
            )
        return out

    ordered = {t: np.sort(v) for t, v in stats.items()}
    # Bisection on the per-test tail rate; the union rate only grows with it. Without a
    # gate no test may exceed the rate alone; with one, a test's tail may be wider than
    # the rate where the gate holds part of it back.
    low, high = 0.0, per_window_rate if gate is None else 1.0
    for _ in range(30):
        mid = (low + high) / 2
        if expected_rate_bound(stats, bounded(_thresholds_at(ordered, mid)), gate) <= aim:
            low = mid
        else:
            high = mid
    chosen = bounded(_thresholds_at(ordered, low))
    # Tests not calibrated (not in `tests`) get thresholds that never alarm.
    return WindowThresholds(
        psi=chosen.get("psi", math.inf),
        jensen_shannon=chosen.get("jensen_shannon", 1.0),
        chi_square_p=chosen.get("chi_square", 1e-300),
    )
