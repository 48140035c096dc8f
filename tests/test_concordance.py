"""Shadow-vs-vendor concordance, checked against sklearn and scipy, and arbitration."""

from __future__ import annotations

import math
from datetime import UTC, date, datetime

import numpy as np
import pytest
from scipy.stats import ConstantInputWarning, rankdata, spearmanr
from sklearn.metrics import cohen_kappa_score

from surveillance.contracts import AdjudicatedCase, CaseOutcome, Label
from surveillance.shadow.concordance import (
    Arbitration,
    ConcordanceWindow,
    Winner,
    average_ranks,
    cohen_kappa,
    spearman,
)
from surveillance.shadow.sampler import Reason
from surveillance.shadow.scorer import ShadowRequest, ShadowScore


@pytest.mark.parametrize(
    ("n", "p_a", "p_b", "flip"),
    [(50, 0.5, 0.5, 0.2), (400, 0.1, 0.15, 0.05), (30, 0.9, 0.8, 0.4), (7, 0.5, 0.5, 0.0)],
)
def test_kappa_matches_sklearn(n: int, p_a: float, p_b: float, flip: float) -> None:
    rng = np.random.default_rng(n)
    a = rng.uniform(size=n) < p_a
    b = np.where(rng.uniform(size=n) < flip, rng.uniform(size=n) < p_b, a)
    expected = cohen_kappa_score(a, b)
    got = cohen_kappa(list(a), list(b))
    assert got is not None
    assert got == pytest.approx(expected, abs=1e-12)


def test_kappa_is_undefined_when_both_always_give_the_same_call() -> None:
    assert cohen_kappa([True] * 5, [True] * 5) is None
    assert cohen_kappa([False] * 5, [False] * 5) is None
    # One rater constant, the other not: kappa is 0 whatever the other rater does (sklearn
    # says 0), a number that measures nothing: undefined, as everywhere in the service.
    assert cohen_kappa_score([1, 1, 1, 1], [1, 1, 0, 1]) == 0.0
    assert cohen_kappa_score([1, 1, 1, 1], [0, 0, 0, 1]) == 0.0
    assert cohen_kappa([True] * 4, [True, True, False, True]) is None
    with pytest.raises(ValueError, match="same length"):
        cohen_kappa([True], [True, False])


def test_average_ranks_match_scipy_with_ties() -> None:
    values = [3.0, 1.0, 3.0, 2.0, 3.0, 1.0, 7.0]
    np.testing.assert_array_equal(average_ranks(values), rankdata(values))


@pytest.mark.parametrize("decimals", [None, 1, 0])
def test_spearman_matches_scipy(decimals: int | None) -> None:
    rng = np.random.default_rng(4)
    x = rng.uniform(size=300)
    y = 0.6 * x + 0.4 * rng.uniform(size=300)
    if decimals is not None:  # rounding creates ties, the case the average ranks are for
        x, y = np.round(x * 3, decimals), np.round(y * 3, decimals)
    got = spearman(list(x), list(y))
    assert got is not None
    assert got == pytest.approx(spearmanr(x, y).statistic, abs=1e-12)


def test_spearman_is_undefined_for_a_constant_score() -> None:
    assert spearman([0.5, 0.5, 0.5], [0.1, 0.2, 0.3]) is None
    with pytest.warns(ConstantInputWarning):
        assert math.isnan(spearmanr([0.5, 0.5, 0.5], [0.1, 0.2, 0.3]).statistic)


def _score(i: int, vendor: float, shadow: float, threshold: float = 0.5) -> ShadowScore:
    request = ShadowRequest(
        f"ai-{i}",
        "ich-triage",
        "1.0",
        "site-a",
        f"acc-{i}",
        vendor,
        vendor >= threshold,
        Reason.SAMPLED,
    )
    return ShadowScore(request, shadow, shadow >= threshold, (0.0,), "digest")


def test_window_keeps_the_last_pairs_and_matches_the_oracles() -> None:
    rng = np.random.default_rng(9)
    vendor = rng.uniform(size=250)
    shadow = np.clip(vendor + rng.normal(0, 0.2, size=250), 0, 1)
    window = ConcordanceWindow(size=100)
    assert window.snapshot() is None
    for i in range(250):
        window.update(_score(i, float(vendor[i]), float(shadow[i])))
    snap = window.snapshot()
    assert snap is not None
    v, s = vendor[-100:], shadow[-100:]
    assert snap.n == 100
    assert snap.kappa == pytest.approx(cohen_kappa_score(v >= 0.5, s >= 0.5), abs=1e-12)
    assert snap.spearman == pytest.approx(spearmanr(v, s).statistic, abs=1e-12)
    assert snap.discordant == int(np.sum((v >= 0.5) != (s >= 0.5)))
    assert snap.agreement == pytest.approx(1 - snap.discordant / 100, abs=1e-15)
    with pytest.raises(ValueError, match="at least 2"):
        ConcordanceWindow(size=1)


def _case(i: int, label: Label | None, revision: int = 0) -> AdjudicatedCase:
    return AdjudicatedCase(
        case_id=f"case-{i}",
        revision=revision,
        outcome=CaseOutcome.TP,  # arbitration reads the label, not the vendor's outcome
        label=label,
        tool_id="ich-triage",
        software_version="1.0",
        finding_code="intracranial_hemorrhage",
        site="site-a",
        ai_result=0.5,
        operating_threshold=0.5,
        result_indicator=True,
        accession=f"acc-{i}",
        study_date=date(2025, 1, 1),
        inference_date=datetime(2025, 1, 1, tzinfo=UTC),
        modality="CT",
        scanner_manufacturer="GE",
        scanner_model="X",
        scanner_software_version="1",
        ai_event_id=f"ai-{i}",
    )


def test_arbitration_in_either_order_and_with_corrections() -> None:
    arb = Arbitration()
    # Shadow first, then the read: vendor positive, shadow negative, read present.
    assert arb.record_shadow(_score(1, 0.9, 0.1)) is None
    assert arb.record_case(_case(1, Label.PRESENT)) == Winner.VENDOR
    # Read first (a discordant case re-scored after adjudication), then the shadow score.
    assert arb.record_case(_case(2, Label.PRESENT)) is None
    assert arb.record_shadow(_score(2, 0.2, 0.8)) == Winner.SHADOW
    # Concordant pairs are not arbitrated.
    assert arb.record_shadow(_score(3, 0.9, 0.9)) is None
    assert arb.record_case(_case(3, Label.ABSENT)) is None
    assert (arb.tally().vendor_right, arb.tally().shadow_right) == (1, 1)
    # A corrected report flips case 1; a redelivered older revision changes nothing.
    assert arb.record_case(_case(1, Label.ABSENT, revision=1)) == Winner.SHADOW
    assert arb.record_case(_case(1, Label.PRESENT, revision=0)) == Winner.SHADOW
    assert (arb.tally().vendor_right, arb.tally().shadow_right) == (0, 2)
    # An addendum that makes the read indeterminate withdraws the verdict.
    assert arb.record_case(_case(2, Label.INDETERMINATE, revision=1)) is None
    assert arb.tally().n == 1


def test_arbitration_tally_matches_an_independent_count() -> None:
    rng = np.random.default_rng(21)
    arb = Arbitration()
    vendor_right = shadow_right = 0
    for i in range(500):
        vendor, shadow = float(rng.uniform()), float(rng.uniform())
        present = bool(rng.uniform() < 0.3)
        arb.record_shadow(_score(i, vendor, shadow))
        arb.record_case(_case(i, Label.PRESENT if present else Label.ABSENT))
        if (vendor >= 0.5) != (shadow >= 0.5):
            vendor_right += (vendor >= 0.5) == present
            shadow_right += (shadow >= 0.5) == present
    tally = arb.tally()
    assert (tally.vendor_right, tally.shadow_right) == (vendor_right, shadow_right)
    assert vendor_right > 0 and shadow_right > 0


def test_arbitration_forgets_the_oldest_beyond_its_bound() -> None:
    arb = Arbitration(max_items=3)
    for i in range(5):
        arb.record_shadow(_score(i, 0.9, 0.1))
        arb.record_case(_case(i, Label.ABSENT))
    assert arb.tally().n == 3
    with pytest.raises(ValueError, match="at least 1"):
        Arbitration(max_items=0)
