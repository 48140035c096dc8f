"""Multivariate drift of shadow-model embeddings against a reference period: an MMD test.

Statistic: the (biased, V-statistic) squared maximum mean discrepancy between the reference
sample and the latest window of embeddings, with a Gaussian (RBF) kernel on embeddings
standardised by the reference mean and standard deviation. The bandwidth is the median
pairwise distance in the reference sample (the median heuristic), fixed once.

Threshold: a permutation test. The pooled reference + window is relabelled at random
`n_permutations` times; p = (1 + #{permuted MMD >= observed}) / (1 + n_permutations). When
the window comes from the reference distribution the pooled sample is exchangeable, so
P(p <= alpha) <= alpha exactly, whatever the embedding distribution: a stable stream raises
on average `alpha` false alarms per window. Choose alpha from the false alarms per year you
can afford with `alpha_for`.

>>> import numpy as np
>>> rng = np.random.default_rng(7)
>>> detector = EmbeddingDriftDetector(rng.normal(size=(400, 4)), window=100, seed=7)
>>> for row in rng.normal(size=(100, 4)):
...     _ = detector.update(row)
>>> detector.drift_detected
False
>>> for row in rng.normal(loc=0.6, size=(100, 4)):
...     _ = detector.update(row)
>>> detector.drift_detected, detector.p_value < 0.01
(True, True)
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

F64 = npt.NDArray[np.float64]


def alpha_for(false_alarms_per_year: float, windows_per_day: float) -> float:
    """The per-window level that gives this many false alarms per year on a stable stream."""
    if false_alarms_per_year <= 0 or windows_per_day <= 0:
        raise ValueError("false alarms per year and windows per day must be positive")
    return min(1.0, false_alarms_per_year / (365.0 * windows_per_day))


def _squared_distances(a: F64, b: F64) -> F64:
    d: F64 = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2.0 * a @ b.T
    return np.maximum(d, 0.0)  # rounding can make a zero distance slightly negative


def median_bandwidth(x: F64) -> float:
    """Median of the pairwise Euclidean distances between distinct points of `x`."""
    distances = np.sqrt(_squared_distances(x, x)[np.triu_indices(len(x), k=1)])
    median = float(np.median(distances))
    return median if median > 0.0 else 1.0


def rbf_kernel(a: F64, b: F64, bandwidth: float) -> F64:
    k: F64 = np.exp(-_squared_distances(a, b) / (2.0 * bandwidth**2))
    return k


def mmd2(x: F64, y: F64, bandwidth: float) -> float:
    """Biased squared MMD: mean k(x, x') + mean k(y, y') - 2 mean k(x, y)."""
    return float(
        rbf_kernel(x, x, bandwidth).mean()
        + rbf_kernel(y, y, bandwidth).mean()
        - 2.0 * rbf_kernel(x, y, bandwidth).mean()
    )


def mmd_permutation_test(
    x: F64, y: F64, bandwidth: float, n_permutations: int, rng: np.random.Generator
) -> tuple[float, float]:
    """(MMD^2, permutation p-value) for H0: x and y come from the same distribution."""
    m, n = len(x), len(y)
    kernel = rbf_kernel(np.vstack([x, y]), np.vstack([x, y]), bandwidth)
    # MMD^2 of a labelling is a^T K a with a = +1/m on one group and -1/n on the other.
    signs = np.r_[np.full(m, 1.0 / m), np.full(n, -1.0 / n)]
    observed = float(signs @ kernel @ signs)
    permuted = np.stack([signs[rng.permutation(m + n)] for _ in range(n_permutations)])
    null = np.einsum("pi,pi->p", permuted @ kernel, permuted)
    # Compare with a relative tolerance: equal statistics must count as "at least as large".
    exceed = int(np.sum(null >= observed - 1e-12 * max(1.0, abs(observed))))
    return observed, (1 + exceed) / (1 + n_permutations)


class EmbeddingDriftDetector:
    """Tests each full window of embeddings (tumbling windows) against the reference."""

    def __init__(
        self,
        reference: npt.ArrayLike,
        window: int = 100,
        alpha: float = 0.01,
        n_permutations: int = 499,
        reference_size: int = 400,
        seed: int = 0,
    ) -> None:
        ref = np.asarray(reference, dtype=np.float64)
        if ref.ndim != 2 or len(ref) < 10:
            raise ValueError("reference must be a [n, d] array with at least 10 rows")
        if window < 5:
            raise ValueError(f"window must be at least 5, got {window}")
        if not 0.0 < alpha < 1.0:
            raise ValueError(f"alpha must be in (0, 1), got {alpha}")
        if 1.0 / (1 + n_permutations) > alpha:
            raise ValueError(
                f"{n_permutations} permutations cannot reach p <= {alpha}; "
                f"use at least {int(np.ceil(1 / alpha)) - 1}"
            )
        self.window = window
        self.alpha = alpha
        self.n_permutations = n_permutations
        self.dim = ref.shape[1]
        self._rng = np.random.default_rng(seed)
        if len(ref) > reference_size:
            ref = ref[self._rng.choice(len(ref), reference_size, replace=False)]
        self._mean = ref.mean(axis=0)
        scale = ref.std(axis=0)
        self._scale = np.where(scale > 0.0, scale, 1.0)
        self._reference = (ref - self._mean) / self._scale
        self.bandwidth = median_bandwidth(self._reference)
        self._reset()

    def _reset(self) -> None:
        self._buffer: list[F64] = []
        self._drift = False
        self.statistic: float | None = None
        self.p_value: float | None = None
        self.n_tests = 0

    @property
    def drift_detected(self) -> bool:
        """True when the last completed window differed from the reference at level alpha."""
        return self._drift

    def update(self, embedding: npt.ArrayLike) -> EmbeddingDriftDetector:
        row = np.asarray(embedding, dtype=np.float64).reshape(-1)
        if row.shape != (self.dim,):
            raise ValueError(f"embedding must have {self.dim} values, got {row.shape[0]}")
        self._buffer.append((row - self._mean) / self._scale)
        if len(self._buffer) == self.window:
            self.statistic, self.p_value = mmd_permutation_test(
                self._reference,
                np.stack(self._buffer),
                self.bandwidth,
                self.n_permutations,
                self._rng,
            )
            self._drift = self.p_value <= self.alpha
            self.n_tests += 1
            self._buffer = []
        return self
