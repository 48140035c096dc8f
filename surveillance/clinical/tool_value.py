"""Cost and value of a tool over a period, from its configured annual cost.

- cost per study processed: the period's share of the annual cost over AI results;
- cost per true-positive flag: the same over flags whose study was read positive;
- reading time brought forward: the turnaround difference (median minutes to first report,
  unflagged minus flagged finding-present studies; `triage_turnaround`) times the number of
  flagged positives, in hours: what triage bought, if the difference is real. The
  difference's interval is carried along so nobody quotes the sum without it.
"""

from __future__ import annotations

from dataclasses import dataclass

from surveillance.stats.cusum import DAYS_PER_YEAR
from surveillance.stats.intervals import StatsParameterError
from surveillance.stats.median_difference import MedianDifference


@dataclass(frozen=True, slots=True)
class ToolValue:
    period_cost: float
    currency: str
    cost_per_study: float | None
    cost_per_true_positive: float | None
    #: Hours of reading brought forward over all flagged positives, with the interval from
    #: the turnaround difference's interval (None without one).
    hours_brought_forward: float | None
    hours_lower: float | None
    hours_upper: float | None


def tool_value(
    annual_cost: float,
    currency: str,
    days: int,
    studies: int,
    true_positive_flags: int,
    turnaround: MedianDifference | None,
) -> ToolValue:
    """The tool's cost and value over `days` days with these counts."""
    if not annual_cost > 0 or days < 1 or studies < 0 or true_positive_flags < 0:
        raise StatsParameterError(
            f"need a positive cost and days and non-negative counts, got cost={annual_cost}, "
            f"days={days}, studies={studies}, true positives={true_positive_flags}"
        )
    cost = annual_cost * days / DAYS_PER_YEAR
    hours = low = high = None
    if turnaround is not None:
        # Unflagged minus flagged: positive when flagged studies were read sooner.
        hours = -turnaround.difference * true_positive_flags / 60.0
        if turnaround.lower is not None and turnaround.upper is not None:
            low = -turnaround.upper * true_positive_flags / 60.0
            high = -turnaround.lower * true_positive_flags / 60.0
    return ToolValue(
        cost, currency,
        cost / studies if studies else None,
        cost / true_positive_flags if true_positive_flags else None,
        hours, low, high,
    )
