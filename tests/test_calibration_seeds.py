"""Each drift calibration's own seed (`stats.drift_calibration.calibration_seed`).

Two features with identical references but different identities draw different windows
(different seeds, different thresholds); the same calibration gets the same seed and the
very same thresholds in another process, with another Python hash seed: the live
worker's spawned calibration child (`stream.calibration_process`) hands back entries
that a bank in this process finds under its own keys and builds from.
"""

from __future__ import annotations

import functools
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from scipy.stats import pearsonr

from surveillance.stats.drift_calibration import calibration_seed
from surveillance.stats.drift_calibration_cache import Calibrations
from surveillance.stats.drift_episode import VerdictContext
from surveillance.stats.drift_feature_bank import Columns, FeatureBank, Reference
from surveillance.stats.drift_features import DriftBankConfig
from surveillance.stats.drift_numeric_feature import NumericFeature
from surveillance.stream.calibration_process import CalibrationProcess

DAYS = 30
#: Two discrete numeric features (one PSI window calibration each, no per-event
#: detector): cheap, and their references are made identical below.
FEATURES = ("slice_thickness", "pixel_spacing")


@functools.cache
def _rows() -> Columns:
    rng = np.random.default_rng(42)  # the data, not the calibration
    start = datetime(2026, 1, 1, tzinfo=UTC)
    sizes = rng.poisson(90, size=DAYS)
    minutes = np.sort(rng.integers(0, 1440, size=int(sizes.sum())))
    days = np.repeat(np.arange(DAYS), sizes)
    order = np.lexsort((minutes, days))
    ats = [start + timedelta(days=int(days[i]), minutes=int(minutes[i])) for i in order]
    # Ten distinct values: one bin each (`drift_binning`), PSI only.
    column = rng.choice(np.arange(1.0, 11.0), size=len(ats), p=np.linspace(1, 2, 10) / 15)
    values = [float(v) for v in column]
    return Columns(ats, ["site-a"] * len(ats), [values, list(values)])  # identical references


def _reference(tool: str, base_seed: int = 0) -> Reference:
    # A high budget: 20,000 simulated windows per calibration (the fewest), not ~76,000.
    config = DriftBankConfig(features=FEATURES, seed=base_seed, alarms_per_quarter=20)
    return Reference(FEATURES, _rows(), DAYS, VerdictContext(tool, None, "input"), config)


def _psi_thresholds(bank: FeatureBank) -> list[float]:
    out = []
    for feature in bank.features:
        assert isinstance(feature, NumericFeature) and feature.detector is None
        out.append(feature.window_test.thresholds.psi)
    return out


def test_the_seed_is_a_stable_function_of_the_identity() -> None:
    same = calibration_seed(0, "ich-triage", "input", None, "kvp", "window")
    assert same == calibration_seed(0, "ich-triage", "input", None, "kvp", "window")
    others = {
        calibration_seed(1, "ich-triage", "input", None, "kvp", "window"),
        calibration_seed(0, "ptx-triage", "input", None, "kvp", "window"),
        calibration_seed(0, "ich-triage", "output", None, "kvp", "window"),
        calibration_seed(0, "ich-triage", "input", "", "kvp", "window"),
        calibration_seed(0, "ich-triage", "input", None, "age", "window"),
        calibration_seed(0, "ich-triage", "input", None, "kvp", "page_hinkley"),
        # Parts are length-prefixed: moving a boundary is another identity.
        calibration_seed(0, "ich-triag", "einput", None, "kvp", "window"),
    }
    assert same not in others and len(others) == 7
    assert 0 <= same < 2**64


def test_identical_references_of_different_features_get_different_thresholds() -> None:
    reference = _reference("tool-a")
    bank = reference.build(Calibrations())
    first, second = _psi_thresholds(bank)
    # Same reference counts, volume, window sizes and budget: only the seed differs.
    assert first != second
    # Another tool with the very same reference: other seeds, other thresholds.
    other = _psi_thresholds(_reference("tool-b").build(Calibrations()))
    assert set(other).isdisjoint({first, second})
    # The base seed moves every calibration's seed.
    moved = _psi_thresholds(_reference("tool-a", base_seed=1).build(Calibrations()))
    assert set(moved).isdisjoint({first, second})


def test_the_same_calibration_gives_the_same_thresholds_in_another_process(
        monkeypatch: pytest.MonkeyPatch) -> None:
    reference = _reference("tool-a")
    here = Calibrations()
    expected = _psi_thresholds(reference.build(here))
    # The live worker's path: a spawned child, here with another str hash seed.
    monkeypatch.setenv("PYTHONHASHSEED", "12345")
    child = CalibrationProcess()
    try:
        child.submit(1, [reference])
        results = child.results(block=True)
    finally:
        child.close()
    assert [job for job, _ in results] == [1]
    (_, entries), = results
    assert sorted(key for key, _ in entries) == sorted(key for key, _ in here.entries())
    installed = Calibrations()
    installed.install(entries)
    # Built from the child's entries alone (no simulation here): the same thresholds.
    assert _psi_thresholds(reference.build(installed.cached_only())) == expected


def test_two_features_thresholds_are_independent_across_base_seeds() -> None:
    """Identical references: with one shared seed their thresholds were equal at every
    base seed (one draw's luck, spent twice); with a seed each they are two independent
    draws, so across base seeds they are uncorrelated (scipy's Pearson test; the base
    seeds are fixed, so the verdict is reproducible)."""
    pairs = np.array([_psi_thresholds(_reference("tool-a", base_seed=b).build(Calibrations()))
                      for b in range(16)])
    assert np.unique(pairs[:, 0]).size == 16  # the base seed moves each threshold
    assert pearsonr(pairs[:, 0], pairs[:, 1]).pvalue > 0.01
