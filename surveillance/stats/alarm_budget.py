"""One false-alarm budget per tool-year, split explicitly across the detector families.

A site is promised at most `per_tool_year` false alarms per tool per year (default 1),
counting every alert a stable tool can raise. The budget is split into fixed shares, one
per detector family, and each family calibrates its own thresholds to its share:

- `cusum`: the two Bernoulli CUSUM charts (sensitivity, specificity) of each version;
- `baseline_test`: the daily one-sided exact tests of each window, site and metric;
- `label_free`: the positive-call rate and score-distribution tests;
- `drift`: every input and output drift feature of the tool's drift bank.

By linearity of expectation the expected false alarms per tool-year are then at most the
sum of the shares, whatever the dependence between families. The shares are part of the
configuration (`AlarmBudget`), not constants buried in each detector, so a committee can
read and change the allocation in one place. Model versions share their tool's budget:
every rate here is per tool, in calendar time, and a version's detectors are designed at
the version's own volume (a version replacing another takes over its calendar time).

New-category notices and version-change alerts are facts, not statistical tests, and
are outside the budget.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

Family = Literal["cusum", "baseline_test", "label_free", "drift"]
FAMILIES: tuple[Family, ...] = ("cusum", "baseline_test", "label_free", "drift")

#: The documented default allocation (shares of the tool's yearly budget). Charts are
#: the primary detector of a sensitivity drop and get half; drift watches 13 features and
#: gets a quarter; the label-free warnings and the daily tests, which back the charts up,
#: share the rest.
DEFAULT_SHARES: dict[Family, float] = {
    "cusum": 0.50,
    "baseline_test": 0.10,
    "label_free": 0.15,
    "drift": 0.25,
}

#: Days per year and per quarter, for the families that count in quarters or days.
DAYS_PER_YEAR = 365.25
DAYS_PER_QUARTER = 91


class AlarmBudgetError(ValueError):
    """An allocation that does not add up or a budget that is not positive."""


class AlarmBudget(BaseModel):
    """False alarms per tool-year, and the share of them each detector family may use."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    per_tool_year: float = Field(default=1.0, gt=0, le=365)
    shares: dict[Family, float] = Field(default_factory=lambda: dict(DEFAULT_SHARES))

    @model_validator(mode="after")
    def _shares_add_up(self) -> AlarmBudget:
        missing = [f for f in FAMILIES if f not in self.shares]
        if missing:
            raise AlarmBudgetError(f"alarm budget shares miss the families {missing}")
        if any(not 0 < s <= 1 for s in self.shares.values()):
            raise AlarmBudgetError(f"every share must be in (0, 1], got {self.shares}")
        total = sum(self.shares.values())
        if abs(total - 1.0) > 1e-9:
            raise AlarmBudgetError(f"alarm budget shares must add up to 1, got {total:g}")
        return self

    def per_year(self, family: Family) -> float:
        """False alarms per tool-year this family may raise on a stable tool."""
        return self.per_tool_year * self.shares[family]

    def per_quarter(self, family: Family) -> float:
        """The same per 91-day quarter (the drift bank's unit)."""
        return self.per_year(family) * DAYS_PER_QUARTER / DAYS_PER_YEAR

    def per_test_day(self, family: Family, tests_per_day: int) -> float:
        """Level of each of `tests_per_day` daily tests so that, summed over a year, the
        expected number of rejecting test-days (hence of alerts, which need a test to
        enter rejection) stays within the family's share (a union bound)."""
        if tests_per_day < 1:
            raise AlarmBudgetError(f"tests_per_day must be >= 1, got {tests_per_day}")
        return min(0.5, self.per_year(family) / (DAYS_PER_YEAR * tests_per_day))


DEFAULT_BUDGET = AlarmBudget()


def family_details(budget: AlarmBudget, family: Family) -> dict[str, object]:
    """What every alert of a budgeted family says about the budget it draws on."""
    return {
        "family": family,
        "family_false_alarms_per_year": budget.per_year(family),
        "tool_false_alarms_per_year": budget.per_tool_year,
    }
