"""MMD embedding drift: the statistic, the permutation level, power, and real embeddings."""

from __future__ import annotations

import doctest
import math

import numpy as np
import pytest
from scipy.stats import binom

import surveillance.shadow.embedding_drift as module
from surveillance.shadow.build_reference_model import build_reference_model
from surveillance.shadow.embedding_drift import (
    EmbeddingDriftDetector,
    alpha_for,
    median_bandwidth,
    mmd2,
    mmd_permutation_test,
)
from surveillance.shadow.model import ShadowModel
from surveillance.shadow.preprocess import preprocess_study
from surveillance.shadow.synthetic_studies import SyntheticStudy, synthesize_dataset


def test_doctest_example_runs() -> None:
    assert doctest.testmod(module).failed == 0


def _mmd2_by_definition(x: np.ndarray, y: np.ndarray, h: float) -> float:
    def k(a: np.ndarray, b: np.ndarray) -> float:
        return math.exp(-sum((ai - bi) ** 2 for ai, bi in zip(a, b, strict=True)) / (2 * h * h))

    xx = sum(k(a, b) for a in x for b in x) / len(x) ** 2
    yy = sum(k(a, b) for a in y for b in y) / len(y) ** 2
    xy = sum(k(a, b) for a in x for b in y) / (len(x) * len(y))
    return xx + yy - 2 * xy


def test_mmd2_and_bandwidth_match_their_definitions() -> None:
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(12, 3)), rng.normal(0.5, 1.0, size=(9, 3))
    assert mmd2(x, y, 1.3) == pytest.approx(_mmd2_by_definition(x, y, 1.3), abs=1e-12)
    pairs = [np.linalg.norm(x[i] - x[j]) for i in range(12) for j in range(i + 1, 12)]
    assert median_bandwidth(x) == pytest.approx(float(np.median(pairs)), abs=1e-12)
    observed, p = mmd_permutation_test(x, y, 1.3, 99, np.random.default_rng(1))
    assert observed == pytest.approx(_mmd2_by_definition(x, y, 1.3), abs=1e-12)
    assert 0.01 <= p <= 1.0 and round(p * 100) == p * 100  # (1 + count) / 100


def test_permutation_test_holds_its_level_on_exchangeable_data() -> None:
    # Fresh reference and window per trial, so trials are independent Bernoulli(<= alpha)
    # and the count of rejections is at most Binomial(trials, alpha).
    rng = np.random.default_rng(2)
    trials, alpha = 300, 0.05
    rejections = 0
    for _ in range(trials):
        ref = rng.standard_t(df=4, size=(120, 6))  # heavy tails: no Gaussian assumption
        window = rng.standard_t(df=4, size=(40, 6))
        _, p = mmd_permutation_test(ref, window, median_bandwidth(ref), 99, rng)
        rejections += p <= alpha
    print(f"exchangeable trials: {rejections} of {trials} rejected at alpha {alpha}")
    assert rejections <= binom.ppf(0.999, trials, alpha)
    assert rejections >= binom.ppf(0.001, trials, alpha)  # not vacuous: it does reject


def test_stable_stream_rarely_alarms_and_a_shift_is_caught() -> None:
    rng = np.random.default_rng(3)
    detector = EmbeddingDriftDetector(
        rng.normal(size=(1000, 8)), window=50, alpha=0.01, n_permutations=199, seed=3
    )
    alarms = 0
    for row in rng.normal(size=(50 * 100, 8)):
        tests = detector.n_tests
        alarms += detector.update(row).n_tests > tests and detector.drift_detected
    assert detector.n_tests == 100
    print(f"stable stream: {alarms} alarms in 100 windows at alpha 0.01")
    assert alarms <= binom.ppf(0.999, 100, 0.01)
    caught = 0
    for row in rng.normal(loc=0.5, size=(50 * 20, 8)):  # half a standard deviation
        tests = detector.n_tests
        caught += detector.update(row).n_tests > tests and detector.drift_detected
    assert caught == 20


def _embeddings(model: ShadowModel, studies: list[SyntheticStudy]) -> np.ndarray:
    images = np.stack([preprocess_study(s.slices()) for s in studies]).astype(np.float32)
    return model.predict(images).embeddings


def test_real_embeddings_flag_a_noisier_scanner_but_not_new_patients() -> None:
    model = ShadowModel.from_bytes(build_reference_model(seed=0, n_train=200))
    reference = _embeddings(model, synthesize_dataset(seed=40, n_studies=300, prevalence=0.1))
    same = _embeddings(model, synthesize_dataset(seed=41, n_studies=100, prevalence=0.1))
    # A protocol change (thinner slices, lower dose): image noise 8 -> about 14 HU.
    rng = np.random.default_rng(42)
    noisier = [
        SyntheticStudy(
            s.accession, s.positive, s.hu + rng.normal(0, 11.5, s.hu.shape).astype(np.float32)
        )
        for s in synthesize_dataset(seed=43, n_studies=100, prevalence=0.1)
    ]
    shifted = _embeddings(model, noisier)
    for window, drift in ((same, False), (shifted, True)):
        detector = EmbeddingDriftDetector(reference, window=100, alpha=0.01, seed=5)
        for row in window:
            detector.update(row)
        assert detector.n_tests == 1
        print(f"real embeddings, drift={drift}: p = {detector.p_value}")
        assert detector.drift_detected is drift, detector.p_value


def test_alpha_for_and_bad_parameters() -> None:
    assert alpha_for(2.0, 10.0) == pytest.approx(2.0 / 3650.0)
    with pytest.raises(ValueError, match="positive"):
        alpha_for(0.0, 1.0)
    ref = np.zeros((20, 2))
    with pytest.raises(ValueError, match="at least 10 rows"):
        EmbeddingDriftDetector(np.zeros((5, 2)))
    with pytest.raises(ValueError, match="permutations cannot reach"):
        EmbeddingDriftDetector(ref, alpha=0.001, n_permutations=99)
    with pytest.raises(ValueError, match="window"):
        EmbeddingDriftDetector(ref, window=2)
    detector = EmbeddingDriftDetector(ref, window=5)
    with pytest.raises(ValueError, match="2 values"):
        detector.update([1.0, 2.0, 3.0])
