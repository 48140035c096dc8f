"""PSI, Jensen-Shannon and chi-square checked against independent oracles.

Oracles: scipy.spatial.distance.jensenshannon; scipy.stats.chi2_contingency with
correction=False (the 2 x k homogeneity test: the reference is a sample too, see
surveillance/stats/chi_square.py for why not scipy.stats.chisquare); Evidently 0.7.x for
PSI, both its public Report API (ValueDrift(method="psi")) and its binning helper.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.spatial.distance import jensenshannon
from scipy.stats import chi2_contingency

from surveillance.stats.chi_square import chi_square_homogeneity, chi_square_rows
from surveillance.stats.jensen_shannon import jensen_shannon_distance, jensen_shannon_rows
from surveillance.stats.psi import (
    align_counts,
    bin_counts,
    fill_empty_bins,
    proportions,
    psi,
    psi_rows,
    quantile_edges,
)


def _random_pairs(seed: int, n: int) -> list[tuple[np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(seed)
    pairs = []
    for _ in range(n):
        k = int(rng.integers(2, 12))
        ref = rng.integers(0, 200, size=k).astype(float)
        cur = rng.integers(0, 60, size=k).astype(float)
        ref[rng.random(k) < 0.2] = 0  # categories unseen in the reference
        cur[rng.random(k) < 0.2] = 0  # categories unseen in the current window
        ref[0], cur[1 % k] = max(ref[0], 1), max(cur[1 % k], 1)
        pairs.append((ref, cur))
    return pairs


@pytest.mark.parametrize("base", [None, 2.0])
def test_jensen_shannon_equals_scipy(base: float | None) -> None:
    pairs = _random_pairs(1, 200)
    for ref, cur in pairs:
        expected = float(jensenshannon(ref, cur, base=base))
        assert jensen_shannon_distance(list(ref), list(cur), base=base) == pytest.approx(
            expected, abs=1e-9
        )
        assert float(jensen_shannon_rows(ref, cur, base=base)) == pytest.approx(expected, abs=1e-9)


def test_chi_square_equals_scipy_contingency() -> None:
    for ref, cur in _random_pairs(2, 200):
        keep = (ref + cur) > 0  # scipy rejects all-zero columns; ours drops them
        if keep.sum() < 2:
            continue
        stat, p, dof, _ = chi2_contingency(np.vstack([ref[keep], cur[keep]]), correction=False)
        ours = chi_square_homogeneity(list(ref), list(cur))
        assert ours.statistic == pytest.approx(stat, abs=1e-9, rel=1e-12)
        assert ours.p_value == pytest.approx(p, abs=1e-9)
        assert ours.dof == dof
        rows_stat, rows_p, rows_dof = chi_square_rows(ref, cur)
        assert float(rows_stat) == pytest.approx(stat, abs=1e-9, rel=1e-12)
        assert float(rows_p) == pytest.approx(p, abs=1e-9)
        assert int(rows_dof) == dof


def test_chi_square_category_seen_only_in_current_window() -> None:
    # Reference never saw "VB30"; the homogeneity test keeps it as an ordinary column.
    keys, ref, cur = align_counts({"VB20": 300, "VA10": 100}, {"VB20": 20, "VB30": 25})
    assert keys == ["VB20", "VA10", "VB30"]
    assert list(ref) == [300, 100, 0] and list(cur) == [20, 0, 25]
    stat, p, dof, _ = chi2_contingency(np.vstack([ref, cur]), correction=False)
    ours = chi_square_homogeneity(list(ref), list(cur))
    assert (ours.statistic, ours.dof) == (pytest.approx(stat, rel=1e-12), dof)
    assert dof == 2
    assert ours.p_value == pytest.approx(p, abs=1e-12)


def test_chi_square_degenerate_inputs() -> None:
    assert chi_square_homogeneity([5, 0], [7, 0]).p_value == 1.0
    assert chi_square_homogeneity([5, 0], [7, 0]).dof == 0
    with pytest.raises(ValueError, match="non-negative"):
        chi_square_homogeneity([5, -1], [1, 1])


def test_align_counts_drops_categories_absent_on_both_sides() -> None:
    keys, ref, cur = align_counts({"a": 3, "b": 0}, {"c": 2, "a": 0, "d": 0})
    assert keys == ["a", "c"]
    assert list(ref) == [3, 0] and list(cur) == [0, 2]


def test_psi_textbook_value_and_rows_agree() -> None:
    # (0.5-0.3)ln(0.5/0.3) + 0 + (0.2-0.4)ln(0.2/0.4), worked by hand.
    expected = 0.2 * np.log(5 / 3) + 0.2 * np.log(2)
    assert psi([50, 30, 20], [30, 30, 40]) == pytest.approx(expected, abs=1e-12)
    for ref, cur in _random_pairs(3, 100):
        assert float(psi_rows(ref, cur)) == pytest.approx(psi(list(ref), list(cur)), abs=1e-12)


def test_empty_bin_rule_equals_evidently_binning() -> None:
    from evidently.legacy.calculations.stattests.utils import get_binned_data
    from evidently.legacy.core import ColumnType

    # Second case: the rarest category is below 1e-4 of the reference, the other branch.
    cases = [
        (["a"] * 60 + ["b"] * 40, ["a"] * 30 + ["c"] * 20),
        (["a"] * 20_000 + ["b"] * 1, ["a"] * 50 + ["c"] * 5),
    ]
    for ref_values, cur_values in cases:
        ref_s, cur_s = pd.Series(ref_values), pd.Series(cur_values)
        ev_ref, ev_cur = get_binned_data(ref_s, cur_s, ColumnType.Categorical, 30)
        keys = sorted(set(ref_values) | set(cur_values))
        ref_counts = [ref_values.count(k) for k in keys]
        cur_counts = [cur_values.count(k) for k in keys]
        ev_keys = list(set(ref_s.unique()) | set(cur_s.unique()))
        order = [ev_keys.index(k) for k in keys]
        assert fill_empty_bins(proportions(ref_counts)) == pytest.approx(ev_ref[order], abs=0)
        assert fill_empty_bins(proportions(cur_counts)) == pytest.approx(ev_cur[order], abs=0)


def _evidently_psi(reference: pd.DataFrame, current: pd.DataFrame, column: str) -> float:
    from evidently import DataDefinition, Dataset, Report
    from evidently.metrics import ValueDrift

    numeric = [column] if pd.api.types.is_numeric_dtype(reference[column]) else []
    definition = DataDefinition(
        numerical_columns=numeric, categorical_columns=[] if numeric else [column]
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        snapshot = Report([ValueDrift(column=column, method="psi")]).run(
            Dataset.from_pandas(current, data_definition=definition),
            Dataset.from_pandas(reference, data_definition=definition),
        )
    return float(snapshot.dict()["metrics"][0]["value"])


def test_psi_equals_evidently_report_categorical() -> None:
    rng = np.random.default_rng(4)
    ref = pd.DataFrame({"protocol": rng.choice(["ROUTINE", "TRAUMA", "STROKE"], 900)})
    cur = pd.DataFrame(
        {"protocol": rng.choice(["ROUTINE", "STROKE", "PERFUSION"], 80, p=[0.2, 0.7, 0.1])}
    )
    _, r, c = align_counts(
        ref["protocol"].value_counts().to_dict(), cur["protocol"].value_counts().to_dict()
    )
    ours = psi(list(r), list(c))
    assert ours == pytest.approx(_evidently_psi(ref, cur, "protocol"), abs=1e-12)
    print(f"categorical PSI ours={ours!r}")


def test_psi_equals_evidently_report_numeric_with_its_bins() -> None:
    rng = np.random.default_rng(5)
    ref = pd.DataFrame({"score": rng.beta(1.2, 6.0, 1500)})
    cur = pd.DataFrame({"score": rng.beta(2.0, 6.0, 120)})
    # Evidently's numeric binning (>20 distinct values): Sturges edges over both samples.
    edges = np.histogram_bin_edges(np.concatenate([ref["score"], cur["score"]]), bins="sturges")
    ref_counts = np.histogram(ref["score"], edges)[0]
    cur_counts = np.histogram(cur["score"], edges)[0]
    ours = psi(list(ref_counts), list(cur_counts))
    assert ours == pytest.approx(_evidently_psi(ref, cur, "score"), abs=1e-12)


def test_quantile_bins_with_missing_bin() -> None:
    ref = np.array([0.625, 1.25, 1.25, 2.5, 2.5, 2.5, 5.0, 5.0, 5.0, 5.0])
    edges = quantile_edges(ref, 4)
    # Quartiles of the sample (numpy's linear method), duplicates removed.
    assert list(edges) == list(np.unique(np.quantile(ref, [0.25, 0.5, 0.75])))
    counts = bin_counts([0.1, 1.25, 2.5, 3.0, 5.0, 9.0, float("nan")], edges)
    manual = [
        sum(1 for v in [0.1, 1.25, 2.5, 3.0, 5.0, 9.0] if lo <= v < hi)
        for lo, hi in zip([-np.inf, *edges], [*edges, np.inf], strict=True)
    ]
    assert list(counts) == [*manual, 1]
    with pytest.raises(ValueError, match="n_bins"):
        quantile_edges(ref, 1)


def test_bad_inputs_raise() -> None:
    with pytest.raises(ValueError, match="same non-zero length"):
        psi([1, 2], [1])
    with pytest.raises(ValueError, match="at least one count"):
        psi([0, 0], [1, 1])
    with pytest.raises(ValueError, match="base"):
        jensen_shannon_distance([1, 1], [1, 2], base=1)


@given(st.integers(2, 12), st.integers(1, 40), st.integers(0, 2**32 - 1))
@settings(max_examples=60, deadline=None)
def test_chi_square_rows_without_masks_equal_the_masked_arithmetic(
        k: int, rows: int, seed: int) -> None:
    # Windows whose expected counts are all positive take the unmasked path; one empty
    # window more sends the same windows through the masked one: equal to the last bit.
    rng = np.random.default_rng(seed)
    ref = rng.integers(1, 500, size=k).astype(float)
    windows = rng.integers(0, 80, size=(rows, k)).astype(float)
    windows[:, 0] += 1  # every window non-empty
    unmasked = chi_square_rows(ref, windows)
    masked = chi_square_rows(ref, np.vstack([windows, np.zeros(k)]))
    for fast, slow in zip(unmasked, masked, strict=True):
        assert np.array_equal(fast, slow[:-1])
