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

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from surveillance.contracts import Acquisition, AIResult, Scanner, Sex
from surveillance.stats.drift_bank import DriftBank, DriftBankConfig, DriftVerdict
from surveillance.stats.drift_binning import drift_edges
from surveillance.stats.drift_calibration import resolution_floor
from surveillance.stats.psi import bin_counts

START = datetime(2025, 3, 3, tzinfo=UTC)
REFERENCE_DAYS = 30
PER_DAY = 40  # every day above the bank's 20-event minimum, so every day is tested
LOW_VOLUME = 22  # the low-volume kVp example
SHIFT_DAYS = 5
MAX_DAYS = 5  # from the first shifted day to the alert (crossing day + lateness + 1)


def results(
    seed: int, first_day: int, days: int, feature: str, values: list[float],
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
            acquisition[feature] = float(drawn[i])
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
    feature: str, reference: tuple[list[float], list[float]],
    shifted: tuple[list[float], list[float]], seed: int, per_day: int = PER_DAY,
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
