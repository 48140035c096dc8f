"""stats: pure math, no I/O. Agreement and intervals, baseline tests, CUSUM, windows, drift."""

from surveillance.stats.agreement import Confusion, Estimate, KappaEstimate, PredictiveValue
from surveillance.stats.binomial_test import BinomialTestResult, below_reference
from surveillance.stats.cusum import (
    BernoulliCUSUM,
    ChartDesign,
    average_run_length,
    cases_per_false_alarm,
    design_chart,
    threshold_for_arl,
)
from surveillance.stats.intervals import StatsParameterError, clopper_pearson, wilson
from surveillance.stats.windows import AgreementWindows, Key, WindowCounts, subgroup_keys

__all__ = [
    "AgreementWindows",
    "BernoulliCUSUM",
    "BinomialTestResult",
    "ChartDesign",
    "Confusion",
    "Estimate",
    "KappaEstimate",
    "Key",
    "PredictiveValue",
    "StatsParameterError",
    "WindowCounts",
    "average_run_length",
    "below_reference",
    "cases_per_false_alarm",
    "clopper_pearson",
    "design_chart",
    "subgroup_keys",
    "threshold_for_arl",
    "wilson",
]
