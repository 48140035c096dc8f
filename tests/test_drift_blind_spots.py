"""Drift features without blind spots: near-constant and rare-valued numeric features,
shifted up and down, and thresholds no lower than what one study can move.

The banks here watch one feature each (`DriftBankConfig(features=...)`), calibrated on a
reference built in the test: fast, and the feature under test is the only one that can
alarm. Detection within `MAX_DAYS` of the first shifted day: a day closes one day after
its end (the bank's default lateness) and is raised when it is evaluated; a shift of a
quarter of 40 studies a day may need a second or third day to cross a threshold set for
about one false alarm a year.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from statistics import median
from typing import Any

import numpy as np
import pytest

from surveillance.contracts import Acquisition, AIResult, Scanner, Sex
from surveillance.stats.chi_square import chi_square_homogeneity
from surveillance.stats.drift_bank import DriftBank, DriftBankConfig, DriftVerdict
from surveillance.stats.drift_binning import drift_edges
from surveillance.stats.drift_calibration import resolution_floor
from surveillance.stats.jensen_shannon import jensen_shannon_distance
from surveillance.stats.psi import bin_counts, psi

START = datetime(2025, 3, 3, tzinfo=UTC)
REFERENCE_DAYS = 30
PER_DAY = 40  # every day above the bank's 20-event minimum, so every day is tested
LOW_VOLUME = 22  # the low-volume kVp example
SHIFT_DAYS = 5
MAX_DAYS = 5  # from the first shifted day to the alert (crossing day + lateness + 1)


def results(
    seed: int, first_day: int, days: int, feature: str, values: list[float] | list[str],
    weights: list[float], per_day: int = PER_DAY,
) -> list[AIResult]:
    rng = np.random.default_rng(seed)
    out = []
    for day in range(first_day, first_day + days):
        n = int(rng.poisson(per_day))
        drawn = rng.choice(values, size=n, p=weights)
        seconds = np.sort(rng.uniform(0, 86_400, n))
        for i in range(n):
            at = START + timedelta(days=day, seconds=float(seconds[i]))
            acquisition = {"kvp": 120.0, "slice_thickness": 5.0, "pixel_spacing": 0.46,
                           "protocol_name": "HEAD ROUTINE"}
            acquisition[feature] = str(drawn[i]) if feature == "protocol_name" else float(
                drawn[i])
            out.append(AIResult(
                event_id=f"{seed}-{day}-{i}", tool_id="ich-triage", manufacturer="V",
                model="M", software_version="1", finding_code="intracranial_hemorrhage",
                ai_result=0.1, operating_threshold=0.5, result_indicator=False,
                patient_id="p", accession_number="a", study_instance_uid="u",
                study_date=at.date(), site="site-a", modality="CT", body_part_examined="HEAD",
                scanner=Scanner(manufacturer="GE", model="X", software_version="1"),
                acquisition=Acquisition(**acquisition), age=60, sex=Sex.FEMALE,
                inference_date=at, pseudonymized=True,
            ))  # fmt: skip
    return out


def watch(
    feature: str, reference: tuple[list[Any], list[float]],
    shifted: tuple[list[Any], list[float]], seed: int, per_day: int = PER_DAY,
) -> tuple[DriftBank, list[DriftVerdict]]:
    ref = results(seed, 0, REFERENCE_DAYS, feature, *reference, per_day=per_day)
    bank = DriftBank.from_reference(
        "ich-triage", ref, DriftBankConfig(features=(feature,), seed=seed)
    )
    stream = results(seed + 1, REFERENCE_DAYS, SHIFT_DAYS, feature, *shifted, per_day=per_day)
    verdicts = [v for r in stream for v in bank.update(r)]
    verdicts += bank.advance(START + timedelta(days=REFERENCE_DAYS + SHIFT_DAYS + 2))
    return bank, [v for v in verdicts if v.kind != "new_category"]


SHIFTS = {
    # kVp 120 on 90% of the reference (the blind spot: 120 -> 140 went unseen).
    "near-constant up": ("kvp", ([100.0, 120.0], [0.1, 0.9]), ([120.0, 140.0], [0.7, 0.3])),
    "near-constant down": ("kvp", ([120.0, 140.0], [0.9, 0.1]), ([100.0, 120.0], [0.3, 0.7])),
    "constant up": ("slice_thickness", ([5.0], [1.0]), ([5.0, 10.0], [0.7, 0.3])),
    "constant down": ("slice_thickness", ([5.0], [1.0]), ([2.5, 5.0], [0.3, 0.7])),
    # A rare value (3% of the reference) becoming common, and a common one going away.
    "rare value rises": ("slice_thickness", ([2.5, 5.0], [0.97, 0.03]), ([2.5, 5.0], [0.7, 0.3])),
    "common value falls": ("kvp", ([100.0, 120.0, 140.0], [0.03, 0.94, 0.03]),
                           ([100.0, 120.0, 140.0], [0.03, 0.67, 0.3])),
}


@pytest.mark.parametrize("name", sorted(SHIFTS))
def test_shifts_of_near_constant_and_rare_valued_features_are_detected(name: str) -> None:
    feature, reference, shifted = SHIFTS[name]
    _, verdicts = watch(feature, reference, shifted, seed=sorted(SHIFTS).index(name))
    assert verdicts, f"{name}: no drift alert"
    first = min(verdicts, key=lambda v: v.detected_at)
    assert first.feature == feature
    shift = START + timedelta(days=REFERENCE_DAYS)
    assert shift <= first.episode_start <= first.detected_at <= shift + timedelta(days=MAX_DAYS)


def test_a_constant_reference_prints_a_threshold_one_study_cannot_cross() -> None:
    """kVp 120 on every reference study: the threshold is at least the PSI of one odd
    study in a typical day (never 1e-06), and a day with one odd study raises nothing."""
    bank, verdicts = watch("kvp", ([120.0], [1.0]), ([100.0, 120.0], [0.04, 0.96]), seed=9,
                           per_day=LOW_VOLUME)
    assert bank._inputs.bank is not None
    feature = bank._inputs.bank.features[0]
    assert feature is not None and feature.spec.name == "kvp"
    threshold = feature.window_test.thresholds.psi
    reference = bin_counts(np.full(600, 120.0), drift_edges([120.0], 10))
    assert threshold >= resolution_floor(reference, LOW_VOLUME, "psi") > 0.1
    # At 4% odd studies a day rarely holds two: 5 days give at most one crossing day.
    assert len(verdicts) <= 1
    for v in verdicts:
        assert v.threshold is not None and v.threshold >= threshold
        assert "threshold 1e-06" not in v.sentence()


def test_upward_values_get_their_own_bins() -> None:
    edges = drift_edges([120.0] * 90 + [100.0] * 10, 10)
    counts = bin_counts([100.0, 120.0, 140.0, 80.0], edges)
    # below, 100, 120, above, missing: each value lands in a bin of its own.
    assert counts.tolist() == [1.0, 1.0, 1.0, 1.0, 0.0]
    # A continuous feature with an atom: the atom, just above and just below are apart.
    rng = np.random.default_rng(0)
    values = np.concatenate([np.full(500, 0.46), rng.normal(0.46, 0.04, 500)])
    edges = drift_edges(values, 10)
    below, atom, above = np.searchsorted(edges, [0.4599, 0.46, 0.4601], side="right")
    assert below < atom < above
    assert np.searchsorted(edges, [values.max() + 1.0], side="right")[0] == edges.size
    assert np.searchsorted(edges, [values.min() - 1.0], side="right")[0] == 0


SPACINGS = [round(0.30 + 0.01 * i, 2) for i in range(31)]
BELL = [float(np.exp(-(((x - 0.45) / 0.04) ** 2) / 2)) for x in SPACINGS]
#: Every windowed test whose alerts print "<statistic> vs threshold <t>": numeric PSI on
#: one-bin-per-value (constant, near-constant) and quantile bins (continuous), and the
#: categorical PSI, Jensen-Shannon and chi-square, on constant, near-constant and even
#: references (the degenerate references are where a threshold used to collapse).
PRINTED = {
    "numeric constant": ("kvp", ([120.0], [1.0]), ([100.0, 120.0], [0.3, 0.7])),
    "numeric near-constant": ("kvp", ([100.0, 120.0], [0.1, 0.9]), ([120.0, 140.0], [0.7, 0.3])),
    "numeric continuous": ("pixel_spacing", (SPACINGS, [b / sum(BELL) for b in BELL]),
                           (SPACINGS[10:], [b / sum(BELL[:21]) for b in BELL[:21]])),
    "categorical constant": ("protocol_name", (["HEAD ROUTINE"], [1.0]),
                             (["HEAD ROUTINE", "HEAD TRAUMA"], [0.7, 0.3])),
    "categorical near-constant": ("protocol_name", (["HEAD ROUTINE", "HEAD TRAUMA"], [0.95, 0.05]),
                                  (["HEAD ROUTINE", "HEAD TRAUMA"], [0.6, 0.4])),
    "categorical even": ("protocol_name", (["A", "B", "C"], [1 / 3, 1 / 3, 1 / 3]),
                         (["A", "B", "C"], [0.6, 0.2, 0.2])),
}


def one_odd_study(reference: np.ndarray, n: float) -> np.ndarray:
    """A day of `n` studies in the reference's proportions, one of them moved from the
    commonest value to the rarest (an empty bin or the unseen-category slot)."""
    day = reference / reference.sum() * n
    day[int(np.argmax(reference))] -= 1.0
    day[int(np.argmin(reference))] += 1.0
    return day


@pytest.mark.parametrize("name", sorted(PRINTED))
def test_no_alert_prints_a_threshold_one_odd_study_could_cross(name: str) -> None:
    """Drive each windowed test to an alert through the bank and read the threshold back
    from the alert text: for PSI and Jensen-Shannon it is at least the statistic of a
    typical day with one odd study, for chi-square the p-value threshold is below that
    day's p-value (checked with the one-window functions, independent of the calibration's
    row-wise code), and no alert text says 1e-06."""
    feature, reference, shifted = PRINTED[name]
    bank, verdicts = watch(feature, reference, shifted, seed=20 + sorted(PRINTED).index(name))
    assert bank._inputs.bank is not None
    built = bank._inputs.bank.features[0]
    assert built is not None
    ref_days = [r.inference_date.date() for r in results(
        20 + sorted(PRINTED).index(name), 0, REFERENCE_DAYS, feature, *reference)]
    typical = max(median([ref_days.count(d) for d in sorted(set(ref_days))]), 20)
    if feature == "protocol_name":
        counts = np.array([*built.reference_counts.values(), 0], dtype=np.float64)
    else:
        counts = np.asarray(built.window_test.reference_counts, dtype=np.float64)
    odd = one_odd_study(counts, typical)
    # Chi-square reads the reference's own categories only (a study of a never-seen
    # category does not move it), so its odd study goes to the rarest of those.
    seen = counts[counts > 0]
    odd_seen = one_odd_study(seen, typical)
    resolution = {
        "psi": psi(counts.tolist(), odd.tolist()),
        "jensen_shannon": jensen_shannon_distance(counts.tolist(), odd.tolist()),
        "chi_square": chi_square_homogeneity(seen.tolist(), odd_seen.tolist()).p_value,
    }
    windowed = [v for v in verdicts if v.statistic is not None]
    assert windowed, f"{name}: the shift raised no windowed-test alert"
    for v in windowed:
        text = v.sentence()
        assert "threshold 1e-06" not in text and "threshold 0 " not in text
        printed = re.search(r" vs threshold (\S+) \(n=", text)
        assert printed is not None, text
        assert float(printed.group(1)) == pytest.approx(v.threshold, rel=5e-3)
        for test, _, threshold in v.tests or ((v.detector, v.statistic, v.threshold),):
            if test == "chi_square":
                assert threshold < resolution[test], (name, test, threshold, resolution)
            else:
                assert threshold >= resolution[test] * (1 - 1e-9), (name, test, threshold)
